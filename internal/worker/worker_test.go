package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/pool"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
	"github.com/codebench/codebench/internal/testenv"
	"github.com/codebench/codebench/internal/worker"
)

// These tests run the worker in-process against a real RabbitMQ (a vhost of
// their own) and real VMs.

type harness struct {
	t      *testing.T
	url    string // the test's vhost
	conn   *broker.Conn
	sb     *testenv.Sandbox
	cancel context.CancelFunc
	done   chan error
}

// startWorkerVia starts a worker on QEMU microVMs that reaches the broker
// through proxy (the test's own connection does not).
func startWorkerVia(t *testing.T, name string, poolSize, concurrency int, proxy *testenv.Proxy) *harness {
	t.Helper()
	return startWorkerOn(t, testenv.NeedVM(t).Sandbox(), name, poolSize, concurrency, proxy)
}

// startWorkerOn starts an in-process worker on the driver sb, against a
// vhost of its own, with the production path: pool members are clones of
// a template where the driver can make them, cold starts otherwise.
func startWorkerOn(t *testing.T, sb *testenv.Sandbox, name string, poolSize, concurrency int, proxy *testenv.Proxy) *harness {
	t.Helper()
	url := testenv.Vhost(t, name+"-"+sb.Name)
	qcfg := broker.Config{URL: url, Prefetch: concurrency, StatusExpires: time.Hour}
	wcfg := qcfg
	if proxy != nil {
		u, _ := neturl.Parse(url)
		u.Host = proxy.Addr
		wcfg.URL = u.String()
	}
	log := testenv.Logger(t)
	// The production path: pool VMs are clones of a warmed-up template.
	var langs []lang.Language
	for _, n := range sb.Image.LanguageNames() {
		langs = append(langs, lang.Builtin()[n])
	}
	prov, err := provision.New(context.Background(), sb.Driver, sb.Spec, template.Config{
		Root: filepath.Join(sb.Config.DataDir, "templates"), ImageHash: sb.Image.Manifest.Hash,
		Languages: langs, BootLimit: 2 * time.Minute,
	}, true, provision.Rotation{}, log)
	t.Cleanup(prov.Close)
	if _, canSnap := sandbox.Snapshots(sb.Driver); canSnap == nil && prov.Template() == nil {
		t.Fatalf("no snapshot template, the pool would cold boot: %v", err)
	}
	p := pool.New(pool.Config{Size: poolSize, MaxBoots: 2}, prov.Provision, log, nil)
	p.Start()
	policy := job.Policy{
		MaxJobBytes:  8 << 20,
		Table:        lang.Builtin(),
		MaxCodeBytes: 4096,
		Languages:    sb.Image.LanguageNames(),
		Defaults:     job.Limits{WallMS: 10_000, CPUMS: 5_000, MemoryKB: 131072, Processes: 60, OutputBytes: 65536, FileSizeKB: 1024},
		Max:          job.Limits{WallMS: 60_000, CPUMS: 30_000, MemoryKB: 262144, Processes: 256, OutputBytes: 1 << 20, FileSizeKB: 65536},
		// The production default (compile_wall_ms), and four times it
		// where the guest is emulated: javac under TCG on a loaded 2-core
		// CI machine took over 30 s, then over 60 s.
		CompileWall: compileWall(sb),
	}
	w := worker.New(worker.Config{Concurrency: concurrency, PoolWait: 2 * time.Minute, Grace: 30 * time.Second, ReconnectMax: 2 * time.Second, Ready: p.Ready()},
		policy, worker.FromPool(p), func(ctx context.Context) (worker.Session, error) {
			c, err := broker.Dial(ctx, wcfg)
			if err != nil {
				return nil, err
			}
			return c, nil
		}, log)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, url: url, sb: sb, cancel: cancel, done: make(chan error, 1)}
	go func() { err := w.Run(ctx); p.Stop(); h.done <- err }()
	conn, err := broker.Dial(context.Background(), qcfg)
	if err != nil {
		t.Fatal(err)
	}
	h.conn = conn
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("worker did not stop")
		}
		conn.Close()
		if n := sb.Processes(); n != 0 {
			t.Errorf("%d sandbox processes left after shutdown", n)
		}
		if left := testenv.Entries(sb.RunDir); len(left) != 0 {
			t.Errorf("run dir entries left after shutdown: %v", left)
		}
	})
	return h
}

// submit publishes body to the jobs queue, listening on id's status queue
// first, and returns every status until the final one (plus any that arrive
// within a short settle time after it).
func (h *harness) submit(id, body string, timeout time.Duration) []job.Status {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ch, err := h.conn.Follow(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.conn.PublishJob(ctx, []byte(body)); err != nil {
		h.t.Fatal(err)
	}
	return collect(h.t, ctx, ch)
}

func collect(t *testing.T, ctx context.Context, ch <-chan []byte) []job.Status {
	t.Helper()
	var out []job.Status
	var settle <-chan time.Time
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("status stream ended after %d statuses: %+v", len(out), out)
			}
			var st job.Status
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatalf("status is not JSON: %s", b)
			}
			out = append(out, st)
			if job.Final(st.Status) && settle == nil {
				settle = time.After(300 * time.Millisecond)
			}
		case <-settle:
			return out
		case <-ctx.Done():
			t.Fatalf("no final status in time; got %+v", out)
		}
	}
}

func statusNames(sts []job.Status) string {
	var n []string
	for _, s := range sts {
		n = append(n, s.Status)
	}
	return strings.Join(n, ",")
}

// The seed README's exact message.
const seedBody = `{"id":"666", "type": "code", "code":"#include <stdio.h>\r\nint main() {\r\n   \/\/ printf() displays the string inside quotation\r\n   printf(\"Hello, World!\");\r\n   return 0;\r\n}"}` + "\r\n"

func TestWorker(t *testing.T) {
	testenv.EachSandbox(t, func(t *testing.T, sb *testenv.Sandbox) { testWorker(t, sb) })
}

func testWorker(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "worker", 2, 2, nil)

	t.Run("SeedJob", func(t *testing.T) {
		sts := h.submit("666", seedBody, 3*time.Minute)
		if statusNames(sts) != "received,running,done" {
			t.Fatalf("statuses %s: %+v", statusNames(sts), sts)
		}
		for i, want := range []string{
			`{"id":"666","status":"received","stderr":"","stdout":""}`,
			`{"id":"666","status":"running","stderr":"","stdout":""}`,
		} {
			if got := string(sts[i].Marshal()); got != want {
				t.Fatalf("status %d is %s, want the seed's %s", i, got, want)
			}
		}
		if sts[2].Stdout != "Hello, World!" || sts[2].Stderr != "" || sts[2].Verdict != job.VerdictOK {
			t.Fatalf("final %+v", sts[2])
		}
	})

	t.Run("CompileError", func(t *testing.T) {
		sts := h.submit("cerr", `{"id":"cerr","language":"c","code":"int main(){ return nope; }"}`, 3*time.Minute)
		if statusNames(sts) != "received,running,failed" {
			t.Fatalf("statuses %s", statusNames(sts))
		}
		f := sts[2]
		if f.Verdict != job.VerdictCompileError || !strings.Contains(f.CompileOutput, "nope") {
			t.Fatalf("final %+v", f)
		}
	})

	t.Run("InvalidJobs", func(t *testing.T) {
		tests := []struct {
			name, id, body, reason string
		}{
			{"empty code", "inv1", `{"id":"inv1","code":""}`, "empty code"},
			{"unknown language", "inv2", `{"id":"inv2","language":"cobol","code":"x"}`, "unknown language \"cobol\""},
			{"code too big", "inv3", `{"id":"inv3","code":"` + strings.Repeat("x", 5000) + `"}`, "over the limit"},
			{"bad json with id", "inv4", `{"id":"inv4","code":5}`, "malformed JSON"},
			{"network on a worker without it", "inv5", `{"id":"inv5","language":"python","code":"print(1)","network":true}`, "network access is not enabled"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sts := h.submit(tt.id, tt.body, time.Minute)
				if len(sts) != 1 || sts[0].Status != job.StatusFailed || sts[0].Verdict != job.VerdictInvalidJob ||
					!strings.Contains(sts[0].Message, tt.reason) {
					t.Fatalf("statuses %+v", sts)
				}
			})
		}
		// No usable id: dead-lettered with the reason.
		if err := h.conn.Purge(queue.DeadQueue); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, body := range []string{`not json at all`, `{"code":"x"}`, `{"id":"../x","code":"x"}`} {
			if err := h.conn.PublishJob(ctx, []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		var dead []string
		for len(dead) < 3 && ctx.Err() == nil {
			msgs, err := h.conn.Get(queue.DeadQueue, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if m.Headers[queue.ReasonHeader] == nil {
					t.Fatalf("dead letter without a reason: %s", m.Body)
				}
				dead = append(dead, string(m.Body))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(dead) != 3 {
			t.Fatalf("dead-lettered %d of 3: %q", len(dead), dead)
		}
		// And the worker keeps serving.
		sts := h.submit("after-invalid", `{"id":"after-invalid","language":"python","code":"print('still here')"}`, 3*time.Minute)
		if last := sts[len(sts)-1]; last.Status != job.StatusDone || last.Stdout != "still here\n" {
			t.Fatalf("job after invalid ones: %+v", sts)
		}
	})

	t.Run("ThirtyAtOnceFromClones", func(t *testing.T) {
		const n = 30
		limit := 2 + 2 // pool size + concurrency
		var peak atomic.Int64
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if c := int64(h.sandboxes()); c > peak.Load() {
					peak.Store(c)
				}
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		chans := make([]<-chan []byte, n)
		for i := range n {
			id := fmt.Sprintf("many-%d", i)
			ch, err := h.conn.Follow(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			chans[i] = ch
			body := fmt.Sprintf(`{"id":%q,"language":"python","code":"print(%d*%d)"}`, id, i, i)
			if i%4 == 0 {
				body = fmt.Sprintf(`{"id":%q,"language":"c","code":"#include <stdio.h>\nint main(){printf(\"%%d\\n\", %d*%d);return 0;}"}`, id, i, i)
			}
			if err := h.conn.PublishJob(ctx, []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		for i, ch := range chans {
			sts := collect(t, ctx, ch)
			last := sts[len(sts)-1]
			if statusNames(sts) != "received,running,done" || last.Stdout != fmt.Sprintf("%d\n", i*i) {
				t.Fatalf("job %d: %s %+v", i, statusNames(sts), last)
			}
		}
		close(stop)
		sampler.Wait()
		if p := peak.Load(); p > int64(limit) || p == 0 {
			t.Fatalf("peak of %d VMs alive, configured at most %d", p, limit)
		}
		t.Logf("peak VMs alive: %d (limit %d)", peak.Load(), limit)
	})
}

// sandboxes counts the sandboxes alive (their run dirs: a gVisor sandbox is
// several processes, a VM one).
func (h *harness) sandboxes() int { return len(testenv.Entries(h.sb.RunDir)) }

// vhost is the name of the test's virtual host.
func (h *harness) vhost() string {
	u, _ := neturl.Parse(h.url)
	return strings.TrimPrefix(u.Path, "/")
}

func langHello(name string) string { return lang.Builtin()[name].Hello }

func decodeStatus(t *testing.T, b []byte) job.Status {
	t.Helper()
	var st job.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status is not JSON: %s", b)
	}
	return st
}

// compileWall is the harness's compile wall: the production default, or
// four times it under emulation (QEMU's TCG).
func compileWall(sb *testenv.Sandbox) int64 {
	if sb.Emulated {
		return 4 * 60_000
	}
	return 60_000
}

package sandboxes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandboxlink"
)

// fakeVM is a sandbox whose guest is a sandboxlink server in this process,
// answering every request with its VM's id.
type fakeVM struct {
	id      string
	host    net.Conn
	done    chan struct{}
	stopped sync.Once
	serve   sync.WaitGroup
}

func newFakeVM(t *testing.T, id string) *fakeVM {
	host, guest := net.Pipe()
	v := &fakeVM{id: id, host: host, done: make(chan struct{})}
	v.serve.Add(1)
	go func() {
		defer v.serve.Done()
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, id) })
		_ = sandboxlink.Serve(context.Background(), guest, h, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	return v
}

func (v *fakeVM) ID() string { return v.id }
func (v *fakeVM) DialAgent(context.Context) (net.Conn, error) {
	_ = v.host.SetReadDeadline(time.Time{}) // the last session's close ended its reads
	return &session{Conn: v.host}, nil
}
func (v *fakeVM) Stop(context.Context) error {
	v.stopped.Do(func() { _ = v.host.Close(); close(v.done); v.serve.Wait() })
	return nil
}
func (v *fakeVM) Done() <-chan struct{}  { return v.done }
func (v *fakeVM) ConsoleTail(int) string { return "" }

// session closes without closing the stream, as a driver's does: its
// reads end, the stream stays.
type session struct{ net.Conn }

func (s *session) Close() error { return s.SetReadDeadline(time.Now()) }

type fakeAgent struct{ envs map[string]string }

func (a *fakeAgent) Envd(_ context.Context, req *agentproto.Envd) error {
	a.envs = req.Envs
	return nil
}

// fakePauser "checkpoints" by stopping the VM and "restores" a new one;
// with fail, a checkpoint fails (killing the VM too with failKills).
type fakePauser struct {
	t               *testing.T
	mu              sync.Mutex
	restores        int
	fail, failKills bool
}

func (p *fakePauser) Checkpoint(ctx context.Context, vm sandbox.VM, dir string) error {
	if p.fail {
		if p.failKills {
			_ = vm.Stop(ctx)
		}
		return errors.New("no room for the image")
	}
	if err := os.WriteFile(filepath.Join(dir, "image"), []byte(vm.ID()), 0o600); err != nil {
		return err
	}
	return vm.Stop(ctx)
}

func (p *fakePauser) Restore(_ context.Context, _ sandbox.Spec, dir string) (sandbox.VM, error) {
	if _, err := os.Stat(filepath.Join(dir, "image")); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.restores++
	p.mu.Unlock()
	return newFakeVM(p.t, "restored"), nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newManager(t *testing.T, dir string, c *clock, mutate func(*Config)) *Manager {
	t.Helper()
	n := 0
	var mu sync.Mutex
	cfg := Config{Dir: dir, Spec: sandbox.Spec{MemoryMB: 512, VCPUs: 1, RootDir: "/root-tree"}, Pauser: &fakePauser{t: t},
		Take: func(context.Context) (Warm, error) {
			mu.Lock()
			n++
			mu.Unlock()
			vm := newFakeVM(t, "warm")
			return Warm{VM: vm, Agent: &fakeAgent{}, Stop: vm.Stop}, nil
		},
		Max: 4, MaxRunning: 3, KeyRunning: 2, KeyPaused: 1, KeyMemoryMB: 4096, HomeMB: 64,
		DefaultTimeout: time.Minute, MaxTimeout: time.Hour, Now: c.Now}
	if mutate != nil {
		mutate(&cfg)
	}
	m, _, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func get(t *testing.T, m *Manager, id, token string) (string, error) {
	t.Helper()
	tr, err := m.Transport(id, token)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Get("http://envd/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

func TestManagerLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	m := newManager(t, dir, c, nil)

	a, err := m.Create(ctx, "key-1", CreateRequest{TemplateID: "base", Metadata: map[string]string{"k": "v"}, Envs: map[string]string{"A": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, m, a.ID, a.Token); err != nil || got != "warm" {
		t.Fatalf("data plane: %q %v", got, err)
	}
	if _, err := m.Transport(a.ID, "wrong"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a wrong token: %v", err)
	}
	if _, err := m.Get("key-2", a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another key's sandbox: %v", err)
	}
	if !a.EndAt.Equal(c.Now().Add(time.Minute)) {
		t.Fatalf("default timeout: ends %v", a.EndAt)
	}

	// limits: the key's running sandboxes, then the host's
	if _, err := m.Create(ctx, "key-1", CreateRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "key-1", CreateRequest{}); !errors.Is(err, ErrQuota) {
		t.Fatalf("a third for the key: %v", err)
	}
	if _, err := m.Create(ctx, "key-2", CreateRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "key-3", CreateRequest{}); !errors.Is(err, ErrFull) {
		t.Fatalf("a fourth running on the host: %v", err)
	}
	if _, err := m.Create(ctx, "key-3", CreateRequest{Envs: map[string]string{"A=B": "x"}}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a bad env name: %v", err)
	}

	// pause and resume
	if err := m.Pause(ctx, "key-1", a.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Pause(ctx, "key-1", a.ID); !errors.Is(err, ErrAlreadyPaused) {
		t.Fatalf("pause again: %v", err)
	}
	if _, err := m.Transport(a.ID, a.Token); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("the data plane of a paused sandbox: %v", err)
	}
	if l := m.List("key-1", Filter{States: []string{StatePaused}}); len(l) != 1 || l[0].ID != a.ID {
		t.Fatalf("paused list: %+v", l)
	}
	others := m.List("key-1", Filter{States: []string{StateRunning}})
	if err := m.Pause(ctx, "key-1", others[0].ID); !errors.Is(err, ErrQuota) {
		t.Fatalf("a second paused for the key: %v", err)
	}
	c.Add(30 * time.Second)
	info, resumed, err := m.Connect(ctx, "key-1", a.ID, 10*time.Second)
	if err != nil || !resumed || info.Epoch != 2 || info.State != StateRunning {
		t.Fatalf("connect: %+v resumed=%v %v", info, resumed, err)
	}
	if !info.EndAt.Equal(a.EndAt) {
		t.Fatalf("a connect shortened the deadline: %v, was %v", info.EndAt, a.EndAt)
	}
	if got, err := get(t, m, a.ID, a.Token); err != nil || got != "restored" {
		t.Fatalf("data plane after resume: %q %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, a.ID, "checkpoint")); !os.IsNotExist(err) {
		t.Fatalf("the checkpoint outlived the resume: %v", err)
	}

	// the deadline: killed by the reaper
	c.Add(time.Hour)
	m.reap()
	if _, err := m.Get("key-1", a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after its deadline: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, a.ID)); !os.IsNotExist(err) {
		t.Fatalf("a killed sandbox's record is left: %v", err)
	}
}

func TestManagerAutoPauseAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	m := newManager(t, dir, c, nil)
	a, err := m.Create(ctx, "key-1", CreateRequest{AutoPause: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, "key-2", CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c.Add(10 * time.Second)
	m.reap()
	if info, _ := m.Get("key-1", a.ID); info.State != StatePaused {
		t.Fatalf("auto-pause: %q", info.State)
	}
	// A host killed now: b's record says running; a new host keeps a,
	// reclaims b.
	_, reclaimed, err := New(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(reclaimed) != 1 || reclaimed[0] != b.ID {
		t.Fatalf("reclaimed %v, want [%s]", reclaimed, b.ID)
	}
	m2 := newManager(t, dir, c, nil)
	if _, resumed, err := m2.Connect(ctx, "key-1", a.ID, 0); err != nil || !resumed {
		t.Fatalf("resume on the next host: %v %v", resumed, err)
	}
	// A stop pauses what runs, whatever its key's count.
	m2.Close(ctx)
	if l := m2.List("key-1", Filter{}); len(l) != 1 || l[0].State != StatePaused {
		t.Fatalf("after a stop: %+v", l)
	}
}

// TestPauseFails: a checkpoint that fails before the sandbox was paused
// leaves it running, on a new epoch of its link; one that ended it loses it.
func TestPauseFails(t *testing.T) {
	ctx := context.Background()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	pauser := &fakePauser{t: t, fail: true}
	m := newManager(t, t.TempDir(), c, func(cfg *Config) { cfg.Pauser = pauser })
	a, err := m.Create(ctx, "key-1", CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Pause(ctx, "key-1", a.ID); err == nil {
		t.Fatal("a failed pause succeeded")
	}
	info, err := m.Get("key-1", a.ID)
	if err != nil || info.State != StateRunning || info.Epoch != 2 {
		t.Fatalf("after a failed pause: %+v %v", info, err)
	}
	if got, err := get(t, m, a.ID, a.Token); err != nil || got != "warm" {
		t.Fatalf("the data plane after a failed pause: %q %v", got, err)
	}
	pauser.failKills = true
	if err := m.Pause(ctx, "key-1", a.ID); err == nil {
		t.Fatal("a failed pause succeeded")
	}
	if _, err := m.Get("key-1", a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a sandbox a failed pause ended: %v", err)
	}
}

// TestMetrics: one reading of a running sandbox, its CPU share since the
// last reading; none for a paused one.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	var cpu time.Duration
	m := newManager(t, t.TempDir(), c, func(cfg *Config) {
		cfg.Usage = func(string) (time.Duration, int64, error) { return cpu, 64 << 20, nil }
	})
	a, err := m.Create(ctx, "key-1", CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c.Add(10 * time.Second)
	cpu = 2500 * time.Millisecond
	ms, err := m.Metrics("key-1", a.ID)
	if err != nil || len(ms) != 1 {
		t.Fatalf("metrics: %v %v", ms, err)
	}
	if got := ms[0]; got.CPUPct != 25 || got.CPUCount != 1 || got.MemUsed != 64<<20 || got.MemTotal != 512<<20 {
		t.Fatalf("metric: %+v", got)
	}
	if _, err := m.Metrics("key-2", a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another key's metrics: %v", err)
	}
	if err := m.Pause(ctx, "key-1", a.ID); err != nil {
		t.Fatal(err)
	}
	if ms, err := m.Metrics("key-1", a.ID); err != nil || len(ms) != 0 {
		t.Fatalf("a paused sandbox's metrics: %v %v", ms, err)
	}
}

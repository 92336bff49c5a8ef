package worker_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// waitFor collects statuses of id until one has status want.
func waitFor(t *testing.T, ctx context.Context, ch <-chan []byte, want string) []job.Status {
	t.Helper()
	var got []job.Status
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("status stream ended; got %+v", got)
			}
			st := decodeStatus(t, b)
			got = append(got, st)
			if st.Status == want {
				return got
			}
		case <-ctx.Done():
			t.Fatalf("no %q status in time; got %+v", want, got)
		}
	}
}

// TestBrokerOutage: the connection to RabbitMQ drops in the middle of a
// job. The worker reconnects with backoff, the broker redelivers the job,
// it runs again and finishes; the pool keeps its VMs through the outage.
func TestBrokerOutage(t *testing.T) {
	base := testenv.RabbitURL(t)
	u, _ := url.Parse(base)
	proxy := testenv.NewProxy(t, u.Host)
	h := startWorkerVia(t, "outage", 2, 1, proxy)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ch, err := h.conn.Follow(ctx, "outage")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.conn.PublishJob(ctx, []byte(`{"id":"outage","language":"python","code":"import time\ntime.sleep(3)\nprint('finished')"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, ch, job.StatusRunning)
	proxy.Cut()
	// During the outage the pool keeps its VMs.
	time.Sleep(2 * time.Second)
	if n := h.sandboxes(); n < 2 {
		t.Fatalf("only %d VMs alive during the outage; the pool should keep 2", n)
	}
	proxy.Restore()
	sts := waitFor(t, ctx, ch, job.StatusDone)
	last := sts[len(sts)-1]
	if last.Stdout != "finished\n" {
		t.Fatalf("final %+v", last)
	}
	t.Logf("statuses after the outage: %s", statusNames(sts))
}

// TestVMKilledMidJob: every sandbox process is killed while a job runs (the
// job's sandbox and the pool's). The job ends with internal_error within
// seconds, with the console's tail, and the next job succeeds in a fresh
// sandbox: the pool notices its dead members and replaces them.
func TestVMKilledMidJob(t *testing.T) {
	testenv.EachSandbox(t, testVMKilledMidJob)
}

func testVMKilledMidJob(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "vmkill", 2, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ch, err := h.conn.Follow(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.conn.PublishJob(ctx, []byte(`{"id":"victim","language":"python","code":"import time\nprint('start', flush=True)\ntime.sleep(30)"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, ch, job.StatusRunning)
	time.Sleep(500 * time.Millisecond)
	killed := sb.KillProcesses()
	if killed == 0 {
		t.Fatal("no sandbox process to kill")
	}
	start := time.Now()
	sts := waitFor(t, ctx, ch, job.StatusFailed)
	f := sts[len(sts)-1]
	if f.Verdict != job.VerdictInternalError || time.Since(start) > 10*time.Second {
		t.Fatalf("after killing %d processes: %s %q after %s", killed, f.Verdict, f.Message, time.Since(start))
	}
	if !strings.Contains(f.Error, "console") {
		t.Fatalf("internal error without the console tail: %q", f.Error)
	}
	next := h.submit("after-kill", `{"id":"after-kill","language":"python","code":"print('alive')"}`, 3*time.Minute)
	if l := next[len(next)-1]; l.Status != job.StatusDone || l.Stdout != "alive\n" {
		t.Fatalf("job after the kill: %+v", l)
	}
}

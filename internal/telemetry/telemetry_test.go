package telemetry

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/codebench/codebench/internal/job"
)

func TestJobFinishedCountsAndObserves(t *testing.T) {
	m := New([]string{"c", "python"})
	tm := job.Timings{QueueWaitUS: 2000, PoolWaitUS: 1000, PublishUS: 500, CompileUS: 900_000, RunUS: 40_000, TotalUS: 1_000_000}
	m.JobFinished("c", job.StatusDone, "ok", tm)
	m.JobFinished("c", job.StatusDone, "ok", job.Timings{PoolWaitUS: 10, TotalUS: 20}) // unstamped, interpreted
	m.JobFinished("\u0080hostile", job.StatusFailed, "invalid_job", job.Timings{})

	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{job.StatusDone, "ok", "c"}, 2},
		{[]string{job.StatusFailed, "invalid_job", "other"}, 1},
		{[]string{job.StatusDone, "ok", "python"}, 0},
	} {
		if got := testutil.ToFloat64(m.jobs.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("jobs%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	// Histogram counts: the invalid job is not observed (no latency), the
	// unstamped one has no queue wait, neither has compile.
	for _, tc := range []struct {
		phase string
		want  uint64
	}{
		{PhaseQueueWait, 1}, {PhasePoolWait, 2}, {PhasePublish, 2}, {PhaseCompile, 1}, {PhaseRun, 1},
	} {
		if got := sampleCount(t, m, MetricJobPhase, "phase", tc.phase); got != tc.want {
			t.Errorf("phase %s observed %d times, want %d", tc.phase, got, tc.want)
		}
	}
	if got := sampleCount(t, m, MetricJobDuration, "language", "c"); got != 2 {
		t.Errorf("duration of c jobs observed %d times, want 2", got)
	}
}

// sampleCount reads a histogram's count for one label value.
func sampleCount(t *testing.T, m *Metrics, name, label, value string) uint64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if l.GetName() == label && l.GetValue() == value {
					return s.Histogram.GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestSandboxesAndPool(t *testing.T) {
	m := New(nil)
	ready, booting := 1, 2
	m.WatchPool(func() (int, int, int) { return ready, booting, 3 })
	m.SandboxStarted("restore", 300*time.Millisecond)
	m.SandboxStarted("restore", 200*time.Millisecond)
	m.SandboxStopped()
	m.SandboxFailed("boot")
	if got := testutil.ToFloat64(m.sandboxesAlive); got != 1 {
		t.Errorf("alive %v, want 1", got)
	}
	if got := sampleCount(t, m, MetricSandboxReady, "kind", "restore"); got != 2 {
		t.Errorf("restores observed %d, want 2", got)
	}
	want := `
# HELP codebench_pool_sandboxes The warm pool's sandboxes: ready to take, booting, and the pool's target size.
# TYPE codebench_pool_sandboxes gauge
codebench_pool_sandboxes{state="booting"} 2
codebench_pool_sandboxes{state="ready"} 1
codebench_pool_sandboxes{state="target"} 3
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), MetricPoolSandboxes); err != nil {
		t.Error(err)
	}
	ready = 0
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(strings.Replace(want, `"ready"} 1`, `"ready"} 0`, 1)), MetricPoolSandboxes); err != nil {
		t.Errorf("the pool gauge is not read at scrape time: %v", err)
	}
}

func TestHealthEndpoints(t *testing.T) {
	m := New(nil)
	var why error
	s, err := Listen("127.0.0.1:0", m, func() error { return why }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	get := func(path string) (int, string) {
		r, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Errorf("/healthz %d", c)
	}
	if c, _ := get("/readyz"); c != 200 {
		t.Errorf("/readyz %d while ready", c)
	}
	why = errNotReady
	if c, body := get("/readyz"); c != 503 || !strings.Contains(body, errNotReady.Error()) {
		t.Errorf("/readyz %d %q while not ready", c, body)
	}
	m.Reconnected()
	if c, body := get("/metrics"); c != 200 || !strings.Contains(body, MetricReconnects+" 1") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics %d:\n%s", c, body)
	}
}

var errNotReady = errors.New("no broker")

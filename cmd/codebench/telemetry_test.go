package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/telemetry"
	"github.com/codebench/codebench/internal/testenv"
)

// freeAddr is a loopback address nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(addr, path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	r, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	return r.StatusCode, string(b)
}

// scrape parses /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sample finds the metric of family name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func counter(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	if m := sample(fams, name, labels); m != nil && m.Counter != nil {
		return m.Counter.GetValue()
	}
	return 0
}

func histCount(fams map[string]*dto.MetricFamily, name string, labels map[string]string) uint64 {
	if m := sample(fams, name, labels); m != nil && m.Histogram != nil {
		return m.Histogram.GetSampleCount()
	}
	return 0
}

// TestMetricsAndHealth runs the worker binary against a broker node of the
// test's own: /readyz becomes ready, the counters and histogram counts on
// /metrics move by exactly the jobs run, /readyz goes unready within 10 s of
// the broker stopping and ready again once it is back.
func TestMetricsAndHealth(t *testing.T) {
	sb := testenv.NeedGVisor(t)
	node := testenv.StartNode(t, "cb-metrics", 5690, "")
	addr := freeAddr(t)
	logs := &lockedBuffer{}
	cmd := startWorkerBinaryTo(t, logs, "RABBITMQ_URL="+node.URL, "CODEBENCH_DRIVER=gvisor", "CODEBENCH_METRICS_ADDR="+addr,
		"CODEBENCH_RUN_DIR="+filepath.Join(sb.RunDir, "m"), "CODEBENCH_POOL_SIZE=1", "CODEBENCH_CONCURRENCY=1",
		"CODEBENCH_RECONNECT_MAX=1s")
	eventually(t, "/healthz", time.Minute, func() bool { c, _ := httpGet(addr, "/healthz"); return c == 200 })
	eventually(t, "/readyz to be ready", 2*time.Minute, func() bool { c, _ := httpGet(addr, "/readyz"); return c == 200 })

	before := scrape(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := broker.Dial(ctx, broker.Config{URL: node.URL, StatusExpires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := []struct{ id, code, status, verdict string }{
		{"m1", "print(1)", job.StatusDone, "ok"},
		{"m2", "print(2)", job.StatusDone, "ok"},
		{"m3", "raise SystemExit(3)", job.StatusFailed, "runtime_error"},
	}
	for _, j := range jobs {
		ch, err := conn.Follow(ctx, j.id)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.PublishJob(ctx, []byte(fmt.Sprintf(`{"id":%q,"language":"python","code":%q}`, j.id, j.code))); err != nil {
			t.Fatal(err)
		}
		st := waitFinal(t, ctx, ch)
		if st.Status != j.status || st.Verdict != j.verdict {
			t.Fatalf("%s: %s/%s, want %s/%s", j.id, st.Status, st.Verdict, j.status, j.verdict)
		}
	}
	// The final status is published before the counters move, and a scrape
	// may fall between one histogram's observation and the next's: wait
	// until every one of them has moved.
	var after map[string]*dto.MetricFamily
	histograms := []struct {
		name   string
		labels map[string]string
	}{
		{telemetry.MetricJobDuration, map[string]string{"language": "python"}},
		{telemetry.MetricJobPhase, map[string]string{"phase": telemetry.PhasePoolWait}},
		{telemetry.MetricJobPhase, map[string]string{"phase": telemetry.PhasePublish}},
		{telemetry.MetricJobPhase, map[string]string{"phase": telemetry.PhaseRun}},
	}
	eventually(t, "the job counters", 10*time.Second, func() bool {
		after = scrape(t, addr)
		for _, h := range histograms {
			if histCount(after, h.name, h.labels)-histCount(before, h.name, h.labels) < 3 {
				return false
			}
		}
		return true
	})
	moved := func(name string, labels map[string]string) float64 {
		return counter(after, name, labels) - counter(before, name, labels)
	}
	if d := moved(telemetry.MetricJobs, map[string]string{"status": "done", "verdict": "ok", "language": "python"}); d != 2 {
		t.Errorf("done/ok python jobs counted %v, want 2", d)
	}
	if d := moved(telemetry.MetricJobs, map[string]string{"status": "failed", "verdict": "runtime_error", "language": "python"}); d != 1 {
		t.Errorf("runtime_error python jobs counted %v, want 1", d)
	}
	for _, tc := range histograms {
		if d := histCount(after, tc.name, tc.labels) - histCount(before, tc.name, tc.labels); d != 3 {
			t.Errorf("%s%v observed %d times, want 3", tc.name, tc.labels, d)
		}
	}
	if m := sample(after, telemetry.MetricPoolSandboxes, map[string]string{"state": "target"}); m == nil || m.Gauge.GetValue() != 1 {
		t.Errorf("pool target: %v", m)
	}
	// One sandbox per job (the replacement of the last may still be
	// starting).
	if n := histCount(after, telemetry.MetricSandboxReady, map[string]string{"kind": "boot"}); n < 3 {
		t.Errorf("%d sandbox starts observed, want at least 3 (one per job)", n)
	}
	if m := sample(after, telemetry.MetricConsuming, nil); m == nil || m.Gauge.GetValue() != 1 {
		t.Errorf("consuming: %v", m)
	}

	// The broker goes away: unready within 10 s; back: ready again.
	node.Stop(t)
	stopped := time.Now()
	eventually(t, "/readyz to go unready", 10*time.Second, func() bool { c, _ := httpGet(addr, "/readyz"); return c == 503 })
	t.Logf("unready %s after the broker stopped", time.Since(stopped).Round(time.Millisecond))
	if c, _ := httpGet(addr, "/healthz"); c != 200 {
		t.Errorf("/healthz %d while the broker is down", c)
	}
	node.Start(t)
	eventually(t, "/readyz to be ready again", time.Minute, func() bool { c, _ := httpGet(addr, "/readyz"); return c == 200 })
	if d := counter(scrape(t, addr), telemetry.MetricReconnects, nil) - counter(before, telemetry.MetricReconnects, nil); d < 1 {
		t.Errorf("reconnects counted %v, want at least 1", d)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v\n%s", err, logs.String())
	}
}

// waitFinal waits for a job's final status.
func waitFinal(t *testing.T, ctx context.Context, ch <-chan []byte) job.Status {
	t.Helper()
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatal("status stream closed")
			}
			var st job.Status
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			if job.Final(st.Status) {
				return st
			}
		case <-ctx.Done():
			t.Fatal("no final status in time")
		}
	}
}

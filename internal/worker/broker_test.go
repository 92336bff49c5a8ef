package worker_test

import (
	"encoding/json"
	"fmt"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// lowerMaxMessageSize sets the broker's max_message_size for this test and
// restores it after. It applies to channels opened from now on, so it is set
// before the worker connects.
func lowerMaxMessageSize(t *testing.T, bytes int) {
	t.Helper()
	old := testenv.BrokerEval(t, "application:get_env(rabbit, max_message_size).")
	testenv.BrokerEval(t, fmt.Sprintf("application:set_env(rabbit, max_message_size, %d).", bytes))
	t.Cleanup(func() {
		restore := "application:unset_env(rabbit, max_message_size)."
		if v, ok := strings.CutPrefix(old, "{ok,"); ok {
			restore = fmt.Sprintf("application:set_env(rabbit, max_message_size, %s).", strings.TrimSuffix(v, "}"))
		}
		testenv.BrokerEval(t, restore)
	})
}

// TestNothingWedgesTheWorker: with the broker's max_message_size at 1 MiB,
// a poison job (an 800 KB language name, which the invalid-job reason once
// quoted in full) and a program whose output is over the broker's limit each
// get a final status, nothing loops, and the next job is done.
func TestNothingWedgesTheWorker(t *testing.T) {
	lowerMaxMessageSize(t, 1<<20)
	// Driver-neutral: on gVisor, the fastest sandbox here.
	h := startWorkerOn(t, testenv.NeedGVisor(t).Sandbox(), "wedge", 2, 2, nil)

	t.Run("poison job: invalid_job with a bounded reason, no requeue loop", func(t *testing.T) {
		// 400,000 U+0080, raw in the JSON: 800 KB (Go's %q would escape them).
		poison := `{"id":"poison","language":"` + strings.Repeat("\u0080", 400_000) + `","code":"int main(){}"}`
		start := time.Now()
		sts := h.submit("poison", poison, time.Minute)
		if len(sts) != 1 || sts[0].Verdict != job.VerdictInvalidJob || !strings.Contains(sts[0].Message, "unknown language") || len(sts[0].Message) > 2048 {
			t.Fatalf("statuses %d, first %s %.200q", len(sts), sts[0].Verdict, sts[0].Message)
		}
		next := h.submit("after-poison", `{"id":"after-poison","language":"python","code":"print('served')"}`, time.Minute)
		if l := next[len(next)-1]; l.Status != job.StatusDone || l.Stdout != "served\n" {
			t.Fatalf("job after the poison: %+v", l)
		}
		t.Logf("poison refused and the next job done in %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("output over the broker's limit: trimmed final status", func(t *testing.T) {
		// 900 KiB of quotes: within the job's output limit, but each is
		// two bytes in JSON, so the status would be 1.8 MB.
		const size = 900 << 10
		body := fmt.Sprintf(`{"id":"flood","language":"python","code":"import sys\nsys.stdout.write(chr(34) * %d)","limits":{"output_bytes":1048576}}`, size)
		sts := h.submit("flood", body, 3*time.Minute)
		f := sts[len(sts)-1]
		if f.Status != job.StatusDone || f.Trimmed == nil || f.Trimmed.Stdout != size || !strings.Contains(f.Stdout, "trimmed to fit") {
			t.Fatalf("final %s %s trimmed %+v stdout %d bytes", f.Status, f.Verdict, f.Trimmed, len(f.Stdout))
		}
		if len(f.Marshal()) > 1<<20 {
			t.Fatalf("final status is %d bytes", len(f.Marshal()))
		}
		next := h.submit("after-flood", `{"id":"after-flood","language":"python","code":"print('served')"}`, 2*time.Minute)
		if l := next[len(next)-1]; l.Status != job.StatusDone {
			t.Fatalf("job after the flood: %+v", l)
		}
	})

	// Redeliveries of the jobs queue, as the broker counts them: none of
	// the jobs above went back to the queue.
	var q struct {
		MessageStats struct {
			Redeliver int `json:"redeliver"`
		} `json:"message_stats"`
	}
	time.Sleep(6 * time.Second) // the broker's statistics interval
	m := testenv.NewManagement(t)
	m.Do(t, "GET", "queues/"+neturl.PathEscape(h.vhost())+"/jobs", "", &q)
	if q.MessageStats.Redeliver != 0 {
		t.Fatalf("the broker redelivered %d jobs: something looped", q.MessageStats.Redeliver)
	}
}

// TestProducerEdgeCases: a producer declared job_status_<id> with arguments
// of its own (the worker's declaration conflicts: the job is still served,
// as are later ones); a job with 10,000 files or a 2 MiB argument is
// invalid_job before any sandbox is taken.
func TestProducerEdgeCases(t *testing.T) {
	h := startWorkerOn(t, testenv.NeedGVisor(t).Sandbox(), "producer", 1, 1, nil)
	t.Run("status queue declared by the producer", func(t *testing.T) {
		ch := testenv.Channel(t, h.url)
		if _, err := ch.QueueDeclare("job_status_pre", true, false, false, false, amqp.Table{"x-max-length": int64(100)}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"pre", "post"} {
			sts := h.submit(id, fmt.Sprintf(`{"id":%q,"language":"python","code":"print('ok')"}`, id), 2*time.Minute)
			if l := sts[len(sts)-1]; l.Status != job.StatusDone || l.Stdout != "ok\n" {
				t.Fatalf("%s: %+v", id, sts)
			}
		}
	})
	t.Run("10,000 files or a 2 MiB arg", func(t *testing.T) {
		files := map[string]string{}
		for i := range 10_000 {
			files[fmt.Sprintf("f%d.h", i)] = ""
		}
		for _, tt := range []struct {
			id     string
			fields map[string]any
			want   string
		}{
			{"files", map[string]any{"files": files}, "10000 files, at most 64"},
			{"bigarg", map[string]any{"args": []string{strings.Repeat("a", 2<<20)}}, "args total 2097152 bytes"},
		} {
			j := map[string]any{"id": tt.id, "language": "c", "code": "int main(){}"}
			for k, v := range tt.fields {
				j[k] = v
			}
			b, _ := json.Marshal(j)
			start := time.Now()
			sts := h.submit(tt.id, string(b), time.Minute)
			if len(sts) != 1 || sts[0].Verdict != job.VerdictInvalidJob || !strings.Contains(sts[0].Message, tt.want) {
				t.Fatalf("%s: %+v", tt.id, sts)
			}
			t.Logf("%s: invalid_job in %s: %s", tt.id, time.Since(start).Round(time.Millisecond), sts[0].Message)
		}
	})
}

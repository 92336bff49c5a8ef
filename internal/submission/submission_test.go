package submission

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
)

func TestTake(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	r, err := New("tok", "judge0", job.Job{ID: "other", Code: "x"}, map[string]int{"language_id": 50}, t0)
	if err != nil || r.Job.ID != "tok" || r.Schema != Schema || !r.CreatedAt.Equal(t0.Truncate(time.Millisecond)) || string(r.Options) != `{"language_id":50}` {
		t.Fatalf("new: %+v %v", r, err)
	}
	code := 0
	for _, tc := range []struct {
		st      job.Status
		changed bool
		outcome Outcome
	}{
		{job.Status{Status: job.StatusReceived}, true, Outcome{State: job.StatusReceived}},
		{job.Status{Status: job.StatusOutput, Stdout: "chunk"}, false, Outcome{State: job.StatusReceived}},
		{job.Status{Status: job.StatusRunning}, true, Outcome{State: job.StatusRunning}},
		{job.Status{Status: job.StatusFailed, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV", ExitCode: &code}, true,
			Outcome{State: job.StatusFailed, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}},
		// A final result is never replaced.
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictOK}, false, Outcome{State: job.StatusFailed, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}},
		{job.Status{Status: job.StatusRunning}, false, Outcome{State: job.StatusFailed, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}},
	} {
		if got := r.Take(&tc.st, t0.Add(time.Second)); got != tc.changed || r.OutcomeOf() != tc.outcome {
			t.Fatalf("%+v: changed %v, outcome %+v", tc.st, got, r.OutcomeOf())
		}
	}
	if !r.Finished() || !r.FinishedAt.Equal(t0.Add(time.Second).Truncate(time.Millisecond)) {
		t.Fatalf("finished at %v", r.FinishedAt)
	}
	if (Outcome{State: Queued}).Status() != nil {
		t.Fatal("a queued outcome has a status")
	}
	// The stored shape has its names, whatever the Go fields are called.
	b, _ := json.Marshal(r)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"schema", "token", "door", "options", "job", "created_at", "status", "finished_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
}

func TestSummary(t *testing.T) {
	code := 2
	for _, tc := range []struct {
		name string
		job  job.Job
		st   job.Status
		want Summary
	}{
		{"one run", job.Job{}, job.Status{Status: job.StatusDone, Stdout: "o", Stderr: "e", CPUUserUS: 1000, CPUSysUS: 500, ExecDuration: 3000, MemUsage: 70, ExitCode: &code},
			Summary{Stdout: "o", Stderr: "e", CPU: 0.0015, Wall: 0.003, MemoryKB: 70, ExitCode: 2}},
		{"stderr into stdout", job.Job{RedirectStderr: true}, job.Status{Status: job.StatusDone, Stdout: "o", Stderr: "e"}, Summary{Stdout: "oe"}},
		{"the error as the message", job.Job{}, job.Status{Status: job.StatusFailed, Error: "boom"}, Summary{Message: "boom"}},
		{"the mean of the runs", job.Job{}, job.Status{Status: job.StatusDone, CPUUserUS: 99, Runs: []job.RunStat{{CPUUserUS: 1000, WallUS: 2000, MaxRSSKB: 100}, {CPUUserUS: 3000, WallUS: 4000, MaxRSSKB: 300}}},
			Summary{CPU: 0.002, Wall: 0.003, MemoryKB: 200}},
	} {
		r, _ := New("t", "judge0", tc.job, nil, time.Now())
		if _, ok := SummaryOf(r); ok {
			t.Fatalf("%s: a summary before the end", tc.name)
		}
		r.Take(&tc.st, time.Now())
		if got, ok := SummaryOf(r); !ok || got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentclient"
	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
)

// TestHugeSignalEndsTheJobAtOnce: an agent that answers with a 3 MiB
// signal (the error the real client makes of it) ends the job with
// internal_error on its first delivery: acked, not requeued, one sandbox
// used and stopped, and no log line over 4 KiB. It once reran on fresh
// sandboxes max_requeues + 1 times, each writing a multi-MB log line.
func TestHugeSignalEndsTheJobAtOnce(t *testing.T) {
	req := &agentproto.RunRequest{Language: "c", Code: "x", Limits: agentproto.Limits{OutputBytes: 4 << 20}}
	res := &agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 137, Signal: strings.Repeat("S", 3<<20)}}
	checkErr := agentproto.CheckResult(req, res)
	if checkErr == nil {
		t.Fatal("CheckResult accepts a 3 MiB signal")
	}
	sb := &fakeSandbox{err: fmt.Errorf("%w: %w", agentclient.ErrProtocol, checkErr)}
	p := &fakePool{sb: sb}
	b := newFakeBroker()
	b.existing["j1"] = true
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	obs := &fakeObserver{}
	w := New(Config{Concurrency: 1, PoolWait: time.Second, Grace: time.Second, Observer: obs}, testPolicy(), p, nil, log)
	a := newFakeAcker()
	w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"j1","language":"c","code":"int main(){}"}`), Acker: a})

	if a.acks != 1 || len(a.nacks)+len(a.rejects) != 0 {
		t.Fatalf("settled: acks %d nacks %v rejects %v, want one ack", a.acks, a.nacks, a.rejects)
	}
	sts := b.statusesOf("j1")
	if len(sts) == 0 {
		t.Fatal("no status")
	}
	if f := sts[len(sts)-1]; f.Verdict != job.VerdictInternalError || len(f.Error)+len(f.Message) > 8<<10 {
		t.Fatalf("final %s, message %d bytes, error %d bytes", f.Verdict, len(f.Message), len(f.Error))
	}
	if sb.runs != 1 || sb.stopped != 1 {
		t.Fatalf("sandbox ran %d times, stopped %d times", sb.runs, sb.stopped)
	}
	for _, e := range obs.events {
		if e == "requeued" {
			t.Fatalf("requeued: %q", obs.events)
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 4<<10 {
			t.Fatalf("a log line of %d bytes: %.200s...", len(line), line)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the test would not see a long line")
	}
}

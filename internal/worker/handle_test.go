package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
)

// TestHandleOutcomes is every path of one delivery through the worker: what
// it publishes, whether it acks or requeues, whether a sandbox was used and
// stopped. No broker, no VMs.
func TestHandleOutcomes(t *testing.T) {
	const valid = `{"id":"j1","language":"c","code":"int main(){}"}`
	tests := []struct {
		name     string
		body     string
		fail     []string  // broker operations that fail
		pool     *fakePool // nil: a pool with a sandbox that prints "hi"
		cancel   bool      // the job's ctx is cancelled (shutdown past grace)
		want     Outcome   // outcome
		statuses string    // statuses published for the job's id, in order
		verdict  string    // of the final status, if any
		message  string    // substring of the final status's message
		dead     string    // substring of the dead-letter reason; "" = none
		stopped  int       // times the sandbox was stopped by process()
		exists   bool      // j1's status queue exists before the job
		replyTo  string    // the delivery's reply_to
		events   []string  // what the observer hears, where not derived below
		check    func(*testing.T, []job.Status)
	}{
		{name: "done", body: valid, want: Ack, statuses: "received,running,done", verdict: job.VerdictOK, stopped: 1,
			check: func(t *testing.T, sts []job.Status) {
				f := sts[2]
				if f.Stdout != "hi" || f.Timings == nil || f.Timings.CompileUS != 900 || f.Timings.RunUS != 100 || f.Timings.GuestUS != 1100 {
					t.Fatalf("final %+v timings %+v", f, f.Timings)
				}
			}},
		{name: "seed job without language is C", body: `{"id":"666","type":"code","code":"int main(){}"}`, want: Ack,
			statuses: "received,running,done", verdict: job.VerdictOK, stopped: 1},
		{name: "invalid with id, its status queue exists: reported, acked, not dead-lettered", body: `{"id":"j1","language":"cobol","code":"x"}`,
			exists: true, want: Ack, statuses: "failed", verdict: job.VerdictInvalidJob, message: "unknown language"},
		{name: "invalid with id, no status queue: none made, counted, acked", body: `{"id":"j1","language":"cobol","code":"x"}`,
			want: Ack, events: []string{"finished:invalid_job"}},
		{name: "network asked of a worker without it: invalid, no sandbox", body: `{"id":"j1","language":"c","code":"x","network":true}`, want: Ack,
			exists: true, statuses: "failed", verdict: job.VerdictInvalidJob, message: "network access is not enabled"},
		{name: "malformed without id: dead-lettered, acked", body: `not json`, want: Ack, dead: "malformed JSON",
			events: []string{"finished:invalid_job", "dead"}},
		{name: "no usable id: dead-lettered", body: `{"id":"../x","code":"x"}`, want: Ack, dead: "id must be",
			events: []string{"finished:invalid_job", "dead"}},
		{name: "malformed with id: dead-lettered and reported", body: `{"id":"j1","code":5}`, want: Ack, exists: true,
			statuses: "failed", verdict: job.VerdictInvalidJob, message: "malformed JSON", dead: "malformed JSON",
			events: []string{"finished:invalid_job", "dead"}},
		{name: "dead-letter not confirmed: requeued", body: `not json`, fail: []string{"dead"}, want: Requeue,
			events: []string{"finished:invalid_job", "requeued"}},
		{name: "dead-letter refused: rejected", body: `not json`, fail: []string{"refuse:dead"}, want: Reject,
			events: []string{"finished:invalid_job", "dead"}},
		{name: "invalid status not confirmed: requeued", body: `{"id":"j1","language":"cobol","code":"x"}`, exists: true,
			fail: []string{"publish:final"}, want: Requeue, events: []string{"finished:invalid_job", "requeued"}},
		{name: "invalid status refused: acked", body: `{"id":"j1","language":"cobol","code":"x"}`, exists: true,
			fail: []string{"refuse:publish:final"}, want: Ack, events: []string{"finished:invalid_job"}},
		{name: "reply_to the jobs queue: invalid, nothing sent there", body: valid, replyTo: "jobs", exists: true, want: Ack,
			statuses: "failed", verdict: job.VerdictInvalidJob, message: `"jobs" is codebench's own queue`},
		{name: "reply_to another job's queue: invalid", body: valid, replyTo: "job_status_victim", exists: true, want: Ack,
			statuses: "failed", verdict: job.VerdictInvalidJob, message: "status queue"},
		{name: "status queue not declared: retried", body: valid, fail: []string{"declare"}, want: Retry},
		{name: "received not confirmed: retried, no sandbox taken", body: valid, fail: []string{"publish:received"}, want: Retry},
		{name: "running not confirmed: retried, sandbox stopped", body: valid, fail: []string{"publish:running"}, want: Retry,
			statuses: "received", stopped: 1},
		{name: "final not confirmed: retried, sandbox stopped", body: valid, fail: []string{"publish:final"}, want: Retry,
			statuses: "received,running", stopped: 1},
		{name: "received refused: dead-lettered at once, acked", body: valid, fail: []string{"refuse:publish:received"}, want: Ack,
			dead: "refused its status"},
		{name: "final refused: dead-lettered at once, acked, sandbox stopped", body: valid, fail: []string{"refuse:publish:final"},
			want: Ack, statuses: "received,running", stopped: 1, dead: "refused its status"},
		{name: "final and dead-letter refused: rejected", body: valid, fail: []string{"refuse:publish:final", "refuse:dead"},
			want: Reject, statuses: "received,running", stopped: 1, events: []string{"dead"}},
		{name: "no sandbox in time: internal error, acked", body: valid, pool: &fakePool{wait: true}, want: Ack,
			statuses: "received,failed", verdict: job.VerdictInternalError, message: "no sandbox became available"},
		{name: "pool fails: internal error, acked", body: valid, pool: &fakePool{err: errors.New("boot failed")}, want: Ack,
			statuses: "received,failed", verdict: job.VerdictInternalError},
		{name: "agent fails: internal error with console, acked", body: valid, pool: &fakePool{sb: &fakeSandbox{err: errors.New("agent gone")}},
			want: Ack, statuses: "received,running,failed", verdict: job.VerdictInternalError, stopped: 1,
			check: func(t *testing.T, sts []job.Status) {
				if !strings.Contains(sts[2].Error, "fake console") {
					t.Fatalf("internal error without the console: %q", sts[2].Error)
				}
			}},
		{name: "shutdown while running: requeued, sandbox stopped", body: valid, cancel: true,
			pool: &fakePool{sb: &fakeSandbox{block: make(chan struct{})}}, want: Requeue, statuses: "received,running", stopped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBroker(tt.fail...)
			b.existing["j1"] = tt.exists
			p := tt.pool
			if p == nil {
				p = &fakePool{sb: &fakeSandbox{res: okResult("hi")}}
			}
			obs := &fakeObserver{}
			w := New(Config{Concurrency: 1, PoolWait: 50 * time.Millisecond, Grace: time.Second, Observer: obs}, testPolicy(), p, nil, quietLog(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			a := newFakeAcker()
			w.process(ctx, b, queue.Delivery{Body: []byte(tt.body), Acker: a, ReplyTo: tt.replyTo})

			var settled string
			switch {
			case a.acks == 1 && len(a.nacks)+len(a.rejects) == 0:
				settled = Ack.String()
			case a.acks == 0 && slices.Equal(a.nacks, []bool{true}) && len(a.rejects) == 0:
				settled = Requeue.String()
			case a.acks == 0 && slices.Equal(a.nacks, []bool{false}) && len(a.rejects) == 0:
				settled = Reject.String()
			case a.acks == 0 && len(a.nacks) == 0 && slices.Equal(a.rejects, []bool{true}):
				settled = Retry.String()
			default:
				settled = fmt.Sprintf("acks %d nacks %v rejects %v", a.acks, a.nacks, a.rejects)
			}
			if settled != tt.want.String() {
				t.Fatalf("settled: %s, want %s", settled, tt.want)
			}
			b.mu.Lock()
			replies := len(b.replies)
			b.mu.Unlock()
			if tt.replyTo != "" && replies != 0 {
				t.Fatalf("%d statuses went to the refused reply_to %q", replies, tt.replyTo)
			}
			sts := b.statusesOf("j1")
			if tt.body != valid && strings.Contains(tt.body, `"666"`) {
				sts = b.statusesOf("666")
			}
			if got := statusNames(sts); got != tt.statuses {
				t.Fatalf("statuses %q, want %q: %+v", got, tt.statuses, sts)
			}
			if tt.verdict != "" {
				f := sts[len(sts)-1]
				if f.Verdict != tt.verdict || !strings.Contains(f.Message, tt.message) {
					t.Fatalf("final %s %q, want %s %q", f.Verdict, f.Message, tt.verdict, tt.message)
				}
			}
			switch {
			case tt.dead == "" && len(b.dead) != 0:
				t.Fatalf("dead-lettered %q", b.dead[0].reason)
			case tt.dead != "" && (len(b.dead) != 1 || !strings.Contains(b.dead[0].reason, tt.dead) || string(b.dead[0].body) != tt.body):
				t.Fatalf("dead letters %+v, want the body with reason %q", b.dead, tt.dead)
			}
			if p.sb != nil && p.sb.stopped != tt.stopped {
				t.Fatalf("sandbox stopped %d times, want %d", p.sb.stopped, tt.stopped)
			}
			if tt.check != nil {
				tt.check(t, sts)
			}
			// What the metrics hear: dead letters, final statuses, requeues.
			var want []string
			if tt.dead != "" {
				want = append(want, "dead")
			}
			if tt.want == Ack && tt.verdict != "" {
				want = append(want, "finished:"+tt.verdict)
			}
			if tt.want == Requeue || tt.want == Retry {
				want = append(want, "requeued")
			}
			if tt.events != nil {
				want = tt.events
			}
			if !slices.Equal(obs.events, want) {
				t.Fatalf("observed %q, want %q", obs.events, want)
			}
		})
	}
}

// fakeObserver records what the worker reports.
type fakeObserver struct {
	mu     sync.Mutex
	events []string
}

func (o *fakeObserver) add(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}
func (o *fakeObserver) JobFinished(_, _, verdict string, _ job.Timings) { o.add("finished:" + verdict) }
func (o *fakeObserver) JobRequeued(string)                              { o.add("requeued") }
func (o *fakeObserver) DeadLettered()                                   { o.add("dead") }
func (o *fakeObserver) StatusTrimmed(int)                               { o.add("trimmed") }
func (o *fakeObserver) Reconnected()                                    { o.add("reconnected") }
func (o *fakeObserver) Consuming(bool)                                  {}

// TestStatusFitsTheBroker: a program whose output is over the broker's
// message limit (a limit the worker learns only from the refusal) still
// gets its final status, trimmed and marked, and the job is acked.
func TestStatusFitsTheBroker(t *testing.T) {
	b := newFakeBroker()
	b.limit = 256 << 10
	res := okResult(strings.Repeat("x", 3<<20))
	res.Stderr = "a warning\n"
	sb := &fakeSandbox{res: res}
	w := New(Config{Concurrency: 1, PoolWait: time.Second}, testPolicy(), &fakePool{sb: sb}, nil, quietLog(t))
	a := newFakeAcker()
	w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"big","code":"x"}`), Acker: a})
	sts := b.statusesOf("big")
	if a.acks != 1 || statusNames(sts) != "received,running,failed" && statusNames(sts) != "received,running,done" {
		t.Fatalf("acks %d nacks %v statuses %s", a.acks, a.nacks, statusNames(sts))
	}
	f := sts[2]
	b.mu.Lock()
	size := len(b.bodies["big"][2])
	b.mu.Unlock()
	if b.refused != 1 || size > b.limit || f.Trimmed == nil || f.Trimmed.Stdout != 3<<20 || f.Stderr != "a warning\n" ||
		!strings.Contains(f.Stdout, "trimmed to fit") {
		t.Fatalf("refused %d, final %d bytes (limit %d), trimmed %+v, stderr %q", b.refused, size, b.limit, f.Trimmed, f.Stderr)
	}
}

// TestStatusLeavesRoomForProperties: a status is fitted below the broker's
// known limit with room for the message's properties (reply-to,
// correlation id, user and app id, headers), so that a big final status is
// accepted the first time, not refused for the few KiB its properties add.
func TestStatusLeavesRoomForProperties(t *testing.T) {
	b := newFakeBroker()
	b.limit, b.known, b.overhead = 256<<10, 256<<10, 4<<10
	sb := &fakeSandbox{res: okResult(strings.Repeat("x", 3<<20))}
	w := New(Config{Concurrency: 1, PoolWait: time.Second}, testPolicy(), &fakePool{sb: sb}, nil, quietLog(t))
	a := newFakeAcker()
	w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"big","code":"x"}`), Acker: a})
	sts := b.statusesOf("big")
	if b.refused != 0 || a.acks != 1 || len(sts) != 3 || sts[2].Trimmed == nil {
		t.Fatalf("refused %d, acks %d, statuses %s", b.refused, a.acks, statusNames(sts))
	}
}

// TestReconnectBackoffResets: the wait before a redial doubles while the
// broker stays down, and starts over once a connection was made: a broker
// back after a long outage and lost again is redialed within the first
// backoff, not at the cap.
func TestReconnectBackoffResets(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	dials := 0
	dial := func(context.Context) (Session, error) {
		dials++
		switch {
		case dials == 5: // up, then lost at once
			b := newFakeBroker()
			b.closed <- errors.New("connection reset")
			return b, nil
		case dials > 6:
			cancel()
		}
		return nil, errors.New("broker down")
	}
	after := func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
	w := New(Config{Concurrency: 1, ReconnectMax: 10 * time.Second, After: after}, testPolicy(), &fakePool{}, dial, quietLog(t))
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Four failures (200, 400, 800, 1600 ms, each jittered down to half),
	// the connection, then the first failure after it.
	if len(waits) < 5 {
		t.Fatalf("waits %v", waits)
	}
	if waits[3] < 800*time.Millisecond {
		t.Fatalf("the backoff did not grow: %v", waits)
	}
	if waits[4] > initialBackoff {
		t.Fatalf("after a connection the wait is %s, want at most %s: %v", waits[4], initialBackoff, waits)
	}
}

// TestSettledBeforeTheSandboxStops: a job is acked as soon as its final
// status is confirmed; its sandbox's teardown comes after, so a slow stop
// never holds the delivery (or, with redelivery on a lost connection, gets
// the job run twice).
func TestSettledBeforeTheSandboxStops(t *testing.T) {
	release := make(chan struct{})
	sb := &fakeSandbox{res: okResult("hi"), stopBlock: release}
	b := newFakeBroker()
	w := New(Config{Concurrency: 1, PoolWait: time.Second}, testPolicy(), &fakePool{sb: sb}, nil, quietLog(t))
	a := newFakeAcker()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"j1","language":"c","code":"int main(){}"}`), Acker: a})
	}()
	select {
	case <-a.settled:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the delivery was not settled while its sandbox was stopping")
	}
	a.mu.Lock()
	acks := a.acks
	a.mu.Unlock()
	if acks != 1 {
		t.Fatalf("settled with %d acks", acks)
	}
	close(release)
	<-done
	if sb.stopped != 1 {
		t.Fatalf("sandbox stopped %d times", sb.stopped)
	}
}

// TestRequeueIsBounded: a job that fails the same way on every delivery is
// requeued MaxRequeues times, then ended with internal_error; an invalid
// message that cannot even be dead-lettered is rejected in the end.
func TestRequeueIsBounded(t *testing.T) {
	tests := []struct {
		name, body string
		fail       []string
		again      Outcome // what each delivery before the last gets
		last       Outcome
		status     string
	}{
		{"running never confirmed", `{"id":"loop","code":"x"}`, []string{"publish:running"}, Retry, Ack, "failed"},
		{"no id, dead-lettering never confirmed", `not json`, []string{"dead"}, Requeue, Reject, ""},
		{"invalid, its status never confirmed", `{"id":"loop","language":"cobol","code":"x"}`, []string{"publish:final"}, Requeue, Ack, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBroker(tt.fail...)
			b.existing["loop"] = true
			w := New(Config{Concurrency: 1, PoolWait: time.Second, MaxRequeues: 3}, testPolicy(),
				&fakePool{sb: &fakeSandbox{res: okResult("hi")}}, nil, quietLog(t))
			var outcomes []Outcome
			for range 5 {
				o := w.newDelivery(b, queue.Delivery{Body: []byte(tt.body), Redelivered: true, Acker: newFakeAcker()}).handle(context.Background())
				outcomes = append(outcomes, o)
				if o != tt.again {
					break
				}
			}
			if want := []Outcome{tt.again, tt.again, tt.again, tt.last}; !slices.Equal(outcomes, want) {
				t.Fatalf("outcomes %v, want %v", outcomes, want)
			}
			if tt.status != "" {
				sts := b.statusesOf("loop")
				f := sts[len(sts)-1]
				if f.Status != tt.status || f.Verdict != job.VerdictInternalError || !strings.Contains(f.Message, "could not finish the job 3 times") {
					t.Fatalf("final %+v", f)
				}
			}
			// A job the worker ended is forgotten: delivered again (a
			// producer resent it), it counts from zero.
			if tt.last == Ack {
				o := w.newDelivery(b, queue.Delivery{Body: []byte(tt.body), Redelivered: true, Acker: newFakeAcker()}).handle(context.Background())
				if o != tt.again {
					t.Fatalf("delivered after it was ended: %s, want %s (its requeues were not forgotten)", o, tt.again)
				}
			}
		})
	}
}

// TestSeedStatusesByteForByte: received and running are exactly the seed's.
func TestSeedStatusesByteForByte(t *testing.T) {
	b := newFakeBroker()
	w := New(Config{Concurrency: 1, PoolWait: time.Second}, testPolicy(), &fakePool{sb: &fakeSandbox{res: okResult("Hello, World!")}}, nil, quietLog(t))
	w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"666", "type": "code", "code":"int main(){}"}`), Acker: newFakeAcker()})
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, want := range []string{
		`{"id":"666","status":"received","stderr":"","stdout":""}`,
		`{"id":"666","status":"running","stderr":"","stdout":""}`,
	} {
		if got := string(b.bodies["666"][i]); got != want {
			t.Fatalf("status %d is %s, want %s", i, got, want)
		}
	}
}

// TestStreamingAndReplies: a streaming job's output statuses come between
// running and the final status, in order; a job with reply_to gets every
// status there too, with its correlation id; with StatusQueueWithReply off
// its status queue is not used at all.
func TestStreamingAndReplies(t *testing.T) {
	for _, withQueue := range []bool{true, false} {
		b := newFakeBroker()
		sb := &fakeSandbox{res: okResult("a\nb\nc\n"), stream: []string{"a\n", "b\n", "c\n"}}
		w := New(Config{Concurrency: 1, PoolWait: time.Second, StatusQueueWithReply: withQueue}, testPolicy(), &fakePool{sb: sb}, nil, quietLog(t))
		a := newFakeAcker()
		w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"s","code":"x","stream":true}`), Acker: a,
			ReplyTo: "amq.rabbitmq.reply-to.g1h2", CorrelationID: "req-7"})
		if a.acks != 1 {
			t.Fatalf("acks %d nacks %v", a.acks, a.nacks)
		}
		var names []string
		for i, r := range b.replies {
			if r.to != "amq.rabbitmq.reply-to.g1h2" || r.correlationID != "req-7" {
				t.Fatalf("reply %d: %+v", i, r)
			}
			names = append(names, r.status.Status)
			if r.status.Status == job.StatusOutput && r.status.Seq != len(names)-2 {
				t.Fatalf("output %d has seq %d", len(names)-2, r.status.Seq)
			}
		}
		if got := strings.Join(names, ","); got != "received,running,output,output,output,done" {
			t.Fatalf("replies %s", got)
		}
		queued := statusNames(b.statusesOf("s"))
		if withQueue && queued != strings.Join(names, ",") || !withQueue && (queued != "" || len(b.declared) != 0) {
			t.Fatalf("with status queue %v: status queue got %q, declared %v", withQueue, queued, b.declared)
		}
	}
}

// TestNetworkAllowedWithoutASupply: a policy that allows networks on a
// worker wired without a networked supply (a wiring bug) makes such a job
// invalid, never a job run without the network it asked for.
func TestNetworkAllowedWithoutASupply(t *testing.T) {
	policy := testPolicy()
	policy.Network = true
	sb := &fakeSandbox{res: okResult("plain")}
	w := New(Config{Concurrency: 1, PoolWait: time.Second, Grace: time.Second}, policy, &fakePool{sb: sb}, nil, quietLog(t))
	b := newFakeBroker()
	b.existing["j1"] = true
	a := newFakeAcker()
	w.process(context.Background(), b, queue.Delivery{Body: []byte(`{"id":"j1","language":"c","code":"x","network":true}`), Acker: a})
	sts := b.statusesOf("j1")
	if a.acks != 1 || sb.runs != 0 || len(sts) != 1 || sts[0].Verdict != job.VerdictInvalidJob {
		t.Fatalf("acks %d, runs %d, statuses %+v", a.acks, sb.runs, sts)
	}
}

// TestNetworkedJobsTakeNetworkedSandboxes: with a networked supply, a job
// that asks for a network runs on it and one that does not on the pool.
func TestNetworkedJobsTakeNetworkedSandboxes(t *testing.T) {
	plain := &fakePool{sb: &fakeSandbox{res: okResult("plain")}}
	networked := &fakePool{sb: &fakeSandbox{res: okResult("networked")}}
	policy := testPolicy()
	policy.Network = true
	w := New(Config{Concurrency: 1, PoolWait: time.Second, Grace: time.Second, Networked: networked}, policy, plain, nil, quietLog(t))
	for _, tc := range []struct{ body, want string }{
		{`{"id":"j1","language":"c","code":"x","network":true}`, "networked"},
		{`{"id":"j1","language":"c","code":"x"}`, "plain"},
	} {
		b := newFakeBroker()
		w.process(context.Background(), b, queue.Delivery{Body: []byte(tc.body), Acker: newFakeAcker()})
		sts := b.statusesOf("j1")
		if len(sts) == 0 || sts[len(sts)-1].Stdout != tc.want {
			t.Fatalf("%s: statuses %+v, want stdout %q", tc.body, sts, tc.want)
		}
	}
}

package worker

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/queue"
)

// TestRunReconnectsAfterConnectionLoss: a session that dies mid-job makes
// the worker dial again; the job in flight is cancelled (the broker will
// redeliver it) and the next session serves the next job.
func TestRunReconnectsAfterConnectionLoss(t *testing.T) {
	first, second := newFakeBroker(), newFakeBroker()
	var dials atomic.Int32
	sessions := []*fakeBroker{first, second}
	dial := func(ctx context.Context) (Session, error) {
		n := int(dials.Add(1)) - 1
		if n == 1 {
			return nil, errors.New("broker still down") // one failed dial: backoff, then retry
		}
		return sessions[min(n/2, 1)], nil
	}
	sb := &fakeSandbox{res: okResult("hi"), block: make(chan struct{})}
	w := New(Config{Concurrency: 2, PoolWait: time.Second, Grace: time.Second, ReconnectMax: 10 * time.Millisecond},
		testPolicy(), &fakePool{sb: sb}, dial, quietLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	lost := newFakeAcker()
	first.deliveries <- queue.Delivery{Body: []byte(`{"id":"j1","code":"x"}`), Acker: lost}
	waitFor(t, func() bool { sb.mu.Lock(); defer sb.mu.Unlock(); return sb.runs == 1 })
	first.closed <- errors.New("connection reset")
	<-lost.settled // the cancelled job is requeued on the old session
	if !slices.Equal(lost.nacks, []bool{true}) {
		t.Fatalf("job on the lost session: acks %d nacks %v", lost.acks, lost.nacks)
	}
	close(sb.block)
	next := newFakeAcker()
	second.deliveries <- queue.Delivery{Body: []byte(`{"id":"j2","code":"x"}`), Acker: next}
	<-next.settled
	if next.acks != 1 || len(second.statusesOf("j2")) != 3 {
		t.Fatalf("job on the new session: acks %d statuses %+v", next.acks, second.statusesOf("j2"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if dials.Load() != 3 {
		t.Fatalf("%d dials, want 3 (ok, failed, ok)", dials.Load())
	}
}

// TestShutdownDrainsWithinGrace: on cancellation the worker stops consuming,
// lets the job in flight finish within the grace period, and returns.
func TestShutdownDrainsWithinGrace(t *testing.T) {
	tests := []struct {
		name       string
		grace      time.Duration
		release    time.Duration // when the running job is allowed to finish
		wantAck    bool
		wantStatus string
	}{
		{"finishes within grace", 5 * time.Second, 50 * time.Millisecond, true, "received,running,done"},
		{"requeued after grace", 50 * time.Millisecond, time.Hour, false, "received,running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBroker()
			sb := &fakeSandbox{res: okResult("hi"), block: make(chan struct{})}
			w := New(Config{Concurrency: 1, PoolWait: time.Second, Grace: tt.grace, ReconnectMax: time.Second},
				testPolicy(), &fakePool{sb: sb}, func(context.Context) (Session, error) { return b, nil }, quietLog(t))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			a := newFakeAcker()
			b.deliveries <- queue.Delivery{Body: []byte(`{"id":"j1","code":"x"}`), Acker: a}
			waitFor(t, func() bool { sb.mu.Lock(); defer sb.mu.Unlock(); return sb.runs == 1 })
			cancel()
			timer := time.AfterFunc(tt.release, func() { close(sb.block) })
			defer timer.Stop()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("worker did not return")
			}
			if !b.stopped {
				t.Fatal("consumer not cancelled on shutdown")
			}
			if got := statusNames(b.statusesOf("j1")); got != tt.wantStatus || (a.acks == 1) != tt.wantAck || (len(a.nacks) == 1) == tt.wantAck {
				t.Fatalf("statuses %s, acks %d nacks %v", got, a.acks, a.nacks)
			}
			if sb.stopped != 1 {
				t.Fatalf("sandbox stopped %d times", sb.stopped)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRunReconnectsWhenTheConsumerIsCancelled: the broker cancels the
// consumer (its channel closed, or the queue deleted): deliveries end and
// the worker opens a new session.
func TestRunReconnectsWhenTheConsumerIsCancelled(t *testing.T) {
	first, second := newFakeBroker(), newFakeBroker()
	var dials atomic.Int32
	dial := func(context.Context) (Session, error) {
		if dials.Add(1) == 1 {
			return first, nil
		}
		return second, nil
	}
	w := New(Config{Concurrency: 1, PoolWait: time.Second, Grace: time.Second, ReconnectMax: 10 * time.Millisecond},
		testPolicy(), &fakePool{sb: &fakeSandbox{res: okResult("hi")}}, dial, quietLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	close(first.deliveries)
	a := newFakeAcker()
	second.deliveries <- queue.Delivery{Body: []byte(`{"id":"j","code":"x"}`), Acker: a}
	<-a.settled
	cancel()
	if err := <-done; err != nil || a.acks != 1 || dials.Load() != 2 {
		t.Fatalf("err %v, acks %d, dials %d", err, a.acks, dials.Load())
	}
}

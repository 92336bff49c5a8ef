package backoff

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := New(200*time.Millisecond, time.Second, nil)
	ms := time.Millisecond
	for i, step := range []time.Duration{200 * ms, 400 * ms, 800 * ms, time.Second, time.Second} {
		d := b.Next()
		if d < step/2 || d > step {
			t.Fatalf("delay %d: %s, want within [%s, %s]", i, d, step/2, step)
		}
	}
	b.Reset()
	if d := b.Next(); d > 200*time.Millisecond {
		t.Fatalf("after a reset: %s", d)
	}
	// Waits on the injected clock; a cancelled ctx ends the wait.
	fired := make(chan time.Time, 1)
	b = New(time.Hour, time.Hour, func(time.Duration) <-chan time.Time { return fired })
	fired <- time.Now()
	if !b.Wait(context.Background(), b.Next()) {
		t.Fatal("the clock fired, the wait did not end")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx, b.Next()) {
		t.Fatal("a cancelled wait reported the delay over")
	}
	if New(time.Second, 0, nil).max != time.Second {
		t.Fatal("a max under the initial step")
	}
}

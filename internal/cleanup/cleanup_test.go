package cleanup

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestStackUnwindsLIFOOnceAndJoins(t *testing.T) {
	var s Stack
	var order []string
	errB := errors.New("b failed")
	s.Push("a", func(context.Context) error { order = append(order, "a"); return nil })
	s.Push("b", func(context.Context) error { order = append(order, "b"); return errB })
	s.Push("c", func(ctx context.Context) error {
		if ctx.Err() != nil {
			t.Errorf("cleanup ran with a cancelled ctx")
		}
		order = append(order, "c")
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Unwind(ctx)
	if !errors.Is(err, errB) {
		t.Fatalf("err = %v, want %v", err, errB)
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(order, want) {
		t.Fatalf("order = %v, want %v", order, want)
	}
	if err := s.Unwind(ctx); err != nil || len(order) != 3 {
		t.Fatalf("second Unwind: err=%v order=%v", err, order)
	}
	ran := false
	s.Push("late", func(context.Context) error { ran = true; return nil })
	if !ran {
		t.Fatal("push after Unwind did not release at once")
	}
}

// TestDetached: a teardown context keeps a deadline still ahead, drops the
// cancellation, and gets the bound where the deadline is gone or missing.
func TestDetached(t *testing.T) {
	now := time.Now()
	ahead, cancelAhead := context.WithDeadline(context.Background(), now.Add(time.Hour))
	defer cancelAhead()
	past, cancelPast := context.WithDeadline(context.Background(), now.Add(-time.Second))
	defer cancelPast()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		parent context.Context
		want   time.Time // the deadline, within a second
	}{
		{"deadline ahead is kept", ahead, now.Add(time.Hour)},
		{"deadline passed: the bound", past, now.Add(time.Minute)},
		{"no deadline: the bound", context.Background(), now.Add(time.Minute)},
		{"cancelled, no deadline: the bound, not cancelled", cancelled, now.Add(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := Detached(tc.parent, time.Minute)
			defer cancel()
			d, ok := ctx.Deadline()
			if !ok || d.Sub(tc.want).Abs() > time.Second {
				t.Fatalf("deadline %v (%v), want about %v", d, ok, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatalf("born done: %v", ctx.Err())
			}
		})
	}
}

// TestUnwindAbandonsAStuckStep: a step that waits for its context (a VMM
// that will not die, a CNI DEL that hangs) is abandoned at the deadline
// the caller set, and the steps before it still run; with the deadline
// stripped, as WithoutCancel alone did, Unwind never returned.
func TestUnwindAbandonsAStuckStep(t *testing.T) {
	var s Stack
	ran := false
	s.Push("first", func(context.Context) error { ran = true; return nil })
	s.Push("stuck", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Unwind(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !ran {
			t.Fatalf("err %v, first step ran %v", err, ran)
		}
	case <-time.After(DefaultBound):
		t.Fatal("Unwind did not return by its caller's deadline")
	}
}

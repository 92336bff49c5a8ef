package cleanup

import (
	"context"
	"errors"
	"slices"
	"testing"
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

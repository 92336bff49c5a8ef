// Package cleanup is a LIFO stack of undo functions for multi-step acquires:
// each acquired resource pushes its release; on failure (or at teardown) the
// stack unwinds exactly once and the errors are joined.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Func releases one resource. The ctx is never cancelled by the caller's
// request, and it has a deadline: Unwind derives it with Detached.
type Func func(ctx context.Context) error

// Stack is safe for concurrent use.
type Stack struct {
	mu    sync.Mutex // guards steps, done
	steps []step
	done  bool
}

type step struct {
	name string
	fn   Func
}

// Push adds a release step. Pushing after Unwind runs the step at once: a
// resource acquired by a racing goroutine after teardown is still released.
func (s *Stack) Push(name string, fn Func) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		_ = fn(context.Background())
		return
	}
	s.steps = append(s.steps, step{name, fn})
	s.mu.Unlock()
}

// Unwind unwinds the stack once, newest first, and joins the errors. Later calls
// return nil.
func (s *Stack) Unwind(ctx context.Context) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	steps := s.steps
	s.steps = nil
	s.mu.Unlock()

	ctx, cancel := Detached(ctx, DefaultBound)
	defer cancel()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", steps[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// DefaultBound is how long a teardown step may take when nothing above it
// set a deadline.
const DefaultBound = 30 * time.Second

// Detached is the context a teardown runs under: ctx's values without its
// cancellation (a stop must still run when the operation was cancelled),
// and a deadline: ctx's own while it is still ahead, else bound from now.
// context.WithoutCancel alone would drop the deadline too, and a stuck VMM
// or CNI plugin would then hold its caller forever.
func Detached(ctx context.Context, bound time.Duration) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok || !time.Now().Before(d) {
		d = time.Now().Add(bound)
	}
	return context.WithDeadline(context.WithoutCancel(ctx), d)
}

// Run runs one teardown step under Detached(ctx, DefaultBound).
func Run(ctx context.Context, step Func) error {
	ctx, cancel := Detached(ctx, DefaultBound)
	defer cancel()
	return step(ctx)
}

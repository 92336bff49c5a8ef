// Package cleanup is a LIFO stack of undo functions for multi-step acquires:
// each acquired resource pushes its release; on failure (or at teardown) the
// stack unwinds exactly once and the errors are joined.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Func releases one resource. The ctx is never cancelled by the caller's
// request: Unwind derives it with context.WithoutCancel.
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

	ctx = context.WithoutCancel(ctx)
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", steps[i].name, err))
		}
	}
	return errors.Join(errs...)
}

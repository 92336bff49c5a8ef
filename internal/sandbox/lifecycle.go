package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
)

// Launch is the start skeleton every driver shares: the VM's own run
// directory (runDir/id, removed last when the stack unwinds), then start,
// which pushes a release onto stack for everything it acquires; if start
// fails, the stack unwinds at once and nothing is left of the VM.
func Launch(ctx context.Context, stack *cleanup.Stack, runDir, id string, start func(dir string) error) (err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, stack.Unwind(ctx))
		}
	}()
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	dir := filepath.Join(runDir, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	stack.Push("remove run dir", func(context.Context) error { return os.RemoveAll(dir) })
	return start(dir)
}

// StopStep is one step of ending a VMM: a request (Do), then up to Wait for
// the process to exit.
type StopStep struct {
	Name string
	Do   func() error
	Wait time.Duration
}

// Escalate is the stop skeleton every driver shares: each step in turn
// (a polite request, SIGTERM, SIGKILL) until done is closed, each judged by
// the process's exit. At ctx's deadline it stops waiting: kill is sent at
// once and the VMM is abandoned (ErrStopFailed, with the cause).
func Escalate(ctx context.Context, done <-chan struct{}, id string, steps []StopStep, kill func() error, log *slog.Logger) error {
	for _, s := range steps {
		if IsDone(done) {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		if err := s.Do(); err != nil {
			log.Debug("stop step", "step", s.Name, "err", err)
		}
		t := time.NewTimer(s.Wait)
		select {
		case <-done:
			t.Stop()
			return nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if IsDone(done) {
		return nil
	}
	if err := context.Cause(ctx); err != nil {
		_ = kill()
		return fmt.Errorf("%w: %s, abandoned: %w", ErrStopFailed, id, err)
	}
	return fmt.Errorf("%w: %s", ErrStopFailed, id)
}

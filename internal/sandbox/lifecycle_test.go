package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
)

// TestLaunch: the run dir is made and released last; a start that fails
// leaves nothing (its own releases and the run dir are unwound).
func TestLaunch(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	var order []string
	var stack cleanup.Stack
	err := Launch(context.Background(), &stack, runDir, "vm-1", func(dir string) error {
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("start got no run dir: %v", err)
		}
		stack.Push("process", func(context.Context) error { order = append(order, "process"); return nil })
		return errors.New("boom")
	})
	if err == nil || !slices.Equal(order, []string{"process"}) {
		t.Fatalf("err %v, unwound %v", err, order)
	}
	if _, err := os.Stat(filepath.Join(runDir, "vm-1")); !os.IsNotExist(err) {
		t.Fatalf("a failed start left its run dir: %v", err)
	}
	var ok cleanup.Stack
	if err := Launch(context.Background(), &ok, runDir, "vm-2", func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(runDir, "vm-2")); err != nil {
		t.Fatal(err)
	}
	if err := ok.Unwind(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(runDir, "vm-2")); !os.IsNotExist(err) {
		t.Fatalf("the run dir outlived the stack: %v", err)
	}
}

// TestEscalate: steps run in order until the process exits; at the
// caller's deadline the VMM is killed and abandoned; a VMM that outlives
// every step is a stop failure.
func TestEscalate(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("exits at the second step", func(t *testing.T) {
		done := make(chan struct{})
		var ran []string
		steps := []StopStep{
			{Name: "ask", Do: func() error { ran = append(ran, "ask"); return nil }, Wait: time.Millisecond},
			{Name: "term", Do: func() error { ran = append(ran, "term"); close(done); return nil }, Wait: time.Hour},
			{Name: "kill", Do: func() error { ran = append(ran, "kill"); return nil }, Wait: time.Hour},
		}
		if err := Escalate(context.Background(), done, "vm", steps, func() error { return nil }, log); err != nil || !slices.Equal(ran, []string{"ask", "term"}) {
			t.Fatalf("err %v, ran %v", err, ran)
		}
	})
	t.Run("abandoned at the deadline", func(t *testing.T) {
		killed := false
		steps := []StopStep{{Name: "ask", Do: func() error { return nil }, Wait: time.Hour}}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := Escalate(ctx, make(chan struct{}), "vm", steps, func() error { killed = true; return nil }, log)
		if !errors.Is(err, ErrStopFailed) || !errors.Is(err, context.DeadlineExceeded) || !killed {
			t.Fatalf("err %v, killed %v", err, killed)
		}
		if time.Since(start) > time.Minute {
			t.Fatal("waited out a step past the deadline")
		}
	})
	t.Run("outlives every step", func(t *testing.T) {
		steps := []StopStep{{Name: "kill", Do: func() error { return nil }, Wait: time.Millisecond}}
		if err := Escalate(context.Background(), make(chan struct{}), "vm", steps, func() error { return nil }, log); !errors.Is(err, ErrStopFailed) {
			t.Fatalf("err %v", err)
		}
	})
}

// Package sandboxtest is the driver conformance suite: every sandbox driver
// runs the same tests against real VMs.
package sandboxtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
)

// Harness is what the suite needs from a driver's test.
type Harness struct {
	Driver sandbox.Driver
	Spec   sandbox.Spec
	// Leftovers reports VM processes and run-dir entries still present;
	// both must be zero after every stop.
	Leftovers func() (processes int, entries []string)
	BootLimit time.Duration
	// CPUUsage reads a sandbox's host CPU time from its host cgroup's own
	// counter (nil: the driver has no host cgroup here; the CPU limit
	// test fails where CPULimitRequired).
	CPUUsage func(id string) (time.Duration, error)
	// CPULimitRequired: the host has the controllers, so the limit must hold.
	CPULimitRequired bool
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	if h.BootLimit == 0 {
		h.BootLimit = 90 * time.Second
	}
	t.Run("BootRunStop", func(t *testing.T) { testBootRunStop(t, h) })
	t.Run("Concurrent5", func(t *testing.T) { testConcurrent(t, h, 5) })
	t.Run("StopDuringBoot", func(t *testing.T) { testStopDuringBoot(t, h) })
	t.Run("StopDeadVM", func(t *testing.T) { testStopDead(t, h) })
	t.Run("SnapshotClonesDiffer", func(t *testing.T) { testSnapshot(t, h) })
	t.Run("CheckerWalledOff", func(t *testing.T) { testCheckerWalledOff(t, h) })
	t.Run("CPULimit", func(t *testing.T) { testCPULimit(t, h) })
}

// testSnapshot saves a template, restores two clones, and checks they run
// and do not share random numbers. Drivers without the capability skip.
func testSnapshot(t *testing.T, h Harness) {
	drv, err := sandbox.Snapshots(h.Driver)
	if err != nil {
		t.Skipf("driver %s: %v", h.Driver.Name(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tpl, err := template.Ensure(ctx, drv, template.Config{
		Root: t.TempDir(), ImageHash: "conformance", Spec: h.Spec,
		Languages: []lang.Language{lang.Builtin()["python"]}, BootLimit: h.BootLimit,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	var rands []string
	for i := 0; i < 2; i++ {
		inst, err := tpl.Clone(ctx, drv, h.Spec)
		if err != nil {
			t.Fatalf("clone %d: %v", i, err)
		}
		res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "import os; print(os.urandom(16).hex())"}, nil)
		stopErr := inst.Stop(ctx)
		if err != nil || stopErr != nil {
			t.Fatalf("clone %d: run %v, stop %v", i, err, stopErr)
		}
		rands = append(rands, strings.TrimSpace(res.Stdout))
	}
	if rands[0] == "" || rands[0] == rands[1] {
		t.Fatalf("clones' /dev/urandom: %q", rands)
	}
	assertClean(t, h)
}

func assertClean(t *testing.T, h Harness) {
	t.Helper()
	procs, entries := h.Leftovers()
	if procs != 0 || len(entries) != 0 {
		t.Fatalf("left behind: %d VM processes, run dir entries %v", procs, entries)
	}
}

func launch(t *testing.T, h Harness) *sandbox.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.BootLimit)
	defer cancel()
	inst, err := sandbox.Boot(ctx, h.Driver, h.Spec)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	return inst
}

func testBootRunStop(t *testing.T, h Harness) {
	inst := launch(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := inst.Agent.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print('conformance')"}, nil)
	if err != nil || strings.TrimSpace(res.Stdout) != "conformance" {
		t.Fatalf("run: %+v %v", res, err)
	}
	// The console is kept (the agent says it is ready there) and bounded.
	if tail := inst.VM.ConsoleTail(1 << 20); !strings.Contains(tail, "codebench-agent: ready") || len(tail) > sandbox.ConsoleSize {
		t.Fatalf("console tail (%d bytes) lacks the agent's ready line: %q", len(tail), tail)
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-inst.VM.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if !strings.Contains(inst.VM.ConsoleTail(4096), "codebench-agent: ready") {
		t.Fatal("the console is gone once the VM stopped: a crashed guest's last words would be lost")
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	assertClean(t, h)
}

func testConcurrent(t *testing.T, h Harness, n int) {
	var wg sync.WaitGroup
	insts := make([]*sandbox.Instance, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), h.BootLimit)
			defer cancel()
			insts[i], errs[i] = sandbox.Boot(ctx, h.Driver, h.Spec)
		})
	}
	wg.Wait()
	for i := range n {
		wg.Go(func() {
			if insts[i] != nil {
				errs[i] = errors.Join(errs[i], insts[i].Stop(context.Background()))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	assertClean(t, h)
}

func testStopDuringBoot(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), h.BootLimit)
	defer cancel()
	vm, err := h.Driver.Start(ctx, h.Spec)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the guest kernel is booting
	if err := vm.Stop(ctx); err != nil {
		t.Fatalf("stop during boot: %v", err)
	}
	assertClean(t, h)
}

func testStopDead(t *testing.T, h Harness) {
	inst := launch(t, h)
	// Kill the VMM behind the driver's back, as a crash would.
	if err := sandbox.Kill(inst.VM); errors.Is(err, sandbox.ErrNoKill) {
		_ = inst.Stop(context.Background())
		t.Skipf("driver %s: %v", h.Driver.Name(), err)
	} else if err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.VM.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the VMM died")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := inst.Agent.Ping(ctx); err == nil {
		t.Fatal("ping of a dead VM succeeded")
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("stop of a dead VM: %v", err)
	}
	assertClean(t, h)
}

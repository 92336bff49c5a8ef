package gvisor_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
	"github.com/codebench/codebench/internal/testenv"
)

// TestHostCgroup: every host process of a sandbox (runsc, the Sentry, the
// gofer) is in the sandbox's own host cgroup, whose memory and process
// limits runsc set from the spec; the cgroup goes with the sandbox.
func TestHostCgroup(t *testing.T) {
	env := testenv.NeedGVisor(t)
	if env.Cgroups == nil {
		if os.Getenv("CODEBENCH_REQUIRE_GVISOR") != "" {
			t.Fatalf("no host cgroup for gVisor sandboxes: %v", env.CgroupsErr)
		}
		t.Skipf("no host cgroup here: %v", env.CgroupsErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := sandbox.Boot(ctx, env.Driver, env.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(ctx)
	if _, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(1)"}, nil); err != nil {
		t.Fatal(err)
	}
	want := env.Cgroups.Path(inst.VM.ID())
	pids := inst.VM.(sandbox.Processes).PIDs()
	inCgroup := 0
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
		if err != nil {
			continue // runsc's own process may have gone
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "memory") && strings.HasSuffix(l, ":"+want) {
				inCgroup++
			}
		}
	}
	// The Sentry and the gofer at least.
	if inCgroup < 2 {
		t.Errorf("%d of the sandbox's processes %v are in its memory cgroup %s", inCgroup, pids, want)
	}
	mem, procs, err := env.Cgroups.Limits(inst.VM.ID())
	if err != nil {
		t.Fatal(err)
	}
	if mem < int64(env.Spec.MemoryMB)<<20 || mem > int64(env.Spec.MemoryMB+1024)<<20 || procs <= 0 || procs > 4096 {
		t.Errorf("limits: memory %d, pids %d", mem, procs)
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.Cgroups.Limits(inst.VM.ID()); err == nil {
		t.Errorf("the sandbox's cgroup outlived it")
	}
}

// TestCheckpointRestoreLeavesNoCgroup: a sandbox checkpointed, restored
// and stopped (a long-lived sandbox's pause and resume) leaves no cgroup of
// either run in any hierarchy: runsc makes one per controller it knows,
// and a restored runsc leaves them at its exit.
func TestCheckpointRestoreLeavesNoCgroup(t *testing.T) {
	env := testenv.NeedGVisor(t)
	if env.Cgroups == nil {
		t.Skipf("no host cgroup here: %v", env.CgroupsErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := sandbox.Boot(ctx, env.Driver, env.Spec)
	if err != nil {
		t.Fatal(err)
	}
	_ = inst.Agent.Close()
	dir := t.TempDir()
	if err := env.Driver.Checkpoint(ctx, inst.VM, dir); err != nil {
		t.Fatal(err)
	}
	vm, err := env.Driver.Restore(ctx, env.Spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{inst.VM.ID(), vm.ID()} {
		if left, _ := filepath.Glob(filepath.Join(hostcgroup.Root, "*", hostcgroup.DefaultName, id)); len(left) > 0 {
			t.Errorf("cgroups of %s left: %v", id, left)
		}
	}
}

// TestCheckpointFailureLeavesItRunning: a checkpoint runsc cannot write
// (its image path is a file) fails before it pauses the sandbox, and the
// sandbox runs on: its agent answers. A long-lived sandbox's failed pause
// depends on it.
func TestCheckpointFailureLeavesItRunning(t *testing.T) {
	env := testenv.NeedGVisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := sandbox.Boot(ctx, env.Driver, env.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(ctx)
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := env.Driver.Checkpoint(ctx, inst.VM, notADir); err == nil {
		t.Fatal("a checkpoint into a file succeeded")
	}
	if sandbox.IsDone(inst.VM.Done()) {
		t.Fatal("a failed checkpoint ended the sandbox")
	}
	if err := inst.Agent.Ping(ctx); err != nil {
		t.Fatalf("the agent after a failed checkpoint: %v", err)
	}
}

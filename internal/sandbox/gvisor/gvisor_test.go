package gvisor_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/sandbox"

	"github.com/codebench/codebench/internal/sandbox/sandboxtest"
	"github.com/codebench/codebench/internal/testenv"
)

func TestConformance(t *testing.T) {
	env := testenv.NeedGVisor(t)
	h := sandboxtest.Harness{
		Driver: env.Driver,
		Spec:   env.Spec,
		Leftovers: func() (int, []string) {
			return testenv.Processes(env.RunDir, "runsc"), testenv.Entries(env.RunDir)
		},
		CPULimitRequired: os.Getenv("CODEBENCH_REQUIRE_GVISOR") != "",
	}
	if env.Cgroups != nil && env.Cgroups.HasCPU() {
		h.CPUUsage = env.Cgroups.CPUUsage
	}
	sandboxtest.Run(t, h)
}

// TestCheckpointRestore: a warmed-up sandbox saved with runsc checkpoint
// restores with new stdio; its agent answers, runs a job, and two restores
// do not share random numbers (gVisor's come from the host).
func TestCheckpointRestore(t *testing.T) {
	env := testenv.NeedGVisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := sandbox.Boot(ctx, env.Driver, env.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(1)"}, nil); err != nil {
		t.Fatal(err)
	}
	_ = inst.Agent.Close()
	dir := t.TempDir()
	if err := env.Driver.Checkpoint(ctx, inst.VM, dir); err != nil {
		t.Fatal(err)
	}
	var rands []string
	for i := 0; i < 2; i++ {
		clone, err := sandbox.StartInstance(ctx, func(ctx context.Context) (sandbox.VM, error) { return env.Driver.Restore(ctx, env.Spec, dir) })
		if err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		res, err := clone.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "import os; print(os.urandom(16).hex())"}, nil)
		stopErr := clone.Stop(ctx)
		if err != nil || stopErr != nil {
			t.Fatalf("restore %d: run %v stop %v", i, err, stopErr)
		}
		rands = append(rands, strings.TrimSpace(res.Stdout))
		t.Logf("restore %d ready in %s", i, clone.ReadyIn.Round(time.Millisecond))
	}
	if rands[0] == "" || rands[0] == rands[1] {
		t.Fatalf("restores' urandom: %q", rands)
	}
	if n, left := testenv.Processes(env.RunDir, "runsc"), testenv.Entries(env.RunDir); n != 0 || len(left) != 0 {
		t.Fatalf("left behind: %d processes, %v", n, left)
	}
}

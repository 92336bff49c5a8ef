package firecracker_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/firecracker"
	"github.com/codebench/codebench/internal/sandbox/sandboxtest"
	"github.com/codebench/codebench/internal/testenv"
)

// TestConformance runs the shared driver suite where Firecracker can run:
// the binary on PATH and a KVM that boots the guest. Elsewhere it says why.
func TestConformance(t *testing.T) {
	vm := testenv.NeedVM(t) // the guest image
	runDir := filepath.Join(vm.RunDir, "fc")
	d, err := firecracker.New(firecracker.Config{RunDir: runDir, VmlinuxCache: filepath.Join(vm.Config.DataDir, "cache", "vmlinux")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Probe(); err != nil {
		t.Skipf("firecracker driver cannot run on this host: %v", err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inst, err := sandbox.Boot(ctx, d, vm.Spec)
	if err != nil {
		t.Skipf("firecracker cannot boot the guest on this host's KVM: %v", err)
	}
	_ = inst.Stop(ctx)
	sandboxtest.Run(t, sandboxtest.Harness{
		Driver: d, Spec: vm.Spec,
		Leftovers: func() (int, []string) { return testenv.Processes(runDir, "firecracker"), testenv.Entries(runDir) },
	})
}

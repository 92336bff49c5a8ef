package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/testenv"
)

// TestDoctorSaysWhichDriverAndWhy: doctor probes every candidate for real
// and names the one the worker will use; where no KVM microVM can run (as
// on these hosts), that is gVisor, because its test sandbox reached the
// agent. QEMU under TCG is listed as working but not used.
func TestDoctorSaysWhichDriverAndWhy(t *testing.T) {
	vm := testenv.NeedVM(t)
	testenv.NeedGVisor(t)
	r := runCLIWith(t, []string{"CODEBENCH_DRIVER=auto", "CODEBENCH_ALLOW_TCG=false"}, filepath.Join(vm.RunDir, "doctor"), "doctor")
	t.Logf("doctor:\n%s", r.stdout)
	used := regexp.MustCompile(`(?m)^ok\s+driver (\S+)\s+USED: (.*)$`).FindAllStringSubmatch(r.stdout, -1)
	if len(used) != 1 {
		t.Fatalf("doctor names %d drivers as used, want 1 (exit %d)", len(used), r.exit)
	}
	kvmWorks := !regexp.MustCompile(`driver qemu-kvm\s+cannot run here`).MatchString(r.stdout)
	fcWorks := !regexp.MustCompile(`driver firecracker\s+cannot run here`).MatchString(r.stdout)
	if !kvmWorks && !fcWorks {
		if used[0][1] != "gvisor" || !strings.Contains(used[0][2], "test sandbox ready") {
			t.Fatalf("no KVM microVM here, and doctor chose %s (%s), not gVisor for its test sandbox", used[0][1], used[0][2])
		}
		if !regexp.MustCompile(`driver qemu-tcg\s+works: .*not a security boundary`).MatchString(r.stdout) {
			t.Fatal("doctor does not say why QEMU under TCG is not used")
		}
	}
	if !strings.Contains(r.stdout, "the worker will use "+used[0][1]) || r.exit != 0 {
		t.Fatalf("exit %d", r.exit)
	}
}

package main

import (
	"path/filepath"
	"regexp"
	"slices"
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

// TestDoctorReportsWalls: doctor checks each wall of docs/SECURITY.md for
// the driver the worker uses, the job's walls by running a probe job in a
// sandbox; on both drivers here every wall is present but QEMU-under-TCG's
// guest kernel, which doctor calls missing (emulation is no boundary).
func TestDoctorReportsWalls(t *testing.T) {
	vm := testenv.NeedVM(t)
	testenv.NeedGVisor(t)
	for _, tc := range []struct {
		driver  string
		missing []string
		network string // the network line doctor prints
	}{
		{"gvisor", nil, `(?m)^info network\s+off: `},
		{"qemu", []string{"guest kernel"}, `(?m)^ok\s+network\s+CNI plugins in `},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			env := []string{"CODEBENCH_DRIVER=" + tc.driver, "CODEBENCH_ALLOW_TCG=true", "CODEBENCH_QEMU_JAIL=on"}
			if tc.driver == "qemu" {
				testenv.NeedNetwork(t)
				env = append(env, "CODEBENCH_NETWORK=true")
			}
			r := runCLIWith(t, env, filepath.Join(vm.RunDir, "walls"), "doctor")
			if !regexp.MustCompile(tc.network).MatchString(r.stdout) {
				t.Errorf("network line: want %s\n%s", tc.network, r.stdout)
			}
			lines := regexp.MustCompile(`(?m)^(wall|MISS) (.{20}) (.*)$`).FindAllStringSubmatch(r.stdout, -1)
			got := map[string]string{}
			for _, l := range lines {
				got[strings.TrimSpace(l[2])] = l[1]
			}
			for _, w := range []string{"job user", "job seccomp", "job no_new_privs", "guest root nosuid", "guest kernel", "vmm jail", "host cgroup"} {
				want := "wall"
				if slices.Contains(tc.missing, w) {
					want = "MISS"
				}
				if got[w] != want {
					t.Errorf("%s: %q, want %q\n%s", w, got[w], want, r.stdout)
				}
			}
		})
	}
}

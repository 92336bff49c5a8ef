package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/hostpkg"
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
			if tc.driver == "qemu" && !regexp.MustCompile(`(?m)^info network state\s+\d+ namespaces, \d+ leases, \d+ attachments`).MatchString(r.stdout) {
				t.Errorf("doctor does not count the network's leftovers\n%s", r.stdout)
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

// TestPackagePromises: doctor --strict fails where the host has an older
// runsc or QEMU than its apt sources serve (what a fresh machine got from
// a broken install), and only then.
func TestPackagePromises(t *testing.T) {
	backports := []hostpkg.Offer{
		{Version: "1:10.0.2+ds-2+deb13u1~bpo12+1", Source: "mirror bookworm-backports/main amd64 Packages"},
		{Version: "1:7.2+dfsg-7+deb12u16", Source: "mirror bookworm/main amd64 Packages"},
	}
	bookworm := backports[1:]
	qemuP := promised[slices.IndexFunc(promised, func(p promise) bool { return p.pkg == "qemu-system-x86" })]
	runscP := promised[slices.IndexFunc(promised, func(p promise) bool { return p.pkg == "runsc" })]
	for _, tc := range []struct {
		name   string
		p      promise
		have   string
		err    error
		offers []hostpkg.Offer
		stale  bool
		says   string
	}{
		{"old qemu, newer served", qemuP, "1:7.2+dfsg-7+deb12u16", nil, backports, true, "the apt sources serve 1:10.0.2"},
		{"old qemu, nothing newer", qemuP, "1:7.2+dfsg-7+deb12u16", nil, bookworm, false, "serve nothing newer"},
		{"new qemu", qemuP, "1:10.0.2+ds-2+deb13u1~bpo12+1", nil, backports, false, ">= 1:8.2"},
		{"qemu missing", qemuP, "", hostpkg.ErrNotInstalled, backports, false, "not installed"},
		{"ptrace runsc, systrap served", runscP, "0.0~20221219.0+ds1-4", nil,
			[]hostpkg.Offer{{Version: "0.0~20240729.0-4~bpo12+2"}, {Version: "0.0~20221219.0+ds1-4"}}, true, "no systrap"},
		{"systrap runsc", runscP, "0.0~20240729.0-4~bpo12+2", nil, []hostpkg.Offer{{Version: "0.0~20240729.0-4~bpo12+2"}}, false, ">= "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.p.judge(tc.have, tc.err, tc.offers)
			if c.stale != tc.stale || !strings.Contains(c.detail, tc.says) {
				t.Fatalf("stale %v %q, want stale %v saying %q", c.stale, c.detail, tc.stale, tc.says)
			}
		})
	}
}

// TestDoctorStrict: on a host that got what the README promises, doctor
// --strict passes on gVisor and on jailed QEMU (TCG's missing hardware
// boundary accepted by CODEBENCH_ALLOW_TCG); it fails where a wall is
// missing (QEMU unjailed), which plain doctor only reports.
func TestDoctorStrict(t *testing.T) {
	vm := testenv.NeedJail(t)
	testenv.NeedGVisor(t)
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		wantExit int
	}{
		{"gvisor", nil, []string{"--strict", "--driver", "gvisor"}, 0},
		{"jailed qemu", []string{"CODEBENCH_QEMU_JAIL=on"}, []string{"--strict", "--driver", "qemu-tcg"}, 0},
		{"unjailed qemu, strict", []string{"CODEBENCH_QEMU_JAIL=off", "CODEBENCH_ALLOW_ROOT_VMM=true"}, []string{"--strict", "--driver", "qemu-tcg"}, 1},
		{"unjailed qemu, not strict", []string{"CODEBENCH_QEMU_JAIL=off", "CODEBENCH_ALLOW_ROOT_VMM=true"}, []string{"--driver", "qemu-tcg"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"CODEBENCH_ALLOW_TCG=true", "CODEBENCH_NETWORK=false"}, tc.env...)
			r := runCLIWith(t, env, filepath.Join(vm.RunDir, "strict"), append([]string{"doctor"}, tc.args...)...)
			if r.exit != tc.wantExit {
				t.Fatalf("exit %d, want %d\n%s%s", r.exit, tc.wantExit, r.stdout, r.stderr)
			}
			if !regexp.MustCompile(`(?m)^info package (runsc|qemu-system-x86)\s+\S+ \(>= `).MatchString(r.stdout) {
				t.Errorf("doctor does not show the promised packages as present\n%s", r.stdout)
			}
			if tc.wantExit == 1 && !regexp.MustCompile(`(?m)^MISS vmm jail`).MatchString(r.stdout) {
				t.Errorf("strict failed, but not on the missing jail\n%s", r.stdout)
			}
		})
	}
}

// TestAutoFailsClosedAsRoot: as root, auto never picks an unjailed VMM:
// a Firecracker on PATH with its jailer off, and QEMU without its VM user,
// are each refused with the reason and the setting that would accept
// them; doctor says so.
func TestAutoFailsClosedAsRoot(t *testing.T) {
	vm := testenv.NeedVM(t)
	testenv.NeedGVisor(t)
	if os.Geteuid() != 0 {
		t.Skip("capability root: the refusal is of a root VMM")
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "firecracker"), []byte("#!/bin/sh\necho 'Firecracker v1.7.0'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "CODEBENCH_DRIVER=auto", "CODEBENCH_ALLOW_TCG=true",
		"CODEBENCH_JAILER=false", "CODEBENCH_QEMU_JAIL=auto", "CODEBENCH_VM_USER=codebench-no-such-user", "CODEBENCH_NETWORK=false"}
	r := runCLIWith(t, env, filepath.Join(vm.RunDir, "root"), "doctor")
	for _, want := range []string{
		`(?m)^info driver firecracker\s+cannot run here: refused: Firecracker without its jailer would run as root; .*CODEBENCH_JAILER=true.*CODEBENCH_ALLOW_ROOT_VMM=true`,
		`(?m)^info driver qemu-kvm\s+cannot run here: refused: QEMU unjailed \(no VM user "codebench-no-such-user".*CODEBENCH_ALLOW_ROOT_VMM=true`,
		`(?m)^info driver qemu-tcg\s+cannot run here: refused: QEMU unjailed`,
		`(?m)^ok\s+driver gvisor\s+USED: `,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("doctor does not say %s\n%s", want, r.stdout)
		}
	}
}

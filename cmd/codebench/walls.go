package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/choose"
	"github.com/codebench/codebench/internal/sandbox/gvisor"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// wallProbe runs as a job and reports the guest's walls as the job sees
// them (docs/SECURITY.md): its user, the seccomp filter, no_new_privs, a
// nosuid root.
const wallProbe = `import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def err(r): return "allowed" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
print("uid", os.getuid())
print("bpf", err(libc.syscall(321, 0, 0, 0)))
print("perf", err(libc.syscall(298, 0, 0, -1, -1, 0)))
print("userns", err(libc.unshare(0x10000000)))
print("nnp", libc.prctl(39, 0, 0, 0, 0))
print("nosuid", int(bool(os.statvfs("/").f_flag & os.ST_NOSUID)))
`

// limitsOf says which limits a host cgroup gives each sandbox.
func limitsOf(m *hostcgroup.Manager) string {
	if m.HasCPU() {
		return "memory, pids and CPU limits"
	}
	return "memory and pids limits"
}

// newWall is a wall no setting waived.
func newWall(name string, present bool, detail string) wall {
	return wall{name: name, present: present, detail: detail}
}

// wall is one line of the report.
type wall struct {
	name    string
	present bool
	detail  string
	// waivedBy names the setting with which the operator accepted this
	// wall's absence (doctor --strict does not fail on it).
	waivedBy string
}

// walls checks each wall for the chosen driver, innermost first: the job's
// own (by a probe job in a sandbox), the guest kernel, the VMM's jail, the
// host cgroup.
func walls(ctx context.Context, cfg config.Config, c *choose.Choice, spec sandbox.Spec) []wall {
	var out []wall
	probe := map[string]string{}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	inst, err := sandbox.Boot(pctx, c.Driver, spec)
	if err == nil {
		var res *agentproto.RunResult
		res, err = inst.Agent.Run(pctx, &agentproto.RunRequest{Language: "python", Code: wallProbe,
			Limits: agentproto.Limits{WallMS: 60000, CPUMS: 60000, MemoryKB: 256 << 10, Processes: 16}}, nil)
		_ = inst.Stop(ctx)
		if err == nil {
			for _, l := range strings.Split(res.Stdout, "\n") {
				if k, v, ok := strings.Cut(l, " "); ok {
					probe[k] = v
				}
			}
			if len(probe) == 0 {
				err = fmt.Errorf("probe printed nothing (stderr %q)", res.Stderr)
			}
		}
	}
	if err != nil {
		out = append(out, newWall("job", false, "the probe job did not run: "+err.Error()))
	} else {
		out = append(out,
			newWall("job user", probe["uid"] != "0" && probe["uid"] != "", "uid "+probe["uid"]+", with per-job cgroup limits in the guest"),
			newWall("job seccomp", probe["bpf"] == "EPERM" && probe["perf"] == "EPERM" && probe["userns"] == "EPERM",
				fmt.Sprintf("bpf %s, perf_event_open %s, unshare(CLONE_NEWUSER) %s", probe["bpf"], probe["perf"], probe["userns"])),
			newWall("job no_new_privs", probe["nnp"] == "1", "prctl(PR_GET_NO_NEW_PRIVS) = "+probe["nnp"]),
			newWall("guest root nosuid", probe["nosuid"] == "1", "statvfs(/) ST_NOSUID = "+probe["nosuid"]),
		)
	}
	switch c.Name {
	case candFirecracker, candQEMUKVM:
		out = append(out, newWall("guest kernel", true, "a kernel of its own in a KVM microVM ("+c.Name+")"))
	case candGVisor:
		platform := "?"
		if d, ok := c.Driver.(*gvisor.Driver); ok {
			platform, _ = d.Platform()
		}
		out = append(out, newWall("guest kernel", true, "gVisor's Sentry, a kernel in user space (platform "+platform+")"))
	default:
		w := wall{name: "guest kernel", detail: "a kernel of its own, but under TCG emulation: not a hardware boundary"}
		if cfg.VM.AllowTCG {
			w.waivedBy = "CODEBENCH_ALLOW_TCG=true"
		}
		out = append(out, w)
	}
	switch c.Name {
	case candQEMUKVM, candQEMUTCG:
		q, why, err := qemuConfig(cfg)
		switch {
		case err != nil:
			out = append(out, newWall("vmm jail", false, err.Error()), newWall("host cgroup", false, "no jail"))
		case q.Jail == nil:
			out = append(out, newWall("vmm jail", false, why), newWall("host cgroup", false, "no jail"))
		default:
			out = append(out, newWall("vmm jail", true, why+"; namespaces, pivot_root, no_new_privs, -sandbox on"))
			if q.Jail.Cgroups != nil {
				out = append(out, newWall("host cgroup", true, q.Jail.Cgroups.Describe()+" ("+limitsOf(q.Jail.Cgroups)+" per VM)"))
			} else {
				out = append(out, newWall("host cgroup", false, "no usable memory and pids controllers"))
			}
		}
	case candGVisor:
		out = append(out, newWall("vmm jail", true, "runsc's own: Sentry and gofer in namespaces of their own under seccomp, --network=none"))
		cg, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
		switch {
		case os.Geteuid() != 0:
			out = append(out, newWall("host cgroup", false, "not root"))
		case err != nil:
			out = append(out, newWall("host cgroup", false, err.Error()))
		default:
			out = append(out, newWall("host cgroup", true, cg.Describe()+" ("+limitsOf(cg)+" per sandbox, set by runsc)"))
		}
	case candFirecracker:
		if cfg.VM.Jailer.Enabled {
			out = append(out, newWall("vmm jail", true, "Firecracker's jailer: chroot, uid "+fmt.Sprint(cfg.VM.Jailer.UID)+", its seccomp filters"),
				newWall("host cgroup", true, "the jailer's, with memory and pids limits"))
		} else {
			out = append(out, newWall("vmm jail", false, "jailer off (CODEBENCH_JAILER=true turns it on)"),
				newWall("host cgroup", false, "jailer off"))
		}
	}
	return out
}

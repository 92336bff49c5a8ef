package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/choose"
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

// newWall is a wall no setting waived.
func newWall(name string, present bool, detail string) sandbox.Wall {
	return sandbox.Wall{Name: name, Present: present, Detail: detail}
}

// walls checks each wall for the chosen driver, innermost first: the job's
// own (by a probe job in a sandbox), then the driver's (desc.Walls): the
// guest kernel, the VMM's jail, the host cgroup.
func walls(ctx context.Context, c *choose.Choice, desc sandbox.Descriptor, spec sandbox.Spec) []sandbox.Wall {
	var out []sandbox.Wall
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
	if desc.Walls != nil {
		out = append(out, desc.Walls(c.Driver)...)
	}
	return out
}

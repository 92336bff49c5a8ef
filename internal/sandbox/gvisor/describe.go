package gvisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
)

// DescribeOptions are what gVisor's description needs beyond its Config.
type DescribeOptions struct {
	// Spec is the test sandbox the probe boots, within ProbeTimeout.
	Spec         sandbox.Spec
	ProbeTimeout time.Duration
	// CgroupsErr is why cfg has no host cgroups (as root), if it has none.
	CgroupsErr error
}

// ptraceCost is what doctor says of a runsc that has only ptrace
// (docs/BENCHMARKS.md, "gVisor platforms").
const ptraceCost = "ptrace only: every system call of a job is a ptrace stop; a gcc hello world takes " +
	"1.2-1.3x the wall time and 1.3-1.6x the CPU of systrap (docs/BENCHMARKS.md, gVisor platforms); " +
	"bookworm-backports' runsc has systrap (scripts/install-deps.sh)"

// Describe is the gVisor driver as data.
func Describe(cfg Config, o DescribeOptions, log *slog.Logger) sandbox.Descriptor {
	platformOf := func(d sandbox.Driver) string {
		if g, ok := d.(*Driver); ok {
			if p, err := g.Platform(); err == nil {
				return p
			}
		}
		return "?"
	}
	return sandbox.Descriptor{
		Name: "gvisor", Setting: "gvisor", Boundary: true, Networks: false,
		Probe: func(ctx context.Context) (sandbox.Driver, string, error) {
			d, err := New(cfg, log)
			if err != nil {
				return nil, "", err
			}
			platform, err := d.Platform()
			if err != nil {
				return nil, "", err
			}
			pctx, cancel := context.WithTimeout(ctx, o.ProbeTimeout)
			defer cancel()
			inst, err := sandbox.Boot(pctx, d, o.Spec)
			if err != nil {
				return nil, "", fmt.Errorf("test sandbox (platform %s) did not reach the agent: %w", platform, err)
			}
			_ = inst.Stop(ctx)
			return d, fmt.Sprintf("%s: test sandbox ready in %s", d.Version(), inst.ReadyIn.Round(time.Millisecond)), nil
		},
		Walls: func(d sandbox.Driver) []sandbox.Wall {
			out := []sandbox.Wall{
				{Name: "guest kernel", Present: true, Detail: "gVisor's Sentry, a kernel in user space (platform " + platformOf(d) + ")"},
				{Name: "vmm jail", Present: true, Detail: "runsc's own: Sentry and gofer in namespaces of their own under seccomp, --network=none"},
			}
			switch {
			case os.Geteuid() != 0:
				return append(out, sandbox.Wall{Name: "host cgroup", Detail: "not root"})
			case cfg.Cgroups == nil:
				why := "no usable cgroup controllers"
				if o.CgroupsErr != nil {
					why = o.CgroupsErr.Error()
				}
				return append(out, sandbox.Wall{Name: "host cgroup", Detail: why})
			}
			return append(out, sandbox.Wall{Name: "host cgroup", Present: true,
				Detail: cfg.Cgroups.Describe() + " (" + cfg.Cgroups.Offers() + " per sandbox, set by runsc)"})
		},
		Reclaimer: func() (sandbox.Reclaimer, error) { return New(cfg, log) },
		OCIRuntime: func(d sandbox.Driver, stateDir string) ([]string, error) {
			g, ok := d.(*Driver)
			if !ok {
				return nil, fmt.Errorf("gvisor: %T is not the gVisor driver", d)
			}
			platform, err := g.Platform()
			if err != nil {
				return nil, err
			}
			return []string{g.cfg.Binary, "--root", stateDir, "--platform=" + platform, "--network=none"}, nil
		},
		TapOwner: func(sandbox.Driver) (int, int, error) {
			return 0, 0, errors.New("the gVisor driver runs sandboxes with --network=none; networked jobs need the qemu or firecracker driver")
		},
		Notes: func(d sandbox.Driver) []string {
			if platformOf(d) == PlatformPtrace {
				return []string{ptraceCost}
			}
			return nil
		},
		// docs/BENCHMARKS.md: what the pool and a warm sandbox are for.
		BenchTargets: []sandbox.BenchTarget{
			{Measure: "end-to-end p50 at c=1 (ms)", Limit: 300},
			{Measure: "pool wait p50 at c=1 (ms)", Limit: 5},
			{Measure: "end-to-end p50 at c=1 / the emulator's in the same run (x)", Limit: 0.35},
			{Measure: "jobs/s at c=2", Limit: 3, AtLeast: true},
			{Measure: "idle sandbox PSS (MiB)", Limit: 40},
			// What gVisor itself costs, and what the pool adds to it
			// (issue 23).
			{Measure: "end-to-end p50 at c=1 / native gcc and run (x)", Limit: 4},
			{Measure: "machine CPU per job at c=1 (s)", Limit: 0.6},
			{Measure: "machine CPU per job at c=1 / a cold runsc's (x)", Limit: 1},
			{Measure: "jobs/s at c=4", Limit: 2, AtLeast: true},
			{Measure: "Python end-to-end p50 at c=1 / native python3 (x)", Limit: 6},
			{Measure: "pool wait p99 at c=1 (ms)", Limit: 5},
		},
	}
}

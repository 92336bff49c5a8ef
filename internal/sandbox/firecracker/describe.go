package firecracker

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/codebench/codebench/internal/sandbox"
)

// Describe is the Firecracker driver as data, for cfg. allowRootVMM says
// the operator accepted an unjailed VMM running as root.
func Describe(cfg Config, allowRootVMM bool, log *slog.Logger) sandbox.Descriptor {
	newDriver := func() (*Driver, error) {
		if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
			return nil, err
		}
		return New(cfg, log)
	}
	return sandbox.Descriptor{
		Name: "firecracker", Setting: "firecracker", Boundary: true, Networks: true,
		Probe: func(context.Context) (sandbox.Driver, string, error) {
			if cfg.Jailer == nil {
				if err := sandbox.RootVMMRefused(allowRootVMM, "Firecracker without its jailer", "turn the jailer on (CODEBENCH_JAILER=true)"); err != nil {
					return nil, "", err
				}
			}
			d, err := newDriver()
			if err != nil {
				return nil, "", err
			}
			if err := d.Probe(); err != nil {
				return nil, "", err
			}
			return d, "binary and /dev/kvm present", nil
		},
		Walls: func(sandbox.Driver) []sandbox.Wall {
			kernel := sandbox.Wall{Name: "guest kernel", Present: true, Detail: "a kernel of its own in a KVM microVM (firecracker)"}
			if j := cfg.Jailer; j != nil {
				version := j.CgroupVersion
				if version == "" {
					version = "2"
				}
				return []sandbox.Wall{kernel,
					{Name: "vmm jail", Present: true, Detail: fmt.Sprintf("Firecracker's jailer: chroot, uid %d, its seccomp filters", j.UID)},
					{Name: "host cgroup", Present: true, Detail: "the jailer's (cgroup v" + version + "), with memory, swap and pids limits"},
				}
			}
			return []sandbox.Wall{kernel,
				{Name: "vmm jail", Detail: "jailer off (CODEBENCH_JAILER=true turns it on)"},
				{Name: "host cgroup", Detail: "jailer off"},
			}
		},
		Reclaimer: func() (sandbox.Reclaimer, error) { return newDriver() },
		TapOwner: func(sandbox.Driver) (int, int, error) {
			if j := cfg.Jailer; j != nil {
				return j.UID, j.GID, nil
			}
			return 0, 0, nil // an unjailed Firecracker runs as root
		},
	}
}

package qemu

import (
	"context"
	"errors"
	"log/slog"

	"github.com/codebench/codebench/internal/sandbox"
)

// DescribeOptions are what QEMU's descriptions need beyond its Config.
type DescribeOptions struct {
	// JailWhy says how QEMU runs (jailed as whom, or why not); ConfigErr
	// is why no Config could be made (a jail that was required).
	JailWhy   string
	ConfigErr error
	// Accel is the accelerator setting: auto, kvm or tcg.
	Accel string
	// AccelCache is where the KVM probe's verdict is kept.
	AccelCache string
	// Spec is a sandbox to boot when probing KVM.
	Spec sandbox.Spec
	// AllowRootVMM: the operator accepted an unjailed QEMU as root;
	// AllowTCG: the operator accepted TCG, which is no boundary.
	AllowRootVMM, AllowTCG bool
}

// Describe is QEMU as data: under KVM, and under TCG (emulation, no
// security boundary), in that order.
func Describe(cfg Config, o DescribeOptions, log *slog.Logger) []sandbox.Descriptor {
	usable := func() error {
		if o.ConfigErr != nil {
			return o.ConfigErr
		}
		if cfg.Jail == nil {
			return sandbox.RootVMMRefused(o.AllowRootVMM, "QEMU unjailed ("+o.JailWhy+")",
				"create its user (scripts/install-deps.sh makes codebench-vm) and set CODEBENCH_QEMU_JAIL=auto or on")
		}
		return nil
	}
	withAccel := func(accel string) (*Driver, error) {
		c := cfg
		c.Accel = accel
		return New(c, log)
	}
	kvm := sandbox.Descriptor{Name: "qemu-kvm", Setting: "qemu", Accel: AccelKVM, Boundary: true, Networks: true,
		Probe: func(ctx context.Context) (sandbox.Driver, string, error) {
			if err := usable(); err != nil {
				return nil, "", err
			}
			if d, err := withAccel(AccelTCG); err != nil {
				return nil, "", err
			} else if err := d.Probe(); err != nil { // present, and new enough for its jail
				return nil, "", err
			}
			want := AccelKVM
			if o.Accel == "auto" {
				want = "auto"
			}
			r, err := ResolveAccel(ctx, want, cfg, o.Spec, o.AccelCache, log)
			if err != nil {
				return nil, "", err
			}
			if r.Accel != AccelKVM {
				return nil, "", errors.New(r.Reason)
			}
			d, err := withAccel(AccelKVM)
			if err != nil {
				return nil, "", err
			}
			return d, r.Reason + "; " + d.Version() + "; " + o.JailWhy, nil
		}}
	tcg := sandbox.Descriptor{Name: "qemu-tcg", Setting: "qemu", Accel: AccelTCG, Boundary: false, Networks: true,
		Probe: func(context.Context) (sandbox.Driver, string, error) {
			if err := usable(); err != nil {
				return nil, "", err
			}
			d, err := withAccel(AccelTCG)
			if err != nil {
				return nil, "", err
			}
			if err := d.Probe(); err != nil {
				return nil, "", err
			}
			return d, "software emulation; " + d.Version() + "; " + o.JailWhy, nil
		}}
	kvm.Walls = func(sandbox.Driver) []sandbox.Wall {
		return append([]sandbox.Wall{{Name: "guest kernel", Present: true, Detail: "a kernel of its own in a KVM microVM (qemu-kvm)"}}, jailWalls(cfg, o)...)
	}
	tcg.Walls = func(sandbox.Driver) []sandbox.Wall {
		w := sandbox.Wall{Name: "guest kernel", Detail: "a kernel of its own, but under TCG emulation: not a hardware boundary"}
		if o.AllowTCG {
			w.WaivedBy = "CODEBENCH_ALLOW_TCG=true"
		}
		return append([]sandbox.Wall{w}, jailWalls(cfg, o)...)
	}
	for _, d := range []*sandbox.Descriptor{&kvm, &tcg} {
		d.TapOwner = func(sandbox.Driver) (int, int, error) {
			if cfg.Jail == nil {
				return 0, 0, errors.New("networked QEMU VMs need the QEMU jail (run as root with qemu_jail auto or on), which joins the VM's namespace and runs QEMU as the VM user")
			}
			return cfg.Jail.UID, cfg.Jail.GID, nil
		}
	}
	// One reclaimer for both: the run dirs and pid files are the same.
	kvm.Reclaimer = func() (sandbox.Reclaimer, error) {
		if o.ConfigErr != nil {
			return nil, o.ConfigErr
		}
		return withAccel(AccelTCG)
	}
	return []sandbox.Descriptor{kvm, tcg}
}

// jailWalls are the VMM jail and the host cgroup it gives each VM.
func jailWalls(cfg Config, o DescribeOptions) []sandbox.Wall {
	switch {
	case o.ConfigErr != nil:
		return []sandbox.Wall{{Name: "vmm jail", Detail: o.ConfigErr.Error()}, {Name: "host cgroup", Detail: "no jail"}}
	case cfg.Jail == nil:
		return []sandbox.Wall{{Name: "vmm jail", Detail: o.JailWhy}, {Name: "host cgroup", Detail: "no jail"}}
	}
	out := []sandbox.Wall{{Name: "vmm jail", Present: true, Detail: o.JailWhy + "; namespaces, pivot_root, no_new_privs, -sandbox on"}}
	if cg := cfg.Jail.Cgroups; cg != nil {
		return append(out, sandbox.Wall{Name: "host cgroup", Present: true, Detail: cg.Describe() + " (" + cg.Offers() + " per VM)"})
	}
	return append(out, sandbox.Wall{Name: "host cgroup", Detail: "no usable memory and pids controllers"})
}

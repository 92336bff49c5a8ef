// Package drivers is the one list of sandbox drivers, in auto's order of
// preference: a KVM microVM (Firecracker, then QEMU), then gVisor, then
// QEMU under TCG (no security boundary: only where allowed). Each driver
// is built from the section of the settings it owns and describes itself
// (sandbox.Descriptor); the commands, doctor, bench and the tests loop
// over the list and never name a driver.
package drivers

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/firecracker"
	"github.com/codebench/codebench/internal/sandbox/gvisor"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
	"github.com/codebench/codebench/internal/sandbox/qemu"
)

// List is the drivers for cfg, their sandboxes on spec (the zero Spec
// where only their names, settings and reclaimers are wanted).
func List(cfg config.Config, spec sandbox.Spec, log *slog.Logger) []sandbox.Descriptor {
	// The host cgroup, looked for once: as root, gVisor's sandboxes get
	// one with limits where the host has one to give (the error says why
	// not), and Firecracker's jailer is told its version.
	var cg *hostcgroup.Manager
	var cgErr error
	if os.Geteuid() == 0 {
		if cg, cgErr = hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName); cgErr != nil {
			log.Warn("gVisor sandboxes without a host cgroup", "err", cgErr)
		}
	}
	qcfg, why, qerr := qemu.ConfigFrom(cfg.VM, cfg.RunDir)
	qemus := qemu.Describe(qcfg, qemu.DescribeOptions{JailWhy: why, ConfigErr: qerr, Accel: cfg.VM.Accel,
		AccelCache: filepath.Join(cfg.DataDir, "accel-probe.json"), Spec: spec,
		AllowRootVMM: cfg.VM.AllowRootVMM, AllowTCG: cfg.VM.AllowTCG}, log)
	return []sandbox.Descriptor{
		firecracker.Describe(firecracker.ConfigFrom(cfg.VM, cfg.RunDir, cfg.DataDir, cg), cfg.VM.AllowRootVMM, log),
		qemus[0], // under KVM
		gvisor.Describe(gvisor.ConfigFrom(cfg.VM, cfg.RunDir, cg), gvisor.DescribeOptions{Spec: spec,
			ProbeTimeout: min(cfg.VM.BootLimit, 60*time.Second), CgroupsErr: cgErr}, log),
		qemus[1], // under TCG
	}
}

// Reexec runs this binary as a driver's helper when args (os.Args[1:])
// ask for one (the QEMU driver re-executes it as each VM's jail helper):
// true when it did, with the helper's error.
func Reexec(args []string) (bool, error) {
	if len(args) == 0 || args[0] != qemu.JailCommand {
		return false, nil
	}
	return true, qemu.JailMain(args[1:])
}

// IsReexec says whether args ask for a driver's helper (Reexec).
func IsReexec(args []string) bool { return len(args) > 0 && args[0] == qemu.JailCommand }

// HostFacts are what the drivers read of the host that doctor shows
// before any driver is chosen: name and value.
func HostFacts() [][2]string {
	var out [][2]string
	if khz, err := qemu.HostTSCKHz(); err == nil {
		out = append(out, [2]string{"tsc", fmt.Sprintf("%d kHz (passed as tsc_early_khz)", khz)})
	}
	return out
}

// Files are an image's files (internal/image's Image has them).
type Files interface {
	KernelPath() string
	InitrdPath() string
	RootfsPath() string
	RootTreePath() string
}

// Spec is the sandbox spec on img's files with vm's size: the one place an
// image becomes a Spec.
func Spec(img Files, vm config.VM) sandbox.Spec {
	return sandbox.Spec{Kernel: img.KernelPath(), Initrd: img.InitrdPath(), Rootfs: img.RootfsPath(), RootDir: img.RootTreePath(),
		MemoryMB: vm.MemoryMB, VCPUs: vm.VCPUs}
}

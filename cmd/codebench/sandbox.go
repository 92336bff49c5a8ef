package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/reconcile"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/firecracker"
	"github.com/codebench/codebench/internal/sandbox/qemu"
	"github.com/codebench/codebench/internal/template"
)

// env is what every VM-running command needs, wired from the config.
type env struct {
	runDir string
	img    *image.Image
	driver sandbox.Driver
	// chosen says why this driver runs the way it does here (for logs).
	chosen string
	// notBoundary is nil when the driver is a security boundary on this
	// host, and says why it is not otherwise (QEMU under TCG).
	notBoundary error
	spec        sandbox.Spec
	policy      job.Policy
}

// openEnv wires the sandbox for a command. Its VMs live under a run dir of
// this process's own (<run dir>/<owner>-<pid>), so a reconciler can tell a
// dead process's leftovers from a live one's; close removes it.
func openEnv(ctx context.Context, cfg config.Config, log *slog.Logger, owner string) (*env, error) {
	cfg.RunDir = reconcile.OwnerDir(cfg.RunDir, owner)
	img, err := image.Resolve(cfg.DataDir, cfg.Image)
	if err != nil {
		return nil, err
	}
	spec := sandbox.Spec{
		Kernel: img.KernelPath(), Initrd: img.InitrdPath(), Rootfs: img.RootfsPath(),
		MemoryMB: cfg.VM.MemoryMB, VCPUs: cfg.VM.VCPUs,
	}
	if cfg.VM.Driver == "firecracker" {
		drv, err := firecrackerDriver(cfg, log)
		if err != nil {
			return nil, err
		}
		if err := drv.Probe(); err != nil {
			return nil, err
		}
		return &env{runDir: cfg.RunDir, img: img, driver: drv, chosen: "configured; firecracker runs on KVM",
			spec: spec, policy: policyFor(cfg, img)}, nil
	}
	qcfg := qemu.Config{Binary: cfg.VM.QEMU, RunDir: cfg.RunDir, TSCKHz: cfg.VM.TSCKHz}
	probe, err := qemu.ResolveAccel(ctx, cfg.VM.Accel, qcfg, spec, filepath.Join(cfg.DataDir, "accel-probe.json"), log)
	if err != nil {
		return nil, err
	}
	qcfg.Accel = probe.Accel
	drv, err := qemu.New(qcfg, log)
	if err != nil {
		return nil, err
	}
	e := &env{runDir: cfg.RunDir, img: img, driver: drv, chosen: probe.Reason, spec: spec, policy: policyFor(cfg, img)}
	if probe.Accel == qemu.AccelTCG {
		e.notBoundary = fmt.Errorf("QEMU runs under TCG: software emulation is not a security boundary (%s)", probe.Reason)
	}
	return e, nil
}

// close removes this process's run dir; it is empty once every VM stopped.
func (e *env) close(log *slog.Logger) {
	if err := os.Remove(e.runDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("run dir not empty at exit", "dir", e.runDir, "err", err)
	}
}

// reconcileRunDir removes what killed codebench processes left in the run
// dir, asking every driver this host may have run to reclaim its own.
func reconcileRunDir(ctx context.Context, cfg config.Config, log *slog.Logger) {
	var rs []sandbox.Reclaimer
	if d, err := qemu.New(qemu.Config{Binary: cfg.VM.QEMU, RunDir: cfg.RunDir, Accel: qemu.AccelTCG}, log); err == nil {
		rs = append(rs, d)
	}
	if d, err := firecrackerDriver(cfg, log); err == nil {
		rs = append(rs, d)
	}
	rep, err := reconcile.Run(ctx, reconcile.Config{RunDir: cfg.RunDir, Reclaimers: rs}, log)
	if err != nil {
		log.Warn("reconcile", "err", err)
	}
	if len(rep.Removed) > 0 {
		log.Info("reconcile: cleaned leftovers of dead processes", "dirs", len(rep.Removed), "vms_killed", len(rep.Killed))
	}
}

func firecrackerDriver(cfg config.Config, log *slog.Logger) (*firecracker.Driver, error) {
	fc := firecracker.Config{Binary: cfg.VM.Firecracker, RunDir: cfg.RunDir, VmlinuxCache: filepath.Join(cfg.DataDir, "cache", "vmlinux")}
	if j := cfg.VM.Jailer; j.Enabled {
		fc.Jailer = &firecracker.Jailer{Binary: j.Binary, UID: j.UID, GID: j.GID, ChrootBaseDir: j.Chroot, NetNS: j.NetNS}
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, err
	}
	return firecracker.New(fc, log)
}

func policyFor(cfg config.Config, img *image.Image) job.Policy {
	l := cfg.Limits
	return job.Policy{
		MaxJobBytes:  cfg.Worker.MaxJobBytes,
		MaxCodeBytes: cfg.Worker.MaxCodeBytes,
		MaxRuns:      l.MaxRuns,
		Languages:    img.LanguageNames(),
		Table:        lang.Builtin(),
		Defaults: job.Limits{WallMS: l.WallMS, CPUMS: l.CPUMS, MemoryKB: l.MemoryKB, StackKB: l.StackKB, Processes: l.Processes,
			OutputBytes: l.OutputBytes, FileSizeKB: l.FileSizeKB},
		Max: job.Limits{WallMS: l.MaxWallMS, CPUMS: l.MaxCPUMS, MemoryKB: l.MaxMemoryKB, StackKB: l.MaxStackKB, Processes: l.MaxProcesses,
			OutputBytes: l.MaxOutputBytes, FileSizeKB: l.MaxFileSizeKB},
		CompileWall: l.CompileWallMS,
	}
}

// provisioner makes pool sandboxes: template clones when the driver can.
// Its error says why clones were wanted but could not be had.
func (e *env) provisioner(ctx context.Context, cfg config.Config, log *slog.Logger) (*provision.Provisioner, error) {
	var langs []lang.Language
	for _, n := range e.img.LanguageNames() {
		if l, ok := lang.Builtin()[n]; ok {
			langs = append(langs, l)
		}
	}
	tcfg := template.Config{
		Root:      filepath.Join(cfg.DataDir, "templates"),
		ImageHash: e.img.Manifest.Hash,
		Languages: langs,
		BootLimit: cfg.VM.BootLimit,
	}
	return provision.New(ctx, e.driver, e.spec, tcfg, cfg.VM.Snapshots, log)
}

func (e *env) describe() string {
	return fmt.Sprintf("driver %s (%s), image %s", e.driver.Name(), e.chosen, e.img.Manifest.Hash[:12])
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/reconcile"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/choose"
	"github.com/codebench/codebench/internal/sandbox/firecracker"
	"github.com/codebench/codebench/internal/sandbox/gvisor"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
	"github.com/codebench/codebench/internal/sandbox/qemu"
	"github.com/codebench/codebench/internal/template"
)

// env is what every sandbox-running command needs, wired from the config.
type env struct {
	runDir string
	img    *image.Image
	driver sandbox.Driver
	// choice is how the driver was chosen: every candidate and why.
	choice *choose.Choice
	spec   sandbox.Spec
	policy job.Policy
}

// openEnv wires the sandbox for a command: the image, and the driver chosen
// among the configured candidates (choose.Choose), a driver that is no
// security boundary only when allowNoBoundary. Its sandboxes live under a run
// dir of this process's own (<run dir>/<owner>-<pid>), so a reconciler can
// tell a dead process's leftovers from a live one's; close removes it.
func openEnv(ctx context.Context, cfg config.Config, log *slog.Logger, owner string, allowNoBoundary bool) (*env, error) {
	cfg.RunDir = reconcile.OwnerDir(cfg.RunDir, owner)
	img, err := image.Resolve(cfg.DataDir, cfg.Image)
	if err != nil {
		return nil, err
	}
	spec := specFor(cfg, img)
	c, err := choose.Choose(ctx, candidates(cfg, spec, log), allowNoBoundary, false)
	if err != nil {
		return nil, fmt.Errorf("%w (CODEBENCH_DRIVER=%s)", err, cfg.VM.Driver)
	}
	return &env{runDir: cfg.RunDir, img: img, driver: c.Driver, choice: c, spec: spec, policy: policyFor(cfg, img)}, nil
}

func specFor(cfg config.Config, img *image.Image) sandbox.Spec {
	return sandbox.Spec{
		Kernel: img.KernelPath(), Initrd: img.InitrdPath(), Rootfs: img.RootfsPath(), RootDir: img.RootTreePath(),
		MemoryMB: cfg.VM.MemoryMB, VCPUs: cfg.VM.VCPUs,
	}
}

// Candidate names.
const (
	candFirecracker = "firecracker"
	candQEMUKVM     = "qemu-kvm"
	candGVisor      = "gvisor"
	candQEMUTCG     = "qemu-tcg"
)

// candidateNames are every candidate, in the order auto tries them.
var candidateNames = []string{candFirecracker, candQEMUKVM, candGVisor, candQEMUTCG}

// candidates are the drivers CODEBENCH_DRIVER allows, in order of
// preference: "auto" is a KVM microVM (Firecracker, then QEMU), then
// gVisor, then QEMU under TCG (no security boundary: only when allowed).
func candidates(cfg config.Config, spec sandbox.Spec, log *slog.Logger) []choose.Candidate {
	probeTimeout := min(cfg.VM.BootLimit, 60*time.Second)
	fc := choose.Candidate{Name: candFirecracker, Boundary: true, Probe: func(context.Context) (sandbox.Driver, string, error) {
		if !cfg.VM.Jailer.Enabled {
			if err := rootVMMRefused(cfg, "Firecracker without its jailer", "turn the jailer on (CODEBENCH_JAILER=true)"); err != nil {
				return nil, "", err
			}
		}
		d, err := firecrackerDriver(cfg, log)
		if err != nil {
			return nil, "", err
		}
		if err := d.Probe(); err != nil {
			return nil, "", err
		}
		return d, "binary and /dev/kvm present", nil
	}}
	kvm := choose.Candidate{Name: candQEMUKVM, Boundary: true, Probe: func(ctx context.Context) (sandbox.Driver, string, error) {
		qcfg, jailed, err := qemuConfig(cfg)
		if err != nil {
			return nil, "", err
		}
		if err := qemuJailRefused(cfg, qcfg, jailed); err != nil {
			return nil, "", err
		}
		if err := probeQEMU(qcfg, log); err != nil {
			return nil, "", err
		}
		want := qemu.AccelKVM
		if cfg.VM.Accel == "auto" {
			want = "auto"
		}
		r, err := qemu.ResolveAccel(ctx, want, qcfg, spec, filepath.Join(cfg.DataDir, "accel-probe.json"), log)
		if err != nil {
			return nil, "", err
		}
		if r.Accel != qemu.AccelKVM {
			return nil, "", errors.New(r.Reason)
		}
		c := qcfg
		c.Accel = qemu.AccelKVM
		d, err := qemu.New(c, log)
		return d, r.Reason + "; " + jailed, err
	}}
	gv := choose.Candidate{Name: candGVisor, Boundary: true, Probe: func(ctx context.Context) (sandbox.Driver, string, error) {
		d, err := gvisorDriver(cfg, log)
		if err != nil {
			return nil, "", err
		}
		platform, err := d.Platform()
		if err != nil {
			return nil, "", err
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		inst, err := sandbox.Boot(pctx, d, spec)
		if err != nil {
			return nil, "", fmt.Errorf("test sandbox (platform %s) did not reach the agent: %w", platform, err)
		}
		_ = inst.Stop(ctx)
		return d, fmt.Sprintf("%s: test sandbox ready in %s", d.Version(), inst.ReadyIn.Round(time.Millisecond)), nil
	}}
	tcg := choose.Candidate{Name: candQEMUTCG, Boundary: false, Probe: func(context.Context) (sandbox.Driver, string, error) {
		c, jailed, err := qemuConfig(cfg)
		if err != nil {
			return nil, "", err
		}
		if err := qemuJailRefused(cfg, c, jailed); err != nil {
			return nil, "", err
		}
		c.Accel = qemu.AccelTCG
		d, err := qemu.New(c, log)
		if err != nil {
			return nil, "", err
		}
		if err := d.Probe(); err != nil {
			return nil, "", err
		}
		return d, "QEMU under TCG, software emulation; " + jailed, nil
	}}
	switch cfg.VM.Driver {
	case "firecracker":
		return []choose.Candidate{fc}
	case "gvisor":
		return []choose.Candidate{gv}
	case "qemu":
		switch cfg.VM.Accel {
		case qemu.AccelKVM:
			return []choose.Candidate{kvm}
		case qemu.AccelTCG:
			return []choose.Candidate{tcg}
		}
		return []choose.Candidate{kvm, tcg}
	}
	if cfg.Network.Enabled {
		// gVisor sandboxes have no network device: with networking on,
		// auto chooses among the drivers that can give one.
		return []choose.Candidate{fc, kvm, tcg}
	}
	return []choose.Candidate{fc, kvm, gv, tcg}
}

// qemuConfig is the QEMU driver's config with its jail resolved (this
// binary is the jail's helper), and a line saying how QEMU runs.
func qemuConfig(cfg config.Config) (qemu.Config, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return qemu.Config{}, "", err
	}
	j, why, err := qemu.NewJail(cfg.VM.QEMUJail, cfg.VM.VMUser, exe)
	if err != nil {
		return qemu.Config{}, "", err
	}
	return qemu.Config{Binary: cfg.VM.QEMU, RunDir: cfg.RunDir, TSCKHz: cfg.VM.TSCKHz, Jail: j}, why, nil
}

// rootVMMRefused fails closed: as root, a VMM outside its jail is refused
// unless the operator accepted it by name (CODEBENCH_ALLOW_ROOT_VMM). how
// says what would jail it.
func rootVMMRefused(cfg config.Config, what, how string) error {
	if os.Geteuid() != 0 || cfg.VM.AllowRootVMM {
		return nil
	}
	return fmt.Errorf("refused: %s would run as root; %s, or accept a root VMM with CODEBENCH_ALLOW_ROOT_VMM=true", what, how)
}

// qemuJailRefused is rootVMMRefused for QEMU without its jail (why says
// why it has none).
func qemuJailRefused(cfg config.Config, qcfg qemu.Config, why string) error {
	if qcfg.Jail != nil {
		return nil
	}
	return rootVMMRefused(cfg, "QEMU unjailed ("+why+")",
		"create its user (scripts/install-deps.sh makes codebench-vm) and set CODEBENCH_QEMU_JAIL=auto or on")
}

// probeQEMU checks, before any test boot, that QEMU can run as configured
// (present, and new enough for its jail).
func probeQEMU(qcfg qemu.Config, log *slog.Logger) error {
	qcfg.Accel = qemu.AccelTCG
	d, err := qemu.New(qcfg, log)
	if err != nil {
		return err
	}
	return d.Probe()
}

// gvisorDriver is the gVisor driver; as root, each sandbox gets a host
// cgroup with limits where the host has one to give.
func gvisorDriver(cfg config.Config, log *slog.Logger) (*gvisor.Driver, error) {
	gcfg := gvisor.Config{Binary: cfg.VM.Runsc, RunDir: cfg.RunDir, Platform: cfg.VM.GVisorPlatform}
	if os.Geteuid() == 0 {
		cg, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
		if err != nil {
			log.Warn("gVisor sandboxes without a host cgroup", "err", err)
		}
		gcfg.Cgroups = cg
	}
	return gvisor.New(gcfg, log)
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
	if qcfg, _, err := qemuConfig(cfg); err == nil {
		qcfg.Accel = qemu.AccelTCG
		if d, err := qemu.New(qcfg, log); err == nil {
			rs = append(rs, d)
		}
	}
	if d, err := firecrackerDriver(cfg, log); err == nil {
		rs = append(rs, d)
	}
	if d, err := gvisorDriver(cfg, log); err == nil {
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
		if cg, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName); err == nil && cg.Version == "v1" {
			fc.Jailer.CgroupVersion = "1"
		}
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
		MaxTests:     l.MaxTests,
		Languages:    img.LanguageNames(),
		Table:        lang.Builtin(),
		Defaults: job.Limits{WallMS: l.WallMS, CPUMS: l.CPUMS, MemoryKB: l.MemoryKB, StackKB: l.StackKB, Processes: l.Processes,
			OutputBytes: l.OutputBytes, FileSizeKB: l.FileSizeKB},
		Max: job.Limits{WallMS: l.MaxWallMS, CPUMS: l.MaxCPUMS, MemoryKB: l.MaxMemoryKB, StackKB: l.MaxStackKB, Processes: l.MaxProcesses,
			OutputBytes: l.MaxOutputBytes, FileSizeKB: l.MaxFileSizeKB},
		CompileWall: l.CompileWallMS,
		MaxJobWall:  l.MaxJobWallMS,
	}
}

// provisioner makes pool sandboxes: template clones when the driver can.
// Its error says why clones were wanted but could not be had.
func (e *env) provisioner(ctx context.Context, cfg config.Config, log *slog.Logger) (*provision.Provisioner, error) {
	return e.provisionerWith(ctx, cfg, nil, log)
}

// provisionerWith is provisioner for sandboxes on net (nil: none).
func (e *env) provisionerWith(ctx context.Context, cfg config.Config, net template.Networker, log *slog.Logger) (*provision.Provisioner, error) {
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
		Network:   net,
	}
	rot := provision.Rotation{MaxAge: cfg.VM.TemplateMaxAge, MaxClones: cfg.VM.TemplateMaxClones}
	return provision.New(ctx, e.driver, e.spec, tcfg, cfg.VM.Snapshots, rot, log)
}

func (e *env) describe() string {
	return fmt.Sprintf("driver %s (%s), image %s", e.choice.Name, e.choice.Detail, e.img.Manifest.Hash[:12])
}

// logChoice says in the log which driver runs and why the others do not.
func (e *env) logChoice(log *slog.Logger) {
	for _, r := range e.choice.Reports {
		log.Info("sandbox driver candidate", "candidate", r.Name, "works", r.Works, "chosen", r.Chosen, "detail", r.Detail)
	}
}

// selectDriver sets cfg to run exactly the candidate name.
func selectDriver(cfg *config.Config, name string) error {
	switch name {
	case "auto":
		cfg.VM.Driver = name
	case candFirecracker, candGVisor:
		cfg.VM.Driver = name
	case candQEMUKVM:
		cfg.VM.Driver, cfg.VM.Accel = "qemu", qemu.AccelKVM
	case candQEMUTCG:
		cfg.VM.Driver, cfg.VM.Accel = "qemu", qemu.AccelTCG
	default:
		return fmt.Errorf("unknown driver %q (have %s, %s, %s, %s)", name, candFirecracker, candQEMUKVM, candGVisor, candQEMUTCG)
	}
	return nil
}

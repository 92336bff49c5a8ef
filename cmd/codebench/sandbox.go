package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/reconcile"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/choose"
	"github.com/codebench/codebench/internal/sandbox/drivers"
	"github.com/codebench/codebench/internal/template"
)

// env is what every sandbox-running command needs, wired from the config.
type env struct {
	runDir string
	img    *image.Image
	driver sandbox.Driver
	// choice is how the driver was chosen: every candidate and why; desc
	// is the chosen driver's description.
	choice *choose.Choice
	desc   sandbox.Descriptor
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
	img, err := image.ForLanguages(cfg.DataDir, cfg.Image, cfg.ImageLanguages)
	if err != nil {
		return nil, err
	}
	spec := drivers.Spec(img, cfg.VM)
	list := drivers.List(cfg, spec, log)
	c, err := choose.Choose(ctx, candidates(cfg, list), allowNoBoundary, false)
	if err != nil {
		return nil, fmt.Errorf("%w (CODEBENCH_DRIVER=%s)", err, cfg.VM.Driver)
	}
	desc, _ := describing(list, c.Name)
	return &env{runDir: cfg.RunDir, img: img, driver: c.Driver, choice: c, desc: desc, spec: spec, policy: policyFor(cfg, img)}, nil
}

// candidates are the drivers of list the driver setting allows, in order:
// "auto" is all of them (with networking on, those that can give a
// sandbox a network), a named driver only itself (and its accelerator).
func candidates(cfg config.Config, list []sandbox.Descriptor) []choose.Candidate {
	var out []choose.Candidate
	for _, d := range list {
		if cfg.VM.Driver == "auto" && cfg.Network.Enabled && !d.Networks {
			continue
		}
		if cfg.VM.Driver != "auto" && !d.Selects(cfg.VM.Driver, cfg.VM.Accel) {
			continue
		}
		out = append(out, choose.Candidate{Name: d.Name, Boundary: d.Boundary, Probe: d.Probe})
	}
	return out
}

// describing is the descriptor of list named name.
func describing(list []sandbox.Descriptor, name string) (sandbox.Descriptor, bool) {
	for _, d := range list {
		if d.Name == name {
			return d, true
		}
	}
	return sandbox.Descriptor{}, false
}

// driverNames are the names of list, in order.
func driverNames(list []sandbox.Descriptor) string {
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	return strings.Join(names, ", ")
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
	seen := map[string]bool{}
	for _, d := range drivers.List(cfg, sandbox.Spec{}, log) {
		if d.Reclaimer == nil || seen[d.Setting] { // one per driver, whatever its accelerators
			continue
		}
		seen[d.Setting] = true
		if r, err := d.Reclaimer(); err == nil {
			rs = append(rs, r)
		}
	}
	rep, err := reconcile.Run(ctx, reconcile.Config{RunDir: cfg.RunDir, Reclaimers: rs}, log)
	if err != nil {
		log.Warn("reconcile", "err", err)
	}
	if len(rep.Removed) > 0 {
		log.Info("reconcile: cleaned leftovers of dead processes", "dirs", len(rep.Removed), "vms_killed", len(rep.Killed))
	}
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
		// Jobs may ask for a network where it is enabled (the worker then
		// has a networked supply, or does not start).
		Network: cfg.Network.Enabled,
	}
}

// provisioner makes pool sandboxes: template clones when the driver can.
// Its error says why clones were wanted but could not be had.
func (e *env) provisioner(ctx context.Context, cfg config.Config, log *slog.Logger) (*provision.Provisioner, error) {
	return e.provisionerWith(ctx, cfg, nil, log)
}

// provisionerWith is provisioner for sandboxes on net (nil: none).
func (e *env) provisionerWith(ctx context.Context, cfg config.Config, net template.Networker, log *slog.Logger) (*provision.Provisioner, error) {
	// The warm-up runs one hello world per language of the default
	// profile the image has: forty toolchains (a JVM each for five of
	// them) would cost a template minutes under TCG for languages most
	// jobs never use; the others start colder.
	warm, _, _ := lang.Builtin().Profile(lang.ProfileDefault)
	var langs []lang.Language
	for _, n := range e.img.LanguageNames() {
		if l, ok := warm[n]; ok {
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

// selectDriver sets cfg to run exactly the driver of list named name, or
// auto.
func selectDriver(cfg *config.Config, list []sandbox.Descriptor, name string) error {
	if name == "auto" {
		cfg.VM.Driver = name
		return nil
	}
	d, ok := describing(list, name)
	if !ok {
		return fmt.Errorf("unknown driver %q (have auto, %s)", name, driverNames(list))
	}
	cfg.VM.Driver = d.Setting
	if d.Accel != "" {
		cfg.VM.Accel = d.Accel
	}
	return nil
}

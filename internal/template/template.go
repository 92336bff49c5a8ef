// Package template makes and uses snapshot templates: a VM booted once,
// warmed up (one hello-world per language, so the guest page cache holds the
// compilers), reset, and saved; pool VMs are restored clones of it, each given
// its own RNG seed and clock. Templates live next to the image under
// <data dir>/templates/<key>.<generation>/ and are keyed by everything that
// makes a saved VM unusable when it changes: image, VM size, QEMU version,
// accelerator. A key has generations: Rebuild makes a new one, so that a
// long-lived template's layout (KASLR offset, slab seeds) stops applying.
package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/sandbox"
)

// schema changes whenever what a template contains changes.
const schema = 1

// metaFile is the template's metadata, written last: a directory without it
// is partial. The rest of the layout is the sandbox package's.
const metaFile = "template.json"

// warmupLimit bounds each language's warm-up run.
const warmupLimit = 3 * time.Minute

// ErrCorrupt: a template directory does not match its metadata.
var ErrCorrupt = errors.New("template is corrupt or partial")

// Config identifies a template.
type Config struct {
	Root      string // <data dir>/templates
	ImageHash string
	Spec      sandbox.Spec
	// Version names the VMM build (e.g. "QEMU 7.2.22 tcg"): a template
	// saved by another build or accelerator is not restored. Ensure fills
	// it from the driver when empty.
	Version   string
	Languages []lang.Language // warmed up, one hello-world each
	BootLimit time.Duration
	// Network, when set, makes a template whose VM has a network device
	// (attached while it is built): the one networked clones come from.
	Network Networker
}

// Networker gives a sandbox a network interface and takes it away
// (internal/network).
type Networker interface {
	Attach(ctx context.Context, id string) (*sandbox.NIC, error)
	Detach(ctx context.Context, id string) error
}

// Meta is template.json.
type Meta struct {
	Schema      int    `json:"schema"`
	Key         string `json:"key"`
	ImageHash   string `json:"image_hash"`
	MemoryMB    int    `json:"memory_mb"`
	VCPUs       int    `json:"vcpus"`
	Version     string `json:"version"`
	StateSHA256 string `json:"state_sha256"`
	StateSize   int64  `json:"state_size"`
	Created     string `json:"created"`
	BuildMS     int64  `json:"build_ms"`
}

// Template is a saved VM ready to be cloned.
type Template struct {
	Dir  string
	Meta Meta
	gen  int64 // the generation in Dir's name
}

// Key is the template's content key.
func (c *Config) Key() string {
	h := sha256.New()
	fmt.Fprintf(h, "schema=%d\nimage=%s\nmem=%d\nvcpus=%d\nversion=%s\n", schema, c.ImageHash, c.Spec.MemoryMB, c.Spec.VCPUs, c.Version)
	for _, l := range c.Languages {
		fmt.Fprintf(h, "lang=%s\n", l.Name)
	}
	if c.Network != nil {
		fmt.Fprintf(h, "nic=%s\n", sandbox.DeviceMAC)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Ensure returns the newest usable generation of the template for cfg,
// building one when none is (missing, stale or corrupt ones are removed).
func Ensure(ctx context.Context, drv sandbox.Snapshotter, cfg Config, log *slog.Logger) (*Template, error) {
	return ensure(ctx, drv, cfg, nil, log)
}

// Rebuild makes a new generation of the template, for a template past its
// age: clones of the new one share nothing (KASLR offset, heap layout)
// with clones of the old. If another process made a generation newer than
// old meanwhile, that one is returned instead.
func Rebuild(ctx context.Context, drv sandbox.Snapshotter, cfg Config, old *Template, log *slog.Logger) (*Template, error) {
	return ensure(ctx, drv, cfg, old, log)
}

// ensure returns the newest usable generation newer than after (any, if
// after is nil), building one if there is none.
func ensure(ctx context.Context, drv sandbox.Snapshotter, cfg Config, after *Template, log *slog.Logger) (*Template, error) {
	if cfg.Version == "" {
		cfg.Version = drv.Version()
	}
	key := cfg.Key()
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		return nil, err
	}
	if t := newest(cfg.Root, key, after, nil); t != nil {
		return t, nil
	}
	// One builder per template on a host: other workers starting at the
	// same time wait for it and use its result.
	unlock, err := lockFile(ctx, filepath.Join(cfg.Root, "."+key+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t := newest(cfg.Root, key, after, log); t != nil {
		return t, nil
	}
	return build(ctx, drv, cfg, key, log)
}

// generation is one template directory: <key> (the first layout, which
// counts as generation 0) or <key>.<unix nanoseconds of its build>.
type generation struct {
	dir string
	gen int64
}

// generations lists key's template directories, newest first.
func generations(root, key string) []generation {
	var gs []generation
	if _, err := os.Stat(filepath.Join(root, key)); err == nil {
		gs = append(gs, generation{dir: filepath.Join(root, key)})
	}
	matches, _ := filepath.Glob(filepath.Join(root, key+".*"))
	for _, m := range matches {
		n, err := strconv.ParseInt(strings.TrimPrefix(filepath.Base(m), key+"."), 10, 64)
		if err == nil {
			gs = append(gs, generation{dir: m, gen: n})
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].gen > gs[j].gen })
	return gs
}

// newest loads the newest usable generation newer than after. With log
// set (the caller holds the build lock), unusable ones are removed.
func newest(root, key string, after *Template, log *slog.Logger) *Template {
	for _, g := range generations(root, key) {
		if after != nil && g.gen <= after.gen {
			return nil
		}
		t, err := Load(g.dir, key)
		if err == nil {
			t.gen = g.gen
			return t
		}
		if log != nil {
			log.Warn("template unusable; removing it", "dir", g.dir, "err", err)
			_ = os.RemoveAll(g.dir)
		}
	}
	return nil
}

// Prune removes the generations of cfg's template other than keep (a
// worker keeps the one it clones from and the one before, which another
// worker on the host may still be cloning from).
func Prune(cfg Config, keep ...*Template) error {
	key := cfg.Key()
	var errs []error
	for _, g := range generations(cfg.Root, key) {
		kept := false
		for _, k := range keep {
			kept = kept || (k != nil && k.Dir == g.dir)
		}
		if !kept {
			errs = append(errs, os.RemoveAll(g.dir))
		}
	}
	return errors.Join(errs...)
}

// Created is when the template was built.
func (t *Template) Created() time.Time {
	c, err := time.Parse(time.RFC3339, t.Meta.Created)
	if err != nil {
		return time.Time{}
	}
	return c
}

// Load checks a template directory: metadata for this key, the state's
// size and hash, and a RAM file of the VM's size.
func Load(dir, key string) (*Template, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if m.Schema != schema || m.Key != key {
		return nil, fmt.Errorf("%w: metadata for key %q schema %d", ErrCorrupt, m.Key, m.Schema)
	}
	sum, size, err := image.FileSHA256(filepath.Join(dir, sandbox.TemplateStateFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if size != m.StateSize || sum != m.StateSHA256 {
		return nil, fmt.Errorf("%w: state is %d bytes %s, metadata says %d bytes %s", ErrCorrupt, size, sum[:12], m.StateSize, m.StateSHA256[:min(12, len(m.StateSHA256))])
	}
	st, err := os.Stat(filepath.Join(dir, sandbox.TemplateMemFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if st.Size() != int64(m.MemoryMB)<<20 {
		return nil, fmt.Errorf("%w: RAM file is %d bytes, want %d", ErrCorrupt, st.Size(), int64(m.MemoryMB)<<20)
	}
	return &Template{Dir: dir, Meta: m}, nil
}

func build(ctx context.Context, drv sandbox.Snapshotter, cfg Config, key string, log *slog.Logger) (*Template, error) {
	start := time.Now()
	log.Info("building snapshot template", "key", key, "driver", drv.Name())
	staging, err := os.MkdirTemp(cfg.Root, ".staging-"+key[:8]+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)

	spec := cfg.Spec
	if cfg.Network != nil {
		// The template's VM has a device on a network of its own; its
		// interface stays down (no identity is given to it), and the
		// network goes once the VM is saved and stopped.
		spec.ID = sandbox.NewID("vm-")
		nic, err := cfg.Network.Attach(ctx, spec.ID)
		if err != nil {
			return nil, fmt.Errorf("template: network: %w", err)
		}
		spec.NIC = nic
		defer func() {
			if err := cleanup.Run(ctx, func(c context.Context) error { return cfg.Network.Detach(c, spec.ID) }); err != nil {
				log.Warn("template: detaching the build VM's network", "err", err)
			}
		}()
	}
	bootCtx, cancelBoot := context.WithTimeout(ctx, cfg.BootLimit)
	inst, err := sandbox.StartInstance(bootCtx, func(ctx context.Context) (sandbox.VM, error) {
		return drv.StartTemplate(ctx, spec, staging)
	})
	cancelBoot()
	if err != nil {
		return nil, fmt.Errorf("template: boot: %w", err)
	}
	// The warm-up compiles a program per language; each gets its own
	// generous limit (a JVM under TCG on a busy host takes a while).
	bctx, cancel := context.WithTimeout(ctx, time.Duration(len(cfg.Languages)+1)*warmupLimit)
	defer cancel()
	stopped := false
	defer func() {
		if !stopped {
			_ = cleanup.Run(ctx, inst.Stop)
		}
	}()
	// Warm-up only fills the guest's page cache with each toolchain, so
	// a language that fails it (a slow JVM on a loaded host) is logged, not
	// fatal: its first job just starts colder.
	ms := warmupLimit.Milliseconds()
	for _, l := range cfg.Languages {
		res, err := inst.Agent.Run(bctx, &agentproto.RunRequest{Language: l.Name, Code: l.Hello,
			Limits: agentproto.Limits{WallMS: ms, CPUMS: ms, CompileWallMS: ms, MemoryKB: 512 << 10, Processes: 256}}, nil)
		switch {
		case err != nil:
			return nil, fmt.Errorf("template: warm up %s: %w", l.Name, err)
		case !strings.Contains(res.Stdout, "Hello, World!"):
			log.Warn("template: warm-up did not print hello", "language", l.Name, "stdout", res.Stdout,
				"stderr", res.Stderr, "compile_output", res.CompileOutput, "run", res.Run, "compile", res.Compile)
		}
	}
	if err := inst.Agent.Reset(bctx); err != nil {
		return nil, fmt.Errorf("template: reset: %w", err)
	}
	// Quiesce: the agent sees the host go away and waits for the next
	// connection, which is where every clone wakes up.
	_ = inst.Agent.Close()
	time.Sleep(200 * time.Millisecond)
	stopped = true
	if err := drv.Snapshot(bctx, inst.VM, staging); err != nil {
		return nil, fmt.Errorf("template: snapshot: %w", err)
	}
	sum, size, err := image.FileSHA256(filepath.Join(staging, sandbox.TemplateStateFile))
	if err != nil {
		return nil, err
	}
	m := Meta{
		Schema: schema, Key: key, ImageHash: cfg.ImageHash, MemoryMB: cfg.Spec.MemoryMB, VCPUs: cfg.Spec.VCPUs,
		Version: cfg.Version, StateSHA256: sum, StateSize: size,
		Created: time.Now().UTC().Format(time.RFC3339), BuildMS: time.Since(start).Milliseconds(),
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	// The metadata is written last: a directory without it is partial.
	if err := os.WriteFile(filepath.Join(staging, metaFile), b, 0o644); err != nil {
		return nil, err
	}
	gen := time.Now().UnixNano()
	dir := filepath.Join(cfg.Root, key+"."+strconv.FormatInt(gen, 10))
	if err := os.Rename(staging, dir); err != nil {
		return nil, err
	}
	log.Info("snapshot template ready", "key", key, "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return &Template{Dir: dir, Meta: m, gen: gen}, nil
}

// Clone restores a VM from t and gives it its own identity. The returned
// instance's ReadyIn is restore to ready, identity included.
func (t *Template) Clone(ctx context.Context, drv sandbox.Snapshotter, spec sandbox.Spec) (*sandbox.Instance, error) {
	start := time.Now()
	inst, err := sandbox.StartInstance(ctx, func(ctx context.Context) (sandbox.VM, error) {
		return drv.Restore(ctx, spec, t.Dir)
	})
	if err != nil {
		return nil, err
	}
	if err := inst.Identify(ctx, spec.NIC); err != nil {
		return nil, errors.Join(fmt.Errorf("template: clone identity: %w", err), inst.Stop(ctx))
	}
	inst.ReadyIn = time.Since(start)
	return inst, nil
}

// lockFile takes an exclusive flock on path, waiting (and polling ctx) while
// another process holds it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("template: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("template: waiting for another build: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

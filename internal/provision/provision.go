// Package provision makes ready sandboxes for the warm pool: clones of a
// warmed-up snapshot template when the driver can make them, cold boots
// otherwise. Each is a Member: a sandbox whose agent answered, with a health
// check that costs no guest round trip while it is fresh.
package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
)

// Rotation replaces the template in the background once it is MaxAge old
// or has been cloned MaxClones times by this process (zero: no limit), so
// that what one clone may learn of the guest's layout (its KASLR offset,
// its allocators' state) stops applying to later clones. Clones keep coming
// from the old template until the new one is ready.
type Rotation struct {
	MaxAge    time.Duration
	MaxClones int
}

// rotationRetry is how long a failed rebuild waits before the next try.
const rotationRetry = time.Minute

// Provisioner makes members.
type Provisioner struct {
	driver    sandbox.Driver
	spec      sandbox.Spec
	bootLimit time.Duration
	log       *slog.Logger
	// snap and tcfg are set when members are clones.
	snap sandbox.Snapshotter
	tcfg template.Config
	rot  Rotation
	// net, when set, gives every member a network of its own.
	net template.Networker

	obs     Observer // nil: nobody
	now     func() time.Time
	rebuild func(ctx context.Context, old *template.Template) (*template.Template, error)

	mu         sync.Mutex // guards the fields below
	tmpl       *template.Template
	prev       *template.Template // kept on disk: other workers may clone it still
	clones     int                // made from tmpl
	rebuilding bool
	retryAt    time.Time

	ctx    context.Context // the rotation's: ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the rotation goroutine
}

// New prepares the template (building it if needed) when snapshots are
// wanted and the driver can make them, and says in the log which it chose.
// It returns the reason clones are not used when they were wanted but could
// not be had (the provisioner then cold-boots); nil otherwise.
func New(ctx context.Context, drv sandbox.Driver, spec sandbox.Spec, tcfg template.Config, snapshots bool, rot Rotation, log *slog.Logger) (*Provisioner, error) {
	p := &Provisioner{driver: drv, spec: spec, bootLimit: tcfg.BootLimit, log: log, rot: rot, now: time.Now, net: tcfg.Network}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if !snapshots {
		log.Info("provision: snapshots disabled by configuration; cold booting pool sandboxes")
		return p, nil
	}
	snap, err := sandbox.Snapshots(drv)
	if err != nil {
		log.Info("provision: cold booting pool sandboxes", "driver", drv.Name(), "reason", err)
		return p, nil
	}
	tcfg.Spec = spec
	t, err := template.Ensure(ctx, snap, tcfg, log)
	if err != nil {
		log.Warn("provision: snapshot template failed; cold booting pool sandboxes", "err", err)
		return p, err
	}
	p.snap, p.tmpl, p.tcfg = snap, t, tcfg
	p.rebuild = func(ctx context.Context, old *template.Template) (*template.Template, error) {
		return template.Rebuild(ctx, snap, tcfg, old, log)
	}
	log.Info("provision: sandboxes are restored from a snapshot template", "template", t.Dir,
		"max_age", rot.MaxAge, "max_clones", rot.MaxClones)
	return p, nil
}

// Close stops a template rebuild in progress and waits for it.
func (p *Provisioner) Close() {
	p.cancel()
	p.wg.Wait()
}

// Template is the template members are cloned from; nil when they are
// cold-booted.
func (p *Provisioner) Template() *template.Template {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tmpl
}

// cloned counts a clone of t and starts a rebuild when the template is due
// and none is running (or failed too recently).
func (p *Provisioner) cloned(t *template.Template) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t != p.tmpl {
		return // a clone of the template just replaced
	}
	p.clones++
	now := p.now()
	due := (p.rot.MaxAge > 0 && now.Sub(t.Created()) >= p.rot.MaxAge) ||
		(p.rot.MaxClones > 0 && p.clones >= p.rot.MaxClones)
	if !due || p.rebuilding || now.Before(p.retryAt) {
		return
	}
	p.rebuilding = true
	p.log.Info("provision: rebuilding the snapshot template in the background", "template", t.Dir,
		"age", now.Sub(t.Created()).Round(time.Second), "clones", p.clones)
	p.wg.Add(1)
	go func() { // owned by the provisioner: Close cancels and waits
		defer p.wg.Done()
		next, err := p.rebuild(p.ctx, t)
		p.swap(t, next, err)
	}()
}

// swap makes next the template clones come from, or schedules a retry.
func (p *Provisioner) swap(old, next *template.Template, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebuilding = false
	if err != nil {
		p.retryAt = p.now().Add(rotationRetry)
		if p.ctx.Err() == nil {
			p.log.Warn("provision: template rebuild failed; clones still come from the old one", "err", err, "retry_in", rotationRetry)
		}
		return
	}
	if p.tmpl != old {
		return
	}
	p.prev, p.tmpl, p.clones = old, next, 0
	p.log.Info("provision: new snapshot template in use", "template", next.Dir, "previous", old.Dir)
	if p.tcfg.Root != "" {
		if err := template.Prune(p.tcfg, p.tmpl, p.prev); err != nil {
			p.log.Warn("provision: pruning old templates", "err", err)
		}
	}
}

// reload picks up the newest template after the one in use went away
// (another worker on the host rotated and pruned it).
func (p *Provisioner) reload(ctx context.Context, gone *template.Template) {
	t, err := template.Ensure(ctx, p.snap, p.tcfg, p.log)
	if err != nil {
		p.log.Warn("provision: reloading the snapshot template", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tmpl == gone {
		p.tmpl, p.clones = t, 0
		p.log.Info("provision: template in use was removed; now cloning another", "template", t.Dir)
	}
}

// Driver is the driver members run on.
func (p *Provisioner) Driver() sandbox.Driver { return p.driver }

// Observer is told of pool members started and stopped (metrics).
type Observer interface {
	SandboxStarted(kind string, took time.Duration) // kind: restore or boot
	SandboxFailed(kind string)
	SandboxStopped()
}

// Kinds of start.
const (
	KindRestore = "restore"
	KindBoot    = "boot"
)

// Observe sets the observer of the members Provision makes.
func (p *Provisioner) Observe(o Observer) { p.obs = o }

// Provision makes one ready member within the boot limit.
func (p *Provisioner) Provision(ctx context.Context) (*Member, error) {
	kind := KindBoot
	if p.Template() != nil {
		kind = KindRestore
	}
	fail := func(err error) (*Member, error) {
		if p.obs != nil {
			p.obs.SandboxFailed(kind)
		}
		return nil, err
	}
	spec := p.spec
	var detach func(context.Context) error
	if p.net != nil {
		spec.ID = sandbox.NewID("vm-")
		nic, err := p.net.Attach(ctx, spec.ID)
		if err != nil {
			return fail(fmt.Errorf("pool: network: %w", err))
		}
		spec.NIC = nic
		detach = func(ctx context.Context) error { return p.net.Detach(ctx, spec.ID) }
	}
	inst, err := p.instance(ctx, spec)
	if err != nil {
		if detach != nil {
			err = errors.Join(err, cleanup.Run(ctx, detach))
		}
		return fail(err)
	}
	m := &Member{Instance: inst, ready: time.Now(), detach: detach}
	if p.obs != nil {
		p.obs.SandboxStarted(kind, inst.ReadyIn)
		m.stopped = p.obs.SandboxStopped
	}
	return m, nil
}

// Instance makes one ready sandbox, a clone or a cold boot, within the boot
// limit.
func (p *Provisioner) Instance(ctx context.Context) (*sandbox.Instance, error) {
	if p.net != nil {
		return nil, errors.New("pool: a networked sandbox is made by Provision, which detaches it when it stops")
	}
	return p.instance(ctx, p.spec)
}

func (p *Provisioner) instance(ctx context.Context, spec sandbox.Spec) (*sandbox.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, p.bootLimit)
	defer cancel()
	var inst *sandbox.Instance
	var err error
	t := p.Template()
	if t != nil {
		inst, err = t.Clone(ctx, p.snap, spec)
		if errors.Is(err, fs.ErrNotExist) {
			p.reload(ctx, t)
		}
	} else {
		inst, err = sandbox.Boot(ctx, p.driver, spec)
		if err == nil && spec.NIC != nil {
			// A clone gets its network with its identity; a cold boot
			// gets it here.
			if err = inst.Identify(ctx, spec.NIC); err != nil {
				err = errors.Join(fmt.Errorf("pool: network: %w", err), cleanup.Run(ctx, inst.Stop))
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if t != nil {
		p.cloned(t)
	}
	p.log.Debug("pool: sandbox ready", "vm_id", inst.VM.ID(), "ready_in", inst.ReadyIn, "restored", t != nil)
	return inst, nil
}

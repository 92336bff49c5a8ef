// Package provision makes ready sandboxes for the warm pool: clones of a
// warmed-up snapshot template when the driver can make them, cold boots
// otherwise. Each is a Member: a sandbox whose agent answered, with a health
// check that costs no guest round trip while it is fresh.
package provision

import (
	"context"

	"log/slog"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
)

// Provisioner makes members.
type Provisioner struct {
	driver    sandbox.Driver
	spec      sandbox.Spec
	bootLimit time.Duration
	log       *slog.Logger
	// snap and tmpl are set when members are clones.
	snap sandbox.Snapshotter
	tmpl *template.Template
}

// New prepares the template (building it if needed) when snapshots are
// wanted and the driver can make them, and says in the log which it chose.
// It returns the reason clones are not used when they were wanted but could
// not be had (the provisioner then cold-boots); nil otherwise.
func New(ctx context.Context, drv sandbox.Driver, spec sandbox.Spec, tcfg template.Config, snapshots bool, log *slog.Logger) (*Provisioner, error) {
	p := &Provisioner{driver: drv, spec: spec, bootLimit: tcfg.BootLimit, log: log}
	if !snapshots {
		log.Info("pool: snapshots disabled by configuration; cold booting pool sandboxes")
		return p, nil
	}
	snap, err := sandbox.Snapshots(drv)
	if err != nil {
		log.Info("pool: cold booting pool sandboxes", "driver", drv.Name(), "reason", err)
		return p, nil
	}
	tcfg.Spec = spec
	t, err := template.Ensure(ctx, snap, tcfg, log)
	if err != nil {
		log.Warn("pool: snapshot template failed; cold booting pool sandboxes", "err", err)
		return p, err
	}
	p.snap, p.tmpl = snap, t
	log.Info("pool: sandboxes are restored from a snapshot template", "template", t.Dir)
	return p, nil
}

// Template is the template members are cloned from; nil when they are
// cold-booted.
func (p *Provisioner) Template() *template.Template { return p.tmpl }

// Driver is the driver members run on.
func (p *Provisioner) Driver() sandbox.Driver { return p.driver }

// Provision makes one ready member within the boot limit.
func (p *Provisioner) Provision(ctx context.Context) (*Member, error) {
	inst, err := p.Instance(ctx)
	if err != nil {
		return nil, err
	}
	return &Member{Instance: inst, ready: time.Now()}, nil
}

// Instance makes one ready sandbox, a clone or a cold boot, within the boot
// limit.
func (p *Provisioner) Instance(ctx context.Context) (*sandbox.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, p.bootLimit)
	defer cancel()
	var inst *sandbox.Instance
	var err error
	if p.tmpl != nil {
		inst, err = p.tmpl.Clone(ctx, p.snap, p.spec)
	} else {
		inst, err = sandbox.Boot(ctx, p.driver, p.spec)
	}
	if err != nil {
		return nil, err
	}
	p.log.Debug("pool: sandbox ready", "vm_id", inst.VM.ID(), "ready_in", inst.ReadyIn, "restored", p.tmpl != nil)
	return inst, nil
}

package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
)

// Launcher makes pool members: clones of a warmed-up template when the driver
// supports snapshots, cold boots otherwise.
type Launcher struct {
	Driver    sandbox.Driver
	Spec      sandbox.Spec
	BootLimit time.Duration
	// Template is nil when members are cold-booted; TemplateErr then says
	// why, if building it failed.
	Template    *template.Template
	TemplateErr error
	log         *slog.Logger
}

// Versioned drivers name their VMM build, for template keys.
type Versioned interface{ Version() string }

// NewLauncher prepares the template (building it if needed) when snapshots
// are wanted and the driver has them, and says in the log which it chose.
func NewLauncher(ctx context.Context, drv sandbox.Driver, spec sandbox.Spec, tcfg template.Config, snapshots bool, log *slog.Logger) *Launcher {
	l := &Launcher{Driver: drv, Spec: spec, BootLimit: tcfg.BootLimit, log: log}
	snap, ok := drv.(template.Driver)
	var cannot error
	if c, isChecker := drv.(interface{ CanSnapshot() error }); ok && isChecker {
		cannot = c.CanSnapshot()
	}
	switch {
	case !snapshots:
		log.Info("pool: snapshots disabled by configuration; cold booting pool VMs")
	case !ok:
		log.Info("pool: driver has no snapshot support; cold booting pool VMs", "driver", drv.Name())
	case cannot != nil:
		log.Info("pool: driver cannot restore snapshots as configured; cold booting pool VMs", "driver", drv.Name(), "reason", cannot)
	default:
		if v, ok := drv.(Versioned); ok {
			tcfg.Version = v.Version()
		}
		tcfg.Spec = spec
		t, err := template.Ensure(ctx, snap, tcfg, log)
		if err != nil {
			l.TemplateErr = err
			log.Warn("pool: snapshot template failed; cold booting pool VMs", "err", err)
			break
		}
		l.Template = t
		log.Info("pool: VMs are restored from a snapshot template", "template", t.Dir)
	}
	return l
}

// Launch makes one ready member.
func (l *Launcher) Launch(ctx context.Context) (*Sandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, l.BootLimit)
	defer cancel()
	var inst *sandbox.Instance
	var err error
	if l.Template != nil {
		inst, err = l.Template.Clone(ctx, l.Driver.(template.Driver), l.Spec)
	} else {
		inst, err = sandbox.Launch(ctx, l.Driver, l.Spec)
	}
	if err != nil {
		return nil, err
	}
	l.log.Debug("pool: vm ready", "vm_id", inst.VM.ID(), "ready_in", inst.BootTime, "restored", l.Template != nil)
	return &Sandbox{Instance: inst, Ready: time.Now()}, nil
}

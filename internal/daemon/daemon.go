// Package daemon is the worker process assembled: a warm pool of sandboxes
// from a provisioner, the worker that consumes jobs into it, and, where
// jobs may ask for a network, the networked supply. cmd/codebench wires it
// from the configuration ("codebench worker"), and bench starts one for
// each driver it compares.
package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/pool"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/worker"
)

// Metrics is what the daemon reports into (telemetry.Metrics).
type Metrics interface {
	worker.Observer
	provision.Observer
	WatchPool(stats func() (ready, booting, size int))
}

// Config is the daemon's wiring.
type Config struct {
	// Worker is the worker's configuration; the daemon sets its Ready,
	// Observer and Networked.
	Worker              worker.Config
	PoolSize, PoolBoots int
	Policy              job.Policy
	Dial                worker.Dial
	// Prov makes the warm pool's sandboxes (template clones where the
	// driver can, else cold starts).
	Prov *provision.Provisioner
	// Networked, when set, makes sandboxes for jobs that ask for a
	// network; nil: they may not.
	Networked *provision.Networked
	// Metrics, when set, hears the worker, the provisioners and the pool.
	Metrics Metrics
}

// Daemon is a worker and its warm pool.
type Daemon struct {
	Worker *worker.Worker
	Pool   *pool.Pool[*provision.Member]
	prov   *provision.Provisioner
	net    *provision.Networked
	log    *slog.Logger
}

// Start starts the pool filling and makes the worker; the caller runs
// Worker.Run, then Stop.
func Start(cfg Config, log *slog.Logger) *Daemon {
	wcfg := cfg.Worker
	if cfg.Metrics != nil {
		cfg.Prov.Observe(cfg.Metrics)
		if cfg.Networked != nil {
			cfg.Networked.Prov.Observe(cfg.Metrics)
		}
		wcfg.Observer = cfg.Metrics
	}
	p := pool.New(pool.Config{Size: cfg.PoolSize, MaxBoots: cfg.PoolBoots}, cfg.Prov.Provision, log, nil)
	if cfg.Metrics != nil {
		cfg.Metrics.WatchPool(func() (int, int, int) {
			st := p.Stats()
			return st.Ready, st.Booting, cfg.PoolSize
		})
	}
	p.Start()
	wcfg.Ready = p.Ready()
	if cfg.Networked != nil {
		wcfg.Networked = worker.FromPool(cfg.Networked)
	}
	w := worker.New(wcfg, cfg.Policy, worker.FromPool(p), cfg.Dial, log)
	return &Daemon{Worker: w, Pool: p, prov: cfg.Prov, net: cfg.Networked, log: log}
}

// Readiness is /readyz: connected and consuming, and a sandbox ready.
func (d *Daemon) Readiness() error {
	if d == nil {
		return errors.New("starting: the pool is being prepared")
	}
	if !d.Worker.Consuming() {
		return errors.New("not consuming: no broker connection, or the pool is not ready yet")
	}
	if d.Pool.Stats().Ready < 1 {
		return errors.New("no sandbox ready in the pool")
	}
	return nil
}

// Stop stops the pool and the provisioners, then takes the network down.
func (d *Daemon) Stop() {
	d.Pool.Stop()
	d.prov.Close()
	if d.net != nil {
		ctx, cancel := cleanup.Detached(context.Background(), cleanup.DefaultBound)
		defer cancel()
		if err := d.net.Close(ctx); err != nil {
			d.log.Warn("network: teardown", "err", err)
		}
	}
}

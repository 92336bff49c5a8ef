package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/e2b"
	"github.com/codebench/codebench/internal/pool"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
	"github.com/codebench/codebench/internal/sandboxes"
)

// sandboxesDriver is the driver long-lived sandboxes run on.
const sandboxesDriver = "gvisor"

// sandboxesShutdown bounds pausing every running sandbox at a stop.
const sandboxesShutdown = 2 * time.Minute

// newSandboxHost is the sandbox manager over a warm pool of prov's
// sandboxes; stop stops the pool (after the manager's Close).
func newSandboxHost(spec sandbox.Spec, pauser sandbox.Pauser, prov *provision.Provisioner, sc config.Sandboxes, dir string, log *slog.Logger) (*sandboxes.Manager, []string, func(), error) {
	var usage func(string) (time.Duration, int64, error)
	if cg, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName); err == nil {
		usage = func(vmID string) (time.Duration, int64, error) {
			cpu, err := cg.CPUUsage(vmID)
			if err != nil {
				return 0, 0, err
			}
			mem, err := cg.MemoryUsage(vmID)
			return cpu, mem, err
		}
	} else {
		log.Warn("sandboxes: no host cgroup to read metrics from: getMetrics answers none", "err", err)
	}
	p := pool.New(pool.Config{Size: sc.Pool, MaxBoots: max(1, sc.Pool)}, prov.Provision, log, nil)
	p.Start()
	m, reclaimed, err := sandboxes.New(sandboxes.Config{
		Dir: dir, Spec: spec, Pauser: pauser, Usage: usage,
		Take: func(ctx context.Context) (sandboxes.Warm, error) {
			mem, err := p.Take(ctx)
			if err != nil {
				return sandboxes.Warm{}, err
			}
			return sandboxes.Warm{VM: mem.VM, Agent: mem.Agent, Stop: mem.Stop}, nil
		},
		Max: sc.Max, MaxRunning: sc.MaxRunning, KeyRunning: sc.KeyRunning, KeyPaused: sc.KeyPaused, KeyMemoryMB: sc.KeyMemoryMB,
		HomeMB: sc.HomeMB, DefaultTimeout: sc.DefaultTimeout, MaxTimeout: sc.MaxTimeout,
	}, log)
	if err != nil {
		p.Stop()
		return nil, nil, nil, err
	}
	return m, reclaimed, p.Stop, nil
}

// sandboxesCmd is "codebench sandboxes": the sandbox host that the E2B SDK
// drives (docs/SANDBOXES.md).
func sandboxesCmd(fs *flag.FlagSet) commandFunc {
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("sandboxes takes flags only, not %q", args)
		}
		// envd reaches the data plane over a container's stdio, and pause
		// is runsc's checkpoint: gVisor, whatever the worker would choose.
		switch cfg.VM.Driver {
		case "auto":
			cfg.VM.Driver = sandboxesDriver
		case sandboxesDriver:
		default:
			return fmt.Errorf("long-lived sandboxes run on gVisor in this release, not CODEBENCH_DRIVER=%s (docs/SANDBOXES.md)", cfg.VM.Driver)
		}
		reconcileRunDir(ctx, cfg, log)
		e, err := openEnv(ctx, cfg, log, "s", cfg.VM.AllowTCG)
		if err != nil {
			return fmt.Errorf("refusing to host sandboxes: %w", err)
		}
		defer e.close(log)
		e.logChoice(log)
		pauser, err := sandbox.Pausing(e.driver)
		if err != nil {
			log.Warn("sandboxes cannot be paused with this driver: pause is refused, and a stop kills them", "err", err)
		}
		dir := cfg.Sandboxes.Dir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "sandboxes")
		}
		prov, _ := e.provisioner(ctx, cfg, log)
		defer prov.Close()
		m, reclaimed, stopPool, err := newSandboxHost(e.spec, pauser, prov, cfg.Sandboxes, dir, log)
		if err != nil {
			return err
		}
		defer stopPool()
		running, paused := m.Counts()
		log.Info("sandboxes: state loaded", "paused", paused, "running", running, "reclaimed", len(reclaimed), "dir", dir)
		m.Start()
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sandboxesShutdown)
			defer cancel()
			m.Close(sctx)
			log.Info("sandboxes: stopped; running sandboxes were paused")
		}()

		var keys []string
		if cfg.Sandboxes.APIKeys != "" {
			keys = strings.Split(cfg.Sandboxes.APIKeys, ",")
		}
		ln, err := net.Listen("tcp", cfg.Sandboxes.Addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: e2b.New(m, keys, log), ReadHeaderTimeout: 30 * time.Second}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		log.Info("sandboxes: serving the E2B API", "addr", ln.Addr().String(), "env", e.describe(),
			"sdk", fmt.Sprintf("E2B_API_URL=http://%[1]s E2B_SANDBOX_URL=http://%[1]s", ln.Addr().String()))
		select {
		case <-ctx.Done():
		case err := <-served:
			return err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.Warn("sandboxes: shutdown", "err", err)
		}
		_ = srv.Close() // streams still open (a process's output) end here
		<-served
		return nil
	}
}

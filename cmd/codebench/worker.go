package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/daemon"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/telemetry"
	"github.com/codebench/codebench/internal/worker"
)

func queueConfig(cfg config.Config) broker.Config {
	return broker.Config{
		URL: cfg.Worker.RabbitURL, Topology: cfg.Worker.Topology,
		CAFile: cfg.Worker.RabbitCAFile, CertFile: cfg.Worker.RabbitCertFile, KeyFile: cfg.Worker.RabbitKeyFile,
		Prefetch: cfg.Worker.Concurrency, StatusExpires: cfg.Worker.StatusExpires,
		Quorum: cfg.Worker.Quorum, DeliveryLimit: cfg.Worker.DeliveryLimit,
	}
}

func workerCmd(fs *flag.FlagSet) commandFunc {
	printConfig := fs.Bool("print-config", false, "print the effective configuration (secrets masked) and exit")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("worker takes flags only, not %q", args)
		}
		if *printConfig {
			return config.Print(os.Stdout, cfg)
		}
		qcfg := queueConfig(cfg)
		// Before anything slow (a KVM probe, a template build): the topology,
		// so that jobs published meanwhile are kept, not dropped as unroutable.
		// A broker that is down now is retried by the worker's loop.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := broker.DeclareTopology(dctx, qcfg); err != nil {
			log.Warn("broker not reachable at start; will retry", "err", err)
		} else {
			log.Info("broker topology declared", "queue", queue.JobsQueue)
		}
		cancel()
		reconcileRunDir(ctx, cfg, log)
		e, err := openEnv(ctx, cfg, log, "w", cfg.VM.AllowTCG)
		if err != nil {
			return fmt.Errorf("refusing to serve untrusted jobs: %w", err)
		}
		e.logChoice(log)
		if !e.desc.Boundary {
			log.Warn("RUNNING WITHOUT A SECURITY BOUNDARY: " + e.choice.Name + " is not one (software emulation); do not serve untrusted code this way")
		}
		log.Info("worker starting", "env", e.describe(), "concurrency", cfg.Worker.Concurrency, "pool_size", cfg.Worker.PoolSize)

		// Metrics and health from here on: /healthz answers while the pool
		// (and its template) is being built, /readyz only once jobs are served.
		metrics := telemetry.New(e.img.LanguageNames())
		var serving atomic.Pointer[daemon.Daemon]
		if cfg.MetricsAddr != "" {
			ts, err := telemetry.Listen(cfg.MetricsAddr, metrics, func() error { return serving.Load().Readiness() }, log)
			if err != nil {
				return err
			}
			defer ts.Stop()
		}
		reclaimNetwork(ctx, e, cfg, log)
		srv, err := newServerObserved(ctx, e, cfg, qcfg, metrics, log)
		if err != nil {
			return fmt.Errorf("refusing to serve untrusted jobs: %w", err)
		}
		serving.Store(srv)
		defer func() {
			log.Info("stopping pool")
			srv.Stop()
			e.close(log)
			log.Info("worker stopped")
		}()
		w := srv.Worker

		if cfg.DebugAddr != "" {
			stopDebug, err := serveDebug(cfg.DebugAddr, log)
			if err != nil {
				return err
			}
			defer stopDebug()
		}

		// A second SIGINT/SIGTERM during the drain skips the grace period.
		go func() {
			<-ctx.Done()
			second := make(chan os.Signal, 1)
			signal.Notify(second, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(second)
			select {
			case <-second:
				w.Abort()
			case <-time.After(cfg.Worker.Grace + time.Minute):
			}
		}()
		return w.Run(ctx)
	}
}

// newServer is the daemon for the config: its warm pool's provisioner
// (template clones where the driver can, else cold starts), the networked
// supply where networking is enabled, and the worker; the caller runs its
// worker and then stops it.
func newServer(ctx context.Context, e *env, cfg config.Config, qcfg broker.Config, log *slog.Logger) (*daemon.Daemon, error) {
	return newServerObserved(ctx, e, cfg, qcfg, nil, log)
}

// newServerObserved is newServer reporting into metrics (nil: none). It
// fails only when networking is enabled and cannot be had.
func newServerObserved(ctx context.Context, e *env, cfg config.Config, qcfg broker.Config, metrics *telemetry.Metrics, log *slog.Logger) (*daemon.Daemon, error) {
	replyTo, err := queue.NewReplyPolicy(cfg.Worker.ReplyToPattern)
	replyTo.APIUser = cfg.APIUser()
	if err != nil {
		return nil, err
	}
	var nw *provision.Networked
	if cfg.Network.Enabled {
		if nw, err = e.networked(ctx, cfg, log); err != nil {
			return nil, err
		}
	}
	prov, _ := e.provisioner(ctx, cfg, log) // without a template it cold-boots, and has said why
	dc := daemon.Config{
		Worker: worker.Config{
			Concurrency: cfg.Worker.Concurrency, PoolWait: cfg.Worker.PoolWait,
			Grace: cfg.Worker.Grace, ReconnectMax: cfg.Worker.ReconnectMax,
			MaxStatusBytes: cfg.Worker.MaxStatusBytes, MaxRequeues: cfg.Worker.MaxRequeues,
			StatusQueueWithReply: cfg.Worker.StatusQueueWithReply, ReplyTo: replyTo,
		},
		PoolSize: cfg.Worker.PoolSize, PoolBoots: cfg.Worker.PoolBoots, Policy: e.policy,
		Dial: func(ctx context.Context) (worker.Session, error) {
			c, err := broker.Dial(ctx, qcfg)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return c, nil
		},
		Prov: prov, Networked: nw,
	}
	if metrics != nil {
		dc.Metrics = metrics
	}
	return daemon.Start(dc, log), nil
}

// serveDebug serves expvar (with the goroutine count) and pprof on a
// loopback address, for the soak test and for people. The returned func
// stops the server and waits for it.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
	mux := http.NewServeMux()
	mux.Handle("/debug/vars", expvar.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug endpoint: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug endpoint", "err", err)
		}
	}()
	log.Info("debug endpoint", "addr", "http://"+addr+"/debug/vars")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

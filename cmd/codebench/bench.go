package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/apinode"
	"github.com/codebench/codebench/internal/bench"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/e2b"
	"github.com/codebench/codebench/internal/e2bsdk"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/drivers"
)

// benchCmd measures the drivers (internal/bench) with this configuration's
// wiring: each driver's environment, and a worker and an API node of the
// benchmark's own on each.
func benchCmd(fs *flag.FlagSet) commandFunc {
	drivers := fs.String("drivers", "", "comma-separated drivers to compare, by the names doctor prints (default: the one the worker would use)")
	n := fs.Int("n", 20, "jobs in each load run")
	conc := fs.String("c", "1,2", "jobs in flight at once: one load run for each")
	poolSize := fs.Int("pool", 2, "sandboxes alive at once when measuring start, restore and memory; the pool's size in load runs (at least the concurrency)")
	rounds := fs.Int("rounds", 2, "rounds of -pool starts (and restores)")
	local := fs.Bool("local", false, "load through the pool directly instead of through RabbitMQ and a worker")
	asJSON := fs.Bool("json", false, "print JSON")
	stream := fs.Bool("stream", false, "also measure hello.c jobs that stream their output, against the same jobs without, through the pool at concurrency 1")
	tests := fs.Int("tests", 0, "only the cost of a test: -n jobs of this many tests (its anatomy in the agent, against gVisor's own run of the same binaries and natively), a Python hello world's run in a fresh sandbox, judged tests per second")
	apiBurst := fs.Int("api", 0, "also measure the HTTP API in front of a worker: -n wait=true submissions, then a burst of this many, polled at 200/s (0: none)")
	python := fs.Bool("python", true, "also a Python hello world load at concurrency 1, with its native baseline")
	anatomy := fs.Int("anatomy", 5, "hello.c jobs, one sandbox each, one at a time, whose CPU is read by phase and process (0: none)")
	languages := fs.Int("languages", 0, "only the languages: each language's hello world this many times in sandboxes of the default driver beside natively on the host, and each language profile's image size and build time")
	interactive := fs.Int("interactive", 0, "only interactive problems: this many jobs of each kind (guess the number with an interactor vs on a plain test with a checker; 10,000 question/answer rounds vs one, and natively)")
	before := fs.String("before-image", "", "with --tests: measure this image (a hash under images/, e.g. one an earlier commit built) beside the current one, interleaved job by job, and hold the current one to its tests per second")
	sbx := fs.Int("sandboxes", 0, "only long-lived sandboxes, through the unmodified E2B SDK: this many creates a second apart and pause and resume cycles, a burst of 10 creates, commands, then --idle running and --paused paused sandboxes held for their memory and disk (needs Node.js 20.18 or newer)")
	idle := fs.Int("idle", 100, "with --sandboxes: idle running sandboxes held at once (0: none)")
	paused := fs.Int("paused", 1000, "with --sandboxes: paused sandboxes held at once (0: none)")
	loadOnly := fs.Bool("load-only", false, "only a load run through RabbitMQ against a running worker (no sandboxes of its own: for soak tests); -c is one number")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if *loadOnly {
			c, err := strconv.Atoi(*conc)
			if err != nil {
				return fmt.Errorf("-c with --load-only: %w", err)
			}
			r, err := bench.LoadBrokerProgram(ctx, queueConfig(cfg), bench.HelloCProgram, *n, c)
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(os.Stdout).Encode(r)
			}
			fmt.Printf("%d jobs, %d at once: %.1f s, %.2f jobs/s\n  %s\n  %s\n", r.N, r.Concurrency, r.Seconds, r.JobsPerSec, r.EndToEnd, r.HostOverhead)
			return nil
		}
		if *languages > 0 {
			return benchLanguages(ctx, cfg, *languages, *asJSON)
		}
		if *interactive > 0 {
			return benchInteractive(ctx, cfg, *interactive, *asJSON)
		}
		if *tests > 0 {
			return benchTests(ctx, cfg, *tests, *n, *before, *asJSON)
		}
		if *sbx > 0 {
			return benchSandboxes(ctx, cfg, bench.SandboxesOptions{N: *sbx, Idle: *idle, Paused: *paused}, *asJSON)
		}
		o := bench.Options{N: *n, Pool: *poolSize, Rounds: *rounds, Local: *local, Stream: *stream,
			Anatomy: *anatomy, Python: *python, APIBurst: *apiBurst}
		for _, f := range strings.Split(*conc, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || c < 1 {
				return fmt.Errorf("-c: %q is not a concurrency", f)
			}
			o.Concurrency = append(o.Concurrency, c)
		}
		if *drivers != "" {
			for _, d := range strings.Split(*drivers, ",") {
				o.Drivers = append(o.Drivers, strings.TrimSpace(d))
			}
		}
		if !*asJSON {
			o.Progress = func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
		}
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		rep, err := bench.Run(ctx, o, benchHarness(cfg, quiet))
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		bench.Print(os.Stdout, rep)
		return nil
	}
}

// openDefault opens the driver the worker would use and its provisioner,
// for the benchmarks that measure one driver; closeAll releases both.
func openDefault(ctx context.Context, cfg config.Config) (*bench.Env, *provision.Provisioner, func(), error) {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env, closeEnv, err := benchHarness(cfg, quiet).Open(ctx, "")
	if err != nil {
		return nil, nil, nil, err
	}
	prov, err := env.Provisioner(ctx)
	if err != nil {
		closeEnv()
		return nil, nil, nil, err
	}
	return env, prov, func() { prov.Close(); closeEnv() }, nil
}

// benchLanguages is bench --languages: every language of the image in use
// (CODEBENCH_LANGUAGES), n hello worlds each, and the profiles' images.
func benchLanguages(ctx context.Context, cfg config.Config, n int, asJSON bool) error {
	env, prov, closeAll, err := openDefault(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	img, err := image.ForLanguages(cfg.DataDir, cfg.Image, cfg.ImageLanguages)
	if err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
	if asJSON {
		progress = nil
	}
	names := lang.Builtin().Names()
	names = slices.DeleteFunc(names, func(n string) bool { return !img.HasLanguage(n) })
	rows := bench.MeasureLanguages(ctx, prov, env.Policy, lang.Builtin(), names, n, progress)
	profiles := image.Profiles(cfg.DataDir)
	if asJSON {
		type prof struct {
			Profile      string  `json:"profile"`
			Hash         string  `json:"hash"`
			Languages    int     `json:"languages"`
			TreeBytes    int64   `json:"tree_bytes"`
			RootfsBytes  int64   `json:"rootfs_bytes"`
			BaseSeconds  float64 `json:"base_seconds"`
			BuildSeconds float64 `json:"build_seconds"`
		}
		out := struct {
			Driver    string              `json:"driver"`
			Languages []bench.LanguageRow `json:"languages"`
			Profiles  []prof              `json:"profiles"`
		}{Driver: env.Name, Languages: rows}
		for _, p := range profiles {
			m := p.Image.Manifest
			out.Profiles = append(out.Profiles, prof{p.Profile, m.Hash, len(m.Languages), m.TreeBytes, m.Rootfs.Size, m.BaseSeconds, m.BuildSeconds})
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("hello world per language, %d runs each, driver %s (%s); native: the same commands on this host\n\n", n, env.Name, env.Detail)
	fmt.Print(bench.LanguagesTable(rows))
	fmt.Printf("\n| profile | languages | root tree | ext4 rootfs | its base: debootstrap + packages (when built) | its build in all (base included when it was built then) |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range profiles {
		m := p.Image.Manifest
		fmt.Printf("| %s | %d | %.2f GiB | %.2f GiB | %.0f s | %.0f s |\n", p.Profile, len(m.Languages), float64(m.TreeBytes)/(1<<30),
			float64(m.Rootfs.Size)/(1<<30), m.BaseSeconds, m.BuildSeconds)
	}
	return nil
}

// benchTests is bench --tests on the default driver: with before, that
// image's sandboxes and the current image's, measured interleaved.
func benchTests(ctx context.Context, cfg config.Config, tests, n int, before string, asJSON bool) error {
	cfgs := []config.Config{cfg}
	if before != "" {
		bcfg := cfg
		bcfg.Image = before
		cfgs = []config.Config{bcfg, cfg}
	}
	var variants []bench.TestsVariant
	var reports []*bench.TestsReport
	var o bench.TestsOptions
	for _, c := range cfgs {
		env, prov, closeAll, err := openDefault(ctx, c)
		if err != nil {
			return fmt.Errorf("image %q: %w", c.Image, err)
		}
		defer closeAll()
		variants = append(variants, bench.TestsVariant{Prov: prov, Policy: env.Policy})
		// The root tree is images/<hash>/rootfs; the floors run on the
		// last (the current) image's.
		reports = append(reports, &bench.TestsReport{Driver: env.Name + " (" + env.Detail + ")", Image: filepath.Base(filepath.Dir(env.Spec.RootDir))})
		o = bench.TestsOptions{Tests: tests, N: n, Floor: 100, RootDir: env.Spec.RootDir, OCIRuntime: env.OCIRuntime, CPUs: env.Spec.VCPUs}
	}
	if !asJSON {
		o.Progress = func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
	}
	runs, err := bench.MeasureTests(ctx, variants, o)
	if err != nil {
		return err
	}
	for i, r := range runs {
		r.Driver, r.Image = reports[i].Driver, reports[i].Image
	}
	if asJSON && len(runs) == 1 {
		return json.NewEncoder(os.Stdout).Encode(runs[0])
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]*bench.TestsReport{"before": runs[0], "after": runs[1]})
	}
	for i, r := range runs {
		if len(runs) > 1 {
			fmt.Printf("## %s: image %s\n\n", [2]string{"before", "after"}[i], r.Image)
		}
		fmt.Print(r.Text())
		fmt.Println()
	}
	if len(runs) == 2 {
		fmt.Print(bench.CompareTests(runs[0], runs[1]))
	}
	return nil
}

// benchSandboxes is bench --sandboxes on the default driver: a sandbox
// host of its own (its records in a temporary directory, limits wide
// enough for the run) on a loopback port, driven by the E2B SDK.
func benchSandboxes(ctx context.Context, cfg config.Config, o bench.SandboxesOptions, asJSON bool) error {
	env, prov, closeAll, err := openDefault(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	pauser, err := sandbox.Pausing(env.Driver)
	if err != nil {
		return err
	}
	sdk, err := e2bsdk.Install(ctx, filepath.Join(cfg.DataDir, "cache"), bench.SandboxesScripts())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "codebench-bench-sandboxes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sc := cfg.Sandboxes
	sc.Max, sc.MaxRunning = o.Paused+o.Idle+64, o.Idle+64
	sc.KeyRunning, sc.KeyPaused, sc.KeyMemoryMB = sc.MaxRunning, sc.Max, 1<<30
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, _, stopPool, err := newSandboxHost(env.Spec, pauser, prov, sc, dir, quiet)
	if err != nil {
		return err
	}
	defer stopPool()
	defer m.Close(context.WithoutCancel(ctx))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e2b.New(m, nil, quiet), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { _ = srv.Close(); <-served }()

	o.Addr, o.Pool, o.SDKDir, o.StateDir, o.Processes = ln.Addr().String(), sc.Pool, sdk, dir, m.Processes
	o.RootDir, o.OCIRuntime, o.CPUs = env.Spec.RootDir, env.OCIRuntime, env.Spec.VCPUs
	if !asJSON {
		o.Progress = func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
	}
	rep, err := bench.MeasureSandboxes(ctx, o)
	if err != nil {
		return err
	}
	rep.Driver = env.Name + " (" + env.Detail + ")"
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	fmt.Print(rep.Text())
	return nil
}

// benchInteractive is bench --interactive on the default driver.
func benchInteractive(ctx context.Context, cfg config.Config, n int, asJSON bool) error {
	env, prov, closeAll, err := openDefault(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	r, err := bench.MeasureInteractive(ctx, prov, env.Policy, n, 10_000)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("interactive problems, driver %s (%s)\n%s", env.Name, env.Detail, r)
	return nil
}

// benchHarness opens each driver with the production wiring of cfg.
func benchHarness(cfg config.Config, log *slog.Logger) bench.Harness {
	return bench.Harness{ManagementURL: cfg.Worker.ManagementURL, RabbitURL: cfg.Worker.RabbitURL,
		Open: func(ctx context.Context, name string) (*bench.Env, func(), error) {
			cfg := cfg
			allow := cfg.VM.AllowTCG
			if name != "" {
				if err := selectDriver(&cfg, drivers.List(cfg, sandbox.Spec{}, log), name); err != nil {
					return nil, nil, err
				}
				allow = true // a benchmark of TCG is the user's own choice
			}
			e, err := openEnv(ctx, cfg, log, "b", allow)
			if err != nil {
				return nil, nil, err
			}
			be := &bench.Env{Name: e.choice.Name, Detail: e.choice.Detail, Boundary: e.desc.Boundary, Targets: e.desc.BenchTargets,
				Driver: e.driver, Spec: e.spec, BootLimit: cfg.VM.BootLimit, Policy: e.policy,
				Provisioner: func(ctx context.Context) (*provision.Provisioner, error) { return e.provisioner(ctx, cfg, log) },
				Worker: func(ctx context.Context, url string, pool, c int) (*bench.Worker, error) {
					return benchWorker(ctx, cfg, e, log, url, pool, c)
				},
				API: func(ctx context.Context, url, dir string, maxQueue int, ln net.Listener, onFinal func(*job.Status)) error {
					cfg := cfg
					cfg.Worker.RabbitURL, cfg.API.DatabaseURL, cfg.API.MaxQueue = url, filepath.Join(dir, "api.db"), maxQueue
					cfg.API.RabbitURL, cfg.API.User = "", "" // the benchmark's vhost, as its worker
					// One client makes every submission: no per-client quota.
					cfg.API.ClientInFlight, cfg.API.ClientPerMinute, cfg.API.ClientSandbox, cfg.API.ClientCallbacks = 0, 0, 0, 0
					ncfg, err := apiNodeConfig(cfg)
					if err != nil {
						ln.Close()
						return err
					}
					ncfg.OnFinal = onFinal
					return apinode.Run(ctx, ncfg, ln, log)
				},
			}
			if oci := e.desc.OCIRuntime; oci != nil {
				be.OCIRuntime = func(stateDir string) ([]string, error) { return oci(e.driver, stateDir) }
			}
			return be, func() { e.close(log) }, nil
		}}
}

// benchWorker starts a worker of e's (the production wiring) consuming at
// url.
func benchWorker(ctx context.Context, cfg config.Config, e *env, log *slog.Logger, url string, pool, c int) (*bench.Worker, error) {
	cfg.Worker.RabbitURL, cfg.Worker.PoolSize, cfg.Worker.Concurrency = url, pool, c
	cfg.API.RabbitURL, cfg.API.User = "", "" // the benchmark's API publishes as the worker's user, on its vhost
	qcfg := queueConfig(cfg)
	srv, err := newServer(ctx, e, cfg, qcfg, log)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Worker.Run(wctx) }()
	return &bench.Worker{Broker: qcfg, Ready: func() int { return srv.Pool.Stats().Ready },
		Stop: func() { cancel(); <-done; srv.Stop() }}, nil
}

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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/bench"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/gvisor"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// benchReport is everything "codebench bench" measured, in one run.
type benchReport struct {
	Machine string         `json:"machine"`
	Drivers []driverReport `json:"drivers"`
	Native  bench.Summary  `json:"native_baseline"`
	// NativeCPU is the baseline's CPU time per run (compile and run).
	NativeCPU time.Duration `json:"native_cpu_per_run_ns"`
	// NativePython is the Python hello world's baseline (none where the
	// host has no python3).
	NativePython    *bench.Summary `json:"native_python,omitempty"`
	NativePythonCPU time.Duration  `json:"native_python_cpu_per_run_ns,omitempty"`
	Targets         []target       `json:"targets"`
}

// driverReport is one driver's measurements.
type driverReport struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Start is a fresh sandbox, start to agent ready; Restore one restored
	// from a saved one (RestoreKind says how, and whether the pool uses it).
	Start       bench.VMReport      `json:"start"`
	Restore     *bench.VMReport     `json:"restore,omitempty"`
	RestoreKind string              `json:"restore_kind,omitempty"`
	Loads       []*bench.LoadReport `json:"loads"`
	// TestLoads are jobs with 1 test, then with --tests tests (one compile
	// each), at concurrency 1.
	TestLoads []*bench.LoadReport `json:"test_loads,omitempty"`
	// StreamLoads are hello.c jobs without, then with streaming.
	StreamLoads []*bench.LoadReport `json:"stream_loads,omitempty"`
	// Anatomy is where one hello.c job's CPU goes, by phase and process.
	Anatomy *bench.Anatomy `json:"anatomy,omitempty"`
	// Cold is gVisor alone: each program in a whole new sandbox per run,
	// as "runsc do" runs it, no pool, no agent (gVisor only).
	Cold []coldReport `json:"cold_runsc,omitempty"`
	// API is the HTTP API in front of a worker of this driver.
	API *bench.APIReport `json:"api,omitempty"`
	// Boundary and targets are the driver's own description: whether it
	// is a security boundary, and the figures it promises.
	Boundary bool                  `json:"boundary"`
	targets  []sandbox.BenchTarget // its descriptor's
}

// cold is the driver's cold runsc do report of program, or nil.
func (d *driverReport) cold(program string) *coldReport {
	for i := range d.Cold {
		if d.Cold[i].Program == program {
			return &d.Cold[i]
		}
	}
	return nil
}

// coldReport is one program's cold runsc do runs.
type coldReport struct {
	Program string        `json:"program"`
	Wall    bench.Summary `json:"wall"`
	CPU     time.Duration `json:"cpu_per_run_ns"`
}

type target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Met   bool    `json:"met"`
	Unit  string  `json:"unit"`
}

func benchCmd(fs *flag.FlagSet) commandFunc {
	drivers := fs.String("drivers", "", "comma-separated drivers to compare, by the names doctor prints (default: the one the worker would use)")
	n := fs.Int("n", 20, "jobs in each load run")
	conc := fs.String("c", "1,2", "jobs in flight at once: one load run for each")
	poolSize := fs.Int("pool", 2, "sandboxes alive at once when measuring start, restore and memory; the pool's size in load runs (at least the concurrency)")
	rounds := fs.Int("rounds", 2, "rounds of -pool starts (and restores)")
	local := fs.Bool("local", false, "load through the pool directly instead of through RabbitMQ and a worker")
	asJSON := fs.Bool("json", false, "print JSON")
	stream := fs.Bool("stream", false, "also measure hello.c jobs that stream their output, against the same jobs without, through the pool at concurrency 1")
	tests := fs.Int("tests", 0, "also measure the marginal cost of a test: jobs with 1 test vs with this many (through the pool, at concurrency 1)")
	apiBurst := fs.Int("api", 0, "also measure the HTTP API in front of a worker: -n wait=true submissions, then a burst of this many, polled at 200/s (0: none)")
	python := fs.Bool("python", true, "also a Python hello world load at concurrency 1, with its native baseline")
	anatomy := fs.Int("anatomy", 5, "hello.c jobs, one sandbox each, one at a time, whose CPU is read by phase and process (0: none)")
	loadOnly := fs.Bool("load-only", false, "only a load run through RabbitMQ against a running worker (no sandboxes of its own: for soak tests); -c is one number")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		progress := func(format string, a ...any) {
			if !*asJSON {
				fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
			}
		}
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
		var cs []int
		for _, f := range strings.Split(*conc, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || c < 1 {
				return fmt.Errorf("-c: %q is not a concurrency", f)
			}
			cs = append(cs, c)
		}
		names := strings.Split(*drivers, ",")
		if *drivers == "" {
			names = []string{""}
		}
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		rep := benchReport{Machine: machine()}
		for _, name := range names {
			dr, err := benchDriver(ctx, cfg, quiet, strings.TrimSpace(name), *n, cs, *poolSize, *rounds, *local, *tests, *stream, *anatomy, *python, *apiBurst, progress)
			if err != nil {
				return err
			}
			rep.Drivers = append(rep.Drivers, *dr)
		}
		progress("native baseline: %d runs", *n)
		var err error
		if rep.Native, rep.NativeCPU, err = bench.NativeProgram(ctx, bench.HelloCProgram, *n); err != nil {
			return err
		}
		if *python && bench.HelloPythonProgram.HasNative() {
			s, cpu, err := bench.NativeProgram(ctx, bench.HelloPythonProgram, *n)
			if err != nil {
				return err
			}
			rep.NativePython, rep.NativePythonCPU = &s, cpu
		}
		rep.Targets = targets(&rep)
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		printReport(&rep)
		return nil
	}
}

// benchDriver measures one driver: fresh starts, restores where it has
// them, then the load runs.
func benchDriver(ctx context.Context, cfg config.Config, log *slog.Logger, name string, n int, cs []int, poolSize, rounds int, local bool,
	tests int, stream bool, anatomy int, python bool, apiBurst int, progress func(string, ...any)) (*driverReport, error) {
	allow := cfg.VM.AllowTCG
	if name != "" {
		if err := selectDriver(&cfg, driverList(cfg, sandbox.Spec{}, log), name); err != nil {
			return nil, err
		}
		allow = true // a benchmark of TCG is the user's own choice
	}
	e, err := openEnv(ctx, cfg, log, "b", allow)
	if err != nil {
		return nil, err
	}
	defer e.close(log)
	dr := &driverReport{Name: e.choice.Name, Detail: e.choice.Detail, Boundary: e.desc.Boundary, targets: e.desc.BenchTargets}
	progress("%s: %d rounds of %d fresh starts", dr.Name, rounds, poolSize)
	if dr.Start, err = bench.MeasureVMs(ctx, dr.Name+" start to ready", func(ctx context.Context) (*sandbox.Instance, error) {
		ctx, cancel := context.WithTimeout(ctx, cfg.VM.BootLimit)
		defer cancel()
		return sandbox.Boot(ctx, e.driver, e.spec)
	}, rounds, poolSize); err != nil {
		return nil, err
	}
	if anatomy > 0 {
		progress("%s: %d hello.c jobs, one sandbox each, CPU by phase and process", dr.Name, anatomy)
		if dr.Anatomy, err = bench.MeasureAnatomy(ctx, bench.AnatomyRun{
			Launch: func(ctx context.Context) (*sandbox.Instance, error) {
				ctx, cancel := context.WithTimeout(ctx, cfg.VM.BootLimit)
				defer cancel()
				return sandbox.Boot(ctx, e.driver, e.spec)
			},
			Request:   e.policy.Request(&job.Job{ID: "bench-anatomy", Language: "c", Code: bench.HelloC}),
			CgroupCPU: sandboxCPU(),
		}, anatomy); err != nil {
			return nil, err
		}
	}
	prov, _ := e.provisioner(ctx, cfg, log)
	defer prov.Close()
	switch cp, checkpoints := e.driver.(sandbox.Checkpointer); {
	case prov.Template() != nil:
		progress("%s: %d rounds of %d restores from the snapshot template", dr.Name, rounds, poolSize)
		r, err := bench.MeasureVMs(ctx, dr.Name+" restore to ready", prov.Instance, rounds, poolSize)
		if err != nil {
			return nil, err
		}
		dr.Restore, dr.RestoreKind = &r, "snapshot template clone (used by the pool)"
	case checkpoints:
		progress("%s: %d rounds of %d restores from a checkpoint", dr.Name, rounds, poolSize)
		r, err := checkpointRestores(ctx, e.driver, cp, e.spec, cfg.VM.BootLimit, rounds, poolSize)
		if err != nil {
			return nil, err
		}
		dr.Restore, dr.RestoreKind = r, "checkpoint after a warm-up, restored (not used by the pool: slower than a fresh start where measured)"
	}
	for _, c := range cs {
		size := max(poolSize, c)
		var l *bench.LoadReport
		if local {
			progress("%s: %d jobs, %d at once, through a pool of %d", dr.Name, n, c, size)
			mark := bench.MarkCPU(sandboxCPU())
			if l, err = bench.LoadLocal(ctx, prov, e.policy, size, n, c); err == nil {
				l.CPU = mark.Since(n)
			}
		} else {
			progress("%s: %d jobs, %d at once, through RabbitMQ and a worker with a pool of %d", dr.Name, n, c, size)
			l, err = loadThroughWorker(ctx, cfg, e, log, bench.HelloCProgram, size, n, c)
		}
		if err != nil {
			return nil, err
		}
		dr.Loads = append(dr.Loads, l)
	}
	if python && !local {
		progress("%s: %d Python hello world jobs, 1 at once, through RabbitMQ and a worker with a pool of %d", dr.Name, n, poolSize)
		l, err := loadThroughWorker(ctx, cfg, e, log, bench.HelloPythonProgram, poolSize, n, 1)
		if err != nil {
			return nil, err
		}
		dr.Loads = append(dr.Loads, l)
	}
	if apiBurst > 0 && !local {
		progress("%s: the HTTP API: %d wait=true submissions, then a burst of %d", dr.Name, n, apiBurst)
		if dr.API, err = apiThroughWorker(ctx, cfg, e, log, max(poolSize, 2), n, apiBurst); err != nil {
			return nil, err
		}
	}
	if gv, ok := e.driver.(*gvisor.Driver); ok && os.Geteuid() == 0 {
		progress("%s: cold runsc (a new sandbox per run, as runsc do), %d runs of each program", dr.Name, n)
		if dr.Cold, err = coldRunsc(ctx, gv, cfg.VM.Runsc, e.spec.RootDir, n, python); err != nil {
			return nil, err
		}
	}
	if stream {
		for _, st := range []bool{false, true} {
			progress("%s: %d hello.c jobs, stream=%v, one at a time, through a pool of %d", dr.Name, n, st, poolSize)
			l, err := bench.LoadLocalJobs(ctx, prov, e.policy, poolSize, n, 1, func(i int) *job.Job {
				return &job.Job{ID: fmt.Sprint("bench-stream-", i), Language: "c", Code: bench.HelloC, Stream: st}
			}, func(st *job.Status) bool { return st.Stdout == "Hello, World!" })
			if err != nil {
				return nil, err
			}
			l.Mode = fmt.Sprintf("local, stream=%v", st)
			dr.StreamLoads = append(dr.StreamLoads, l)
		}
	}
	if tests > 1 {
		for _, k := range []int{1, tests} {
			progress("%s: %d jobs with %d test(s) each, one at a time, through a pool of %d", dr.Name, n, k, poolSize)
			l, err := bench.LoadLocalJobs(ctx, prov, e.policy, poolSize, n, 1, func(i int) *job.Job { return bench.TestsJob(i, k) },
				func(st *job.Status) bool { return len(st.Tests) == k })
			if err != nil {
				return nil, err
			}
			l.Mode, l.TestsPerJob = fmt.Sprintf("local, %d test(s) per job", k), k
			dr.TestLoads = append(dr.TestLoads, l)
		}
	}
	return dr, nil
}

// loadThroughWorker serves a load run with a worker of the benchmark's own
// (the production wiring, on this driver) on a virtual host of its own.
func loadThroughWorker(ctx context.Context, cfg config.Config, e *env, log *slog.Logger, p bench.Program, poolSize, n, c int) (*bench.LoadReport, error) {
	url, remove, err := bench.TempVhost(ctx, cfg.Worker.ManagementURL, cfg.Worker.RabbitURL, strings.ReplaceAll(e.choice.Name, "-", ""))
	if err != nil {
		return nil, err
	}
	defer remove()
	cfg.Worker.RabbitURL, cfg.Worker.PoolSize, cfg.Worker.Concurrency = url, poolSize, c
	qcfg := queueConfig(cfg)
	srv, err := newServer(ctx, e, cfg, qcfg, log)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Worker.Run(wctx) }()
	defer func() { cancel(); <-done }()
	// Start warm, as a worker that has been up a while.
	for ready := false; !ready; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
			ready = srv.Pool.Stats().Ready >= poolSize
		}
	}
	mark := bench.MarkCPU(sandboxCPU())
	r, err := bench.LoadBrokerProgram(ctx, qcfg, p, n, c)
	if err != nil {
		return nil, err
	}
	r.CPU = mark.Since(n)
	return r, nil
}

// apiThroughWorker measures the HTTP API (served in this process, on a
// store of its own) in front of a worker of the benchmark's own, on a
// virtual host of its own.
func apiThroughWorker(ctx context.Context, cfg config.Config, e *env, log *slog.Logger, poolSize, n, burst int) (*bench.APIReport, error) {
	url, remove, err := bench.TempVhost(ctx, cfg.Worker.ManagementURL, cfg.Worker.RabbitURL, "api"+strings.ReplaceAll(e.choice.Name, "-", ""))
	if err != nil {
		return nil, err
	}
	defer remove()
	dir, err := os.MkdirTemp("", "codebench-bench-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg.Worker.RabbitURL, cfg.Worker.PoolSize, cfg.Worker.Concurrency = url, poolSize, 2
	cfg.API.DatabaseURL, cfg.API.MaxQueue = filepath.Join(dir, "api.db"), burst
	srv, err := newServer(ctx, e, cfg, queueConfig(cfg), log)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Worker.Run(wctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	timings := map[string]*job.Timings{}
	finished := 0
	onFinal := func(st *job.Status) {
		mu.Lock()
		defer mu.Unlock()
		finished++
		if st.Timings != nil {
			timings[st.ID] = st.Timings
		}
	}
	go func() { defer wg.Done(); _ = serveAPI(wctx, cfg, log, ln, onFinal) }()
	base := "http://" + ln.Addr().String()
	for ready := false; !ready; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		ready = err == nil && resp.StatusCode == http.StatusOK && srv.Pool.Stats().Ready >= poolSize
	}
	return bench.MeasureAPI(ctx, bench.APIRun{Base: base,
		Timings: func(tok string) (*job.Timings, bool) {
			mu.Lock()
			defer mu.Unlock()
			t, ok := timings[tok]
			return t, ok
		},
		Finished: func() int {
			mu.Lock()
			defer mu.Unlock()
			return finished
		},
	}, n, burst, 200, 30*time.Minute)
}

// sandboxCPU reads the sandboxes' host cgroup counter, where there is one
// (as root); nil where there is not.
func sandboxCPU() func() (time.Duration, error) {
	if os.Geteuid() != 0 {
		return nil
	}
	cg, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	if err != nil || !cg.HasCPU() {
		return nil
	}
	return cg.TotalCPU
}

// coldRunsc measures gVisor alone: the programs in a whole new sandbox per
// run, as runsc do runs them, on the image's root tree, each run's
// processes counted in a cgroup of the benchmark's own.
func coldRunsc(ctx context.Context, d *gvisor.Driver, runsc, rootfs string, n int, python bool) ([]coldReport, error) {
	platform, err := d.Platform()
	if err != nil {
		return nil, err
	}
	m, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	if err != nil || !m.HasCPU() {
		return nil, fmt.Errorf("cold runsc do: no cgroup to count its CPU in: %v", err)
	}
	id := fmt.Sprintf("bench-runsc-do-%d", os.Getpid())
	g, err := m.Create(id, hostcgroup.Limits{MemoryBytes: 4 << 30, Pids: 4096})
	if err != nil {
		return nil, err
	}
	defer g.Remove()
	counted := bench.Counted{Procs: g.Procs(), CPU: func() (time.Duration, error) { return m.CPUUsage(id) },
		Sub: func(child string) string { return m.Path(id) + "/" + child }}
	progs := []bench.Program{bench.HelloCProgram}
	if python {
		progs = append(progs, bench.HelloPythonProgram)
	}
	var out []coldReport
	for _, p := range progs {
		wall, cpu, err := bench.ColdRunsc(ctx, runsc, platform, rootfs, p, n, counted)
		if err != nil {
			return nil, err
		}
		out = append(out, coldReport{Program: p.Name, Wall: wall, CPU: cpu})
	}
	return out, nil
}

// checkpointRestores measures restores from a checkpoint (runsc's) of a
// sandbox warmed up with a hello-world compile, against the fresh starts
// measured before it.
func checkpointRestores(ctx context.Context, drv sandbox.Driver, d sandbox.Checkpointer, spec sandbox.Spec, limit time.Duration, rounds, alive int) (*bench.VMReport, error) {
	inst, err := sandbox.Boot(ctx, drv, spec)
	if err != nil {
		return nil, err
	}
	c := lang.Builtin()["c"]
	if _, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: c.Name, Code: c.Hello}, nil); err != nil {
		_ = inst.Stop(ctx)
		return nil, err
	}
	_ = inst.Agent.Close()
	dir, err := os.MkdirTemp("", "codebench-checkpoint-")
	if err != nil {
		_ = inst.Stop(ctx)
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := d.Checkpoint(ctx, inst.VM, dir); err != nil {
		return nil, err
	}
	r, err := bench.MeasureVMs(ctx, "restore to ready", func(ctx context.Context) (*sandbox.Instance, error) {
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		return sandbox.StartInstance(ctx, func(ctx context.Context) (sandbox.VM, error) { return d.Restore(ctx, spec, dir) })
	}, rounds, alive)
	return &r, err
}

// measureOf is what a measure reads: the driver's report, the emulator's
// (the driver that is no boundary) where the run has one, the whole run
// (the baselines), and the driver's hello.c load at a concurrency.
type measureOf struct {
	d, emulator *driverReport
	run         *benchReport
	load        func(d *driverReport, c int) *bench.LoadReport
}

// benchMeasures are the figures a driver's BenchTargets may name: each of
// a driver's report, and the emulator's in the same run where there is one;
// false where the run has no figure.
var benchMeasures = map[string]func(m measureOf) (float64, bool){
	"end-to-end p50 at c=1 (ms)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		return msOf(l, func(l *bench.LoadReport) time.Duration { return l.EndToEnd.P50 }), l != nil
	},
	"pool wait p50 at c=1 (ms)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		return msOf(l, func(l *bench.LoadReport) time.Duration { return l.PoolWait.P50 }), l != nil
	},
	"pool wait p99 at c=1 (ms)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		return msOf(l, func(l *bench.LoadReport) time.Duration { return l.PoolWait.P99 }), l != nil
	},
	"end-to-end p50 at c=1 / the emulator's in the same run (x)": func(m measureOf) (float64, bool) {
		if m.emulator == nil || m.emulator == m.d {
			return 0, false
		}
		l, el := m.load(m.d, 1), m.load(m.emulator, 1)
		if l == nil || el == nil || el.EndToEnd.P50 <= 0 {
			return 0, false
		}
		return float64(l.EndToEnd.P50) / float64(el.EndToEnd.P50), true
	},
	"end-to-end p50 at c=1 / native gcc and run (x)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		if l == nil || m.run.Native.P50 <= 0 {
			return 0, false
		}
		return float64(l.EndToEnd.P50) / float64(m.run.Native.P50), true
	},
	"Python end-to-end p50 at c=1 / native python3 (x)": func(m measureOf) (float64, bool) {
		for _, l := range m.d.Loads {
			if l.Program == bench.HelloPythonProgram.Name && l.Concurrency == 1 && m.run.NativePython != nil && m.run.NativePython.P50 > 0 {
				return float64(l.EndToEnd.P50) / float64(m.run.NativePython.P50), true
			}
		}
		return 0, false
	},
	"machine CPU per job at c=1 (s)": func(m measureOf) (float64, bool) {
		if l := m.load(m.d, 1); l != nil && l.CPU != nil {
			return l.CPU.PerJobSec, true
		}
		return 0, false
	},
	"machine CPU per job at c=1 / a cold runsc's (x)": func(m measureOf) (float64, bool) {
		l, cold := m.load(m.d, 1), m.d.cold(bench.HelloCProgram.Name)
		if l == nil || l.CPU == nil || cold == nil || cold.CPU <= 0 {
			return 0, false
		}
		return l.CPU.PerJobSec / cold.CPU.Seconds(), true
	},
	"jobs/s at c=2": func(m measureOf) (float64, bool) {
		if l := m.load(m.d, 2); l != nil {
			return l.JobsPerSec, true
		}
		return 0, false
	},
	"jobs/s at c=4": func(m measureOf) (float64, bool) {
		if l := m.load(m.d, 4); l != nil {
			return l.JobsPerSec, true
		}
		return 0, false
	},
	"idle sandbox PSS (MiB)": func(m measureOf) (float64, bool) {
		return float64(m.d.Start.PSSKB) / 1024, m.d.Start.PSSKB > 0
	},
}

func msOf(l *bench.LoadReport, f func(*bench.LoadReport) time.Duration) float64 {
	if l == nil {
		return 0
	}
	return float64(f(l)) / float64(time.Millisecond)
}

func targets(r *benchReport) []target {
	var ts []target
	add := func(name string, v, limit float64, atLeast bool, unit string) {
		met := v <= limit
		if atLeast {
			met = v >= limit
		}
		ts = append(ts, target{Name: name, Value: v, Limit: limit, Met: met, Unit: unit})
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	byName := map[string]*driverReport{}
	for i := range r.Drivers {
		byName[r.Drivers[i].Name] = &r.Drivers[i]
	}
	load := func(d *driverReport, c int) *bench.LoadReport {
		for _, l := range append(append(append([]*bench.LoadReport{}, d.Loads...), d.TestLoads...), d.StreamLoads...) {
			if l.Concurrency == c && (l.Program == "" || l.Program == bench.HelloCProgram.Name) {
				return l
			}
		}
		return nil
	}
	for _, d := range r.Drivers {
		if d.Restore != nil && strings.HasPrefix(d.RestoreKind, "snapshot") && d.Restore.Ready.P50 > 0 {
			add(d.Name+": restore-to-ready speedup over a fresh start (p50), at least", float64(d.Start.Ready.P50)/float64(d.Restore.Ready.P50), 15, true, "x")
			if d.Start.PSSKB > 0 {
				add(d.Name+": idle clone PSS / idle fresh PSS, at most", float64(d.Restore.PSSKB)/float64(d.Start.PSSKB), 0.5, false, "x")
			}
		}
		if l := load(&d, 1); l != nil {
			add(d.Name+": host overhead p50 at c=1, under", ms(l.HostOverhead.P50), 10, false, "ms")
			add(d.Name+": end-to-end p99 / p50 at c=1, at most", float64(l.EndToEnd.P99)/float64(max(l.EndToEnd.P50, 1)), 3, false, "x")
		}
	}
	for _, d := range r.Drivers {
		if a := d.API; a != nil {
			// Issue 24's: the API adds little, takes a burst at once, loses
			// nothing, and answers polls fast while jobs run.
			add(d.Name+": API overhead on wait=true (end to end - worker total_us) p50, at most", ms(a.Overhead.P50), 5, false, "ms")
			add(fmt.Sprintf("%s: API: a burst of %d all answered in, at most", d.Name, a.Burst), a.AcceptSeconds, 2*float64(a.Burst)/1000, false, "s")
			add(d.Name+": API: accepted submissions not finished", float64(a.Unfinished), 0, false, "")
			add(d.Name+": API: GET /submissions/{token} p99 while jobs run, at most", ms(a.Polls.P99), 20, false, "ms")
		}
	}
	for _, d := range r.Drivers {
		if len(d.TestLoads) != 2 {
			continue
		}
		one, many := d.TestLoads[0], d.TestLoads[1]
		k := float64(many.TestsPerJob - one.TestsPerJob)
		marginal := float64(many.EndToEnd.P50-one.EndToEnd.P50) / max(k, 1)
		if one.Compile.P50 > 0 {
			add(d.Name+": each additional test / compile (p50), at most", marginal/float64(one.Compile.P50), 0.05, false, "x")
		}
		add(d.Name+": all tests / one test, end to end (p50), under", float64(many.EndToEnd.P50)/float64(max(one.EndToEnd.P50, 1)), 1.5, false, "x")
	}
	// Each driver's own targets, by the measures every report has.
	var emulator *driverReport
	for i := range r.Drivers {
		if !r.Drivers[i].Boundary {
			emulator = &r.Drivers[i]
		}
	}
	for i := range r.Drivers {
		d := &r.Drivers[i]
		for _, bt := range d.targets {
			measure, ok := benchMeasures[bt.Measure]
			if !ok {
				add(d.Name+": "+bt.Measure+" (no such measure)", 0, bt.Limit, bt.AtLeast, "")
				continue
			}
			if v, ok := measure(measureOf{d: d, emulator: emulator, run: r, load: load}); ok {
				add(d.Name+": "+bt.Measure, v, bt.Limit, bt.AtLeast, "")
			}
		}
	}
	return ts
}

func printReport(r *benchReport) {
	fmt.Printf("machine: %s\n\n", r.Machine)
	for _, d := range r.Drivers {
		fmt.Printf("%s (%s)\n", d.Name, d.Detail)
		fmt.Println(" ", d.Start.Ready)
		fmt.Printf("  idle PSS (median, %d alive): %d KiB\n", d.Start.Alive, d.Start.PSSKB)
		if d.Restore != nil {
			fmt.Println(" ", d.Restore.Ready, "["+d.RestoreKind+"]")
			fmt.Printf("  idle PSS after restore: %d KiB\n", d.Restore.PSSKB)
		}
		if d.Anatomy != nil {
			fmt.Println(" ", d.Anatomy)
		}
		if d.API != nil {
			fmt.Println(" ", d.API)
		}
		for _, c := range d.Cold {
			fmt.Println(" ", c.Wall)
			fmt.Printf("    CPU per run: %.3f s (the sandbox's processes, counted in a cgroup)\n", c.CPU.Seconds())
		}
		for _, l := range append(append(append([]*bench.LoadReport{}, d.Loads...), d.TestLoads...), d.StreamLoads...) {
			native, nativeCPU := r.Native, r.NativeCPU
			if l.Program == bench.HelloPythonProgram.Name {
				native, nativeCPU = bench.Summary{}, 0
				if r.NativePython != nil {
					native, nativeCPU = *r.NativePython, r.NativePythonCPU
				}
			}
			prog := l.Program
			if prog == "" {
				prog = bench.HelloCProgram.Name
			}
			fmt.Printf("  load: %s, %d %s jobs, %d at once: %.1f s, %.2f jobs/s\n", l.Mode, l.N, prog, l.Concurrency, l.Seconds, l.JobsPerSec)
			for _, s := range []bench.Summary{l.EndToEnd, l.QueueWait, l.PoolWait, l.Publish, l.Dispatch, l.Compile, l.Run, l.Guest, l.HostOverhead, l.Teardown} {
				if s.N > 0 {
					fmt.Println("   ", s)
				}
			}
			if native.P50 > 0 {
				fmt.Printf("    end to end / native (p50): %.1fx\n", float64(l.EndToEnd.P50)/float64(native.P50))
			}
			cold := d.cold(prog)
			if cold != nil && cold.Wall.P50 > 0 {
				fmt.Printf("    end to end / cold runsc (p50): %.2fx\n", float64(l.EndToEnd.P50)/float64(cold.Wall.P50))
			}
			if l.CPU != nil {
				fmt.Println("   ", l.CPU)
				if nativeCPU > 0 {
					fmt.Printf("    CPU per job / native compile and run: %.1fx\n", l.CPU.PerJobSec/nativeCPU.Seconds())
				}
				if cold != nil && cold.CPU > 0 {
					fmt.Printf("    CPU per job / cold runsc: %.2fx\n", l.CPU.PerJobSec/cold.CPU.Seconds())
				}
			}
		}
		fmt.Println()
	}
	fmt.Println(" ", r.Native)
	if r.NativeCPU > 0 {
		fmt.Printf("  native CPU per compile and run: %.3f s\n", r.NativeCPU.Seconds())
	}
	if r.NativePython != nil {
		fmt.Println(" ", *r.NativePython)
		fmt.Printf("  native CPU per run: %.3f s\n", r.NativePythonCPU.Seconds())
	}
	fmt.Println("\nTargets")
	for _, t := range r.Targets {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Printf("  %s %-62s %.2f%s (limit %g%s)\n", mark, t.Name, t.Value, t.Unit, t.Limit, t.Unit)
	}
}

func machine() string {
	model := "unknown cpu"
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	return fmt.Sprintf("%d cpus (%s), %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}

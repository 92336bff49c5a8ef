package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// Options are what one `codebench bench` run measures.
type Options struct {
	// Drivers are the drivers to compare, by the names doctor prints (""
	// alone: the one the worker would use).
	Drivers []string
	// N jobs in each load run, at each of Concurrency.
	N           int
	Concurrency []int
	// Pool sandboxes alive at once when measuring start, restore and
	// memory, and the pool's size in load runs; Rounds of them.
	Pool, Rounds int
	// Local loads through the pool directly, not RabbitMQ and a worker.
	Local bool
	// Stream measures hello.c jobs that stream against the same without.
	Stream bool
	// Anatomy hello.c jobs have their CPU read by phase and process.
	Anatomy int
	// Python adds a Python hello world load with its native baseline.
	Python bool
	// APIBurst, when set, measures the HTTP API: N wait=true submissions,
	// then a burst of this many.
	APIBurst int
	// Progress hears what is being measured (nil: nothing).
	Progress func(format string, a ...any)
}

// Harness is what a run needs from the process that wires it: each
// driver's environment, and the broker the loads run through.
type Harness struct {
	// Open opens the named driver's environment ("": the worker's
	// choice); close releases it.
	Open func(ctx context.Context, driver string) (env *Env, close func(), err error)
	// ManagementURL and RabbitURL are the broker's: each load makes a
	// virtual host of its own on it.
	ManagementURL, RabbitURL string
}

// Env is one driver, opened: how it describes itself, how to start its
// sandboxes, and how to run a worker and an API node on it.
type Env struct {
	Name, Detail string
	// Boundary and Targets are the driver's descriptor's.
	Boundary bool
	Targets  []sandbox.BenchTarget
	Driver   sandbox.Driver
	Spec     sandbox.Spec
	// BootLimit bounds a sandbox's start.
	BootLimit time.Duration
	Policy    job.Policy
	// Provisioner makes the warm pool's sandboxes (template clones where
	// the driver can).
	Provisioner func(ctx context.Context) (*provision.Provisioner, error)
	// OCIRuntime is the driver's own OCI runtime (its descriptor's), nil
	// where it has none.
	OCIRuntime func(stateDir string) ([]string, error)
	// Worker starts a worker of this driver consuming jobs at rabbitURL,
	// its pool and concurrency given, until ctx ends.
	Worker func(ctx context.Context, rabbitURL string, pool, concurrency int) (*Worker, error)
	// API serves an API node on ln in front of the workers at rabbitURL,
	// its store in dir, its queue bound maxQueue, until ctx ends.
	API func(ctx context.Context, rabbitURL, dir string, maxQueue int, ln net.Listener, onFinal func(*job.Status)) error
}

// Worker is a running worker of the benchmark's own.
type Worker struct {
	// Broker is the connection producers use to reach it.
	Broker broker.Config
	// Ready is how many of its pool's sandboxes are ready.
	Ready func() int
	// Stop stops it and waits.
	Stop func()
}

func (o Options) progress(format string, a ...any) {
	if o.Progress != nil {
		o.Progress(format, a...)
	}
}

// Run measures every driver of o, then the native baselines, and holds
// the figures to their targets.
func Run(ctx context.Context, o Options, h Harness) (*Report, error) {
	rep := &Report{Machine: Machine()}
	drivers := o.Drivers
	if len(drivers) == 0 {
		drivers = []string{""}
	}
	for _, name := range drivers {
		dr, err := runDriver(ctx, o, h, name)
		if err != nil {
			return nil, err
		}
		rep.Drivers = append(rep.Drivers, *dr)
	}
	o.progress("native baseline: %d runs", o.N)
	var err error
	if rep.Native, rep.NativeCPU, err = NativeProgram(ctx, HelloCProgram, o.N); err != nil {
		return nil, err
	}
	if o.Python && HelloPythonProgram.HasNative() {
		s, cpu, err := NativeProgram(ctx, HelloPythonProgram, o.N)
		if err != nil {
			return nil, err
		}
		rep.NativePython, rep.NativePythonCPU = &s, cpu
	}
	rep.Targets = Targets(rep)
	return rep, nil
}

// runDriver measures one driver: fresh starts, restores where it has
// them, then the load runs.
func runDriver(ctx context.Context, o Options, h Harness, name string) (*DriverReport, error) {
	e, closeEnv, err := h.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer closeEnv()
	launch := func(ctx context.Context) (*sandbox.Instance, error) {
		ctx, cancel := context.WithTimeout(ctx, e.BootLimit)
		defer cancel()
		return sandbox.Boot(ctx, e.Driver, e.Spec)
	}
	dr := &DriverReport{Name: e.Name, Detail: e.Detail, Boundary: e.Boundary, targets: e.Targets}
	o.progress("%s: %d rounds of %d fresh starts", dr.Name, o.Rounds, o.Pool)
	if dr.Start, err = MeasureVMs(ctx, dr.Name+" start to ready", launch, o.Rounds, o.Pool); err != nil {
		return nil, err
	}
	if o.Anatomy > 0 {
		o.progress("%s: %d hello.c jobs, one sandbox each, CPU by phase and process", dr.Name, o.Anatomy)
		if dr.Anatomy, err = MeasureAnatomy(ctx, AnatomyRun{
			Launch:    launch,
			Request:   e.Policy.Request(&job.Job{ID: "bench-anatomy", Language: "c", Code: HelloC}),
			CgroupCPU: sandboxCPU(),
		}, o.Anatomy); err != nil {
			return nil, err
		}
	}
	prov, err := e.Provisioner(ctx)
	if prov == nil {
		return nil, err
	}
	defer prov.Close()
	switch cp, checkpoints := e.Driver.(sandbox.Checkpointer); {
	case prov.Template() != nil:
		o.progress("%s: %d rounds of %d restores from the snapshot template", dr.Name, o.Rounds, o.Pool)
		r, err := MeasureVMs(ctx, dr.Name+" restore to ready", prov.Instance, o.Rounds, o.Pool)
		if err != nil {
			return nil, err
		}
		dr.Restore, dr.RestoreKind = &r, "snapshot template clone (used by the pool)"
	case checkpoints:
		o.progress("%s: %d rounds of %d restores from a checkpoint", dr.Name, o.Rounds, o.Pool)
		r, err := checkpointRestores(ctx, e, cp, o.Rounds, o.Pool)
		if err != nil {
			return nil, err
		}
		dr.Restore, dr.RestoreKind = r, "checkpoint after a warm-up, restored (not used by the pool: slower than a fresh start where measured)"
	}
	for _, c := range o.Concurrency {
		size := max(o.Pool, c)
		var l *LoadReport
		if o.Local {
			o.progress("%s: %d jobs, %d at once, through a pool of %d", dr.Name, o.N, c, size)
			mark := MarkCPU(sandboxCPU())
			if l, err = LoadLocal(ctx, prov, e.Policy, size, o.N, c); err == nil {
				l.CPU = mark.Since(o.N)
			}
		} else {
			o.progress("%s: %d jobs, %d at once, through RabbitMQ and a worker with a pool of %d", dr.Name, o.N, c, size)
			l, err = loadThroughWorker(ctx, h, e, HelloCProgram, size, o.N, c)
		}
		if err != nil {
			return nil, err
		}
		dr.Loads = append(dr.Loads, l)
	}
	if o.Python && !o.Local {
		o.progress("%s: %d Python hello world jobs, 1 at once, through RabbitMQ and a worker with a pool of %d", dr.Name, o.N, o.Pool)
		l, err := loadThroughWorker(ctx, h, e, HelloPythonProgram, o.Pool, o.N, 1)
		if err != nil {
			return nil, err
		}
		dr.Loads = append(dr.Loads, l)
	}
	if o.APIBurst > 0 && !o.Local {
		o.progress("%s: the HTTP API: %d wait=true submissions, then a burst of %d", dr.Name, o.N, o.APIBurst)
		if dr.API, err = apiThroughWorker(ctx, h, e, max(o.Pool, 2), o.N, o.APIBurst); err != nil {
			return nil, err
		}
	}
	if e.OCIRuntime != nil && os.Geteuid() == 0 {
		o.progress("%s: its own OCI runtime cold (a new sandbox per run, as runsc do), %d runs of each program", dr.Name, o.N)
		if dr.Cold, err = coldBaseline(ctx, e, o.N, o.Python); err != nil {
			return nil, err
		}
	}
	if o.Stream {
		for _, st := range []bool{false, true} {
			o.progress("%s: %d hello.c jobs, stream=%v, one at a time, through a pool of %d", dr.Name, o.N, st, o.Pool)
			l, err := LoadLocalJobs(ctx, prov, e.Policy, o.Pool, o.N, 1, func(i int) *job.Job {
				return &job.Job{ID: fmt.Sprint("bench-stream-", i), Language: "c", Code: HelloC, Stream: st}
			}, func(st *job.Status) bool { return st.Stdout == "Hello, World!" })
			if err != nil {
				return nil, err
			}
			l.Mode = fmt.Sprintf("local, stream=%v", st)
			dr.StreamLoads = append(dr.StreamLoads, l)
		}
	}
	return dr, nil
}

// vhostName is a virtual host's name for the driver's loads.
func vhostName(prefix, driver string) string {
	out := []rune(prefix)
	for _, r := range driver {
		if r != '-' {
			out = append(out, r)
		}
	}
	return string(out)
}

// startWorker starts a worker of e's on a virtual host of its own, warm:
// its pool full, as a worker that has been up a while.
func startWorker(ctx context.Context, h Harness, e *Env, vhost string, pool, c int) (*Worker, func(), error) {
	url, remove, err := TempVhost(ctx, h.ManagementURL, h.RabbitURL, vhost)
	if err != nil {
		return nil, nil, err
	}
	w, err := e.Worker(ctx, url, pool, c)
	if err != nil {
		remove()
		return nil, nil, err
	}
	stop := func() { w.Stop(); remove() }
	for w.Ready() < pool {
		select {
		case <-ctx.Done():
			stop()
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return w, stop, nil
}

// loadThroughWorker serves a load run with a worker of the benchmark's own
// (the production wiring, on this driver) on a virtual host of its own.
func loadThroughWorker(ctx context.Context, h Harness, e *Env, p Program, pool, n, c int) (*LoadReport, error) {
	w, stop, err := startWorker(ctx, h, e, vhostName("", e.Name), pool, c)
	if err != nil {
		return nil, err
	}
	defer stop()
	mark := MarkCPU(sandboxCPU())
	r, err := LoadBrokerProgram(ctx, w.Broker, p, n, c)
	if err != nil {
		return nil, err
	}
	r.CPU = mark.Since(n)
	return r, nil
}

// apiThroughWorker measures the HTTP API (served in this process, on a
// store of its own) in front of a worker of the benchmark's own, on a
// virtual host of its own.
func apiThroughWorker(ctx context.Context, h Harness, e *Env, pool, n, burst int) (*APIReport, error) {
	url, remove, err := TempVhost(ctx, h.ManagementURL, h.RabbitURL, vhostName("api", e.Name))
	if err != nil {
		return nil, err
	}
	defer remove()
	dir, err := os.MkdirTemp("", "codebench-bench-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	w, err := e.Worker(ctx, url, pool, 2)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex // guards timings, finished
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
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.API(actx, url, dir, burst, ln, onFinal) }()
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
		ready = err == nil && resp.StatusCode == http.StatusOK && w.Ready() >= pool
	}
	return MeasureAPI(ctx, APIRun{Base: base,
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

// coldBaseline measures the driver's own OCI runtime alone: the programs
// in a whole new sandbox per run, on the image's root tree, each run's
// processes counted in a cgroup of the benchmark's own.
func coldBaseline(ctx context.Context, e *Env, n int, python bool) ([]ColdReport, error) {
	m, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	if err != nil || !m.HasCPU() {
		return nil, fmt.Errorf("cold %s: no cgroup to count its CPU in: %v", e.Name, err)
	}
	id := fmt.Sprintf("bench-oci-cold-%d", os.Getpid())
	g, err := m.Create(id, hostcgroup.Limits{MemoryBytes: 4 << 30, Pids: 4096})
	if err != nil {
		return nil, err
	}
	defer g.Remove()
	counted := Counted{Procs: g.Procs(), CPU: func() (time.Duration, error) { return m.CPUUsage(id) },
		Sub: func(child string) string { return m.Path(id) + "/" + child }}
	progs := []Program{HelloCProgram}
	if python {
		progs = append(progs, HelloPythonProgram)
	}
	var out []ColdReport
	for _, p := range progs {
		wall, cpu, err := ColdOCI(ctx, e.OCIRuntime, e.Spec.RootDir, p, n, counted)
		if err != nil {
			return nil, err
		}
		out = append(out, ColdReport{Program: p.Name, Wall: wall, CPU: cpu})
	}
	return out, nil
}

// checkpointRestores measures restores from a checkpoint (runsc's) of a
// sandbox warmed up with a hello-world compile, against the fresh starts
// measured before it.
func checkpointRestores(ctx context.Context, e *Env, d sandbox.Checkpointer, rounds, alive int) (*VMReport, error) {
	inst, err := sandbox.Boot(ctx, e.Driver, e.Spec)
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
		_ = inst.Stop(ctx)
		return nil, err
	}
	r, err := MeasureVMs(ctx, "restore to ready", func(ctx context.Context) (*sandbox.Instance, error) {
		ctx, cancel := context.WithTimeout(ctx, e.BootLimit)
		defer cancel()
		return sandbox.StartInstance(ctx, func(ctx context.Context) (sandbox.VM, error) { return d.Restore(ctx, e.Spec, dir) })
	}, rounds, alive)
	return &r, err
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/pool"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/queue"
)

// HelloC is the program every benchmark runs: the seed's.
const HelloC = "#include <stdio.h>\r\nint main() {\r\n   printf(\"Hello, World!\");\r\n   return 0;\r\n}"

// sample is one job's phases.
type sample struct {
	e2e, queueWait, poolWait, publish, dispatch, compile, run, guest, teardown time.Duration
}

// LoadReport is the result of a load run.
type LoadReport struct {
	Mode         string  `json:"mode"`
	Program      string  `json:"program,omitempty"` // "" is hello.c
	TestsPerJob  int     `json:"tests_per_job,omitempty"`
	N            int     `json:"n"`
	Concurrency  int     `json:"concurrency"`
	Seconds      float64 `json:"seconds"`
	JobsPerSec   float64 `json:"jobs_per_second"`
	EndToEnd     Summary `json:"end_to_end"`
	QueueWait    Summary `json:"queue_wait"`
	PoolWait     Summary `json:"pool_wait"`
	Publish      Summary `json:"publish"`
	Dispatch     Summary `json:"agent_dispatch"`
	Compile      Summary `json:"compile"`
	Run          Summary `json:"run"`
	Guest        Summary `json:"in_guest"`
	HostOverhead Summary `json:"host_overhead"`
	Teardown     Summary `json:"teardown"`
	// CPU is where the run's CPU time went (nil: not measured).
	CPU *CPUUse `json:"cpu,omitempty"`
}

func (r *LoadReport) fill(samples []sample, took time.Duration) {
	col := func(f func(sample) time.Duration) []time.Duration {
		var out []time.Duration
		for _, s := range samples {
			if v := f(s); v > 0 {
				out = append(out, v)
			}
		}
		return out
	}
	r.Seconds = took.Seconds()
	r.JobsPerSec = float64(len(samples)) / took.Seconds()
	r.EndToEnd = Summarize("end to end", col(func(s sample) time.Duration { return s.e2e }))
	r.QueueWait = Summarize("  queue wait", col(func(s sample) time.Duration { return s.queueWait }))
	r.PoolWait = Summarize("  pool wait (take + ping)", col(func(s sample) time.Duration { return s.poolWait }))
	r.Publish = Summarize("  publish received+running", col(func(s sample) time.Duration { return s.publish }))
	r.Dispatch = Summarize("  agent dispatch", col(func(s sample) time.Duration { return s.dispatch }))
	r.Compile = Summarize("  compile (guest)", col(func(s sample) time.Duration { return s.compile }))
	r.Run = Summarize("  run (guest)", col(func(s sample) time.Duration { return s.run }))
	r.Guest = Summarize("  in guest (agent's own time)", col(func(s sample) time.Duration { return s.guest }))
	r.HostOverhead = Summarize("  host overhead (e2e - in guest)", col(func(s sample) time.Duration { return s.e2e - s.guest }))
	r.Teardown = Summarize("  VM teardown (after the job)", col(func(s sample) time.Duration { return s.teardown }))
}

func runConcurrent(ctx context.Context, n, c int, one func(ctx context.Context, i int) (sample, error)) ([]sample, time.Duration, error) {
	var (
		mu       sync.Mutex
		samples  []sample
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Go(func() {
			for i := range next {
				s, err := one(ctx, i)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					samples = append(samples, s)
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return samples, time.Since(start), firstErr
}

// LoadLocal runs n hello-world C jobs at concurrency c straight through a
// warm pool of prov's sandboxes, the worker's path without the broker.
func LoadLocal(ctx context.Context, prov *provision.Provisioner, policy job.Policy, poolSize, n, c int) (*LoadReport, error) {
	hello := func(i int) *job.Job { return &job.Job{ID: fmt.Sprint("bench-", i), Language: "c", Code: HelloC} }
	return LoadLocalJobs(ctx, prov, policy, poolSize, n, c, hello, func(st *job.Status) bool { return st.Stdout == "Hello, World!" })
}

// LoadLocalJobs is LoadLocal for any job: mk makes the i-th, ok says
// whether its final status is right.
func LoadLocalJobs(ctx context.Context, prov *provision.Provisioner, policy job.Policy, poolSize, n, c int,
	mk func(i int) *job.Job, ok func(*job.Status) bool) (*LoadReport, error) {
	p := pool.New(pool.Config{Size: poolSize, MaxBoots: max(2, poolSize/2)}, prov.Provision, quietLog(), nil)
	p.Start()
	defer p.Stop()
	for p.Stats().Ready < poolSize { // start warm
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	samples, took, err := runConcurrent(ctx, n, c, func(ctx context.Context, i int) (sample, error) {
		start := time.Now()
		sb, err := p.Take(ctx)
		if err != nil {
			return sample{}, err
		}
		poolWait := time.Since(start)
		st := execute.Job(ctx, policy, sb, mk(i), nil)
		e2e := time.Since(start)
		t := time.Now()
		_ = sb.Stop(ctx)
		teardown := time.Since(t)
		if st.Status != job.StatusDone || !ok(st) {
			return sample{}, fmt.Errorf("job %d: %s %s %s", i, st.Status, st.Message, st.Error)
		}
		s := fromTimings(st.Timings)
		s.e2e, s.poolWait, s.teardown = e2e, poolWait, teardown
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	r := &LoadReport{Mode: "local (pool, no broker)", N: n, Concurrency: c}
	r.fill(samples, took)
	return r, nil
}

// LoadBrokerProgram publishes n jobs running p, c in flight at once, to a
// running worker, and times publish to final status; the phases come from
// the statuses' timings.
func LoadBrokerProgram(ctx context.Context, qcfg broker.Config, p Program, n, c int) (*LoadReport, error) {
	conn, err := broker.Dial(ctx, qcfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	run := time.Now().UnixNano()
	samples, took, err := runConcurrent(ctx, n, c, func(ctx context.Context, i int) (sample, error) {
		id := fmt.Sprintf("bench-%d-%d", run, i)
		jctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		ch, err := conn.Follow(jctx, id)
		if err != nil {
			return sample{}, err
		}
		defer conn.Delete(queue.StatusQueue(id))
		body, _ := json.Marshal(job.Job{ID: id, Type: "code", Language: p.Language, Code: p.Code})
		start := time.Now()
		if err := conn.PublishJob(jctx, body); err != nil {
			return sample{}, err
		}
		for b := range ch {
			var st job.Status
			if json.Unmarshal(b, &st) != nil || !job.Final(st.Status) {
				continue
			}
			s := sample{e2e: time.Since(start)}
			if st.Status != job.StatusDone || st.Stdout != p.Want || st.Timings == nil {
				return sample{}, fmt.Errorf("job %s: %s %s %s", id, st.Status, st.Message, st.Error)
			}
			e2e := s.e2e
			s = fromTimings(st.Timings)
			s.e2e = e2e
			return s, nil
		}
		return sample{}, fmt.Errorf("job %s: no final status", id)
	})
	if err != nil {
		return nil, err
	}
	r := &LoadReport{Mode: "rabbitmq (running worker)", Program: p.Name, N: n, Concurrency: c}
	r.fill(samples, took)
	return r, nil
}

// fromTimings reads a status's phases into a sample.
func fromTimings(t *job.Timings) sample {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return sample{
		queueWait: us(t.QueueWaitUS), poolWait: us(t.PoolWaitUS), publish: us(t.PublishUS),
		dispatch: us(t.DispatchUS), compile: us(t.CompileUS), run: us(t.RunUS), guest: us(t.GuestUS),
	}
}

// NativeProgram compiles (when p's language does) and runs p on the host n
// times with the commands the guest uses: the baseline, its wall times and
// its CPU time per run (the compiler's and the program's, from the kernel's
// accounting of reaped children).
func NativeProgram(ctx context.Context, p Program, n int) (Summary, time.Duration, error) {
	dir, err := os.MkdirTemp("", "codebench-native-")
	if err != nil {
		return Summary{}, 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, p.Source), []byte(p.Code), 0o644); err != nil {
		return Summary{}, 0, err
	}
	var samples []time.Duration
	cpu0 := childrenCPU()
	for i := 0; i < n; i++ {
		start := time.Now()
		var out []byte
		for _, argv := range p.Commands {
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = dir
			if out, err = cmd.Output(); err != nil {
				return Summary{}, 0, fmt.Errorf("native %s: %w", argv[0], err)
			}
		}
		if string(out) != p.Want {
			return Summary{}, 0, fmt.Errorf("native %s: %q", p.Name, out)
		}
		samples = append(samples, time.Since(start))
	}
	return Summarize("native "+p.Name+" (host)", samples), (childrenCPU() - cpu0) / time.Duration(max(n, 1)), nil
}

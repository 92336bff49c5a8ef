package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/sandbox"
)

// Anatomy is where the CPU of one job's sandbox goes, phase by phase and
// process by process, from the host kernel's accounting (/proc/<pid>/stat:
// a process's own time, and its reaped children's), summed over Jobs
// sandboxes that each ran one job.
type Anatomy struct {
	Jobs   int            `json:"jobs"`
	Phases []AnatomyPhase `json:"phases"`
	// Guest is the job's own CPU as the guest kernel counts it (the
	// compile's and the run's processes), per job, in the job phase.
	GuestCompile time.Duration `json:"guest_compile_cpu_ns"`
	GuestRun     time.Duration `json:"guest_run_cpu_ns"`
}

// AnatomyPhase is one phase's wall time and CPU per job: by process kind,
// this process (the host side: pool, agent client), and the sandboxes'
// cgroup counter as a cross-check.
type AnatomyPhase struct {
	Name      string                   `json:"name"`
	Wall      time.Duration            `json:"wall_ns"`
	ByProcess map[string]time.Duration `json:"by_process_ns"`
	Host      time.Duration            `json:"host_side_ns"`
	Cgroup    time.Duration            `json:"cgroup_ns,omitempty"`
}

// Total is the phase's CPU per job: its processes' and the host side's.
func (p AnatomyPhase) Total() time.Duration {
	t := p.Host
	for _, d := range p.ByProcess {
		t += d
	}
	return t
}

// The process kinds a sandbox has. A gVisor sandbox: the runsc command the
// driver runs, the Sentry ("runsc-sandbox", the guest kernel), the gofer
// ("runsc-gofer", the file proxy) and, under systrap, the stub processes the
// Sentry runs the guest's user code in (the agent's and the job's; those
// that ended are the Sentry's reaped children). A VMM is its own kind.
const (
	KindStubs   = "guest user code (systrap stubs)"
	KindSentry  = "Sentry (runsc-sandbox)"
	KindCommand = "runsc (the command, outside the cgroup)"
	KindStopped = "the sandbox's cgroup after the last read (the stop)"
	// KindUnread is CPU the sandboxes' cgroup counted and no process read
	// had: processes that ended between two reads (runsc's helpers).
	KindUnread = "in the cgroup, in no process read"
)

// AnatomyRun is what Anatomy needs: a way to get one ready sandbox, and a
// way to run the job on it.
type AnatomyRun struct {
	Launch  Launch
	Request *agentproto.RunRequest
	// CgroupCPU reads the sandboxes' host cgroup counter (nil: none).
	CgroupCPU func() (time.Duration, error)
}

// MeasureAnatomy runs n jobs, one sandbox each, one at a time, reading every
// process of the sandbox at each phase's end: start (launch to agent
// ready), hand-out (a ping, as the pool does), the job (the agent's whole
// call: compile and run), stop (until every process is reaped, read from
// this process's reaped children: runsc's with all it reaped).
func MeasureAnatomy(ctx context.Context, r AnatomyRun, n int) (*Anatomy, error) {
	a := &Anatomy{Jobs: n}
	phases := map[string]*AnatomyPhase{}
	order := []string{"start", "hand-out", "job", "stop"}
	for _, name := range order {
		phases[name] = &AnatomyPhase{Name: name, ByProcess: map[string]time.Duration{}}
	}
	cgroup := func() time.Duration {
		if r.CgroupCPU == nil {
			return 0
		}
		d, _ := r.CgroupCPU()
		return d
	}
	for i := 0; i < n; i++ {
		t0, self0, cg0 := time.Now(), selfCPU(), cgroup()
		inst, err := r.Launch(ctx)
		if err != nil {
			return nil, err
		}
		mark := func(name string, since time.Time, self0, cg0 time.Duration, prev map[string]time.Duration) (map[string]time.Duration, time.Time, time.Duration, time.Duration) {
			now, self, cg := time.Now(), selfCPU(), cgroup()
			cur := processTreeCPU(sandbox.PIDs(inst.VM))
			p := phases[name]
			p.Wall += now.Sub(since)
			p.Host += self - self0
			p.Cgroup += cg - cg0
			var inCgroup time.Duration
			for k, v := range cur {
				p.ByProcess[k] += v - prev[k]
				if k != KindCommand {
					inCgroup += v - prev[k]
				}
			}
			if r.CgroupCPU != nil {
				p.ByProcess[KindUnread] += max(cg-cg0-inCgroup, 0)
			}
			return cur, now, self, cg
		}
		cur, t, self, cg := mark("start", t0, self0, cg0, nil)
		if err := inst.Agent.Ping(ctx); err != nil {
			_ = cleanup.Run(ctx, inst.Stop)
			return nil, err
		}
		cur, t, self, cg = mark("hand-out", t, self, cg, cur)
		res, err := inst.Agent.Run(ctx, r.Request, nil)
		if err != nil {
			_ = cleanup.Run(ctx, inst.Stop)
			return nil, err
		}
		if res.Compile != nil {
			a.GuestCompile += time.Duration(res.Compile.CPUUserUS+res.Compile.CPUSysUS) * time.Microsecond
		}
		if res.Run != nil {
			a.GuestRun += time.Duration(res.Run.CPUUserUS+res.Run.CPUSysUS) * time.Microsecond
		}
		cur, t, self, cg = mark("job", t, self, cg, cur)
		if err := cleanup.Run(ctx, inst.Stop); err != nil {
			return nil, err
		}
		// The processes are gone: the stop is read from the sandboxes'
		// cgroup counter (runsc's command, outside it, from this
		// process's reaped children where runsc reaped it last).
		p := phases["stop"]
		p.Wall += time.Since(t)
		p.Host += selfCPU() - self
		p.Cgroup += cgroup() - cg
		p.ByProcess[KindStopped] += cgroup() - cg
	}
	for _, name := range order {
		p := phases[name]
		p.Wall /= time.Duration(max(n, 1))
		p.Host /= time.Duration(max(n, 1))
		p.Cgroup /= time.Duration(max(n, 1))
		for k := range p.ByProcess {
			p.ByProcess[k] /= time.Duration(max(n, 1))
		}
		a.Phases = append(a.Phases, *p)
	}
	a.GuestCompile /= time.Duration(max(n, 1))
	a.GuestRun /= time.Duration(max(n, 1))
	return a, nil
}

// String is the anatomy as a table: a row per phase, a column per kind of
// process, CPU ms per job.
func (a *Anatomy) String() string {
	if a == nil {
		return ""
	}
	kinds := map[string]bool{}
	for _, p := range a.Phases {
		for k := range p.ByProcess {
			kinds[k] = true
		}
	}
	var cols []string
	for k := range kinds {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CPU per job by phase and process (ms, host kernel accounting, %d jobs, one sandbox each)\n", a.Jobs)
	fmt.Fprintf(&b, "      %-9s %8s", "phase", "wall")
	for _, c := range cols {
		fmt.Fprintf(&b, " | %s", c)
	}
	fmt.Fprintf(&b, " | host side (pool, agent client) | total | sandboxes' cgroup\n")
	var total time.Duration
	for _, p := range a.Phases {
		fmt.Fprintf(&b, "      %-9s %8s", p.Name, ms(p.Wall))
		for _, c := range cols {
			fmt.Fprintf(&b, " | %s", ms(p.ByProcess[c]))
		}
		fmt.Fprintf(&b, " | %s | %s | %s\n", ms(p.Host), ms(p.Total()), ms(p.Cgroup))
		total += p.Total()
	}
	fmt.Fprintf(&b, "      total CPU per job %s ms; in the job phase the guest counts %s ms for the compile's processes and %s ms for the run's: the rest of the phase, %s ms, is the agent, the guest kernel's and the file system's own work",
		ms(total), ms(a.GuestCompile), ms(a.GuestRun), ms(a.jobPhase().Total()-a.GuestCompile-a.GuestRun))
	return b.String()
}

func (a *Anatomy) jobPhase() AnatomyPhase {
	for _, p := range a.Phases {
		if p.Name == "job" {
			return p
		}
	}
	return AnatomyPhase{}
}

// processTreeCPU is the CPU time of pids and all their descendants, by
// kind: a process's own time plus its reaped children's, kind from its
// command line's first word (a process with none, a systrap stub, is
// KindStubs).
func processTreeCPU(pids []int) map[string]time.Duration {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	stats := map[int][]string{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f := statFields(pid)
		if len(f) < 15 {
			continue
		}
		stats[pid] = f
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := map[string]time.Duration{}
	seen := map[int]bool{}
	var walk func(pid int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		f, ok := stats[pid]
		if !ok {
			return
		}
		n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
		kind := processKind(pid)
		out[kind] += ticks(n(11) + n(12)) // utime, stime
		// Reaped children (cutime, cstime): the Sentry's are stubs.
		reaped := kind
		if kind == KindSentry {
			reaped = KindStubs
		}
		out[reaped] += ticks(n(13) + n(14))
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, p := range pids {
		walk(p)
	}
	return out
}

// statFields are /proc/<pid>/stat's fields after the command name: [0] is
// the state, [1] the parent.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return nil
	}
	return strings.Fields(s[end+1:])
}

func processKind(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	arg0, _, _ := strings.Cut(string(b), "\x00")
	switch arg0 = filepath.Base(arg0); arg0 {
	case ".", "":
		return KindStubs
	case "runsc-sandbox":
		return KindSentry
	case "runsc-gofer":
		return "gofer (runsc-gofer)"
	case "runsc":
		return KindCommand
	}
	return arg0
}

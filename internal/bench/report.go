package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
)

// Report is everything "codebench bench" measured, in one run.
type Report struct {
	Machine string         `json:"machine"`
	Drivers []DriverReport `json:"drivers"`
	Native  Summary        `json:"native_baseline"`
	// NativeCPU is the baseline's CPU time per run (compile and run).
	NativeCPU time.Duration `json:"native_cpu_per_run_ns"`
	// NativePython is the Python hello world's baseline (none where the
	// host has no python3).
	NativePython    *Summary      `json:"native_python,omitempty"`
	NativePythonCPU time.Duration `json:"native_python_cpu_per_run_ns,omitempty"`
	Targets         []Target      `json:"targets"`
}

// DriverReport is one driver's measurements.
type DriverReport struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Start is a fresh sandbox, start to agent ready; Restore one restored
	// from a saved one (RestoreKind says how, and whether the pool uses it).
	Start       VMReport      `json:"start"`
	Restore     *VMReport     `json:"restore,omitempty"`
	RestoreKind string        `json:"restore_kind,omitempty"`
	Loads       []*LoadReport `json:"loads"`
	// StreamLoads are hello.c jobs without, then with streaming.
	StreamLoads []*LoadReport `json:"stream_loads,omitempty"`
	// Anatomy is where one hello.c job's CPU goes, by phase and process.
	Anatomy *Anatomy `json:"anatomy,omitempty"`
	// Cold is the driver's own OCI runtime alone (gVisor's runsc), where
	// its descriptor offers one: each program in a whole new sandbox per
	// run, no pool, no agent.
	Cold []ColdReport `json:"cold_runsc,omitempty"`
	// API is the HTTP API in front of a worker of this driver.
	API *APIReport `json:"api,omitempty"`
	// Boundary and targets are the driver's own description: whether it
	// is a security boundary, and the figures it promises.
	Boundary bool                  `json:"boundary"`
	targets  []sandbox.BenchTarget // its descriptor's
}

// cold is the driver's cold runsc do report of program, or nil.
func (d *DriverReport) cold(program string) *ColdReport {
	for i := range d.Cold {
		if d.Cold[i].Program == program {
			return &d.Cold[i]
		}
	}
	return nil
}

// ColdReport is one program's cold runsc do runs.
type ColdReport struct {
	Program string        `json:"program"`
	Wall    Summary       `json:"wall"`
	CPU     time.Duration `json:"cpu_per_run_ns"`
}

// Target is one figure and its limit.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Met   bool    `json:"met"`
	Unit  string  `json:"unit"`
}

// measureOf is what a measure reads: the driver's report, the emulator's
// (the driver that is no boundary) where the run has one, the whole run
// (the baselines), and the driver's hello.c load at a concurrency.
type measureOf struct {
	d, emulator *DriverReport
	run         *Report
	load        func(d *DriverReport, c int) *LoadReport
}

// measures are the figures a driver's BenchTargets may name: each of
// a driver's report, and the emulator's in the same run where there is one;
// false where the run has no figure.
var measures = map[string]func(m measureOf) (float64, bool){
	"end-to-end p50 at c=1 (ms)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		return msOf(l, func(l *LoadReport) time.Duration { return l.EndToEnd.P50 }), l != nil
	},
	"pool wait p50 at c=1 (ms)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		return msOf(l, func(l *LoadReport) time.Duration { return l.PoolWait.P50 }), l != nil
	},
	"pool wait p99 at c=1 (ms)": func(m measureOf) (float64, bool) {
		l := m.load(m.d, 1)
		return msOf(l, func(l *LoadReport) time.Duration { return l.PoolWait.P99 }), l != nil
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
			if l.Program == HelloPythonProgram.Name && l.Concurrency == 1 && m.run.NativePython != nil && m.run.NativePython.P50 > 0 {
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
		l, cold := m.load(m.d, 1), m.d.cold(HelloCProgram.Name)
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

func msOf(l *LoadReport, f func(*LoadReport) time.Duration) float64 {
	if l == nil {
		return 0
	}
	return float64(f(l)) / float64(time.Millisecond)
}

func Targets(r *Report) []Target {
	var ts []Target
	add := func(name string, v, limit float64, atLeast bool, unit string) {
		met := v <= limit
		if atLeast {
			met = v >= limit
		}
		ts = append(ts, Target{Name: name, Value: v, Limit: limit, Met: met, Unit: unit})
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	byName := map[string]*DriverReport{}
	for i := range r.Drivers {
		byName[r.Drivers[i].Name] = &r.Drivers[i]
	}
	load := func(d *DriverReport, c int) *LoadReport {
		for _, l := range append(append([]*LoadReport{}, d.Loads...), d.StreamLoads...) {
			if l.Concurrency == c && (l.Program == "" || l.Program == HelloCProgram.Name) {
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
	// Each driver's own targets, by the measures every report has.
	var emulator *DriverReport
	for i := range r.Drivers {
		if !r.Drivers[i].Boundary {
			emulator = &r.Drivers[i]
		}
	}
	for i := range r.Drivers {
		d := &r.Drivers[i]
		for _, bt := range d.targets {
			measure, ok := measures[bt.Measure]
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

// Print writes r for a person to read.
func Print(w io.Writer, r *Report) {
	fmt.Fprintf(w, "machine: %s\n\n", r.Machine)
	for _, d := range r.Drivers {
		fmt.Fprintf(w, "%s (%s)\n", d.Name, d.Detail)
		fmt.Fprintln(w, " ", d.Start.Ready)
		fmt.Fprintf(w, "  idle PSS (median, %d alive): %d KiB\n", d.Start.Alive, d.Start.PSSKB)
		if d.Restore != nil {
			fmt.Fprintln(w, " ", d.Restore.Ready, "["+d.RestoreKind+"]")
			fmt.Fprintf(w, "  idle PSS after restore: %d KiB\n", d.Restore.PSSKB)
		}
		if d.Anatomy != nil {
			fmt.Fprintln(w, " ", d.Anatomy)
		}
		if d.API != nil {
			fmt.Fprintln(w, " ", d.API)
		}
		for _, c := range d.Cold {
			fmt.Fprintln(w, " ", c.Wall)
			fmt.Fprintf(w, "    CPU per run: %.3f s (the sandbox's processes, counted in a cgroup)\n", c.CPU.Seconds())
		}
		for _, l := range append(append([]*LoadReport{}, d.Loads...), d.StreamLoads...) {
			native, nativeCPU := r.Native, r.NativeCPU
			if l.Program == HelloPythonProgram.Name {
				native, nativeCPU = Summary{}, 0
				if r.NativePython != nil {
					native, nativeCPU = *r.NativePython, r.NativePythonCPU
				}
			}
			prog := l.Program
			if prog == "" {
				prog = HelloCProgram.Name
			}
			fmt.Fprintf(w, "  load: %s, %d %s jobs, %d at once: %.1f s, %.2f jobs/s\n", l.Mode, l.N, prog, l.Concurrency, l.Seconds, l.JobsPerSec)
			for _, s := range []Summary{l.EndToEnd, l.QueueWait, l.PoolWait, l.Publish, l.Dispatch, l.Compile, l.Run, l.Guest, l.HostOverhead, l.Teardown} {
				if s.N > 0 {
					fmt.Fprintln(w, "   ", s)
				}
			}
			if native.P50 > 0 {
				fmt.Fprintf(w, "    end to end / native (p50): %.1fx\n", float64(l.EndToEnd.P50)/float64(native.P50))
			}
			cold := d.cold(prog)
			if cold != nil && cold.Wall.P50 > 0 {
				fmt.Fprintf(w, "    end to end / cold runsc (p50): %.2fx\n", float64(l.EndToEnd.P50)/float64(cold.Wall.P50))
			}
			if l.CPU != nil {
				fmt.Fprintln(w, "   ", l.CPU)
				if nativeCPU > 0 {
					fmt.Fprintf(w, "    CPU per job / native compile and run: %.1fx\n", l.CPU.PerJobSec/nativeCPU.Seconds())
				}
				if cold != nil && cold.CPU > 0 {
					fmt.Fprintf(w, "    CPU per job / cold runsc: %.2fx\n", l.CPU.PerJobSec/cold.CPU.Seconds())
				}
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, " ", r.Native)
	if r.NativeCPU > 0 {
		fmt.Fprintf(w, "  native CPU per compile and run: %.3f s\n", r.NativeCPU.Seconds())
	}
	if r.NativePython != nil {
		fmt.Fprintln(w, " ", *r.NativePython)
		fmt.Fprintf(w, "  native CPU per run: %.3f s\n", r.NativePythonCPU.Seconds())
	}
	fmt.Fprintln(w, "\nTargets")
	for _, t := range r.Targets {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %s %-62s %.2f%s (limit %g%s)\n", mark, t.Name, t.Value, t.Unit, t.Limit, t.Unit)
	}
}

// Machine says what this machine is: CPUs, model, OS.
func Machine() string {
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

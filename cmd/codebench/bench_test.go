package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/codebench/codebench/internal/bench"
	"github.com/codebench/codebench/internal/testenv"
)

// TestBenchShort runs "codebench bench" in a short mode, as CI does, on both
// drivers in one run: the benchmark must keep working, and its headline
// comparisons, measured in this same run, must hold.
func TestBenchShort(t *testing.T) {
	vm := testenv.NeedVM(t)
	testenv.NeedGVisor(t)
	out := runBench(t, filepath.Join(vm.RunDir, "b"), "--drivers", "gvisor,qemu-tcg", "-n", "3", "-c", "1,2", "--pool", "2", "--rounds", "1", "--anatomy", "1", "--json")
	var rep bench.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if len(rep.Drivers) != 2 || rep.Native.N != 3 || len(rep.Targets) == 0 {
		t.Fatalf("incomplete report: %s", out)
	}
	gv, tcg := rep.Drivers[0], rep.Drivers[1]
	// gVisor's own targets (its descriptor's), the cross-driver one
	// included: the emulator ran in the same run.
	for _, want := range []string{"gvisor: jobs/s at c=2", "gvisor: end-to-end p50 at c=1 / the emulator's in the same run (x)"} {
		if !slices.ContainsFunc(rep.Targets, func(tg bench.Target) bool { return tg.Name == want && tg.Value > 0 }) {
			t.Fatalf("no target %q with a value: %+v", want, rep.Targets)
		}
	}
	// Issue 23's measures: gVisor alone (a cold sandbox per run, its CPU
	// counted), the job's CPU by phase and process, Python with its native
	// baseline, and the ratios between them.
	for _, want := range []string{"gvisor: machine CPU per job at c=1 / a cold runsc's (x)", "gvisor: end-to-end p50 at c=1 / native gcc and run (x)"} {
		if !slices.ContainsFunc(rep.Targets, func(tg bench.Target) bool { return tg.Name == want && tg.Value > 0 }) {
			t.Fatalf("no target %q with a value: %+v", want, rep.Targets)
		}
	}
	if len(gv.Cold) != 2 || gv.Cold[0].CPU <= 0 || gv.Cold[1].Wall.N != 3 {
		t.Fatalf("cold runsc: %+v", gv.Cold)
	}
	for _, d := range rep.Drivers {
		a := d.Anatomy
		if a == nil || a.Jobs != 1 || len(a.Phases) != 4 || a.Phases[2].Name != "job" || a.Phases[2].Total() <= 0 || a.GuestCompile <= 0 {
			t.Fatalf("%s: anatomy %+v", d.Name, a)
		}
	}
	if ks := gv.Anatomy.Phases[0].ByProcess; ks["Sentry (runsc-sandbox)"] <= 0 {
		t.Fatalf("gvisor's start: no CPU in the Sentry: %v", ks)
	}
	if !gv.Boundary || tcg.Boundary {
		t.Fatalf("boundaries: gvisor %v, qemu-tcg %v", gv.Boundary, tcg.Boundary)
	}
	for _, d := range rep.Drivers {
		if d.Start.Ready.N != 2 || d.Restore == nil || d.Restore.Ready.N != 2 || len(d.Loads) != 3 || d.Start.PSSKB <= 0 ||
			d.Loads[2].Program != "hello.py" {
			t.Fatalf("%s: incomplete: %+v", d.Name, d)
		}
		for _, l := range d.Loads {
			if l.EndToEnd.N != 3 {
				t.Fatalf("%s: load %+v", d.Name, l)
			}
		}
	}
	// A QEMU restore is an order of magnitude faster than a cold boot
	// (~10x here): 5x holds on a loaded machine. Which driver's jobs are
	// faster is within the noise of 3 jobs while other packages' tests
	// run (gVisor 0.79x TCG at c=1 in docs/BENCHMARKS.md, slower at c=2):
	// that is the benchmark's to say, not a test's.
	if tcg.Restore.Ready.P50*5 > tcg.Start.Ready.P50 {
		t.Fatalf("qemu restore p50 %s is not 5x faster than cold boot p50 %s", tcg.Restore.Ready.P50, tcg.Start.Ready.P50)
	}
	t.Logf("gvisor: start p50 %s, e2e p50 %s; qemu-tcg: cold %s restore %s, e2e p50 %s",
		gv.Start.Ready.P50, gv.Loads[0].EndToEnd.P50, tcg.Start.Ready.P50, tcg.Restore.Ready.P50, tcg.Loads[0].EndToEnd.P50)
}

// TestBenchTests runs "codebench bench --tests" small: every figure of the
// cost-per-test report is measured (the per-test gaps of each job, the
// agent's anatomy by step, gVisor's own floor and the native loop, the
// Python runs, tests per second at both concurrencies).
func TestBenchTests(t *testing.T) {
	vm := testenv.NeedVM(t)
	testenv.NeedGVisor(t)
	t.Setenv("CODEBENCH_DRIVER", "gvisor") // its floors need the driver's own OCI runtime
	out := runBench(t, filepath.Join(vm.RunDir, "bt"), "--tests", "6", "-n", "2", "--json")
	var r bench.TestsReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	// 2 jobs of 6 tests: 5 gaps each; the floors three times 100 runs.
	if r.PerTest.N != 10 || r.PerTestChecker.N != 10 || r.PerTest.P50 <= 0 || r.Python.N != 8 || r.PythonSecond.N != 8 {
		t.Fatalf("per test: %+v %+v %+v", r.PerTest, r.PerTestChecker, r.Python)
	}
	if r.FloorRun.N != 300 || r.FloorChecker.N != 300 || r.FloorPython.N != 300 || r.FloorRun.P50 <= 0 || r.UnboundedRun.N != 300 {
		t.Fatalf("floor: %+v %+v %+v", r.FloorRun, r.FloorChecker, r.FloorPython)
	}
	for _, step := range []string{"test: started (fork and exec from the launcher)", "test: ran (to exit and the pipes' end)"} {
		if r.Anatomy[step] <= 0 || r.AnatomyChecker["check: "+step[len("test: "):]] <= 0 {
			t.Fatalf("anatomy has no %q: %v %v", step, r.Anatomy, r.AnatomyChecker)
		}
	}
	if r.TestsPerSecond1 <= 0 || r.TestsPerSecond2 <= 0 {
		t.Fatalf("tests per second: %v %v", r.TestsPerSecond1, r.TestsPerSecond2)
	}
}

// runBench runs "codebench bench args..." with its sandboxes under runDir
// and returns its output.
func runBench(t *testing.T, runDir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"bench"}, args...)...)
	cmd.Env = append(os.Environ(), "CODEBENCH_RUN_DIR="+runDir)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("bench %v: %v\n%s", args, err, stderr)
	}
	return out
}

// TestBenchSandboxes runs bench --sandboxes small, on real gVisor
// sandboxes and the real E2B SDK, and checks every figure.
func TestBenchSandboxes(t *testing.T) {
	gv := testenv.NeedGVisor(t)
	testenv.NeedE2BSDK(t, t.TempDir()) // installed (or skipped) as the bench needs it
	t.Setenv("CODEBENCH_DRIVER", "gvisor")
	out := runBench(t, filepath.Join(gv.RunDir, "bs"), "--sandboxes", "2", "--idle", "2", "--paused", "3", "--json")
	var r bench.SandboxesReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if r.Create.N != 2 || r.Burst.N != 10 || r.Run.N != 20 || r.Pause.N != 2 || r.Resume.N != 2 || r.Run.P50 <= 0 || r.Pause.P50 <= 0 {
		t.Fatalf("timings: %+v", r)
	}
	if r.FloorLogin.N != 50 || r.FloorLogin.P50 <= 0 || r.NativeLogin.N != 50 {
		t.Fatalf("floors: %+v %+v", r.FloorLogin, r.NativeLogin)
	}
	if r.Idle != 2 || r.IdlePSSKBP50 <= 0 || r.Paused != 3 || r.PausedKBP50 <= 0 {
		t.Fatalf("idle and paused: %+v", r)
	}
	if len(r.Targets) != 5 {
		t.Fatalf("targets: %+v", r.Targets)
	}
}

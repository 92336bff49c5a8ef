package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// The cost-per-test benchmark's programs: a C program that reads two
// numbers and prints their sum, and a C checker that compares the number
// it printed with the expected one (testlib's argument order).
const (
	SumC = `#include <stdio.h>
int main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 1; printf("%ld\n", a + b); return 0; }
`
	SumCheckerC = `#include <stdio.h>
int main(int argc, char **argv) {
    if (argc < 4) return 3;
    FILE *e = fopen(argv[2], "r"), *o = fopen(argv[3], "r");
    long want, got;
    if (!e || fscanf(e, "%ld", &want) != 1) return 3;
    if (!o || fscanf(o, "%ld", &got) != 1) { puts("no number"); return 1; }
    if (got != want) { printf("expected %ld, got %ld\n", want, got); return 1; }
    puts("ok");
    return 0;
}
`
)

// TestsOptions are the cost-per-test benchmark's sizes.
type TestsOptions struct {
	// Tests per job (the many-test jobs), and jobs of each kind.
	Tests, N int
	// Floor runs of each program in the floor's and the native loop.
	Floor int
	// OCIRuntime and RootDir: the driver's own runtime and the image's
	// root tree, for gVisor's own floor (nil: no floor).
	OCIRuntime func(stateDir string) ([]string, error)
	RootDir    string
	// CPUs is the driver's CPU bound per sandbox (its vCPUs' bandwidth in
	// the host's cgroup): the floor runs under the same bound, and once
	// without it.
	CPUs     int
	Progress func(format string, a ...any)
}

// TestsReport is the cost-per-test benchmark's result.
type TestsReport struct {
	Driver string `json:"driver"`
	Image  string `json:"image"`
	Tests  int    `json:"tests_per_job"`
	N      int    `json:"jobs"`
	// PerTest is the time from one test's start to the next's inside the
	// agent, over every job's tests (judged by the expected output);
	// PerTestChecker the same with the checker.
	PerTest        Summary `json:"per_test"`
	PerTestChecker Summary `json:"per_test_checker"`
	// Anatomy is the agent's time per test by step, in microseconds
	// (means), without and with the checker.
	Anatomy        map[string]float64 `json:"anatomy_us"`
	AnatomyChecker map[string]float64 `json:"anatomy_checker_us"`
	// FloorRun and FloorChecker: gVisor's own, the same binaries run by a
	// shell with file redirects inside one sandbox of the driver's own
	// runtime, under the same CPU bound as the driver's sandboxes;
	// Unbounded* the same without it; Native* the same loop on this host
	// (Debian's gcc, python3).
	FloorRun         Summary `json:"floor_run"`
	FloorChecker     Summary `json:"floor_checker"`
	FloorPython      Summary `json:"floor_python"`
	UnboundedRun     Summary `json:"unbounded_run"`
	UnboundedChecker Summary `json:"unbounded_checker"`
	UnboundedPython  Summary `json:"unbounded_python"`
	NativeRun        Summary `json:"native_run"`
	NativeChecker    Summary `json:"native_checker"`
	NativePython     Summary `json:"native_python"`
	// Python is a Python hello world's run (the agent's run phase) in a
	// fresh sandbox of the pool, one job per sandbox.
	Python Summary `json:"python_fresh"`
	// PythonSecond is the next run in the same sandbox.
	PythonSecond Summary `json:"python_second"`
	// TestsPerSecond: jobs of Tests tests through a pool (compile, tests,
	// a fresh sandbox each), one at a time and two at once.
	TestsPerSecond1 float64 `json:"tests_per_second_c1"`
	TestsPerSecond2 float64 `json:"tests_per_second_c2"`
}

// sumTests are n tests of the sum program, with their expected outputs.
func sumTests(n int) []job.Test {
	tests := make([]job.Test, n)
	for k := range tests {
		want := strconv.Itoa(2*k+1) + "\n"
		tests[k] = job.Test{Stdin: fmt.Sprintf("%d %d\n", k, k+1), ExpectedOutput: &want}
	}
	return tests
}

// profiled is a sandbox whose requests ask the agent for its profile.
type profiled struct {
	execute.Sandbox
	last *agentproto.Profile
}

func (p *profiled) Run(ctx context.Context, req *agentproto.RunRequest, progress func(agentproto.Output)) (*agentproto.RunResult, error) {
	req.Profile = true
	res, err := p.Sandbox.Run(ctx, req, progress)
	if res != nil {
		p.last = res.Profile
	}
	return res, err
}

// TestsVariant is one image's sandboxes: the benchmark measures every
// variant step by step, interleaved (job i of each variant, then job
// i+1), so that a before and an after see the same hour's machine.
type TestsVariant struct {
	Prov   *provision.Provisioner
	Policy job.Policy
}

// MeasureTests runs the cost-per-test benchmark on each variant's
// sandboxes, interleaved; the floors (gVisor's own, native) are measured
// once for all, on o.RootDir, around the jobs.
func MeasureTests(ctx context.Context, variants []TestsVariant, o TestsOptions) ([]*TestsReport, error) {
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			o.Progress(format, a...)
		}
	}
	reports := make([]*TestsReport, len(variants))
	for v := range reports {
		reports[v] = &TestsReport{Tests: o.Tests, N: o.N}
	}
	// One fresh sandbox per job, started before the job and not during it
	// (a pool would start the next one while the job runs: gVisor's own
	// floor has no such neighbour), and idle for two periods of the host's
	// CPU bandwidth limit at hand-out, as a pool member is: its start's
	// burst is not billed to the job.
	one := func(v TestsVariant, j *job.Job) (*job.Status, *agentproto.Profile, error) {
		sb, err := v.Prov.Provision(ctx)
		if err != nil {
			return nil, nil, err
		}
		time.Sleep(2 * hostcgroup.CPUPeriod)
		ps := &profiled{Sandbox: sb}
		st := execute.Job(ctx, v.Policy, ps, j, nil)
		_ = sb.Stop(ctx)
		if st.Status != job.StatusDone || st.Verdict != job.VerdictOK {
			return nil, nil, fmt.Errorf("job %s: %s %s %s %s", j.ID, st.Status, st.Verdict, st.Message, st.Error)
		}
		return st, ps.last, nil
	}
	// The floors: before the jobs, between their kinds, after them, and
	// their samples pooled, so that both sides see the same hour's machine.
	floor, unbounded, native := map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
	bound, release, err := floorCgroup(max(o.CPUs, 1))
	if err != nil {
		return nil, err
	}
	defer release()
	floors := func() error {
		if o.OCIRuntime != nil {
			for _, f := range []struct {
				cgroup string
				into   map[string][]time.Duration
			}{{bound, floor}, {"", unbounded}} {
				progress("gVisor's own: each program %d times by a shell inside one sandbox of the runtime (CPU bound: %v)", o.Floor, f.cgroup != "")
				out, err := runOCIScript(ctx, o.OCIRuntime, o.RootDir, f.cgroup, floorScript(o.Floor), floorArgs())
				if err != nil {
					return fmt.Errorf("floor: %w", err)
				}
				if err := parseFloor(out, f.into); err != nil {
					return err
				}
			}
		}
		if nativeCommand("gcc") != "" && nativeCommand("python3") != "" && nativeCommand("bash") != "" {
			progress("native: the same loop on this host, Debian's gcc and python3")
			out, err := runNativeScript(ctx, floorScript(o.Floor), floorArgs())
			if err != nil {
				return fmt.Errorf("native: %w", err)
			}
			return parseFloor(out, native)
		}
		return nil
	}
	if err := floors(); err != nil {
		return nil, err
	}
	checker := &job.Checker{Language: "c", Code: SumCheckerC}
	for _, withChecker := range []bool{false, true} {
		progress("%d jobs of %d tests for each of %d images, checker %v, one sandbox each, one at a time", o.N, o.Tests, len(variants), withChecker)
		gaps := make([][]time.Duration, len(variants))
		steps := make([]map[string]float64, len(variants))
		for v := range steps {
			steps[v] = map[string]float64{}
		}
		for i := range o.N {
			for v, variant := range variants {
				j := &job.Job{ID: fmt.Sprintf("bench-cost-%v-%d-%d", withChecker, v, i), Language: "c", Code: SumC, Tests: sumTests(o.Tests)}
				if withChecker {
					j.Checker = checker
				}
				st, prof, err := one(variant, j)
				if err != nil {
					return nil, err
				}
				if len(st.Tests) != o.Tests {
					return nil, fmt.Errorf("job %s: %d tests judged of %d", j.ID, len(st.Tests), o.Tests)
				}
				if prof == nil {
					return nil, fmt.Errorf("job %s: the agent sent no profile", j.ID)
				}
				for k := 1; k < len(prof.TestStartsUS); k++ {
					gaps[v] = append(gaps[v], time.Duration(prof.TestStartsUS[k]-prof.TestStartsUS[k-1])*time.Microsecond)
				}
				for name, us := range prof.StepsUS {
					if isTestStep(name) {
						steps[v][name] += float64(us) / float64(o.Tests*o.N)
					}
				}
			}
		}
		for v, r := range reports {
			if withChecker {
				r.PerTestChecker, r.AnatomyChecker = Summarize("per test, checker", gaps[v]), steps[v]
			} else {
				r.PerTest, r.Anatomy = Summarize("per test", gaps[v]), steps[v]
			}
		}
		if !withChecker {
			if err := floors(); err != nil {
				return nil, err
			}
		}
	}
	// Four times as many: a run under the CPU bound is either quick or
	// stalled to the next period, and the median needs both in proportion.
	progress("%d Python hello worlds for each image, two runs in each of %d fresh sandboxes", 8*o.N, 4*o.N)
	first, second := make([][]time.Duration, len(variants)), make([][]time.Duration, len(variants))
	for i := range 4 * o.N {
		for v, variant := range variants {
			st, _, err := one(variant, &job.Job{ID: fmt.Sprintf("bench-cost-py-%d-%d", v, i), Language: "python", Code: HelloPythonProgram.Code, Runs: 2})
			if err != nil {
				return nil, err
			}
			if len(st.Runs) != 2 {
				return nil, fmt.Errorf("job %s: %d runs", st.ID, len(st.Runs))
			}
			first[v] = append(first[v], time.Duration(st.Runs[0].WallUS)*time.Microsecond)
			second[v] = append(second[v], time.Duration(st.Runs[1].WallUS)*time.Microsecond)
		}
	}
	if err := floors(); err != nil {
		return nil, err
	}
	for v, r := range reports {
		r.Python, r.PythonSecond = Summarize("python hello, fresh sandbox", first[v]), Summarize("python hello, the next run", second[v])
		r.FloorRun, r.FloorChecker, r.FloorPython = Summarize("run", floor["run"]), Summarize("checker", floor["checker"]), Summarize("python", floor["python"])
		r.UnboundedRun, r.UnboundedChecker, r.UnboundedPython = Summarize("run", unbounded["run"]), Summarize("checker", unbounded["checker"]), Summarize("python", unbounded["python"])
		r.NativeRun, r.NativeChecker, r.NativePython = Summarize("run", native["run"]), Summarize("checker", native["checker"]), Summarize("python", native["python"])
	}
	for _, c := range []int{1, 2} {
		for v, variant := range variants {
			progress("image %d: %d jobs of %d tests through a pool of 2, %d at once", v+1, 2*o.N, o.Tests, c)
			l, err := LoadLocalJobs(ctx, variant.Prov, variant.Policy, 2, 2*o.N, c, func(i int) *job.Job {
				return &job.Job{ID: fmt.Sprintf("bench-cost-tps-%d-%d-%d", v, c, i), Language: "c", Code: SumC, Tests: sumTests(o.Tests)}
			}, func(st *job.Status) bool { return st.Verdict == job.VerdictOK && len(st.Tests) == o.Tests })
			if err != nil {
				return nil, err
			}
			tps := float64(2*o.N*o.Tests) / l.Seconds
			if c == 1 {
				reports[v].TestsPerSecond1 = tps
			} else {
				reports[v].TestsPerSecond2 = tps
			}
		}
	}
	return reports, nil
}

// isTestStep is a step of a test's (the program's, the checker's, the
// test's own), not of the compiles.
func isTestStep(name string) bool {
	return strings.HasPrefix(name, "test") || strings.HasPrefix(name, "check")
}

// floorArgs are the floor script's arguments: the programs' sources and
// the languages' compile and run commands, from the image's table.
func floorArgs() []string {
	c, py := lang.Builtin()["c"], lang.Builtin()["python"]
	return []string{SumC, SumCheckerC, HelloPythonProgram.Code, c.Source, strings.Join(c.Compile, " "), strings.Join(c.Run, " "), py.Source, strings.Join(py.Run, " ")}
}

// floorScript compiles the sum program and its checker with the image's
// C command and runs each n times, then the Python hello world n times,
// by bash with file redirects, timing each run with bash's own clock (no
// process for the clock); it prints "kind start end" per run.
func floorScript(n int) string {
	return `set -e
sum="$1" chk="$2" py="$3" csrc="$4" ccompile="$5" crun="$6" pysrc="$7" pyrun="$8"
mkdir -p p c y
printf '%s' "$sum" > p/"$csrc"; printf '%s' "$chk" > c/"$csrc"; printf '%s' "$py" > y/"$pysrc"
(cd p && $ccompile) && (cd c && $ccompile)
printf '3 4\n' > in.txt; printf '7\n' > exp.txt
out=()
cd p
for ((i = 0; i < ` + strconv.Itoa(n) + `; i++)); do t=$EPOCHREALTIME; $crun < ../in.txt > ../out.txt; u=$EPOCHREALTIME; out+=("run $t $u"); done
cd ../c
for ((i = 0; i < ` + strconv.Itoa(n) + `; i++)); do t=$EPOCHREALTIME; $crun ../in.txt ../exp.txt ../out.txt > ../msg.txt; u=$EPOCHREALTIME; out+=("checker $t $u"); done
cd ../y
for ((i = 0; i < ` + strconv.Itoa(n) + `; i++)); do t=$EPOCHREALTIME; $pyrun > ../py.txt; u=$EPOCHREALTIME; out+=("python $t $u"); done
cd ..
[ "$(cat out.txt)" = 7 ] && [ "$(cat msg.txt)" = ok ] && [ "$(cat py.txt)" = "Hello, World!" ]
printf '%s\n' "${out[@]}"
`
}

// parseFloor reads the floor script's lines into samples by kind.
func parseFloor(out []byte, into map[string][]time.Duration) error {
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return fmt.Errorf("floor printed %q", line)
		}
		t, err1 := strconv.ParseFloat(f[1], 64)
		u, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("floor printed %q", line)
		}
		into[f[0]] = append(into[f[0]], time.Duration((u-t)*1e9))
		n++
	}
	if n == 0 {
		return fmt.Errorf("floor printed nothing")
	}
	return nil
}

// runNativeScript runs script with bash natively in a fresh directory,
// with Debian's commands first on PATH.
func runNativeScript(ctx context.Context, script string, args []string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "codebench-floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, nativeCommand("bash"), append([]string{"-c", script, "bash"}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + strings.Join(nativePath, ":"), "HOME=" + dir, "LANG=C.UTF-8", "TMPDIR=" + dir}
	return outputOf(cmd, "bash")
}

// outputOf runs cmd and returns its output; its stderr is in the error.
func outputOf(cmd *exec.Cmd, what string) ([]byte, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", what, err, stderr.String())
	}
	return out, nil
}

// Text prints the report: the anatomy and the targets.
func (r *TestsReport) Text() string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	met := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "MISSED"
	}
	fmt.Fprintf(&b, "cost of a test, driver %s: %d jobs of %d tests each (C sum program, judged by the expected output; then by a C checker)\n\n", r.Driver, r.N, r.Tests)
	fmt.Fprintf(&b, "| per test (one test's start to the next's in the agent) | p50 | p90 | p99 |\n| --- | ---: | ---: | ---: |\n")
	for _, s := range []Summary{r.PerTest, r.PerTestChecker} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.Name, ms(s.P50), ms(s.P90), ms(s.P99))
	}
	for _, a := range []struct {
		title string
		steps map[string]float64
	}{{"expected output", r.Anatomy}, {"checker", r.AnatomyChecker}} {
		fmt.Fprintf(&b, "\nanatomy of a test in the agent (%s), mean per test:\n\n| step | ms |\n| --- | ---: |\n", a.title)
		names := make([]string, 0, len(a.steps))
		var total float64
		for n, us := range a.steps {
			names = append(names, n)
			total += us
		}
		slices.SortFunc(names, func(x, y string) int { return int(a.steps[y] - a.steps[x]) })
		for _, n := range names {
			fmt.Fprintf(&b, "| %s | %.2f |\n", n, a.steps[n]/1000)
		}
		fmt.Fprintf(&b, "| all steps | %.2f |\n", total/1000)
	}
	fmt.Fprintf(&b, "\n| the same binaries by a shell with file redirects | gVisor's own (one sandbox, the sandboxes' CPU bound) p50 | p90 | gVisor's own, no CPU bound p50 | p90 | native p50 | p90 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, row := range []struct {
		name        string
		floor, u, n Summary
	}{{"sum < in.txt > out.txt", r.FloorRun, r.UnboundedRun, r.NativeRun}, {"checker in.txt exp.txt out.txt", r.FloorChecker, r.UnboundedChecker, r.NativeChecker},
		{"python3 main.py (repeated)", r.FloorPython, r.UnboundedPython, r.NativePython}} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", row.name, ms(row.floor.P50), ms(row.floor.P90), ms(row.u.P50), ms(row.u.P90), ms(row.n.P50), ms(row.n.P90))
	}
	fmt.Fprintf(&b, "| python3 main.py, the first run in a fresh codebench sandbox | %s | %s | | | | |\n", ms(r.Python.P50), ms(r.Python.P90))
	fmt.Fprintf(&b, "| python3 main.py, the next run in the same sandbox | %s | %s | | | | |\n", ms(r.PythonSecond.P50), ms(r.PythonSecond.P90))
	x := func(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
	fmt.Fprintf(&b, "\ntargets:\n")
	if r.FloorRun.N > 0 {
		fmt.Fprintf(&b, "- per extra test p50 %s = %.2fx gVisor's own run (%s), %.1fx native; target <= 1.3x: %s\n",
			ms(r.PerTest.P50), x(r.PerTest.P50, r.FloorRun.P50), ms(r.FloorRun.P50), x(r.PerTest.P50, r.NativeRun.P50), met(x(r.PerTest.P50, r.FloorRun.P50) <= 1.3))
		both := r.FloorRun.P50 + r.FloorChecker.P50
		fmt.Fprintf(&b, "- with a checker p50 %s = %.2fx gVisor's own run plus the checker's (%s), %.1fx native; target <= 1.3x: %s\n",
			ms(r.PerTestChecker.P50), x(r.PerTestChecker.P50, both), ms(both), x(r.PerTestChecker.P50, r.NativeRun.P50+r.NativeChecker.P50), met(x(r.PerTestChecker.P50, both) <= 1.3))
		fmt.Fprintf(&b, "- Python hello's run in a fresh sandbox p50 %s = %.2fx gVisor's own repeated run (%s), %.1fx native; target <= 1.3x: %s\n",
			ms(r.Python.P50), x(r.Python.P50, r.FloorPython.P50), ms(r.FloorPython.P50), x(r.Python.P50, r.NativePython.P50), met(x(r.Python.P50, r.FloorPython.P50) <= 1.3))
	}
	if r.FloorRun.N > 0 {
		fmt.Fprintf(&b, "- means: a test %s in the agent, gVisor's own run %s (the CPU bound's stalls are in both): gVisor alone would judge at most %.0f tests/s one at a time, before any compile\n",
			ms(r.PerTest.Mean), ms(r.FloorRun.Mean), 1/r.FloorRun.Mean.Seconds())
	}
	fmt.Fprintf(&b, "- judged tests per second (%d-test jobs, compile and a fresh sandbox each, pool of 2): %.1f one at a time, %.1f two at once (target: 2.5x the figure before, measured in the same hour)\n",
		r.Tests, r.TestsPerSecond1, r.TestsPerSecond2)
	return b.String()
}

// floorCgroup makes a host cgroup with the CPU bound of a driver's sandbox
// (cpus CPUs of bandwidth per period, as the drivers set it) and returns
// the cgroupsPath of a child of it for the floor's sandbox, and how to
// remove it; "" where the host has no cpu controller.
func floorCgroup(cpus int) (string, func(), error) {
	m, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	if err != nil || !m.HasCPU() || os.Geteuid() != 0 {
		return "", func() {}, nil
	}
	id := fmt.Sprintf("bench-floor-%d", os.Getpid())
	g, err := m.Create(id, hostcgroup.Limits{MemoryBytes: 4 << 30, Pids: 4096, CPUs: cpus})
	if err != nil {
		return "", nil, err
	}
	return m.Path(id) + "/floor", func() { _ = g.Remove() }, nil
}

// runOCIScript runs script with bash in a new sandbox of the runtime, on
// the image's root tree (read-only) with a tmpfs /tmp as its working
// directory, and returns its output.
func runOCIScript(ctx context.Context, runtime func(stateDir string) ([]string, error), rootfs, cgroupsPath, script string, args []string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "codebench-floor-runsc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	id := fmt.Sprintf("floor-%d", os.Getpid())
	bundle := filepath.Join(dir, id)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return nil, err
	}
	if err := writeBundle(bundle, rootfs, cgroupsPath, append([]string{"/bin/bash", "-c", "cd /tmp && " + script, "bash"}, args...)); err != nil {
		return nil, err
	}
	rt, err := runtime(filepath.Join(dir, "state"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, rt[0], append(rt[1:], "run", "--bundle", bundle, id)...)
	return outputOf(cmd, "runsc run")
}

// CompareTests holds after to before, measured in the same hour: the
// cost of a test and of a test with its checker, each against its own
// run's floor, and the judged tests per second (issue 33's target: at
// least 2.5x).
func CompareTests(before, after *TestsReport) string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	x := func(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
	met := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "MISSED"
	}
	fmt.Fprintf(&b, "## before and after\n\n| | before | after | after / before |\n| --- | ---: | ---: | ---: |\n")
	for _, row := range []struct {
		name string
		b, a Summary
	}{{"per test p50", before.PerTest, after.PerTest}, {"per test mean", Summary{P50: before.PerTest.Mean}, Summary{P50: after.PerTest.Mean}},
		{"per test with the checker p50", before.PerTestChecker, after.PerTestChecker},
		{"Python hello, first run in a fresh sandbox p50", before.Python, after.Python}} {
		fmt.Fprintf(&b, "| %s | %s | %s | %.2fx |\n", row.name, ms(row.b.P50), ms(row.a.P50), x(row.a.P50, row.b.P50))
	}
	for _, row := range []struct {
		name string
		b, a float64
	}{{"judged tests/s, one job at a time", before.TestsPerSecond1, after.TestsPerSecond1}, {"judged tests/s, two at once", before.TestsPerSecond2, after.TestsPerSecond2}} {
		ratio := row.a / max(row.b, 1e-9)
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.2fx (target >= 2.5x: %s) |\n", row.name, row.b, row.a, ratio, met(ratio >= 2.5))
	}
	return b.String()
}

package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
)

// The test binary doubles as the rlimit trampoline, as the agent binary does
// in the guest.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "trampoline" {
		if err := ExecWithRlimits(os.Args[2:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(126)
		}
	}
	os.Exit(m.Run())
}

func newRunner(t *testing.T) *Runner {
	t.Helper()
	for _, tool := range []string{"gcc", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on this host: %v", tool, err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Languages: lang.Builtin(), JobRoot: t.TempDir(), Exec: []string{exe, "trampoline"}}
	t.Cleanup(r.Close)
	return r
}

func TestRunOnHost(t *testing.T) {
	r := newRunner(t)
	tests := []struct {
		name  string
		req   agentproto.RunRequest
		check func(t *testing.T, res *agentproto.RunResult)
	}{
		{"c hello", agentproto.RunRequest{Language: "c", Code: "#include <stdio.h>\nint main(){printf(\"Hello, World!\");return 0;}"},
			func(t *testing.T, res *agentproto.RunResult) {
				if !res.Compiled || res.Stdout != "Hello, World!" || res.Run.ExitCode != 0 {
					t.Fatalf("%+v %+v", res, res.Run)
				}
			}},
		{"compile error", agentproto.RunRequest{Language: "c", Code: "int main(){ return nope; }"},
			func(t *testing.T, res *agentproto.RunResult) {
				if res.Compiled || !strings.Contains(res.CompileOutput, "nope") {
					t.Fatalf("%+v", res)
				}
			}},
		{"python stdin and exit code", agentproto.RunRequest{Language: "python", Code: "import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)", Stdin: "abc"},
			func(t *testing.T, res *agentproto.RunResult) {
				if res.Stdout != "ABC\n" || res.Run.ExitCode != 3 {
					t.Fatalf("%+v %+v", res, res.Run)
				}
			}},
		{"wall timeout kills the group", agentproto.RunRequest{Language: "python", Code: "import os,time\nos.fork()\ntime.sleep(60)", Limits: agentproto.Limits{WallMS: 300}},
			func(t *testing.T, res *agentproto.RunResult) {
				if !res.Run.TimedOut || res.Run.Signal != "SIGKILL" || res.Run.WallUS > 5e6 {
					t.Fatalf("%+v", res.Run)
				}
			}},
		{"output cap", agentproto.RunRequest{Language: "python", Code: "while True: print('x'*100)", Limits: agentproto.Limits{OutputBytes: 1000}},
			func(t *testing.T, res *agentproto.RunResult) {
				if !res.Run.OutputLimited || len(res.Stdout) != 1000 {
					t.Fatalf("limited=%v len=%d stderr=%q run=%+v", res.Run.OutputLimited, len(res.Stdout), res.Stderr, res.Run)
				}
			}},
		// A job's own compile limits apply to the compile: gcc in 8 MiB
		// fails, and so does one with 1 ms of CPU.
		{"compile memory limit", agentproto.RunRequest{Language: "c", Code: "int main(){return 0;}", Limits: agentproto.Limits{CompileMemoryKB: 8 << 10}},
			func(t *testing.T, res *agentproto.RunResult) {
				if res.Compiled {
					t.Fatalf("compiled in 8 MiB: %+v", res.Compile)
				}
			}},
		{"compile limits room enough", agentproto.RunRequest{Language: "c", Code: "int main(){return 0;}", Limits: agentproto.Limits{CompileMemoryKB: 256 << 10, CompileCPUMS: 20_000}},
			func(t *testing.T, res *agentproto.RunResult) {
				if !res.Compiled {
					t.Fatalf("not compiled: %+v %s", res.Compile, res.CompileOutput)
				}
			}},
		// Unbuffered writes to both, each flushed: one pipe keeps their order.
		{"stderr redirected to stdout, interleaved", agentproto.RunRequest{Language: "python", RedirectStderr: true,
			Code: "import sys\nfor i in range(3):\n    print('out', i, flush=True)\n    print('err', i, file=sys.stderr, flush=True)"},
			func(t *testing.T, res *agentproto.RunResult) {
				if res.Stdout != "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n" || res.Stderr != "" {
					t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
				}
			}},
		{"stderr apart", agentproto.RunRequest{Language: "python",
			Code: "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr, flush=True)"},
			func(t *testing.T, res *agentproto.RunResult) {
				if res.Stdout != "out\n" || res.Stderr != "err\n" {
					t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
				}
			}},
		{"cpu limit", agentproto.RunRequest{Language: "python", Code: "while True: pass", Limits: agentproto.Limits{CPUMS: 1000, WallMS: 20000}},
			func(t *testing.T, res *agentproto.RunResult) {
				if res.Run.Signal != "SIGXCPU" && res.Run.Signal != "SIGKILL" {
					t.Fatalf("%+v", res.Run)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := r.Run(ctx, &tt.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, res)
		})
	}
}

func TestRunRefusesBadRequests(t *testing.T) {
	r := newRunner(t)
	for _, req := range []agentproto.RunRequest{
		{Language: "swift", Code: "x"}, // Debian serves no Swift
		{Language: "c", Code: "x", Files: map[string]string{"../escape": "x"}},
	} {
		if _, err := r.Run(context.Background(), &req, nil); err == nil {
			t.Fatalf("%+v: no error", req)
		}
	}
}

// TestCgroupsV1Watchdog runs the gVisor limiter against the host's cgroup v1
// memory and pids hierarchies (this host's kernel has them): a program that
// allocates past its limit is killed and reported as a memory kill, with
// its peak; an ordinary program is not.
func TestCgroupsV1Watchdog(t *testing.T) {
	mem, pids := "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"
	for _, d := range []string{mem, pids} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			t.Skipf("no cgroup v1 %s hierarchy on this host: %v", filepath.Base(d), err)
		}
	}
	name := fmt.Sprintf("cbtest-%d", os.Getpid())
	lim := &CgroupsV1{MemoryRoot: mem, PidsRoot: pids, Memory: filepath.Join(mem, name), Pids: filepath.Join(pids, name), Every: 5 * time.Millisecond, Far: 25 * time.Millisecond}
	for _, d := range []string{lim.Memory, lim.Pids} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Skipf("cannot create a v1 cgroup here: %v", err)
		}
		t.Cleanup(func() { _ = os.Remove(d) })
	}
	r := newRunner(t)
	r.Limiter = lim
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hog, err := r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "x = []\nwhile True: x.append(bytearray(1 << 20))",
		Limits: agentproto.Limits{MemoryKB: 64 << 10, WallMS: 20_000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hog.Run.MemoryLimited || hog.Run.MaxRSSKB < 60<<10 || hog.Run.Signal != "SIGKILL" {
		t.Fatalf("memory hog: %+v", hog.Run)
	}
	ok, err := r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(sum(range(1000)))", Limits: agentproto.Limits{MemoryKB: 64 << 10}}, nil)
	if err != nil || ok.Run.MemoryLimited || ok.Stdout != "499500\n" || ok.Run.MaxRSSKB <= 0 {
		t.Fatalf("ordinary program: %+v %+v %v", ok, ok.Run, err)
	}
	t.Logf("hog killed at a peak of %d KiB; an ordinary program peaked at %d KiB", hog.Run.MaxRSSKB, ok.Run.MaxRSSKB)
}

func strp(s string) *string { return &s }

// TestTestsCheckerAndStreaming on the host: tests compiled once and judged
// in order (stopping at the first failure only when asked), a checker that
// accepts any order of lines, and output streamed while the program runs.
func TestTestsCheckerAndStreaming(t *testing.T) {
	r := newRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	double := "#include <stdio.h>\nint main(){ int x; if (scanf(\"%d\", &x) != 1) return 2; printf(\"%d\\n\", 2*x); return 0; }"
	tests := []agentproto.TestCase{
		{Stdin: "1", ExpectedOutput: strp("2\n")},
		{Stdin: "2", ExpectedOutput: strp("5\n")},
		{Stdin: "x", ExpectedOutput: strp("0\n")},
		{Stdin: "3", ExpectedOutput: strp("6")},
	}
	for _, stop := range []bool{false, true} {
		res, err := r.Run(ctx, &agentproto.RunRequest{Language: "c", Code: double, Tests: tests, StopOnFailure: stop}, nil)
		if err != nil || !res.Compiled {
			t.Fatalf("stop=%v: %v %+v", stop, err, res)
		}
		want := 4
		if stop {
			want = 2
		}
		if len(res.Tests) != want || !*res.Tests[0].Matched || *res.Tests[1].Matched || res.Tests[0].Stdout != "2\n" {
			t.Fatalf("stop=%v: %+v", stop, res.Tests)
		}
		if !stop && (res.Tests[2].ExitCode != 2 || res.Tests[2].Matched != nil || !*res.Tests[3].Matched) {
			t.Fatalf("tests 3 and 4: %+v %+v", res.Tests[2], res.Tests[3])
		}
	}

	// A checker that accepts the expected lines in any order.
	checker := &agentproto.Checker{Language: "python", Code: "import sys\nexp, got = open(sys.argv[2]).read().split(), open(sys.argv[3]).read().split()\nok = sorted(exp) == sorted(got)\nprint('same lines' if ok else 'lines differ')\nsys.exit(0 if ok else 1)"}
	perm := "print('b'); print('a'); print('c')"
	res, err := r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: perm, Checker: checker,
		Tests: []agentproto.TestCase{{ExpectedOutput: strp("a\nb\nc\n")}, {ExpectedOutput: strp("a\nb\nd\n")}}}, nil)
	if err != nil || !res.CheckerCompiled || len(res.Tests) != 2 {
		t.Fatalf("checker: %v %+v", err, res)
	}
	if c := res.Tests[0]; c.Checker == nil || c.Checker.ExitCode != 0 || c.CheckerMessage != "same lines\n" {
		t.Fatalf("checker on a permutation: %+v", c)
	}
	if c := res.Tests[1]; c.Checker.ExitCode != 1 || c.CheckerMessage != "lines differ\n" {
		t.Fatalf("checker on a wrong answer: %+v", c)
	}

	// Streaming: a line every 200 ms for a second.
	var chunks []agentproto.Output
	res, err = r.Run(ctx, &agentproto.RunRequest{Language: "python", Stream: true,
		Code: "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.2)"}, func(o agentproto.Output) { chunks = append(chunks, o) })
	if err != nil {
		t.Fatal(err)
	}
	var joined string
	for i, c := range chunks {
		if c.Seq != i+1 {
			t.Fatalf("chunk %d has seq %d", i, c.Seq)
		}
		joined += c.Stdout
	}
	if len(chunks) < 3 || joined != res.Stdout || !strings.HasPrefix(joined, "line 0\nline 1\n") {
		t.Fatalf("%d chunks %q, final stdout %q", len(chunks), joined, res.Stdout)
	}
}

func TestJavaClassFromTheSource(t *testing.T) {
	if _, err := exec.LookPath("javac"); err != nil {
		t.Skipf("no javac on this host: %v", err)
	}
	r := newRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Without a limiter memory is RLIMIT_AS, which the JVM's reservations
	// need to be large.
	res, err := r.Run(ctx, &agentproto.RunRequest{Language: "java", Args: []string{"x"}, Limits: agentproto.Limits{MemoryKB: 8 << 20},
		Code: "public class Solution { public static void main(String[] a) { System.out.println(\"solved \" + a[0]); } }"}, nil)
	if err != nil || !res.Compiled || res.Stdout != "solved x\n" {
		t.Fatalf("%v %+v compile %q", err, res, res.CompileOutput)
	}
}

// TestLauncher: with Restrict every phase starts from one launcher thread
// (one filter install for the runner's life): the job is restricted, a
// thread of the runner's own process is not, and after Close a next run
// starts a new launcher.
func TestLauncher(t *testing.T) {
	r := newRunner(t)
	r.Restrict = true
	if err := r.Warm(); err != nil {
		t.Fatal(err)
	}
	first := r.launch
	ctx := context.Background()
	seccomp := func(status string) string {
		for _, line := range strings.Split(status, "\n") {
			if strings.HasPrefix(line, "Seccomp:") {
				return strings.TrimSpace(strings.TrimPrefix(line, "Seccomp:"))
			}
		}
		return "?"
	}
	for i := range 2 {
		res, err := r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(open('/proc/self/status').read())"}, nil)
		if err != nil || res.Run.ExitCode != 0 {
			t.Fatalf("%v %+v", err, res)
		}
		if got := seccomp(res.Stdout); got != "2" {
			t.Fatalf("run %d: the job's Seccomp: %s, want 2 (filter)", i, got)
		}
		if r.launch != first {
			t.Fatalf("run %d: a new launcher", i)
		}
	}
	own := make(chan string)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b, _ := os.ReadFile("/proc/thread-self/status")
		own <- seccomp(string(b))
	}()
	if got := <-own; got != "0" {
		t.Fatalf("a thread of the runner's own: Seccomp: %s, want 0", got)
	}
	r.Close()
	if r.launch != nil {
		t.Fatal("Close left the launcher")
	}
	res, err := r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(open('/proc/self/status').read())"}, nil)
	if err != nil || seccomp(res.Stdout) != "2" || r.launch == nil || r.launch == first {
		t.Fatalf("after Close: %v %+v", err, res)
	}
}

// TestLauncherStopped: a start handed to a launcher that was stopped (a
// concurrent start retired it) fails with errLauncherStopped instead of
// blocking or panicking, and a retired launcher is replaced on the next
// start.
func TestLauncherStopped(t *testing.T) {
	r := newRunner(t)
	r.Restrict = true
	l, err := r.launcherOnce()
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := l.do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("do: %v, ran %v", err, ran)
	}
	r.retire(l)
	r.retire(l) // twice: nothing
	if err := l.do(func() error { t.Error("ran on a stopped launcher"); return nil }); !errors.Is(err, errLauncherStopped) {
		t.Fatalf("do after stop: %v", err)
	}
	next, err := r.launcherOnce()
	if err != nil || next == l {
		t.Fatalf("after retire: %v, same launcher %v", err, next == l)
	}
}

// TestRestrictedJobs: with Restrict, a job has no_new_privs and the seccomp
// allowlist: bpf, perf_event_open and a new user namespace fail with EPERM,
// clone3 with ENOSYS (so libc falls back to clone), calls on no list
// (POSIX message queues, kcmp) with ENOSYS, and ordinary work, threads and
// child processes still run.
func TestRestrictedJobs(t *testing.T) {
	r := newRunner(t)
	r.Restrict = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := `#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void *run(void *a) { return a; }
int main(void) {
	printf("bpf %s\n", syscall(SYS_bpf, 0, 0, 0) < 0 ? strerror(errno) : "allowed");
	printf("perf %s\n", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0) < 0 ? strerror(errno) : "allowed");
	printf("userns %s\n", unshare(CLONE_NEWUSER) < 0 ? strerror(errno) : "allowed");
	printf("clone3 %s\n", syscall(SYS_clone3, 0, 0) < 0 ? strerror(errno) : "allowed");
	printf("mq_open %s\n", syscall(SYS_mq_open, "/q", 0, 0, 0) < 0 ? strerror(errno) : "allowed");
	printf("kcmp %s\n", syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0) < 0 ? strerror(errno) : "allowed");
	pthread_t t; printf("thread %d\n", pthread_create(&t, 0, run, 0) == 0 && pthread_join(t, 0) == 0);
	pid_t p = fork(); if (p == 0) _exit(7); int st; waitpid(p, &st, 0); printf("child %d\n", WEXITSTATUS(st));
	FILE *f = fopen("/proc/self/status", "r"); char line[256];
	while (fgets(line, sizeof line, f)) if (!strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Seccomp:", 8)) fputs(line, stdout);
	return 0;
}`
	res, err := r.Run(ctx, &agentproto.RunRequest{Language: "c", Code: code}, nil)
	if err != nil || !res.Compiled {
		t.Fatalf("%v %+v %+v %s", err, res, res.Compile, res.CompileOutput)
	}
	for _, want := range []string{"bpf Operation not permitted", "perf Operation not permitted", "userns Operation not permitted",
		"clone3 Function not implemented", "mq_open Function not implemented", "kcmp Function not implemented", "thread 1", "child 7", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(res.Stdout, want) {
			t.Fatalf("%q lacks %q; stderr %q compile %q run %+v", res.Stdout, want, res.Stderr, res.CompileOutput, res.Run)
		}
	}
}

// TestTestsJudgedOnWholeOutput: once the 4 MiB all tests keep together is
// used up, a later test is still judged on all it printed (it used to be
// judged on nothing: a right answer failed, an empty expected output
// passed anything); only what the result keeps is cut, and says so.
func TestTestsJudgedOnWholeOutput(t *testing.T) {
	r := newRunner(t)
	const n = 3 << 20
	big := strings.Repeat("x", n)
	empty := ""
	wrong := strings.Repeat("y", n)
	res, err := r.Run(context.Background(), &agentproto.RunRequest{
		Language: "python", Code: "import sys\nsys.stdout.write('x' * " + fmt.Sprint(n) + ")",
		Limits: agentproto.Limits{OutputBytes: 4 << 20, WallMS: 20000},
		Tests:  []agentproto.TestCase{{ExpectedOutput: &big}, {ExpectedOutput: &big}, {ExpectedOutput: &empty}, {ExpectedOutput: &wrong}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tests) != 4 {
		t.Fatalf("%d tests", len(res.Tests))
	}
	for i, want := range []bool{true, true, false, false} {
		tr := res.Tests[i]
		if tr.Matched == nil || *tr.Matched != want {
			t.Errorf("test %d: matched %v, want %v (kept %d bytes)", i+1, tr.Matched, want, len(tr.Stdout))
		}
	}
	kept := 0
	for _, tr := range res.Tests {
		kept += len(tr.Stdout) + len(tr.Stderr)
	}
	if kept > agentproto.MaxTotalOutput || !res.Tests[0].OutputKept || res.Tests[1].OutputKept || len(res.Tests[1].Stdout) != agentproto.MaxTotalOutput-n {
		t.Fatalf("kept %d bytes in all; test 2 kept %v (%d bytes)", kept, res.Tests[1].OutputKept, len(res.Tests[1].Stdout))
	}
}

// TestJobWallStopsTheRequest: the agent stops a request whose whole budget
// is spent, whatever each test's own wall limit still allows.
func TestJobWallStopsTheRequest(t *testing.T) {
	r := newRunner(t)
	start := time.Now()
	res, err := r.Run(context.Background(), &agentproto.RunRequest{
		Language: "python", Code: "import time\ntime.sleep(1)",
		Limits: agentproto.Limits{WallMS: 5000, JobWallMS: 1500},
		Tests:  make([]agentproto.TestCase, 5), StopOnFailure: false,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second || len(res.Tests) > 2 {
		t.Fatalf("%d tests ran in %s; the budget was 1.5 s", len(res.Tests), d)
	}
	if last := res.Tests[len(res.Tests)-1]; !last.TimedOut {
		t.Fatalf("the test cut by the budget is not timed out: %+v", last.Phase)
	}
}

// TestRestrictedLanguages: every language this host has compiles and runs
// its hello world under the job filter (an allowlist: a call a compiler or
// runtime needs and the list lacks fails here). The guest's own run of
// every language is the worker's TestJudgeFeatures.
func TestRestrictedLanguages(t *testing.T) {
	r := newRunner(t)
	r.Restrict = true
	ran := 0
	for _, name := range r.Languages.Names() {
		l := r.Languages[name]
		argv := l.Run
		if len(l.Compile) > 0 {
			argv = l.Compile
		}
		if _, err := lookPath(argv[0], "PATH=/usr/local/bin:/usr/bin:/bin"); err != nil {
			t.Logf("%s: not on this host (%v)", name, err)
			continue
		}
		ran++
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// What the runtime needs, as the worker gives it (job.Policy).
			lim := agentproto.Limits{MemoryKB: 4 << 20, WallMS: 60_000, CPUMS: 30_000, Processes: 256}
			if n := l.Limits; n != nil {
				lim.FileSizeKB = max(Defaults.FileSizeKB, n.FileSizeKB)
				if n.MaxStackKB > 0 {
					lim.StackKB = min(Defaults.StackKB, n.MaxStackKB)
				}
			}
			res, err := r.Run(ctx, &agentproto.RunRequest{Language: name, Code: l.Hello, Limits: lim}, nil)
			if err != nil || !res.Compiled || strings.TrimSpace(res.Stdout) != "Hello, World!" {
				t.Fatalf("%v compiled %v stdout %q stderr %q compile %q", err, res.Compiled, res.Stdout, res.Stderr, res.CompileOutput)
			}
		})
	}
	if ran < 3 {
		t.Fatalf("only %d languages on this host; the test set-up installs gcc, python3 and a JDK", ran)
	}
}

// TestTrampolineEntersCgroupV2: where phases are cgroup v2 (a VM), the
// trampoline enters the phase's cgroup itself, after its own start-up and
// before execve, through the cgroup.procs the agent opened; the job's
// filter refuses clone3 all the same, and the CPU time is the cgroup's.
// This host's v2 hierarchy has no memory controller, so the test places
// phases there without memory.max.
func TestTrampolineEntersCgroupV2(t *testing.T) {
	root := cgroup2Mount(t)
	parent := filepath.Join(root, fmt.Sprintf("cbtest-%d", os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Skipf("cannot create a v2 cgroup here: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(parent) })
	r := newRunner(t)
	r.Restrict = true
	r.Limiter = v2WithoutControllers{parent}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := `#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
int main(void) {
	printf("fd3 %s\n", fcntl(3, F_GETFD) < 0 ? strerror(errno) : "open");
	FILE *f = fopen("/proc/self/cgroup", "r"); char line[512];
	while (fgets(line, sizeof line, f)) if (!strncmp(line, "0::", 3)) fputs(line, stdout);
	printf("clone3 %s\n", syscall(SYS_clone3, 0, 0) < 0 ? strerror(errno) : "allowed");
	struct rlimit rl; int res[] = {RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_AS};
	const char *names[] = {"cpu", "nproc", "fsize", "stack", "core", "as"};
	for (int i = 0; i < 6; i++) { getrlimit(res[i], &rl); printf("%s %lld/%lld\n", names[i], (long long)rl.rlim_cur, (long long)rl.rlim_max); }
	clock_t s = clock(); while (clock() - s < CLOCKS_PER_SEC / 5) ;
	return 0;
}`
	res, err := r.Run(ctx, &agentproto.RunRequest{Language: "c", Code: code,
		Limits: agentproto.Limits{WallMS: 20_000, CPUMS: 5_000, Processes: 64, FileSizeKB: 2048, StackKB: 8192, MemoryKB: 65536}}, nil)
	if err != nil || !res.Compiled {
		t.Fatalf("%v %+v %q", err, res, res.CompileOutput)
	}
	rel := strings.TrimPrefix(parent, root)
	// The rlimits, set by the trampoline before execve (nothing sets them
	// after the start): memory is the cgroup's, so no RLIMIT_AS.
	for _, want := range []string{"0::" + rel + "/", "clone3 Function not implemented", "fd3 Bad file descriptor",
		"cpu 5/6\n", "nproc 64/64\n", "fsize 2097152/2097152\n", "stack 8388608/8388608\n", "core 0/0\n", "as -1/-1\n"} {
		if !strings.Contains(res.Stdout, want) {
			t.Fatalf("stdout %q lacks %q; stderr %q", res.Stdout, want, res.Stderr)
		}
	}
	if cpu := res.Run.CPUUserUS + res.Run.CPUSysUS; cpu < 150_000 || cpu > 1_000_000 {
		t.Fatalf("a 200 ms busy loop reported %d us of CPU", cpu)
	}
}

// cgroup2Mount finds this host's cgroup v2 hierarchy, or skips.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no mountinfo: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && len(f) > 4 && strings.HasPrefix(post, "cgroup2 ") {
			return f[4]
		}
	}
	t.Skip("no cgroup v2 hierarchy mounted on this host")
	return ""
}

// v2WithoutControllers makes phaseCgroups under dir with no limits written:
// the hierarchy has no memory or pids controller to write them to.
type v2WithoutControllers struct{ dir string }

func (v v2WithoutControllers) Create(name string, _, _ int64) (PhaseLimits, error) {
	dir := filepath.Join(v.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	procs, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	return &phaseCgroup{dir: dir, procs: procs}, nil
}

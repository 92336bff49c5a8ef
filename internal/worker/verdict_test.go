package worker_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// TestVerdicts sends one real program per verdict through the worker, checks
// the verdict and the output produced before the limit hit, and that the
// next job on the same worker succeeds.
func TestVerdicts(t *testing.T) {
	testenv.EachSandbox(t, testVerdicts)
}

func testVerdicts(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "verdicts", 2, 1, nil)
	// The wall limit of the sleeping Python job must leave Python time to
	// start and print first, however loaded this machine is now: calibrate
	// on the same program without the sleep.
	cal := h.submit("verdict-cal", `{"id":"verdict-cal","language":"python","code":"print('start', flush=True)"}`, 3*time.Minute)
	calRun := time.Duration(0)
	if f := cal[len(cal)-1]; f.Timings != nil {
		calRun = time.Duration(f.Timings.RunUS) * time.Microsecond
	}
	sleepWallMS := min(60_000, max(1500, 4*calRun.Milliseconds()+500))
	t.Logf("calibration: python prints in %s; the sleeping job gets a wall limit of %d ms", calRun, sleepWallMS)
	cJob := func(code string, limits string, extra string) string {
		b, _ := json.Marshal(code)
		if limits == "" {
			limits = "{}"
		}
		return fmt.Sprintf(`{"language":"c","code":%s,"limits":%s%s}`, b, limits, extra)
	}
	const head = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n#include <signal.h>\n"
	tests := []struct {
		name       string
		body       string // a job without its id
		verdict    string
		message    string // substring of the message
		stdout     string // prefix of stdout
		stderr     string // substring of stderr
		exitCode   int    // -1: not checked
		signal     string
		stdoutSize int // exact stdout length, 0: not checked
	}{
		{name: "infinite loop: cpu", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); for(;;); }`, `{"cpu_ms":1000,"wall_ms":20000}`, ""),
			verdict: job.VerdictTimeLimit, message: "CPU time limit", stdout: "start\n", exitCode: -1},
		{name: "sleep past wall", body: fmt.Sprintf(`{"language":"python","code":"import time\nprint('start', flush=True)\ntime.sleep(600)","limits":{"wall_ms":%d}}`, sleepWallMS),
			verdict: job.VerdictTimeLimit, message: "wall time limit", stdout: "start\n", exitCode: -1},
		{name: "malloc past memory", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); for(;;){ char *p = malloc(1<<20); if(!p) return 9; memset(p, 1, 1<<20); } }`, `{"memory_kb":65536}`, ""),
			verdict: job.VerdictMemoryLimit, message: "memory limit", stdout: "start\n", exitCode: -1},
		{name: "fork loop past process limit", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); for(;;){ pid_t p = fork(); if(p < 0){ perror("fork"); return 1; } if(p == 0){ pause(); return 0; } } }`, `{"processes":16}`, ""),
			verdict: job.VerdictRuntimeError, message: "exited with status 1", stdout: "start\n", stderr: "fork: Resource temporarily unavailable", exitCode: 1},
		{name: "output past the cap", body: cJob(head+`int main(){ for(;;) putchar('x'); }`, `{"output_bytes":1000}`, ""),
			verdict: job.VerdictOutputLimit, message: "output exceeded 1000 bytes", stdout: "xxxx", exitCode: -1, stdoutSize: 1000},
		{name: "file past the file limit", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); FILE *f = fopen("big", "w"); char b[4096] = {0}; for(int i = 0; i < 1024; i++) fwrite(b, 1, sizeof b, f); fclose(f); return 0; }`, `{"file_size_kb":1024}`, ""),
			verdict: job.VerdictRuntimeError, message: "SIGXFSZ", stdout: "start\n", exitCode: -1, signal: "SIGXFSZ"},
		{name: "segfault", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); volatile int *p = 0; *p = 1; return 0; }`, "", ""),
			verdict: job.VerdictRuntimeError, message: "SIGSEGV", stdout: "start\n", exitCode: -1, signal: "SIGSEGV"},
		{name: "abort", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); abort(); }`, "", ""),
			verdict: job.VerdictRuntimeError, message: "SIGABRT", stdout: "start\n", exitCode: -1, signal: "SIGABRT"},
		{name: "division by zero", body: cJob(head+`int main(){ printf("start\n"); fflush(stdout); volatile int a = 1, z = 0; printf("%d\n", a / z); return 0; }`, "", ""),
			verdict: job.VerdictRuntimeError, message: "SIGFPE", stdout: "start\n", exitCode: -1, signal: "SIGFPE"},
		{name: "exit 3", body: cJob(head+`int main(){ printf("start\n"); fprintf(stderr, "bye\n"); return 3; }`, "", ""),
			verdict: job.VerdictRuntimeError, message: "exited with status 3", stdout: "start\n", stderr: "bye", exitCode: 3},
		{name: "compile error", body: cJob("int main(){ return nope; }", "", ""),
			verdict: job.VerdictCompileError, message: "compilation failed", exitCode: -1},
		{name: "wrong answer", body: cJob(head+`int main(){ printf("41\n"); return 0; }`, "", `,"expected_output":"42\n"`),
			verdict: job.VerdictWrongAnswer, message: "differs", stdout: "41\n", exitCode: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("verdict-%d", i)
			body := `{"id":"` + id + `",` + strings.TrimPrefix(tt.body, "{")
			start := time.Now()
			sts := h.submit(id, body, 3*time.Minute)
			f := sts[len(sts)-1]
			t.Logf("%s in %s: %s %q stdout=%d bytes", tt.name, time.Since(start).Round(time.Millisecond), f.Verdict, f.Message, len(f.Stdout))
			if f.Status != job.StatusFailed || f.Verdict != tt.verdict || !strings.Contains(f.Message, tt.message) {
				t.Fatalf("got %s/%s %q, want failed/%s %q\nstderr: %s\ncompile: %s", f.Status, f.Verdict, f.Message, tt.verdict, tt.message, f.Stderr, f.CompileOutput)
			}
			if !strings.HasPrefix(f.Stdout, tt.stdout) || !strings.Contains(f.Stderr, tt.stderr) {
				t.Fatalf("output before the limit lost: stdout %q stderr %q", f.Stdout, f.Stderr)
			}
			if tt.stdoutSize > 0 && len(f.Stdout) != tt.stdoutSize {
				t.Fatalf("stdout is %d bytes, want %d", len(f.Stdout), tt.stdoutSize)
			}
			if tt.exitCode >= 0 && (f.ExitCode == nil || *f.ExitCode != tt.exitCode) {
				t.Fatalf("exit code %v, want %d", f.ExitCode, tt.exitCode)
			}
			if tt.signal != "" && f.Signal != tt.signal {
				t.Fatalf("signal %q, want %q", f.Signal, tt.signal)
			}
			if tt.verdict == job.VerdictCompileError && !strings.Contains(f.CompileOutput, "nope") {
				t.Fatalf("compiler message missing: %q", f.CompileOutput)
			}
			// The next job on this worker succeeds.
			next := h.submit(id+"-next", `{"id":"`+id+`-next","language":"python","code":"print('next')"}`, 2*time.Minute)
			if l := next[len(next)-1]; l.Status != job.StatusDone || l.Stdout != "next\n" {
				t.Fatalf("job after %s: %+v", tt.name, l)
			}
		})
	}
}

// TestJudgeFeatures: stdin, args, extra files, several runs, compile flags,
// CPU time accuracy, binary output, and hello-world in every language.
func TestJudgeFeatures(t *testing.T) {
	testenv.EachSandbox(t, testJudgeFeatures)
}

func testJudgeFeatures(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "judge", 2, 2, nil)
	final := func(id, body string) job.Status {
		t.Helper()
		sts := h.submit(id, body, 5*time.Minute)
		return sts[len(sts)-1]
	}
	t.Run("stdin args files runs flags", func(t *testing.T) {
		code, _ := json.Marshal("#include <stdio.h>\n#include \"greet.h\"\nint main(int argc, char **argv){ char b[64]; if(!fgets(b, sizeof b, stdin)) return 2; printf(GREETING \" %s %s|%s\", argv[1], argv[2], b); return 0; }")
		body := fmt.Sprintf(`{"id":"feat","language":"c","code":%s,"stdin":"from stdin\n","args":["a1","a 2"],"files":{"greet.h":"#define GREETING \"hi\""},"runs":3,"compile_flags":["-O2","-std=c11"],"expected_output":"hi a1 a 2|from stdin"}`, code)
		f := final("feat", body)
		if f.Verdict != job.VerdictOK || f.Stdout != "hi a1 a 2|from stdin\n" {
			t.Fatalf("%s %q %q %s", f.Verdict, f.Message, f.Stdout, f.CompileOutput)
		}
		if len(f.Runs) != 3 || f.RunsSummary == nil || f.RunsSummary.N != 3 || f.RunsSummary.MinWallUS <= 0 {
			t.Fatalf("runs %+v %+v", f.Runs, f.RunsSummary)
		}
	})
	// CPU accuracy against a calibration in the same guest and run: the
	// difference between a 400 ms and a 200 ms busy loop must be 200 ms;
	// what both share (exec, the dynamic loader, exit) cancels out, and the
	// least of three runs each drops the noise of a loaded host. Absolute
	// figures belong to the benchmark, not to a test.
	t.Run("cpu time is measured", func(t *testing.T) {
		minCPU := func(ms int) float64 {
			t.Helper()
			code, _ := json.Marshal(fmt.Sprintf("#include <time.h>\nint main(){ clock_t s = clock(); while (clock() - s < CLOCKS_PER_SEC / 1000 * %d) ; return 0; }", ms))
			id := fmt.Sprintf("cpu%d", ms)
			f := final(id, fmt.Sprintf(`{"id":%q,"language":"c","code":%s,"runs":3}`, id, code))
			if f.Verdict != job.VerdictOK || f.RunsSummary == nil {
				t.Fatalf("busy loop of %d ms: %s %q", ms, f.Verdict, f.Message)
			}
			return float64(f.RunsSummary.MinCPUUS) / 1000
		}
		short, long := minCPU(200), minCPU(400)
		diff := long - short
		t.Logf("busy loops of 200 and 400 ms CPU reported %.1f and %.1f ms: difference %.1f ms", short, long, diff)
		if diff < 150 || diff > 250 {
			t.Fatalf("a 200 ms longer busy loop measured %.1f ms longer (%.1f vs %.1f ms)", diff, long, short)
		}
	})
	t.Run("binary output is escaped, not dropped", func(t *testing.T) {
		f := final("bin", `{"id":"bin","language":"python","code":"import sys\nsys.stdout.buffer.write(b'ok\\xff\\xfe\\x00end')"}`)
		if f.Stdout != "ok\\xff\\xfe\x00end" {
			t.Fatalf("stdout %q", f.Stdout)
		}
	})
	for _, l := range h.sb.Image.LanguageNames() {
		t.Run("hello "+l, func(t *testing.T) {
			hello, _ := json.Marshal(langHello(l))
			// Generous limits: under TCG a cold node takes 4-5 s of CPU for
			// hello world, the default 5 s limit.
			f := final("hello-"+l, fmt.Sprintf(`{"id":"hello-%s","language":"%s","code":%s,"limits":{"cpu_ms":20000,"wall_ms":40000}}`, l, l, hello))
			if f.Verdict != job.VerdictOK || strings.TrimSpace(f.Stdout) != "Hello, World!" {
				t.Fatalf("%s: %s %q stdout %q stderr %q compile %q", l, f.Verdict, f.Message, f.Stdout, f.Stderr, f.CompileOutput)
			}
			t.Logf("%s: compile %d ms, run %d ms", l, f.CompileUS/1000, f.ExecDuration/1000)
		})
	}
}

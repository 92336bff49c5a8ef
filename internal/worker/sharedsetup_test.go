package worker_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// TestLimitsHoldPerTest: the set-up a job's tests share (one launcher
// thread, one filter install, the job's directory) shares none of a
// test's limits: in one job, a memory hog, a fork bomb and an endless loop
// in tests 2, 3 and 4 each get their own limit's verdict, and tests 1 and 5, the
// same program on ordinary input before and after them, are ok, with their
// own small memory and time; on every driver.
func TestLimitsHoldPerTest(t *testing.T) {
	testenv.EachSandbox(t, testLimitsHoldPerTest)
}

const modesC = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char mode[16];
    if (scanf("%15s", mode) != 1) return 2;
    if (!strcmp(mode, "mem")) for (;;) { char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); }
    if (!strcmp(mode, "fork")) for (;;) fork();
    if (!strcmp(mode, "loop")) for (;;) {}
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 2;
    printf("%ld\n", a + b);
    return 0;
}
`

func testLimitsHoldPerTest(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "pertest", 2, 1, nil)
	three, fortyTwo := "3\n", "42\n"
	j := map[string]any{
		"id": "per-test-limits", "language": "c", "code": modesC, "stop_on_failure": false,
		"limits": map[string]any{"memory_kb": 65536, "cpu_ms": 1000, "wall_ms": 3000},
		"tests": []map[string]any{
			{"stdin": "sum 1 2", "expected_output": three},
			{"stdin": "mem"},
			{"stdin": "fork"},
			{"stdin": "loop"},
			{"stdin": "sum 40 2", "expected_output": fortyTwo},
		},
	}
	b, _ := json.Marshal(j)
	sts := h.submit("per-test-limits", string(b), 5*time.Minute)
	f := sts[len(sts)-1]
	if len(f.Tests) != 5 {
		t.Fatalf("%d tests judged: %s %q %s", len(f.Tests), f.Verdict, f.Message, f.Error)
	}
	// The bomb's: 64 processes past the wall limit, or (a VM's cgroup
	// counts each process's kernel memory) past 64 MiB first.
	want := [][]string{{job.VerdictOK}, {job.VerdictMemoryLimit}, {job.VerdictTimeLimit, job.VerdictMemoryLimit}, {job.VerdictTimeLimit}, {job.VerdictOK}}
	for i, ts := range f.Tests {
		if !slices.Contains(want[i], ts.Verdict) {
			t.Fatalf("test %d: %s, want one of %v: %+v", i+1, ts.Verdict, want[i], f.Tests)
		}
	}
	if f.Verdict != job.VerdictMemoryLimit {
		t.Fatalf("the job's verdict %s, want the first failing test's (memory_limit)", f.Verdict)
	}
	for _, i := range []int{0, 4} {
		ts := f.Tests[i]
		// The hog's 64 MiB and the bomb's processes are gone: the last
		// test runs in its own small footprint and well within its time.
		if ts.MemUsage <= 0 || ts.MemUsage > 16*1024 || ts.ExecDuration >= 1_000_000 {
			t.Fatalf("test %d: %d KiB, %d us: %+v", i+1, ts.MemUsage, ts.ExecDuration, ts)
		}
	}
	if f.Tests[4].Stdout != fortyTwo {
		t.Fatalf("test 5 printed %q", f.Tests[4].Stdout)
	}
}

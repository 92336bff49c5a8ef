package sandboxtest

import (
	"context"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// spin16 keeps 16 threads busy for 3 seconds of wall time.
const spin16 = `#include <pthread.h>
#include <time.h>
static void *spin(void *arg) {
	struct timespec s, n;
	clock_gettime(CLOCK_MONOTONIC, &s);
	do clock_gettime(CLOCK_MONOTONIC, &n); while (n.tv_sec - s.tv_sec < 3);
	return arg;
}
int main(void) {
	pthread_t t[16];
	for (int i = 0; i < 16; i++) pthread_create(&t[i], 0, spin, 0);
	for (int i = 0; i < 16; i++) pthread_join(t[i], 0);
	return 0;
}
`

// testCPULimit: a job of 16 busy threads takes at most its sandbox's vCPUs
// of host CPU, as the sandbox's host cgroup counts it (without the limit it
// takes every core).
func testCPULimit(t *testing.T, h Harness) {
	if h.CPUUsage == nil {
		if h.CPULimitRequired {
			t.Fatal("required capability missing: a host cgroup with a CPU counter for this driver's sandboxes")
		}
		t.Skip("capability host cgroup with cpu controllers: none for this driver here")
	}
	inst := launch(t, h)
	defer inst.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before, err := h.CPUUsage(inst.VM.ID())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "c", Code: spin16,
		Limits: agentproto.Limits{WallMS: 30_000, CPUMS: 120_000, Processes: 64}}, nil)
	wall := time.Since(start)
	if err != nil || res.Run == nil || res.Run.ExitCode != 0 {
		t.Fatalf("spin job: %v %+v", err, res)
	}
	after, err := h.CPUUsage(inst.VM.ID())
	if err != nil {
		t.Fatal(err)
	}
	used := after - before
	vcpus := max(h.Spec.VCPUs, 1)
	allowed := time.Duration(vcpus)*wall + 500*time.Millisecond
	t.Logf("16 busy threads: %s of host CPU in %s of wall (%d vCPU; the job's own CPU %d ms)", used.Round(time.Millisecond),
		wall.Round(time.Millisecond), vcpus, (res.Run.CPUUserUS+res.Run.CPUSysUS)/1000)
	if used > allowed {
		t.Fatalf("the sandbox took %s of host CPU in %s: more than its %d vCPU", used, wall, vcpus)
	}
}

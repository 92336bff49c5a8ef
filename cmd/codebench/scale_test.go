package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// TestScaleOutKill9: three worker processes share one queue and one run dir;
// 60 jobs; one worker is killed with -9 in the middle. No job is lost or
// fails: every job ends "done" with the right output. A job finishes twice
// only if the worker died between the broker confirming its final status
// and receiving its ack (docs/RELIABILITY.md); at most the killed worker's
// prefetch of jobs can be in that window.
func TestScaleOutKill9(t *testing.T) {
	vm := testenv.NeedVM(t)
	url := testenv.Vhost(t, "scale")
	runDir := filepath.Join(vm.RunDir, "s")
	env := []string{"RABBITMQ_URL=" + url, "CODEBENCH_RUN_DIR=" + runDir, "CODEBENCH_POOL_SIZE=1", "CODEBENCH_CONCURRENCY=2"}
	logs := make([]*bytes.Buffer, 3)
	var workers []*exec.Cmd
	for i := range logs {
		logs[i] = &bytes.Buffer{}
		workers = append(workers, startWorkerBinary(t, logs[i], env...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn := dialBroker(ctx, t, url)

	const n = 60
	type result struct {
		statuses []job.Status
		err      error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	finished := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("scale-%d", i)
		ch, err := conn.Follow(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			// Collect until ctx ends or the stream has been quiet for a
			// while after a final status (a redelivered job may finish
			// again, and that must be seen).
			var quiet <-chan time.Time
			for {
				select {
				case b := <-ch:
					var st job.Status
					if err := json.Unmarshal(b, &st); err != nil {
						results[i].err = err
						return
					}
					results[i].statuses = append(results[i].statuses, st)
					if st.Status == job.StatusDone && quiet == nil {
						mu.Lock()
						finished++
						mu.Unlock()
					}
					if job.Final(st.Status) {
						quiet = time.After(20 * time.Second)
					}
				case <-quiet:
					return
				case <-ctx.Done():
					results[i].err = ctx.Err()
					return
				}
			}
		})
		body := fmt.Sprintf(`{"id":%q,"language":"python","code":"print(%d * 3)"}`, id, i)
		if err := conn.PublishJob(ctx, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	// Kill one worker once a fifth of the jobs are done.
	for {
		mu.Lock()
		f := finished
		mu.Unlock()
		if f >= n/5 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := workers[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = workers[0].Process.Wait()
	t.Logf("killed worker %d after %d jobs were done", workers[0].Process.Pid, finished)
	wg.Wait()

	redelivered, twice := 0, 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("job %d: %v (statuses %+v)", i, r.err, r.statuses)
		}
		dones := 0
		for _, st := range r.statuses {
			if st.Status == job.StatusDone {
				dones++
				if st.Stdout != fmt.Sprintf("%d\n", i*3) {
					t.Fatalf("job %d: wrong output %q", i, st.Stdout)
				}
			}
			if st.Status == job.StatusFailed {
				t.Fatalf("job %d failed: %+v", i, st)
			}
		}
		last := r.statuses[len(r.statuses)-1]
		if dones == 0 || last.Status != job.StatusDone {
			t.Fatalf("job %d did not end done: %s", i, names(r.statuses))
		}
		if dones > 1 {
			twice++
			t.Logf("job %d finished twice (killed between confirm and ack): %s", i, names(r.statuses))
		}
		if len(r.statuses) > 3 {
			redelivered++
		}
	}
	if twice > 2 {
		t.Fatalf("%d jobs finished twice; at most the killed worker's prefetch (2) can", twice)
	}
	t.Logf("all %d jobs done; %d redelivered after the kill; %d finished twice", n, redelivered, twice)
	for _, w := range workers[1:] {
		_ = w.Process.Signal(syscall.SIGTERM)
		if err := w.Wait(); err != nil {
			t.Fatalf("worker exit: %v", err)
		}
	}
	// What the killed worker left (its sandboxes, their host cgroups) is
	// the next worker's on its run dir to reclaim, as in production.
	killedDir := filepath.Join(runDir, fmt.Sprintf("w-%d", workers[0].Process.Pid))
	var rlogs bytes.Buffer
	r := startWorkerBinary(t, &rlogs, env...)
	eventually(t, "the reconciler", time.Minute, func() bool {
		_, err := os.Stat(killedDir)
		return os.IsNotExist(err)
	})
	stopWorkerBinary(r)
}

func names(sts []job.Status) string {
	var b bytes.Buffer
	for _, s := range sts {
		b.WriteString(s.Status + " ")
	}
	return b.String()
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// TestWorkerSIGTERM runs the real binary: a job in flight when SIGTERM
// arrives either finishes within the grace period or goes back to the queue;
// never lost, and no VM is left behind.
func TestWorkerSIGTERM(t *testing.T) {
	vm := testenv.NeedVM(t)
	tests := []struct {
		name      string
		sleep     string // seconds the job sleeps
		grace     string
		wantFinal bool // true: finished with done; false: requeued
	}{
		{"finishes within grace", "2", "60s", true},
		{"requeued after grace", "60", "1s", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := testenv.Vhost(t, "sigterm")
			runDir := filepath.Join(vm.RunDir, "w")
			var logs bytes.Buffer
			cmd := exec.Command(binary, "worker")
			cmd.Env = append(os.Environ(), "RABBITMQ_URL="+url, "CODEBENCH_RUN_DIR="+runDir, "CODEBENCH_ALLOW_TCG=1",
				"CODEBENCH_SHUTDOWN_GRACE="+tt.grace, "CODEBENCH_POOL_SIZE=1", "CODEBENCH_CONCURRENCY=1")
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Kill()
				if t.Failed() {
					t.Logf("worker log:\n%s", logs.String())
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			conn := dialBroker(ctx, t, url)
			statuses, err := conn.Follow(ctx, "term")
			if err != nil {
				t.Fatal(err)
			}
			body := `{"id":"term","language":"python","code":"import time\ntime.sleep(` + tt.sleep + `)\nprint('finished')","limits":{"wall_ms":60000}}`
			if err := conn.PublishJob(ctx, []byte(body)); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, ctx, statuses, job.StatusRunning)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if errors.As(err, &ee) || err != nil {
					t.Fatalf("worker exit: %v", err)
				}
			case <-time.After(90 * time.Second):
				t.Fatal("worker did not exit after SIGTERM")
			}
			if tt.wantFinal {
				st := waitStatus(t, ctx, statuses, job.StatusDone)
				if st.Stdout != "finished\n" {
					t.Fatalf("final %+v", st)
				}
			} else {
				msgs, err := conn.Get(queue.JobsQueue, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 1 || !msgs[0].Redelivered || string(msgs[0].Body) != body {
					t.Fatalf("job not back in the queue: %d messages", len(msgs))
				}
			}
			if n := testenv.SandboxProcesses(runDir); n != 0 {
				t.Fatalf("%d sandbox processes left", n)
			}
			if left := testenv.Entries(runDir); len(left) != 0 {
				t.Fatalf("run dir entries left: %v", left)
			}
		})
	}
}

func waitStatus(t *testing.T, ctx context.Context, ch <-chan []byte, want string) job.Status {
	t.Helper()
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("status stream closed before %s", want)
			}
			var st job.Status
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			if st.Status == want {
				return st
			}
			if job.Final(st.Status) {
				t.Fatalf("got final %+v while waiting for %s", st, want)
			}
		case <-ctx.Done():
			t.Fatalf("no %s status in time", want)
		}
	}
}

// dialBroker connects to the test's broker as a client (statuses kept an
// hour); closed with the test.
func dialBroker(ctx context.Context, t *testing.T, url string) *broker.Conn {
	t.Helper()
	conn, err := broker.Dial(ctx, broker.Config{URL: url, StatusExpires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startWorkerBinary starts "codebench worker" with env added to the test's.
func startWorkerBinary(t *testing.T, logs *bytes.Buffer, env ...string) *exec.Cmd {
	t.Helper()
	return startWorkerBinaryTo(t, logs, env...)
}

// startWorkerBinaryTo is startWorkerBinary logging to any writer.
func startWorkerBinaryTo(t *testing.T, logs io.Writer, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, "worker")
	cmd.Env = append(append(os.Environ(), "CODEBENCH_ALLOW_TCG=1"), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopWorkerBinary(cmd) })
	return cmd
}

// stopWorkerBinary stops a worker the way an operator does, SIGTERM, so
// that it removes its sandboxes and their host cgroups; SIGKILL only if it
// has not ended in 30 s (a killed worker's leftovers wait for the next
// worker on its run dir: a test's run dir has none). A worker that ended
// already is left alone.
func stopWorkerBinary(cmd *exec.Cmd) {
	if cmd.Process.Signal(syscall.SIGTERM) != nil {
		_, _ = cmd.Process.Wait()
		return
	}
	done := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWorkerKill9Reconciled: a worker killed with -9 leaves its run dir (and,
// with gVisor, sandbox processes that outlive runsc), and the next worker's
// reconciler kills what still runs and removes it; for the default driver
// here (auto) and for QEMU.
func TestWorkerKill9Reconciled(t *testing.T) {
	vm := testenv.NeedVM(t)
	for _, drv := range []struct{ name, env string }{{"auto", "CODEBENCH_DRIVER=auto"}, {"qemu", "CODEBENCH_DRIVER=qemu"}} {
		t.Run(drv.name, func(t *testing.T) { testWorkerKill9Reconciled(t, vm, drv.name, drv.env) })
	}
}

func testWorkerKill9Reconciled(t *testing.T, vm *testenv.VM, name, driverEnv string) {
	url := testenv.Vhost(t, "kill9")
	runDir := filepath.Join(vm.RunDir, "k-"+name)
	env := []string{"RABBITMQ_URL=" + url, "CODEBENCH_RUN_DIR=" + runDir, "CODEBENCH_POOL_SIZE=2", driverEnv}

	var logs1 bytes.Buffer
	w1 := startWorkerBinary(t, &logs1, env...)
	ownerDir := filepath.Join(runDir, fmt.Sprintf("w-%d", w1.Process.Pid))
	eventually(t, "the first worker's pool", 3*time.Minute, func() bool { return len(testenv.Entries(ownerDir)) == 2 })
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = w1.Process.Wait()
	// A VMM dies with its worker (Pdeathsig); gVisor's sandbox and gofer
	// processes may outlive runsc: either way, the directories stay, and
	// what still runs is the next worker's reconciler's to kill.
	time.Sleep(time.Second)
	if left := testenv.Entries(ownerDir); len(left) != 2 {
		t.Fatalf("expected the killed worker's 2 sandbox dirs to be left behind, found %v", left)
	}
	t.Logf("sandbox processes left by the killed worker: %d", testenv.SandboxProcesses(ownerDir))

	var logs2 bytes.Buffer
	w2 := startWorkerBinary(t, &logs2, env...)
	eventually(t, "the reconciler", time.Minute, func() bool {
		_, err := os.Stat(ownerDir)
		return os.IsNotExist(err)
	})
	if !strings.Contains(logs2.String(), "reconcile: removed run dir of a dead process") {
		t.Fatalf("reconciler did not log its work:\n%s", logs2.String())
	}
	if n := testenv.SandboxProcesses(ownerDir); n != 0 {
		t.Fatalf("%d processes of the dead worker's sandboxes still run after the reconciler", n)
	}
	_ = w2.Process.Signal(syscall.SIGTERM)
	if err := w2.Wait(); err != nil {
		t.Fatalf("second worker: %v\n%s", err, logs2.String())
	}
	if left := testenv.Entries(runDir); len(left) != 0 {
		t.Fatalf("run dir entries left: %v", left)
	}
}

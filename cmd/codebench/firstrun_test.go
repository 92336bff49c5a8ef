package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// lockedBuffer is a log the worker process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFirstRunKeepsAnEarlyJob is a fresh machine's first demo: an empty
// virtual host (no queues) and no snapshot template. The worker declares its
// topology before it builds the template, so the seed's job, published
// through the management API exactly as the seed's README does while the
// template is still being built, is routed, kept, and done once the pool can
// serve.
//
// It runs on each driver: QEMU builds a snapshot template first (the long
// window the first demo lost its job in); gVisor has no template, so its
// window is the pool's first boot.
func TestFirstRunKeepsAnEarlyJob(t *testing.T) {
	t.Run("qemu", func(t *testing.T) { firstRun(t, "qemu", "building snapshot template") })
	t.Run("gvisor", func(t *testing.T) {
		testenv.NeedGVisor(t)
		firstRun(t, "gvisor", "")
	})
}

// firstRun starts a worker with the driver on an empty vhost and no
// template; building, when set, is the log line that says the worker is
// still getting ready, and the job is published while it is.
func firstRun(t *testing.T, driver, building string) {
	vm := testenv.NeedVM(t)
	vhostURL := testenv.Vhost(t, "firstrun-"+driver)
	vhost := strings.TrimPrefix(mustParse(t, vhostURL).Path, "/")
	// A data dir of its own with the built image but no template.
	data := t.TempDir()
	if err := os.Symlink(filepath.Join(vm.Config.DataDir, "images"), filepath.Join(data, "images")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(vm.Config.DataDir, "accel-probe.json")); err == nil {
		_ = os.WriteFile(filepath.Join(data, "accel-probe.json"), b, 0o644)
	}
	logs := &lockedBuffer{}
	cmd := startWorkerBinaryTo(t, logs, "RABBITMQ_URL="+vhostURL, "CODEBENCH_DATA_DIR="+data,
		"CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "f"+driver), "CODEBENCH_POOL_SIZE=1", "CODEBENCH_CONCURRENCY=1",
		"CODEBENCH_DRIVER="+driver)

	m := testenv.NewManagement(t)
	if building != "" {
		eventually(t, "the worker to report "+building, 2*time.Minute, func() bool {
			return strings.Contains(logs.String(), building)
		})
	}
	eventually(t, "the jobs queue to be declared", time.Minute, func() bool {
		var queues []struct{ Name string }
		m.Do(t, "GET", "queues/"+url.PathEscape(vhost), "", &queues)
		for _, q := range queues {
			if q.Name == queue.JobsQueue {
				return true
			}
		}
		return false
	})
	req, err := os.ReadFile("../../examples/seed/req.json")
	if err != nil {
		t.Fatal(err)
	}
	var routed struct {
		Routed bool `json:"routed"`
	}
	m.Do(t, "POST", "exchanges/"+url.PathEscape(vhost)+"/amq.default/publish", string(req), &routed)
	sofar := logs.String()
	if !routed.Routed {
		t.Fatalf("the seed's job was not routed; worker log:\n%s", sofar)
	}
	if building != "" && strings.Contains(sofar, "snapshot template ready") {
		t.Fatalf("the job was published, but not while the template was being built; worker log:\n%s", sofar)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := broker.Dial(ctx, broker.Config{URL: vhostURL, StatusExpires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	statuses, err := conn.Follow(ctx, "666")
	if err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, ctx, statuses, job.StatusDone)
	if st.Stdout != "Hello, World!" {
		t.Fatalf("final %+v", st)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v\n%s", err, logs.String())
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

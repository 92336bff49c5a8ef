package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// TestWorkerNetworkedJobs runs the worker with networking on: a job that
// asks for a network reaches the allowed test host and not one outside
// the allow-list, a job that does not has only lo; once the worker
// stops, its network is gone (namespaces, leases, fences, masquerading).
func TestWorkerNetworkedJobs(t *testing.T) {
	vm := testenv.NeedJail(t)
	testenv.NeedNetwork(t)
	allowed := testenv.NewTestHost(t, "wa", netip.MustParsePrefix("10.99.5.0/24"))
	outside := testenv.NewTestHost(t, "wb", netip.MustParsePrefix("10.99.6.0/24"))
	url := testenv.Vhost(t, "network")
	runDir := filepath.Join(vm.RunDir, "n")
	var logs bytes.Buffer
	w := startWorkerBinary(t, &logs, "RABBITMQ_URL="+url, "CODEBENCH_RUN_DIR="+runDir, "CODEBENCH_DRIVER=qemu",
		"CODEBENCH_POOL_SIZE=1", "CODEBENCH_CONCURRENCY=2", "CODEBENCH_NETWORK=true", "CODEBENCH_NETWORK_NAME=wt",
		"CODEBENCH_NETWORK_SUBNET=10.203.0.0/24", "CODEBENCH_NETWORK_ALLOW=10.99.5.0/24")
	defer func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	}()
	// Two templates may be built first (the networked one is new).
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	conn := dialBroker(ctx, t, url)
	fetch := `import socket
for host in [%q, %q]:
    try:
        s = socket.create_connection((host, %d), timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(host, data.decode().splitlines()[-1])
    except Exception as e:
        print(host, "ERR", type(e).__name__)
`
	jobs := []struct {
		id   string
		body map[string]any
		want []string
	}{
		{"net1", map[string]any{"language": "python", "network": true,
			"code": fmt.Sprintf(fetch, allowed.Addr, outside.Addr, allowed.Port)},
			[]string{allowed.Addr.String() + " " + allowed.Token, outside.Addr.String() + " ERR"}},
		{"plain1", map[string]any{"language": "python", "code": `import os; print(sorted(os.listdir("/sys/class/net")))`},
			[]string{"['lo']"}},
	}
	for _, j := range jobs {
		statuses, err := conn.Follow(ctx, j.id)
		if err != nil {
			t.Fatal(err)
		}
		j.body["id"] = j.id
		b, _ := json.Marshal(j.body)
		if err := conn.PublishJob(ctx, b); err != nil {
			t.Fatal(err)
		}
		st := waitStatus(t, ctx, statuses, job.StatusDone)
		for _, want := range j.want {
			if !strings.Contains(st.Stdout, want) {
				t.Errorf("%s: stdout %q lacks %q", j.id, st.Stdout, want)
			}
		}
	}
	if err := w.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(); err != nil {
		t.Fatalf("worker exit: %v", err)
	}
	if ns, _ := filepath.Glob("/run/netns/cbwt-*"); len(ns) > 0 {
		t.Errorf("namespaces left: %v", ns)
	}
	if exec.Command("nft", "list", "table", "inet", "codebench_wt").Run() == nil {
		t.Error("fences table left")
	}
	cfg := testenv.Config(t)
	leases, _ := filepath.Glob(filepath.Join(cfg.DataDir, "network", "wt", "leases", "*", "10.*"))
	if len(leases) > 0 {
		t.Errorf("leases left: %v", leases)
	}
	if out, _ := exec.Command("iptables-save", "-t", "nat").CombinedOutput(); strings.Contains(string(out), `codebench-wt`) {
		t.Errorf("masquerading rules left:\n%s", out)
	}
	if left := testenv.Entries(runDir); len(left) != 0 {
		t.Errorf("run dir entries left: %v", left)
	}
	_ = os.Remove(runDir)
}

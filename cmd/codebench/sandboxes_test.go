package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
	"github.com/codebench/codebench/internal/testenv"
)

// startSandboxHost starts "codebench sandboxes" and waits until it serves.
func startSandboxHost(t *testing.T, logs *lockedBuffer, env []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, "sandboxes")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopWorkerBinary(cmd) })
	eventually(t, "the sandbox host to serve", 2*time.Minute, func() bool {
		return strings.Contains(logs.String(), "serving the E2B API") || cmd.ProcessState != nil
	})
	return cmd
}

// runSDK runs the conformance script's phase and reports each check.
func runSDK(t *testing.T, dir, phase, addr, state string) {
	t.Helper()
	cmd := exec.Command("node", "conformance.mjs", phase, state)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2B_API_URL=http://"+addr, "E2B_SANDBOX_URL=http://"+addr,
		"E2B_API_KEY=key-a", "E2B_OTHER_API_KEY=key-b")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var failed []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if !strings.HasPrefix(line, "ok ") {
			failed = append(failed, line)
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil || len(failed) > 0 {
		t.Fatalf("the E2B SDK's %s phase failed: %v\n%s\n%s", phase, err, strings.Join(failed, "\n"), stderr.String())
	}
}

// readmeExample runs the README's Node example as it stands there, with
// another key (key-a holds its most running sandboxes by now).
func readmeExample(t *testing.T, dir, addr string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```js\n")
	code, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the README has no js example")
	}
	path := filepath.Join(dir, fmt.Sprintf("readme-%d.mjs", os.Getpid()))
	if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	cmd := exec.Command("node", path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2B_API_URL=http://"+addr, "E2B_SANDBOX_URL=http://"+addr, "E2B_API_KEY=key-b")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Hello from /home/user") || !strings.Contains(string(out), "'-l -c sleep 600'") {
		t.Fatalf("the README's example: %v\n%s", err, out)
	}
}

// vmCgroups lists the host cgroups, in any hierarchy, named after the
// sandboxes in ids.
func vmCgroups(ids []string) []string {
	var left []string
	for _, id := range ids {
		found, _ := filepath.Glob(filepath.Join(hostcgroup.Root, "*", hostcgroup.DefaultName, id))
		left = append(left, found...)
	}
	return left
}

// TestE2BSDK drives the unmodified E2B SDK (npm e2b, pinned in
// internal/e2bsdk/package.json) against "codebench sandboxes" on real gVisor
// sandboxes: every check of the conformance script (commands, files, a
// pty, watchDir, isolation, timeouts, paging, pause and resume over 10
// cycles, limits, kill, keys and tokens). Then the host is killed with -9
// while one sandbox is paused and one runs: its next start reclaims the
// running one (no process, run dir or cgroup left) and resumes the paused
// one whole.
func TestE2BSDK(t *testing.T) {
	gv := testenv.NeedGVisor(t)
	sdk := testenv.NeedE2BSDK(t, filepath.Join("testdata", "e2b"))
	runDir := filepath.Join(gv.RunDir, "e2b")
	addr := freeAddr(t)
	env := []string{"CODEBENCH_DRIVER=gvisor", "CODEBENCH_RUN_DIR=" + runDir, "CODEBENCH_SANDBOXES_DIR=" + t.TempDir(),
		"CODEBENCH_SANDBOXES_ADDR=" + addr, "CODEBENCH_SANDBOXES_API_KEYS=key-a,key-b", "CODEBENCH_SANDBOXES_KEY_RUNNING=2",
		"CODEBENCH_SANDBOXES_POOL=2"}
	state := filepath.Join(t.TempDir(), "state.json")

	var logs1 lockedBuffer
	h1 := startSandboxHost(t, &logs1, env)
	runSDK(t, sdk, "main", addr, state)

	readmeExample(t, sdk, addr)

	owner := filepath.Join(runDir, fmt.Sprintf("s-%d", h1.Process.Pid))
	vms := testenv.Entries(owner) // the running sandbox and the warm pool's
	if len(vms) == 0 {
		t.Fatalf("no sandbox under %s before the kill", owner)
	}
	if err := h1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = h1.Process.Wait()
	t.Logf("killed the host with -9: %d sandboxes under its run dir, %d of their processes still there", len(vms), testenv.SandboxProcesses(owner))

	var logs2 lockedBuffer
	h2 := startSandboxHost(t, &logs2, env)
	if !strings.Contains(logs2.String(), "reclaimed=1") {
		t.Fatalf("the next start did not report the running sandbox it reclaimed:\n%s", logs2.String())
	}
	if _, err := os.Stat(owner); !os.IsNotExist(err) {
		t.Fatalf("the killed host's run dir is still there: %v\n%s", testenv.Entries(owner), logs2.String())
	}
	if n := testenv.SandboxProcesses(owner); n != 0 {
		t.Fatalf("%d processes of the killed host's sandboxes still run", n)
	}
	if left := vmCgroups(vms); len(left) > 0 {
		t.Fatalf("host cgroups of the killed host's sandboxes left: %v", left)
	}
	runSDK(t, sdk, "restarted", addr, state)

	// A stop pauses what runs and leaves nothing on the host.
	owner2 := filepath.Join(runDir, fmt.Sprintf("s-%d", h2.Process.Pid))
	vms2 := testenv.Entries(owner2)
	_ = h2.Process.Signal(syscall.SIGTERM)
	if err := h2.Wait(); err != nil {
		t.Fatalf("the host's stop: %v\n%s", err, logs2.String())
	}
	if left := testenv.Entries(runDir); len(left) != 0 {
		t.Fatalf("run dir entries left after a stop: %v", left)
	}
	if left := vmCgroups(vms2); len(left) > 0 {
		t.Fatalf("host cgroups left after a stop: %v", left)
	}
}

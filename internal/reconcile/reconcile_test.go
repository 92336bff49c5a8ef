package reconcile

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/proc"
	"github.com/codebench/codebench/internal/sandbox"
)

// fakeVMM is a process whose command line looks like our VMM's (the marker
// and its run dir, in a shell comment) or, without marker, like someone
// else's.
func fakeVMM(t *testing.T, vmDir, id string, marker bool) *exec.Cmd {
	t.Helper()
	name := "codebench:" + id
	if !marker {
		name = "someone-else"
	}
	cmd := exec.Command("sh", "-c", "sleep 60 # "+name+" "+vmDir+"/qmp.sock")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vmDir, "qemu.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// pidFileReclaimer reclaims like the QEMU driver: a pid file in the VM's
// directory, and the marker plus the directory on the command line.
type pidFileReclaimer struct{}

func (pidFileReclaimer) Reclaim(_ context.Context, dir string) ([]int, error) {
	pid, err := proc.KillStale(filepath.Join(dir, "qemu.pid"), "codebench:"+filepath.Base(dir), dir)
	if pid == 0 {
		return nil, err
	}
	return []int{pid}, err
}

func TestReconcile(t *testing.T) {
	run := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	// A dead owner (pid far above pid_max) with one live VM of ours and
	// one process that is not ours.
	dead := filepath.Join(run, "w-999999999")
	ours := fakeVMM(t, filepath.Join(dead, "vm-aaa"), "vm-aaa", true)
	notOurs := fakeVMM(t, filepath.Join(dead, "vm-bbb"), "vm-bbb", false)
	// A live owner: this test process.
	live := OwnerDir(run, "w")
	liveVM := fakeVMM(t, filepath.Join(live, "vm-ccc"), "vm-ccc", true)
	// Not our layout at all.
	other := filepath.Join(run, "something-else")
	os.MkdirAll(other, 0o700)

	rep, err := Run(context.Background(), Config{RunDir: run, Reclaimers: []sandbox.Reclaimer{pidFileReclaimer{}}, OwnerCmd: filepath.Base(os.Args[0])}, log)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Killed, []int{ours.Process.Pid}) || !slices.Equal(rep.Removed, []string{dead}) {
		t.Fatalf("report %+v\nlogs: %s", rep, logs.String())
	}
	waitExit := func(c *exec.Cmd) bool {
		done := make(chan struct{})
		go func() { _, _ = c.Process.Wait(); close(done) }()
		select {
		case <-done:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	if !waitExit(ours) {
		t.Fatal("our leftover VM still runs")
	}
	for _, c := range []*exec.Cmd{notOurs, liveVM} {
		if c.ProcessState != nil || syscallKill0(c.Process.Pid) != nil {
			t.Fatalf("reconcile killed a process it does not own: %d", c.Process.Pid)
		}
	}
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("reconcile removed %s: %v", d, err)
		}
	}
	if !bytes.Contains(logs.Bytes(), []byte("killed VM left by a dead process")) || !bytes.Contains(logs.Bytes(), []byte("not our VM")) {
		t.Fatalf("logs: %s", logs.String())
	}
}

func syscallKill0(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(syscallSignal0)
}

// failingReclaimer fails until ok is set, then reclaims nothing.
type failingReclaimer struct{ ok *bool }

func (r failingReclaimer) Reclaim(context.Context, string) ([]int, error) {
	if !*r.ok {
		return nil, errors.New("jailer chroot busy")
	}
	return nil, nil
}

// TestFailedReclaimKeepsTheDir: a run dir whose reclaim failed is kept (its
// pid files are what a retry needs) and reclaimed on the next start.
func TestFailedReclaimKeepsTheDir(t *testing.T) {
	run := t.TempDir()
	dead := filepath.Join(run, "w-999999998")
	if err := os.MkdirAll(filepath.Join(dead, "vm-ddd"), 0o700); err != nil {
		t.Fatal(err)
	}
	ok := false
	cfg := Config{RunDir: run, Reclaimers: []sandbox.Reclaimer{failingReclaimer{&ok}}}
	log := slog.New(slog.DiscardHandler)
	rep, err := Run(context.Background(), cfg, log)
	if err == nil || !slices.Equal(rep.Kept, []string{dead}) || len(rep.Removed) != 0 {
		t.Fatalf("first start: err %v, report %+v", err, rep)
	}
	if _, err := os.Stat(filepath.Join(dead, "vm-ddd")); err != nil {
		t.Fatalf("the dir of a failed reclaim is gone: %v", err)
	}
	ok = true
	rep, err = Run(context.Background(), cfg, log)
	if err != nil || !slices.Equal(rep.Removed, []string{dead}) {
		t.Fatalf("next start: err %v, report %+v", err, rep)
	}
}

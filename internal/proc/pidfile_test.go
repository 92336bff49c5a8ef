package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadPIDFileFromAHostileDir: a VM user owns the run dir its pid file
// is in; a FIFO or a link to /dev/zero there must neither hang nor flood
// the reconciler, which runs as root.
func TestReadPIDFileFromAHostileDir(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path    string
		pid     int
		wantErr bool
	}{
		{plain, os.Getpid(), false},
		{fifo, 0, true},
		{zero, 0, true},
		{huge, 0, false},
		{filepath.Join(dir, "missing"), 0, true},
	} {
		done := make(chan struct{})
		var pid int
		var err error
		go func() { pid, err = ReadPIDFile(tc.path); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the read hangs", filepath.Base(tc.path))
		}
		if pid != tc.pid || (err != nil) != tc.wantErr {
			t.Errorf("%s: pid %d err %v, want pid %d, error %v", filepath.Base(tc.path), pid, err, tc.pid, tc.wantErr)
		}
	}
}

// TestExiting: a live process is not exiting; one with a SIGKILL pending
// (stopped, so it cannot act on it yet) is; a reaped one is.
func TestExiting(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Exiting(pid) {
		t.Fatal("a sleeping process is exiting")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if strings.Contains(string(b), ") T ") {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !Exiting(pid) && Alive(pid) {
		t.Fatal("a process with SIGKILL sent is neither exiting nor dead")
	}
	_ = cmd.Wait()
	if !Exiting(pid) {
		t.Fatal("a reaped process is not gone")
	}
}

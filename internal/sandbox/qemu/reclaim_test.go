package qemu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/proc"
)

// TestReclaim: a leftover QEMU of ours (marker and run dir on its command
// line) is killed; a reused pid of someone else's is left alone.
func TestReclaim(t *testing.T) {
	d, err := New(Config{RunDir: t.TempDir(), Accel: AccelTCG, TSCKHz: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	start := func(dir, cmdline string) *exec.Cmd {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", "sleep 60 # "+cmdline)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	root := t.TempDir()
	ours := filepath.Join(root, "vm-aaa")
	oursCmd := start(ours, NamePrefix+"vm-aaa "+ours+"/qmp.sock")
	other := filepath.Join(root, "vm-bbb")
	otherCmd := start(other, "someone else's process")

	killed, err := d.Reclaim(context.Background(), ours)
	if err != nil || len(killed) != 1 || killed[0] != oursCmd.Process.Pid {
		t.Fatalf("reclaim ours: killed %v err %v", killed, err)
	}
	waited := make(chan struct{})
	go func() { _, _ = oursCmd.Process.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("our leftover still runs")
	}
	killed, err = d.Reclaim(context.Background(), other)
	if len(killed) != 0 || !errors.Is(err, proc.ErrNotOurs) || !proc.Alive(otherCmd.Process.Pid) {
		t.Fatalf("reclaim of someone else's pid: killed %v err %v", killed, err)
	}
	if killed, err := d.Reclaim(context.Background(), filepath.Join(root, "vm-none")); len(killed) != 0 || err != nil {
		t.Fatalf("reclaim of a dir without pid file: %v %v", killed, err)
	}
}

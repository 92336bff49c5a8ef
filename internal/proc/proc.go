// Package proc is what the drivers and the reconciler know of host
// processes: pid files (written with their error, read as a less trusted
// user's file), whether a pid is alive and ours, and killing it.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotOurs: a pid file names a live process that does not carry our
// marker (the pid was reused): it is left alone.
var ErrNotOurs = errors.New("proc: pid file names a process that is not our VM; left alone")

// WritePIDFile records pid for the reconciler. Its error matters: a VMM
// whose pid is not on disk cannot be reclaimed after a crash.
func WritePIDFile(path string, pid int) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o600); err != nil {
		return fmt.Errorf("proc: pid file: %w", err)
	}
	return nil
}

// KillStale kills the process named by pidFile if it is alive and its
// command line contains every one of marks, and waits for it to be gone. A
// missing pid file or a dead process is nothing to do (0, nil); a live
// process without the marks is ErrNotOurs.
func KillStale(pidFile string, marks ...string) (int, error) {
	pid, err := ReadPIDFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if pid <= 0 || !Alive(pid) {
		return 0, nil
	}
	cl := Cmdline(pid)
	for _, m := range marks {
		if !strings.Contains(cl, m) {
			return 0, fmt.Errorf("%w: pid %d (%s)", ErrNotOurs, pid, pidFile)
		}
	}
	return pid, KillAndWait(pid)
}

// maxPIDFile bounds what is read of a pid file.
const maxPIDFile = 32

// ReadPIDFile reads a pid file that a less trusted user may own (a jailed
// VMM's run dir): never through a link (O_NOFOLLOW), never from anything
// but a regular file (a FIFO would hang the reader, /dev/zero would never
// end), at most a few bytes. A file that holds no pid is 0, nil.
func ReadPIDFile(path string) (int, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("proc: pid file %s is not a regular file (%s)", path, st.Mode().Type())
	}
	b := make([]byte, maxPIDFile)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0, nil
	}
	return pid, nil
}

// Alive reports whether pid is a running process (zombies are not).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

// Cmdline is pid's command line, arguments separated by spaces.
func Cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// KillAndWait sends SIGKILL and waits up to 3 s for pid to be gone.
func KillAndWait(pid int) error {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 300 {
		if !Alive(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("proc: pid %d survived SIGKILL", pid)
}

// pfExiting is the kernel's PF_EXITING task flag (/proc/<pid>/stat field 9).
const pfExiting = 0x4

// Exiting reports whether pid is on its way out though not yet a zombie: a
// SIGKILL is pending, or the kernel is tearing it down (PF_EXITING). A
// VMM killed a moment ago stays "running" while its guest memory is
// unmapped, its sockets still open, for as long as that takes on a busy
// host.
func Exiting(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	if i := bytes.LastIndexByte(b, ')'); i > 0 {
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 6 {
			if flags, err := strconv.ParseUint(f[6], 10, 64); err == nil && flags&pfExiting != 0 {
				return true
			}
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	const sigkill = 1 << (syscall.SIGKILL - 1)
	for _, l := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "ShdPnd" && k != "SigPnd") {
			continue
		}
		if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&sigkill != 0 {
			return true
		}
	}
	return false
}

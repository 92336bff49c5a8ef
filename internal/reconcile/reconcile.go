// Package reconcile removes what a killed codebench process left behind.
// Every process keeps its sandboxes under <run dir>/<prefix>-<pid>/ (one
// directory per sandbox inside); at start-up a worker looks at the
// directories whose owner is gone and, for each sandbox directory in them,
// asks every driver it knows to reclaim it (each driver kills its own
// processes, proven by a marker, and removes what it keeps elsewhere: jailer
// chroots, runsc state), then removes the directory. It touches nothing else:
// not other live processes' directories, not processes without the marker.
package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
)

// OwnerDir is the run directory of the calling process: <runDir>/<prefix>-<pid>.
func OwnerDir(runDir, prefix string) string {
	return filepath.Join(runDir, fmt.Sprintf("%s-%d", prefix, os.Getpid()))
}

// Owners: w worker, r run, b bench, d doctor.
var ownerRE = regexp.MustCompile(`^(w|r|b|d)-([0-9]+)$`)

// ErrNotOurs: a pid file names a live process that does not carry our
// marker (the pid was reused): it is left alone.
var ErrNotOurs = errors.New("reconcile: pid file names a process that is not our VM; left alone")

// Config says where to look and who reclaims.
type Config struct {
	RunDir string
	// Reclaimers are the drivers whose leftovers may be found: every
	// driver this host may have run, not only the one in use now.
	Reclaimers []sandbox.Reclaimer
	// OwnerCmd must appear in a live owner's command line for its
	// directory to count as in use (default "codebench"): a reused pid of
	// an unrelated process does not keep leftovers alive.
	OwnerCmd string
}

// Report lists what was cleaned.
type Report struct {
	Killed  []int
	Removed []string
}

// Run cleans the directories of dead owners.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (Report, error) {
	var rep Report
	entries, err := os.ReadDir(cfg.RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	if cfg.OwnerCmd == "" {
		cfg.OwnerCmd = "codebench"
	}
	var errs []error
	for _, e := range entries {
		m := ownerRE.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue // not ours
		}
		pid, _ := strconv.Atoi(m[2])
		if Alive(pid) && strings.Contains(Cmdline(pid), cfg.OwnerCmd) {
			continue // a live codebench process owns it
		}
		dir := filepath.Join(cfg.RunDir, e.Name())
		vms, _ := os.ReadDir(dir)
		for _, vm := range vms {
			vmDir := filepath.Join(dir, vm.Name())
			for _, r := range cfg.Reclaimers {
				killed, err := r.Reclaim(ctx, vmDir)
				switch {
				case errors.Is(err, ErrNotOurs):
					log.Warn("reconcile: "+ErrNotOurs.Error(), "vm_id", vm.Name(), "err", err)
				case err != nil:
					errs = append(errs, err)
				}
				for _, p := range killed {
					log.Info("reconcile: killed VM left by a dead process", "pid", p, "vm_id", vm.Name(), "owner", e.Name())
				}
				rep.Killed = append(rep.Killed, killed...)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("reconcile: removed run dir of a dead process", "dir", dir, "vms", len(vms))
		rep.Removed = append(rep.Removed, dir)
	}
	return rep, errors.Join(errs...)
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
	return pid, kill(pid)
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
		return 0, fmt.Errorf("reconcile: pid file %s is not a regular file (%s)", path, st.Mode().Type())
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

func kill(pid int) error {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 300; i++ {
		if !Alive(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("reconcile: pid %d survived SIGKILL", pid)
}

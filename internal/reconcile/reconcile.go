// Package reconcile removes what a killed codebench process left behind.
// Every process keeps its VMs under <run dir>/<prefix>-<pid>/ (one directory
// per VM inside, holding the VMM's pid file); at start-up a worker looks at
// the directories whose owner is gone and, for each, kills VMM processes that
// still carry our marker on their command line, then removes the directory.
// It touches nothing else: not other live workers' directories, not
// processes without the marker.
package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// OwnerDir is the run directory of the calling process: <runDir>/<prefix>-<pid>.
func OwnerDir(runDir, prefix string) string {
	return filepath.Join(runDir, fmt.Sprintf("%s-%d", prefix, os.Getpid()))
}

// Owners: w worker, r run, b bench, d doctor.
var ownerRE = regexp.MustCompile(`^(w|r|b|d)-([0-9]+)$`)

// Config says what marks our processes.
type Config struct {
	RunDir string
	// PIDFile is the name of the VMM pid file inside each VM directory.
	PIDFile string
	// Marker must appear in a VMM's command line (e.g. "codebench:" from
	// QEMU's -name) for it to be killed.
	Marker string
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
func Run(cfg Config, log *slog.Logger) (Report, error) {
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
		if alive(pid) && strings.Contains(cmdline(pid), cfg.OwnerCmd) {
			continue // a live codebench process owns it
		}
		dir := filepath.Join(cfg.RunDir, e.Name())
		vms, _ := os.ReadDir(dir)
		for _, vm := range vms {
			b, err := os.ReadFile(filepath.Join(dir, vm.Name(), cfg.PIDFile))
			if err != nil {
				continue
			}
			vpid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || !alive(vpid) {
				continue
			}
			cl := cmdline(vpid)
			if !strings.Contains(cl, cfg.Marker+vm.Name()) || !strings.Contains(cl, filepath.Join(dir, vm.Name())) {
				log.Warn("reconcile: pid file names a process that is not our VM; left alone", "pid", vpid, "vm_id", vm.Name())
				continue
			}
			if err := kill(vpid); err != nil {
				errs = append(errs, err)
				continue
			}
			log.Info("reconcile: killed VM left by a dead process", "pid", vpid, "vm_id", vm.Name(), "owner", e.Name())
			rep.Killed = append(rep.Killed, vpid)
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

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie is not alive for our purposes.
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

func kill(pid int) error {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 300; i++ {
		if !alive(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("reconcile: pid %d survived SIGKILL", pid)
}

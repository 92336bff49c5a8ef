// Package reconcile removes what a killed codebench process left behind.
// Every process keeps its sandboxes under <run dir>/<prefix>-<pid>/ (one
// directory per sandbox inside); at start-up a worker looks at the
// directories whose owner is gone and, for each sandbox directory in them,
// asks every driver it knows to reclaim it (each driver kills its own
// processes, proven by a marker, and removes what it keeps elsewhere: jailer
// chroots, runsc state), then removes the directory, unless a reclaim
// failed: then the directory stays for the next start to try again. It touches nothing else:
// not other live processes' directories, not processes without the marker.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/codebench/codebench/internal/proc"
	"github.com/codebench/codebench/internal/sandbox"
)

// OwnerDir is the run directory of the calling process: <runDir>/<prefix>-<pid>.
func OwnerDir(runDir, prefix string) string {
	return filepath.Join(runDir, fmt.Sprintf("%s-%d", prefix, os.Getpid()))
}

// Owners: w worker, r run, b bench, d doctor, s sandboxes.
var ownerRE = regexp.MustCompile(`^(w|r|b|d|s)-([0-9]+)$`)

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
	// Kept are directories a reclaim failed in: kept, and tried again on
	// the next start (their pid files and records are what a retry needs).
	Kept []string
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
		if proc.Alive(pid) && strings.Contains(proc.Cmdline(pid), cfg.OwnerCmd) {
			continue // a live codebench process owns it
		}
		dir := filepath.Join(cfg.RunDir, e.Name())
		vms, _ := os.ReadDir(dir)
		failed := false
		for _, vm := range vms {
			vmDir := filepath.Join(dir, vm.Name())
			for _, r := range cfg.Reclaimers {
				killed, err := r.Reclaim(ctx, vmDir)
				switch {
				case errors.Is(err, proc.ErrNotOurs):
					log.Warn("reconcile: "+proc.ErrNotOurs.Error(), "vm_id", vm.Name(), "err", err)
				case err != nil:
					errs = append(errs, err)
					failed = true
				}
				for _, p := range killed {
					log.Info("reconcile: killed VM left by a dead process", "pid", p, "vm_id", vm.Name(), "owner", e.Name())
				}
				rep.Killed = append(rep.Killed, killed...)
			}
		}
		if failed {
			log.Warn("reconcile: a reclaim failed; the run dir is kept and tried again on the next start", "dir", dir)
			rep.Kept = append(rep.Kept, dir)
			continue
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

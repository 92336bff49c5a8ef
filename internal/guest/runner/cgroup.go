package runner

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// Limiter gives each phase its limits.
type Limiter interface {
	Create(name string, memoryKB, pids int64) (PhaseLimits, error)
}

// PhaseLimits are one phase's limits, from before its start to its end.
type PhaseLimits interface {
	// Start starts cmd inside the phase's limits, so that the program is
	// limited from its first instruction: the program itself, or the
	// trampoline that enters them right before it execs the program
	// (selfPlacer).
	Start(cmd *exec.Cmd) error
	// Started runs right after the start: what could not be set before
	// it. A limiter that starts the program itself (no trampoline) sets
	// the rlimits here, by prlimit; the window between exec and this is
	// covered by the cgroup (memory, processes), by RLIMIT_CPU counting
	// all CPU time, and by the size of the job's tmpfs. A selfPlacer's
	// trampoline set them before execve: nothing is left.
	Started(pid int, l agentproto.Limits) error
	// MemoryLimited reports whether the phase was killed for memory.
	MemoryLimited() bool
	// PeakKB is the phase's peak memory, 0 if unknown.
	PeakKB() int64
	// Destroy kills what is left of the phase and releases its limits.
	Destroy()
}

// Cgroups places each phase in a cgroup v2 of its own under Root: memory.max
// (no swap) and pids.max limit the whole process tree, an OOM kill is
// reported as such, memory.peak is the tree's peak, and cgroup.kill ends
// every process of the phase, including ones that left its process group.
type Cgroups struct {
	Root string // e.g. /sys/fs/cgroup/jobs, created by Setup
}

var _ Limiter = (*Cgroups)(nil)

// SetupCgroups enables the memory and pids controllers below parent and
// creates root. It fails where the kernel lacks cgroup v2 or the controllers;
// the runner then falls back to RLIMIT_AS.
func SetupCgroups(parent, name string) (*Cgroups, error) {
	ctrl, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 not mounted at %s: %w", parent, err)
	}
	for _, c := range []string{"memory", "pids"} {
		if !strings.Contains(" "+strings.TrimSpace(string(ctrl))+" ", " "+c+" ") {
			return nil, fmt.Errorf("cgroup controller %s unavailable (have %q)", c, strings.TrimSpace(string(ctrl)))
		}
	}
	if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
		return nil, fmt.Errorf("enable controllers: %w", err)
	}
	root := filepath.Join(parent, name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
		return nil, fmt.Errorf("enable controllers in %s: %w", root, err)
	}
	return &Cgroups{Root: root}, nil
}

// phaseCgroup is one phase's cgroup.
type phaseCgroup struct {
	dir   string
	procs *os.File // its cgroup.procs, for the trampoline to enter by
}

var (
	_ selfPlacer = (*phaseCgroup)(nil)
	_ cpuCounter = (*phaseCgroup)(nil)
)

// Create implements Limiter.
func (c *Cgroups) Create(name string, memoryKB, pids int64) (PhaseLimits, error) {
	dir := filepath.Join(c.Root, name)
	_ = os.Remove(dir) // a leftover of an earlier phase with this name
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	writes := []struct{ file, value string }{
		{"memory.max", strconv.FormatInt(memoryKB<<10, 10)},
		{"memory.swap.max", "0"},
		{"pids.max", strconv.FormatInt(pids, 10)},
	}
	for _, w := range writes {
		err := os.WriteFile(filepath.Join(dir, w.file), []byte(w.value), 0)
		if err != nil && !(w.file == "memory.swap.max" && errors.Is(err, os.ErrNotExist)) {
			_ = os.Remove(dir)
			return nil, fmt.Errorf("%s: %w", w.file, err)
		}
	}
	procs, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		_ = os.Remove(dir)
		return nil, err
	}
	return &phaseCgroup{dir: dir, procs: procs}, nil
}

// Start implements PhaseLimits: the trampoline (Runner.command) enters the
// cgroup itself before the program starts (selfPlacer).
func (p *phaseCgroup) Start(cmd *exec.Cmd) error { return cmd.Start() }

// ProcsFile implements selfPlacer.
func (p *phaseCgroup) ProcsFile() *os.File { return p.procs }

// CPUUS implements cpuCounter: cpu.stat, which cgroup v2 keeps for every
// cgroup, with or without the cpu controller.
func (p *phaseCgroup) CPUUS() (user, sys int64, ok bool) {
	path := filepath.Join(p.dir, "cpu.stat")
	user, sys = readKeyed(path, "user_usec"), readKeyed(path, "system_usec")
	return user, sys, readKeyed(path, "usage_usec") > 0
}

// Started implements PhaseLimits: nothing to do, the trampoline (this is a
// selfPlacer) set the rlimits before it exec'd the program.
func (p *phaseCgroup) Started(int, agentproto.Limits) error { return nil }

// MemoryLimited implements PhaseLimits: the kernel OOM-killed a process of
// the phase.
func (p *phaseCgroup) MemoryLimited() bool {
	return readKeyed(filepath.Join(p.dir, "memory.events"), "oom_kill") > 0
}

// PeakKB implements PhaseLimits: memory.peak (kernel 5.19+), 0 if unknown.
func (p *phaseCgroup) PeakKB() int64 {
	b, err := os.ReadFile(filepath.Join(p.dir, "memory.peak"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n >> 10
}

// Destroy implements PhaseLimits: cgroup.kill, then the cgroup goes.
func (p *phaseCgroup) Destroy() {
	_ = os.WriteFile(filepath.Join(p.dir, "cgroup.kill"), []byte("1"), 0)
	p.procs.Close()
	for i := 0; i < 200; i++ { // rmdir fails while killed processes are exiting
		if err := os.Remove(p.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readKeyed(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

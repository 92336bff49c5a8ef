// Package hostcgroup gives each sandbox's VMM a cgroup of its own on the
// host, with a memory and a process limit: on cgroup v2 where the unified
// hierarchy offers the memory and pids controllers, else on the cgroup v1
// memory and pids hierarchies (hybrid hosts, such as these, whose v2
// hierarchy offers only hugetlb).
package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Root is where the hierarchies are mounted; DefaultName is codebench's
// parent cgroup in each.
const (
	Root        = "/sys/fs/cgroup"
	DefaultName = "codebench"
)

// Manager makes the sandboxes' cgroups under a parent of its own.
type Manager struct {
	// Version is "v2" or "v1".
	Version string
	// Name is the parent cgroup's name, in every hierarchy used.
	Name string
	// parents are the parent cgroups: one on v2, memory and pids on v1.
	v2     string
	memory string
	pids   string
}

// Detect finds the controllers and creates the parent cgroup name in each
// hierarchy used, or says why no cgroup can be had here.
func Detect(root, name string) (*Manager, error) {
	if ctrl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		have := " " + strings.TrimSpace(string(ctrl)) + " "
		if strings.Contains(have, " memory ") && strings.Contains(have, " pids ") {
			parent := filepath.Join(root, name)
			if err := os.MkdirAll(parent, 0o755); err != nil {
				return nil, err
			}
			// Controllers must be enabled in every ancestor's subtree.
			_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory +pids"), 0)
			if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
				return nil, fmt.Errorf("hostcgroup: enable memory and pids in %s: %w", parent, err)
			}
			return &Manager{Version: "v2", Name: name, v2: parent}, nil
		}
	}
	mem, pids := filepath.Join(root, "memory"), filepath.Join(root, "pids")
	for _, d := range []string{mem, pids} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("hostcgroup: no cgroup v2 memory and pids controllers, and no v1 %s hierarchy: %w", filepath.Base(d), err)
		}
	}
	m := &Manager{Version: "v1", Name: name, memory: filepath.Join(mem, name), pids: filepath.Join(pids, name)}
	for _, d := range []string{m.memory, m.pids} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Describe says which hierarchy is used and where.
func (m *Manager) Describe() string {
	if m.Version == "v2" {
		return "cgroup v2 at " + m.v2
	}
	return "cgroup v1 at " + m.memory + " and " + m.pids
}

// Path is sandbox id's cgroup path relative to the hierarchies' roots (an
// OCI runtime's cgroupsPath).
func (m *Manager) Path(id string) string { return "/" + m.Name + "/" + id }

// Group is one sandbox's cgroup.
type Group struct {
	dirs []string
}

// dirs of sandbox id.
func (m *Manager) dirs(id string) []string {
	if m.Version == "v2" {
		return []string{filepath.Join(m.v2, id)}
	}
	return []string{filepath.Join(m.memory, id), filepath.Join(m.pids, id)}
}

// Create makes sandbox id's cgroup with its limits (no swap beyond the
// memory limit on v2; on v1 memsw where the kernel has it).
func (m *Manager) Create(id string, memoryBytes int64, pids int) (*Group, error) {
	g := &Group{dirs: m.dirs(id)}
	for _, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, errors.Join(err, g.Remove())
		}
	}
	mem, pid := strconv.FormatInt(memoryBytes, 10), strconv.Itoa(pids)
	var writes [][2]string
	if m.Version == "v2" {
		writes = [][2]string{{"memory.max", mem}, {"memory.swap.max", "0"}, {"pids.max", pid}}
	} else {
		writes = [][2]string{{"memory.limit_in_bytes", mem}, {"memory.memsw.limit_in_bytes", mem}, {"pids.max", pid}}
	}
	for _, w := range writes {
		dir := g.dirs[0]
		if w[0] == "pids.max" {
			dir = g.dirs[len(g.dirs)-1]
		}
		err := os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0)
		if err != nil && !(strings.Contains(w[0], "swap") || strings.Contains(w[0], "memsw")) {
			return nil, errors.Join(fmt.Errorf("hostcgroup: %s: %w", w[0], err), g.Remove())
		}
	}
	return g, nil
}

// Procs are the cgroup.procs files a process writes its pid to, to join.
func (g *Group) Procs() []string {
	var out []string
	for _, d := range g.dirs {
		out = append(out, filepath.Join(d, "cgroup.procs"))
	}
	return out
}

// Remove removes the cgroup once its processes have exited (it retries
// while they finish exiting).
func (g *Group) Remove() error {
	var errs []error
	for _, d := range g.dirs {
		var err error
		for range 100 {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Reclaim removes sandbox id's cgroup, if a dead process left it.
func (m *Manager) Reclaim(id string) error { return (&Group{dirs: m.dirs(id)}).Remove() }

// Limits reads sandbox id's limits (for tests and doctor): memory in
// bytes and processes.
func (m *Manager) Limits(id string) (memoryBytes, pids int64, err error) {
	read := func(p string) (int64, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	d := m.dirs(id)
	memFile := "memory.max"
	if m.Version == "v1" {
		memFile = "memory.limit_in_bytes"
	}
	if memoryBytes, err = read(filepath.Join(d[0], memFile)); err != nil {
		return 0, 0, err
	}
	pids, err = read(filepath.Join(d[len(d)-1], "pids.max"))
	return memoryBytes, pids, err
}

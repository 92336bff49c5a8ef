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
	"slices"
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
	// parents are the parent cgroups: one on v2, memory and pids on v1,
	// and on v1 cpu and cpuacct where the host mounts them (empty: none).
	v2      string
	memory  string
	pids    string
	cpu     string
	cpuacct string
	// v2CPU: the v2 hierarchy has the cpu controller.
	v2CPU bool
	// root is where the hierarchies are mounted.
	root string
}

// CPUPeriod is the period of the CPU bandwidth limit.
const CPUPeriod = 100 * time.Millisecond

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
			ctrls := "+memory +pids"
			cpu := strings.Contains(have, " cpu ")
			if cpu {
				ctrls += " +cpu"
			}
			// Controllers must be enabled in every ancestor's subtree.
			_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(ctrls), 0)
			if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(ctrls), 0); err != nil {
				return nil, fmt.Errorf("hostcgroup: enable %s in %s: %w", ctrls, parent, err)
			}
			return &Manager{Version: "v2", Name: name, v2: parent, v2CPU: cpu, root: root}, nil
		}
	}
	mem, pids := filepath.Join(root, "memory"), filepath.Join(root, "pids")
	for _, d := range []string{mem, pids} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("hostcgroup: no cgroup v2 memory and pids controllers, and no v1 %s hierarchy: %w", filepath.Base(d), err)
		}
	}
	m := &Manager{Version: "v1", Name: name, memory: filepath.Join(mem, name), pids: filepath.Join(pids, name), root: root}
	// cpu (the bandwidth limit) and cpuacct (the usage counter), mounted
	// apart or together; a host without them gets no CPU limit.
	for _, c := range []struct {
		field *string
		file  string
	}{{&m.cpu, "cpu.cfs_quota_us"}, {&m.cpuacct, "cpuacct.usage"}} {
		for _, h := range []string{filepath.Base(c.file[:strings.IndexByte(c.file, '.')]), "cpu,cpuacct"} {
			if _, err := os.Stat(filepath.Join(root, h, c.file)); err == nil {
				*c.field = filepath.Join(root, h, name)
				break
			}
		}
	}
	for _, d := range []string{m.memory, m.pids, m.cpu, m.cpuacct} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// HasCPU reports whether sandboxes get a CPU limit and a usage counter.
func (m *Manager) HasCPU() bool { return m.v2CPU || m.cpu != "" && m.cpuacct != "" }

// Describe says which hierarchy is used and where.
func (m *Manager) Describe() string {
	cpu := ""
	if !m.HasCPU() {
		cpu = " (no cpu controller: no CPU limit)"
	}
	if m.Version == "v2" {
		return "cgroup v2 at " + m.v2 + cpu
	}
	d := "cgroup v1 at " + m.memory + ", " + m.pids
	if m.HasCPU() {
		d += ", " + m.cpu + ", " + m.cpuacct
	}
	return d + cpu
}

// Path is sandbox id's cgroup path relative to the hierarchies' roots (an
// OCI runtime's cgroupsPath).
func (m *Manager) Path(id string) string { return "/" + m.Name + "/" + id }

// Group is one sandbox's cgroup.
type Group struct {
	dirs []string
}

// groupDirs are a sandbox's directories, by what each is for (the same
// one for all on v2; "" where the host has no such hierarchy).
type groupDirs struct{ memory, pids, cpu, cpuacct string }

func (m *Manager) groupDirs(id string) groupDirs {
	if m.Version == "v2" {
		d := filepath.Join(m.v2, id)
		g := groupDirs{memory: d, pids: d}
		if m.v2CPU {
			g.cpu, g.cpuacct = d, d
		}
		return g
	}
	join := func(parent string) string {
		if parent == "" {
			return ""
		}
		return filepath.Join(parent, id)
	}
	return groupDirs{memory: join(m.memory), pids: join(m.pids), cpu: join(m.cpu), cpuacct: join(m.cpuacct)}
}

// dirs of sandbox id, each once.
func (m *Manager) dirs(id string) []string {
	g := m.groupDirs(id)
	var out []string
	for _, d := range []string{g.memory, g.pids, g.cpu, g.cpuacct} {
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// Limits are a sandbox's: memory, processes, and CPUs (its vCPUs; 0: no
// CPU limit).
type Limits struct {
	MemoryBytes int64
	Pids        int
	CPUs        int
}

// Create makes sandbox id's cgroup with its limits (no swap beyond the
// memory limit on v2; on v1 memsw where the kernel has it; a CPU bandwidth
// limit of l.CPUs where the host has the cpu controller).
func (m *Manager) Create(id string, l Limits) (*Group, error) {
	g := &Group{dirs: m.dirs(id)}
	for _, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, errors.Join(err, g.Remove())
		}
	}
	d := m.groupDirs(id)
	mem, pid := strconv.FormatInt(l.MemoryBytes, 10), strconv.Itoa(l.Pids)
	type write struct {
		dir, file, value string
		optional         bool
	}
	var writes []write
	if m.Version == "v2" {
		writes = []write{{d.memory, "memory.max", mem, false}, {d.memory, "memory.swap.max", "0", true}, {d.pids, "pids.max", pid, false}}
	} else {
		writes = []write{{d.memory, "memory.limit_in_bytes", mem, false}, {d.memory, "memory.memsw.limit_in_bytes", mem, true}, {d.pids, "pids.max", pid, false}}
	}
	if l.CPUs > 0 && d.cpu != "" {
		period := CPUPeriod.Microseconds()
		quota := strconv.FormatInt(int64(l.CPUs)*period, 10)
		if m.Version == "v2" {
			writes = append(writes, write{d.cpu, "cpu.max", quota + " " + strconv.FormatInt(period, 10), false})
		} else {
			writes = append(writes, write{d.cpu, "cpu.cfs_period_us", strconv.FormatInt(period, 10), false}, write{d.cpu, "cpu.cfs_quota_us", quota, false})
		}
	}
	for _, w := range writes {
		err := os.WriteFile(filepath.Join(w.dir, w.file), []byte(w.value), 0)
		if err != nil && !w.optional {
			return nil, errors.Join(fmt.Errorf("hostcgroup: %s: %w", w.file, err), g.Remove())
		}
	}
	return g, nil
}

// CPUUsage is the CPU time sandbox id's processes used, from the cgroup's
// own counter.
func (m *Manager) CPUUsage(id string) (time.Duration, error) {
	d := m.groupDirs(id).cpuacct
	if d == "" {
		return 0, errors.New("hostcgroup: no cpu usage counter on this host")
	}
	if m.Version == "v2" {
		b, err := os.ReadFile(filepath.Join(d, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				return time.Duration(us) * time.Microsecond, err
			}
		}
		return 0, errors.New("hostcgroup: cpu.stat has no usage_usec")
	}
	b, err := os.ReadFile(filepath.Join(d, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(ns), err
}

// MemoryUsage is the memory the host charges to sandbox id's cgroup now.
func (m *Manager) MemoryUsage(id string) (int64, error) {
	file := "memory.current"
	if m.Version == "v1" {
		file = "memory.usage_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(m.groupDirs(id).memory, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
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

// Reclaim removes sandbox id's cgroup, if a dead process left it: in the
// hierarchies used, and on v1 in every other one too, where an OCI runtime
// may have made it (runsc makes one per controller it knows, and one it
// restored from a checkpoint leaves them at its exit).
func (m *Manager) Reclaim(id string) error {
	dirs := m.dirs(id)
	if m.Version == "v1" && m.root != "" {
		others, _ := filepath.Glob(filepath.Join(m.root, "*", m.Name, id))
		for _, d := range others {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	return (&Group{dirs: dirs}).Remove()
}

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
	d := m.groupDirs(id)
	memFile := "memory.max"
	if m.Version == "v1" {
		memFile = "memory.limit_in_bytes"
	}
	if memoryBytes, err = read(filepath.Join(d.memory, memFile)); err != nil {
		return 0, 0, err
	}
	pids, err = read(filepath.Join(d.pids, "pids.max"))
	return memoryBytes, pids, err
}

// Offers says which limits each sandbox gets here.
func (m *Manager) Offers() string {
	if m.HasCPU() {
		return "memory, pids and CPU limits"
	}
	return "memory and pids limits"
}

// TotalCPU is the CPU time of every sandbox under the parent cgroup, past
// and present: the kernel charges a child's usage to its ancestors as it
// runs, so sandboxes already removed still count.
func (m *Manager) TotalCPU() (time.Duration, error) { return m.CPUUsage("") }

package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUUse is where the CPU time of a load run went, from the kernel's own
// accounting: the whole machine (/proc/stat, busy time), the sandboxes
// (their host cgroup's counter: gVisor's Sentry and gofer and all they run,
// or jailed QEMUs), this process (the worker and the load client), the
// children it reaped beyond the sandboxes (runsc's own processes: their
// reaped children's time, less the sandboxes', which the kernel counts in
// both), and the broker (beam.smp). Other is what the machine spent beyond
// them.
type CPUUse struct {
	MachineSec   float64 `json:"machine_s"`
	SandboxesSec float64 `json:"sandboxes_s"`
	ProcessSec   float64 `json:"this_process_s"`
	ChildrenSec  float64 `json:"children_outside_sandboxes_s"`
	BrokerSec    float64 `json:"broker_s"`
	OtherSec     float64 `json:"other_s"`
	// PerJobSec is the machine's busy CPU per job.
	PerJobSec float64 `json:"machine_per_job_s"`
}

// CPUMark is the counters at the start of a run.
type CPUMark struct {
	machine, self, children, broker time.Duration
	sandboxes                       time.Duration
	sandboxCPU                      func() (time.Duration, error)
}

// MarkCPU reads the counters now. sandboxCPU reads the sandboxes' cgroup
// counter (nil: the host has none to read).
func MarkCPU(sandboxCPU func() (time.Duration, error)) CPUMark {
	m := CPUMark{machine: machineBusy(), self: selfCPU(), children: childrenCPU(), broker: processCPU("beam.smp"), sandboxCPU: sandboxCPU}
	if sandboxCPU != nil {
		m.sandboxes, _ = sandboxCPU()
	}
	return m
}

// Since is what was used since the mark, for n jobs.
func (m CPUMark) Since(n int) *CPUUse {
	u := &CPUUse{
		MachineSec: (machineBusy() - m.machine).Seconds(),
		ProcessSec: (selfCPU() - m.self).Seconds(),
		BrokerSec:  (processCPU("beam.smp") - m.broker).Seconds(),
	}
	if m.sandboxCPU != nil {
		if now, err := m.sandboxCPU(); err == nil {
			u.SandboxesSec = (now - m.sandboxes).Seconds()
		}
	}
	// Reaped children include the sandboxes' processes runsc reaped (the
	// kernel adds a waited-for child's time to its parent's children
	// time): what is beyond the sandboxes is runsc's own.
	u.ChildrenSec = max((childrenCPU()-m.children).Seconds()-u.SandboxesSec, 0)
	u.OtherSec = max(u.MachineSec-u.SandboxesSec-u.ProcessSec-u.ChildrenSec-u.BrokerSec, 0)
	if n > 0 {
		u.PerJobSec = u.MachineSec / float64(n)
	}
	return u
}

func (u *CPUUse) String() string {
	if u == nil {
		return ""
	}
	return fmt.Sprintf("CPU %.2f s per job (machine %.1f s: sandboxes %.1f, worker and client %.1f, runsc and other children %.1f, broker %.1f, other %.1f)",
		u.PerJobSec, u.MachineSec, u.SandboxesSec, u.ProcessSec, u.ChildrenSec, u.BrokerSec, u.OtherSec)
}

// clockTick is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTick = 100

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }

// machineBusy is the machine's busy CPU time: /proc/stat's cpu line less
// idle and iowait.
func machineBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text())
	var busy int64
	for i, f := range fields[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		busy += v
	}
	return ticks(busy)
}

// childrenCPU is the CPU time of this process's reaped children.
func childrenCPU() time.Duration {
	var children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(children.Utime.Nano() + children.Stime.Nano())
}

// selfCPU is this process's own CPU time.
func selfCPU() time.Duration {
	var self syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano())
}

// processCPU is the CPU time (user and system) of the running processes
// named comm.
func processCPU(comm string) time.Duration {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var total int64
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != comm {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
		st, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
		total += ut + st
	}
	return ticks(total)
}

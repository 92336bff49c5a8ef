package runner

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
)

// CgroupsV1 is the limiter where only cgroup v1 hierarchies can be mounted:
// in gVisor, whose kernel accounts memory and processes per v1 cgroup but
// enforces no memory limit. Each phase gets a memory and a pids cgroup. The
// program is forked from an agent thread moved into both for the moment of
// the fork (v1 places threads, and a child starts where its parent thread
// is), so it is accounted from its first instruction; a watchdog then
// measures the phase's private memory every few milliseconds, records the
// peak, and kills the phase when it passes the limit (reported as a memory
// kill, as an OOM kill would be). RLIMIT_NPROC bounds the processes;
// pids.max too, where the kernel enforces it.
//
// Private memory is the sum of "Anonymous" in the smaps of the phase's
// processes: gVisor counts a mapped file's pages as resident (a Java hello
// world is 200 MB resident, 51 MB of it anonymous), where a VM's cgroup
// charges what the phase itself faulted in. The cgroup's usage, cheap to
// read, bounds it from above, so smaps is read every fifth period, and every
// other period while the usage is over the limit.
type CgroupsV1 struct {
	// MemoryRoot and PidsRoot are where the hierarchies are mounted;
	// Memory and Pids the jobs' parent cgroups in them.
	MemoryRoot, PidsRoot string
	Memory, Pids         string
	// Every is the watchdog's period while the phase's usage is over half
	// its limit; Far its period below that (0: Every). Far is the cheap
	// one: in gVisor every wake-up and read of the watchdog is a round trip
	// through the Sentry, ~80 ms of a sandbox's CPU over a hello.c compile
	// at a 10 ms period (docs/BENCHMARKS.md), and a program below half its
	// limit cannot fault in the other half within a Far period there.
	Every, Far time.Duration
}

var _ Limiter = (*CgroupsV1)(nil)

// SetupCgroupsV1 mounts a tmpfs at dir with the memory and pids v1
// hierarchies under it and creates the jobs' parent cgroups.
func SetupCgroupsV1(dir, name string) (*CgroupsV1, error) {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	c := &CgroupsV1{Every: 10 * time.Millisecond, Far: 50 * time.Millisecond}
	for _, ctl := range []string{"memory", "pids"} {
		root := filepath.Join(dir, ctl)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if err := unix.Mount("cgroup", root, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ctl); err != nil {
			return nil, fmt.Errorf("mount cgroup v1 %s: %w", ctl, err)
		}
		jobs := filepath.Join(root, name)
		if err := os.MkdirAll(jobs, 0o755); err != nil {
			return nil, err
		}
		if ctl == "memory" {
			c.MemoryRoot, c.Memory = root, jobs
		} else {
			c.PidsRoot, c.Pids = root, jobs
		}
	}
	if _, err := os.Stat(filepath.Join(c.Memory, "memory.usage_in_bytes")); err != nil {
		return nil, fmt.Errorf("cgroup v1 memory accounting: %w", err)
	}
	return c, nil
}

// Create implements Limiter.
func (c *CgroupsV1) Create(name string, memoryKB, pids int64) (PhaseLimits, error) {
	p := &phaseV1{c: c, mem: filepath.Join(c.Memory, name), pids: filepath.Join(c.Pids, name), limit: memoryKB << 10,
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, d := range []string{p.mem, p.pids} {
		_ = os.Remove(d) // a leftover of an earlier phase with this name
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Best effort: where the kernel enforces it, it stops a fork bomb
	// early; RLIMIT_NPROC stops it anyway. No memory.limit_in_bytes: the
	// watchdog is the limit, so that a kill for memory is always known as
	// one.
	_ = os.WriteFile(filepath.Join(p.pids, "pids.max"), []byte(strconv.FormatInt(pids, 10)), 0)
	return p, nil
}

// phaseV1 is one phase's v1 cgroups and its memory watchdog.
type phaseV1 struct {
	c         *CgroupsV1
	mem, pids string
	limit     int64

	mu      sync.Mutex // guards peak, limited
	peak    int64
	limited bool

	watching   bool // set by Start before the watchdog starts
	stop, done chan struct{}
	once       sync.Once
}

// Start implements PhaseLimits: the fork happens on a thread that is in the
// phase's cgroups for that moment only.
func (p *phaseV1) Start(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := strconv.Itoa(unix.Gettid())
	back := map[string]string{}
	for _, h := range []struct{ root, dir, ctl string }{{p.c.MemoryRoot, p.mem, "memory"}, {p.c.PidsRoot, p.pids, "pids"}} {
		back[h.root] = filepath.Join(h.root, threadCgroup(tid, h.ctl))
		if err := os.WriteFile(filepath.Join(h.dir, "tasks"), []byte(tid), 0); err != nil {
			p.restore(tid, back)
			return fmt.Errorf("place the forking thread in %s: %w", h.dir, err)
		}
	}
	err := cmd.Start()
	if rerr := p.restore(tid, back); rerr != nil {
		// The agent thread would stay accounted to the job: the phase is
		// lost rather than its accounting, and the thread is to be ended
		// (errThreadPlaced: the runner retires its launcher).
		if err == nil {
			_ = cmd.Process.Kill()
		}
		return fmt.Errorf("%w: %w", errThreadPlaced, rerr)
	}
	if err != nil {
		return err
	}
	p.watching = true
	go p.watch()
	return nil
}

// restore moves the thread back where it was.
func (p *phaseV1) restore(tid string, back map[string]string) error {
	var errs []error
	for _, dir := range back {
		errs = append(errs, os.WriteFile(filepath.Join(dir, "tasks"), []byte(tid), 0))
	}
	return errors.Join(errs...)
}

// threadCgroup is the thread's cgroup in controller ctl's hierarchy.
func threadCgroup(tid, ctl string) string {
	f, err := os.Open("/proc/self/task/" + tid + "/cgroup")
	if err != nil {
		return "/"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ","+ctl+",") {
			return parts[2]
		}
	}
	return "/"
}

// Started implements PhaseLimits: the rlimits, by prlimit.
func (p *phaseV1) Started(pid int, l agentproto.Limits) error { return applyRlimits(pid, l) }

// watch measures the phase's memory until Destroy: the cgroup's usage
// (cheap) every period, the private memory (smaps: dear) at the start,
// every smapsGap, and every other period while the usage is over the limit.
func (p *phaseV1) watch() {
	defer close(p.done)
	t := time.NewTimer(p.c.Every)
	defer t.Stop()
	var last time.Time
	for tick := 0; ; tick++ {
		bound := p.usage()
		period, smapsGap := p.c.Every, 5*p.c.Every
		if p.c.Far > 0 && (p.limit <= 0 || bound <= p.limit/2) {
			period, smapsGap = p.c.Far, 2*p.c.Far
		}
		if last.IsZero() || time.Since(last) >= smapsGap || (bound > p.limit && tick%2 == 0) {
			last = time.Now()
			private := p.private()
			p.mu.Lock()
			p.peak = max(p.peak, private)
			over := p.limit > 0 && private > p.limit && !p.limited
			if over {
				p.limited = true
			}
			p.mu.Unlock()
			if over {
				p.kill()
			}
		}
		t.Reset(period)
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// private sums the anonymous memory of the phase's processes, in bytes.
func (p *phaseV1) private() int64 {
	b, err := os.ReadFile(filepath.Join(p.mem, "cgroup.procs"))
	if err != nil {
		return 0
	}
	var total int64
	for _, pid := range strings.Fields(string(b)) {
		f, err := os.Open("/proc/" + pid + "/smaps")
		if err != nil {
			continue // exited meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Anonymous:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				total += kb << 10
			}
		}
		f.Close()
	}
	return total
}

func (p *phaseV1) usage() int64 {
	b, err := os.ReadFile(filepath.Join(p.mem, "memory.usage_in_bytes"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// kill kills every process of the phase, including ones that left its
// process group (v1 has no cgroup.kill), until none is left.
func (p *phaseV1) kill() {
	for range 100 {
		b, err := os.ReadFile(filepath.Join(p.mem, "cgroup.procs"))
		pids := strings.Fields(string(b))
		if err != nil || len(pids) == 0 {
			return
		}
		for _, f := range pids {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// MemoryLimited implements PhaseLimits.
func (p *phaseV1) MemoryLimited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limited
}

// PeakKB implements PhaseLimits: the highest private memory the watchdog
// saw (0 when the phase ended before it looked: the caller then uses the
// process's own maximum resident size).
func (p *phaseV1) PeakKB() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak >> 10
}

// Destroy implements PhaseLimits.
func (p *phaseV1) Destroy() {
	p.once.Do(func() {
		close(p.stop)
		if p.watching {
			<-p.done
		}
		p.kill()
		for _, d := range []string{p.mem, p.pids} {
			for i := 0; i < 200; i++ { // rmdir fails while killed processes exit
				if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
}

// Package runner compiles and runs one program inside the guest, as an
// unprivileged user, in its own process group, under rlimits, with a wall-clock
// timeout and an output cap. It reports raw facts; the host derives verdicts.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
)

// Defaults applied when a request leaves a limit at zero. The host always
// sends explicit limits; these protect the agent from a request that does not.
var Defaults = agentproto.Limits{
	WallMS:        10_000,
	CPUMS:         5_000,
	MemoryKB:      256 * 1024,
	StackKB:       8 * 1024,
	Processes:     64,
	OutputBytes:   agentproto.DefaultOutputBytes,
	FileSizeKB:    1024,
	CompileWallMS: 30_000,
}

// Runner runs programs. The zero UID means "do not switch user" (tests on a
// host); in the guest it is the unprivileged job user.
type Runner struct {
	Languages lang.Table
	// JobRoot holds one fresh directory per run.
	JobRoot  string
	UID, GID uint32
	// Exec is the trampoline: argv prefix that applies rlimits and execs the
	// program (the agent binary's "exec" subcommand).
	Exec []string
	// AfterPhase, when set, runs after each compile or run; the PID-1 agent
	// uses it to kill leftovers of the job user and reap orphans.
	AfterPhase func()
	// Limiter, when set, limits each phase's process tree by memory and
	// process count and reports memory kills: cgroup v2 (Cgroups) in a VM,
	// cgroup v1 with a watchdog (CgroupsV1) in gVisor. Without one, memory
	// is limited per process by RLIMIT_AS.
	Limiter Limiter
	// MaxRuns bounds RunRequest.Runs.
	MaxRuns int

	mu  sync.Mutex // guards seq
	seq int
}

// ErrBadRequest marks requests the runner refuses before running anything.
var ErrBadRequest = errors.New("bad request")

// Run writes, compiles and runs req.
func (r *Runner) Run(ctx context.Context, req *agentproto.RunRequest) (*agentproto.RunResult, error) {
	l, ok := r.Languages[req.Language]
	if !ok {
		return nil, fmt.Errorf("%w: unknown language %q (have %s)", ErrBadRequest, req.Language, strings.Join(r.Languages.Names(), ", "))
	}
	if err := l.CheckCompileFlags(req.CompileFlags); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := agentproto.CheckFiles(req.Files, l.Source); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := agentproto.CheckArgs(req.Args); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	runs := max(req.Runs, 1)
	if r.MaxRuns > 0 && runs > r.MaxRuns {
		return nil, fmt.Errorf("%w: %d runs asked, at most %d", ErrBadRequest, runs, r.MaxRuns)
	}
	lim := withDefaults(req.Limits)
	dir, err := r.prepare(l, req)
	if err != nil {
		return nil, err
	}
	res := &agentproto.RunResult{Compiled: true}
	if len(l.Compile) > 0 {
		out := newOutput(agentproto.MaxCompileOutput)
		clim := lim
		clim.WallMS = lim.CompileWallMS
		clim.CPUMS = lim.CompileWallMS
		clim.MemoryKB = max(lim.MemoryKB, 512*1024) // compilers need headroom
		clim.FileSizeKB = max(lim.FileSizeKB, 256*1024)
		clim.Processes = max(lim.Processes, 128)
		clim.OutputBytes = agentproto.MaxCompileOutput
		// Appended last: gcc, g++ and rustc take the last of repeated
		// options, so a job's -std=... or -O... wins over our defaults.
		argv := append(append([]string{}, l.Compile...), req.CompileFlags...)
		// Compiler diagnostics: both streams into one, in order.
		w := out.writer(stdoutStream)
		ph := r.phase(ctx, phaseSpec{dir: dir, name: "compile", argv: argv, lim: clim}, out, w, w)
		res.Compile = ph
		res.CompileOutput = out.text(stdoutStream)
		if ph.ExitCode != 0 || ph.Signal != "" || ph.TimedOut {
			res.Compiled = false
			return res, nil
		}
	}
	argv := append(append([]string{}, l.Run...), req.Args...)
	for i := 0; i < runs; i++ {
		// stdout and stderr share one budget: the output limit is for both.
		out := newOutput(lim.OutputBytes)
		spec := phaseSpec{dir: dir, name: "run" + strconv.Itoa(i), argv: argv, stdin: strings.NewReader(req.Stdin), lim: lim}
		ph := r.phase(ctx, spec, out, out.writer(stdoutStream), out.writer(stderrStream))
		if i == 0 {
			res.Run = ph
			res.Stdout, res.Stderr = out.text(stdoutStream), out.text(stderrStream)
		}
		if runs > 1 {
			res.Runs = append(res.Runs, *ph)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return res, nil
}

func withDefaults(l agentproto.Limits) agentproto.Limits {
	set := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.WallMS, Defaults.WallMS)
	set(&l.CPUMS, Defaults.CPUMS)
	set(&l.MemoryKB, Defaults.MemoryKB)
	set(&l.StackKB, Defaults.StackKB)
	set(&l.Processes, Defaults.Processes)
	set(&l.OutputBytes, Defaults.OutputBytes)
	set(&l.FileSizeKB, Defaults.FileSizeKB)
	set(&l.CompileWallMS, Defaults.CompileWallMS)
	return l
}

// prepare makes a fresh job directory owned by the job user and writes the
// source and extra files into it.
func (r *Runner) prepare(l lang.Language, req *agentproto.RunRequest) (string, error) {
	r.mu.Lock()
	r.seq++
	n := r.seq
	r.mu.Unlock()
	dir := filepath.Join(r.JobRoot, "run"+strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("make job dir: %w", err)
	}
	files := map[string]string{l.Source: req.Code}
	for name, body := range req.Files { // checked by Run
		files[name] = body
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
		if err := r.chown(p); err != nil {
			return "", err
		}
	}
	return dir, r.chown(dir)
}

func (r *Runner) chown(p string) error {
	if r.UID == 0 {
		return nil
	}
	if err := os.Chown(p, int(r.UID), int(r.GID)); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	return nil
}

// phaseSpec is one compile or run: what to execute, where, and its limits.
type phaseSpec struct {
	dir, name string
	argv      []string
	stdin     io.Reader // nil: /dev/null
	lim       agentproto.Limits
}

// phase runs spec with its output captured in out and reports what happened.
// It never returns an error: a process that cannot be started is reported as
// exit code 127 with the reason on stderr, as a shell would.
func (r *Runner) phase(ctx context.Context, spec phaseSpec, out *output, stdout, stderr io.Writer) *agentproto.Phase {
	if r.AfterPhase != nil {
		defer r.AfterPhase()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(spec.lim.WallMS)*time.Millisecond)
	defer cancel()
	var pl PhaseLimits
	if r.Limiter != nil {
		var err error
		pl, err = r.Limiter.Create(filepath.Base(spec.dir)+"-"+spec.name, spec.lim.MemoryKB, spec.lim.Processes)
		if err != nil {
			fmt.Fprintf(stderr, "codebench: cgroup: %v\n", err)
			return &agentproto.Phase{ExitCode: 127}
		}
		defer pl.Destroy()
	}
	cmd, err := r.command(ctx, spec, pl, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", spec.argv[0], err)
		return &agentproto.Phase{ExitCode: 127}
	}
	out.onOverflow = func() { _ = killGroup(cmd) }

	start := time.Now()
	startCmd := cmd.Start
	if pl != nil {
		startCmd = func() error { return pl.Start(cmd) }
	}
	if err := startCmd(); err != nil {
		fmt.Fprintf(stderr, "start %s: %v\n", spec.argv[0], err)
		return &agentproto.Phase{ExitCode: 127, WallUS: time.Since(start).Microseconds()}
	}
	if pl != nil {
		if err := pl.Started(cmd.Process.Pid, spec.lim); err != nil {
			_ = killGroup(cmd)
			fmt.Fprintf(stderr, "codebench: limits: %v\n", err)
		}
	}
	err = cmd.Wait()
	wall := time.Since(start)
	_ = killGroup(cmd) // leftovers in the group after the leader exited
	ph := result(cmd, err, stderr)
	ph.WallUS = wall.Microseconds()
	ph.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	ph.OutputLimited = out.overflowed()
	if pl != nil {
		ph.MemoryLimited = pl.MemoryLimited()
		// The cgroup's peak is the program's own: ru_maxrss carries the
		// parent's resident size across exec (exec_mmap keeps the old mm's
		// high-water mark), so it is used only where the peak is unknown.
		if peak := pl.PeakKB(); peak > 0 {
			ph.MaxRSSKB = peak
		}
	}
	return ph
}

// command builds the process of a phase: the job user, its own process
// group, and the program itself when a limiter places it (PhaseLimits.Start),
// else the rlimit trampoline (no limiter: RLIMIT_AS limits memory).
func (r *Runner) command(ctx context.Context, spec phaseSpec, pl PhaseLimits, stdout, stderr io.Writer) (*exec.Cmd, error) {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + spec.dir, "LANG=C.UTF-8", "TMPDIR=/tmp"}
	var full []string
	if pl != nil {
		// No trampoline: its own start-up would be counted as the program's
		// CPU time and memory.
		path, err := lookPath(spec.argv[0], env[0])
		if err != nil {
			return nil, err
		}
		full = append([]string{path}, spec.argv[1:]...)
	} else {
		full = append(append(append([]string{}, r.Exec...), rlimitArgs(spec.lim)...), append([]string{"--"}, spec.argv...)...)
	}
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Dir = spec.dir
	cmd.Env = env
	if spec.stdin != nil {
		cmd.Stdin = spec.stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if r.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.UID, Gid: r.GID, Groups: []uint32{}}
	}
	// Kill the whole process group, not just the leader: a fork bomb or a
	// background child must not outlive its phase.
	cmd.Cancel = func() error { return killGroup(cmd) }
	// A child that inherited stdout keeps the pipe open after the leader
	// exits; do not wait for it longer than this.
	cmd.WaitDelay = 500 * time.Millisecond
	return cmd, nil
}

// result reads the exit status and resource usage of a finished phase.
func result(cmd *exec.Cmd, waitErr error, stderr io.Writer) *agentproto.Phase {
	ph := &agentproto.Phase{}
	st := cmd.ProcessState
	if st == nil {
		fmt.Fprintf(stderr, "wait: %v\n", waitErr)
		ph.ExitCode = 127
		return ph
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		ph.CPUUserUS = ru.Utime.Sec*1e6 + int64(ru.Utime.Usec)
		ph.CPUSysUS = ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
		ph.MaxRSSKB = ru.Maxrss
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		ph.Signal = unix.SignalName(ws.Signal())
		ph.ExitCode = 128 + int(ws.Signal())
	} else {
		ph.ExitCode = ws.ExitStatus()
	}
	return ph
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// rlimitArgs renders the limits for the trampoline (see ApplyRlimits).
func rlimitArgs(l agentproto.Limits) []string {
	cpuSec := (l.CPUMS + 999) / 1000
	return []string{
		"--cpu", strconv.FormatInt(cpuSec, 10),
		"--as-kb", strconv.FormatInt(l.MemoryKB, 10),
		"--stack-kb", strconv.FormatInt(l.StackKB, 10),
		"--nproc", strconv.FormatInt(l.Processes, 10),
		"--fsize-kb", strconv.FormatInt(l.FileSizeKB, 10),
	}
}

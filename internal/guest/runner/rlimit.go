package runner

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
)

// ExecWithRlimits is the trampoline: it parses the flags rlimitArgs renders,
// applies them to itself and replaces itself with the program. It runs after
// the credential switch and under the job's filter, so the job cannot raise
// them again. With --cgroup-procs-fd it first enters the phase's cgroup by
// writing itself into that cgroup.procs (opened by the agent: the kernel
// checks the opener's rights), as the last thing before execve.
func ExecWithRlimits(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	cpu := fs.Uint64("cpu", 0, "CPU seconds")
	as := fs.Uint64("as-kb", 0, "address space KiB")
	stack := fs.Uint64("stack-kb", 0, "stack KiB")
	nproc := fs.Uint64("nproc", 0, "processes")
	fsize := fs.Uint64("fsize-kb", 0, "file size KiB")
	procsFD := fs.Int("cgroup-procs-fd", -1, "an open cgroup.procs to enter before execve")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *procsFD >= 0 {
		// Never inherited by the program, whatever happens below.
		if _, err := unix.FcntlInt(uintptr(*procsFD), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return fmt.Errorf("cgroup.procs fd %d: %w", *procsFD, err)
		}
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("exec: no program")
	}
	// Everything that allocates happens before the limits: once RLIMIT_AS
	// is applied, the Go runtime itself may fail to grow its heap, so the
	// exec that follows is a raw syscall on prepared pointers.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	pathp, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	argvp, err := ptrSlice(argv)
	if err != nil {
		return err
	}
	envp, err := ptrSlice(os.Environ())
	if err != nil {
		return err
	}
	limits := [...]struct {
		res        int
		soft, hard uint64
	}{
		// CPU: SIGXCPU at the soft limit, SIGKILL one second later.
		{unix.RLIMIT_CPU, *cpu, *cpu + 1},
		{unix.RLIMIT_STACK, *stack << 10, *stack << 10},
		{unix.RLIMIT_NPROC, *nproc, *nproc},
		{unix.RLIMIT_FSIZE, *fsize << 10, *fsize << 10},
		{unix.RLIMIT_AS, *as << 10, *as << 10},
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("setrlimit core: %w", err)
	}
	for _, l := range limits {
		if l.soft == 0 {
			continue
		}
		rl := unix.Rlimit{Cur: l.soft, Max: l.hard}
		if err := unix.Setrlimit(l.res, &rl); err != nil {
			return fmt.Errorf("setrlimit %d: %w", l.res, err)
		}
	}
	if *procsFD >= 0 {
		self := []byte("0")
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(*procsFD), uintptr(unsafe.Pointer(&self[0])), 1)
		if errno != 0 || n != 1 {
			return fmt.Errorf("enter the phase's cgroup: %w", errno)
		}
		_, _, _ = unix.RawSyscall(unix.SYS_CLOSE, uintptr(*procsFD), 0, 0)
	}
	_, _, errno := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(pathp)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])))
	return fmt.Errorf("execve %s: %w", path, errno)
}

// ptrSlice makes the NULL-terminated char* array execve takes.
func ptrSlice(ss []string) ([]*byte, error) {
	out := make([]*byte, len(ss)+1)
	for i, s := range ss {
		p, err := unix.BytePtrFromString(s)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// applyRlimits sets the job's rlimits on an already started process (see
// PhaseLimits.Started).
func applyRlimits(pid int, l agentproto.Limits) error {
	cpu := uint64((l.CPUMS + 999) / 1000)
	for _, r := range []struct {
		res        int
		soft, hard uint64
	}{
		{unix.RLIMIT_CORE, 0, 0},
		{unix.RLIMIT_CPU, cpu, cpu + 1},
		{unix.RLIMIT_STACK, uint64(l.StackKB) << 10, uint64(l.StackKB) << 10},
		{unix.RLIMIT_NPROC, uint64(l.Processes), uint64(l.Processes)},
		{unix.RLIMIT_FSIZE, uint64(l.FileSizeKB) << 10, uint64(l.FileSizeKB) << 10},
	} {
		if r.res != unix.RLIMIT_CORE && r.soft == 0 {
			continue
		}
		rl := unix.Rlimit{Cur: r.soft, Max: r.hard}
		if err := unix.Prlimit(pid, r.res, &rl, nil); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("prlimit %d: %w", r.res, err)
		}
	}
	return nil
}

// lookPath resolves a command name with the job's PATH (the agent, as PID 1,
// has none of its own).
func lookPath(name, pathEnv string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(strings.TrimPrefix(pathEnv, "PATH=")) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command not found in %s", pathEnv)
}

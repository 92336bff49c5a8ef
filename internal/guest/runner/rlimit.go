package runner

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ExecWithRlimits is the trampoline: it parses the flags rlimitArgs renders,
// applies them to itself and replaces itself with the program. It runs after
// the credential switch, so the job cannot raise them again.
func ExecWithRlimits(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	cpu := fs.Uint64("cpu", 0, "CPU seconds")
	as := fs.Uint64("as-kb", 0, "address space KiB")
	stack := fs.Uint64("stack-kb", 0, "stack KiB")
	nproc := fs.Uint64("nproc", 0, "processes")
	fsize := fs.Uint64("fsize-kb", 0, "file size KiB")
	if err := fs.Parse(args); err != nil {
		return err
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

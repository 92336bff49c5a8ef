package runner

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"

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
	set := func(res int, soft, hard uint64) error {
		if soft == 0 {
			return nil
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: soft, Max: hard}); err != nil {
			return fmt.Errorf("setrlimit %d: %w", res, err)
		}
		return nil
	}
	// CPU: SIGXCPU at the soft limit, SIGKILL one second later.
	for _, l := range []struct {
		res        int
		soft, hard uint64
	}{
		{unix.RLIMIT_CPU, *cpu, *cpu + 1},
		{unix.RLIMIT_AS, *as << 10, *as << 10},
		{unix.RLIMIT_STACK, *stack << 10, *stack << 10},
		{unix.RLIMIT_NPROC, *nproc, *nproc},
		{unix.RLIMIT_FSIZE, *fsize << 10, *fsize << 10},
		{unix.RLIMIT_CORE, 0, 0},
	} {
		if err := set(l.res, l.soft, l.hard); err != nil {
			return err
		}
	}
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Counted runs processes inside a cgroup whose CPU counter it reads: the
// sandboxes' host cgroup with the cpuacct controller, a child of it for
// the baseline.
type Counted struct {
	// Procs are the cgroup.procs files a process joins.
	Procs []string
	// CPU reads the cgroup's counter.
	CPU func() (time.Duration, error)
}

// argv wraps argv so that the process joins the cgroup before it execs:
// every process it starts is counted, whoever reaps it (runsc's sandbox
// outlives the command that started it).
func (c Counted) argv(argv []string) []string {
	const join = `for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@"`
	return append(append(append([]string{"/bin/sh", "-c", join, "sh"}, c.Procs...), "--"), argv...)
}

// ColdRunsc runs p n times, each in a whole new gVisor sandbox the way
// "runsc do" does (start, compile and run, stop), on the image's root tree
// with the guest's compiler: the cost of gVisor alone, with no pool and no
// agent. It returns the wall times and the CPU per run, all the sandbox's
// processes counted.
func ColdRunsc(ctx context.Context, runsc, platform, rootfs string, p Program, n int, counted Counted) (Summary, time.Duration, error) {
	// The guest's commands, in /tmp of the sandbox's own writable overlay.
	var script strings.Builder
	script.WriteString(`cd /tmp && printf '%s' "$1" > ` + p.Source)
	for _, argv := range p.Commands {
		script.WriteString(" && " + strings.Join(argv, " "))
	}
	state, err := os.MkdirTemp("", "codebench-runsc-do-")
	if err != nil {
		return Summary{}, 0, err
	}
	defer os.RemoveAll(state)
	var samples []time.Duration
	cpu0, err := counted.CPU()
	if err != nil {
		return Summary{}, 0, err
	}
	for i := 0; i < n; i++ {
		argv := counted.argv([]string{runsc, "--root", state, "--platform=" + platform, "--network=none",
			"do", "--root", rootfs, "--cwd", "/", "--", "/bin/sh", "-c", script.String(), "sh", p.Code})
		start := time.Now()
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil {
			return Summary{}, 0, fmt.Errorf("runsc do: %w", err)
		}
		if string(out) != p.Want {
			return Summary{}, 0, fmt.Errorf("runsc do %s: %q", p.Name, out)
		}
		samples = append(samples, time.Since(start))
	}
	cpu1, err := counted.CPU()
	if err != nil {
		return Summary{}, 0, err
	}
	return Summarize("cold runsc do "+p.Name, samples), (cpu1 - cpu0) / time.Duration(max(n, 1)), nil
}

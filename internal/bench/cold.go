package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Counted runs processes inside a cgroup whose CPU counter it reads: the
// sandboxes' host cgroup with the cpuacct controller, a child of it for
// the baseline.
type Counted struct {
	// Procs are the cgroup.procs files a process joins.
	Procs []string
	// CPU reads the cgroup's counter, which counts its children's too.
	CPU func() (time.Duration, error)
	// Sub is the OCI cgroupsPath of a child of the cgroup, named id.
	Sub func(id string) string
}

// argv wraps argv so that the process joins the cgroup before it execs:
// every process it starts is counted, whoever reaps it (runsc's sandbox
// outlives the command that started it).
func (c Counted) argv(argv []string) []string {
	const join = `for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@"`
	return append(append(append([]string{"/bin/sh", "-c", join, "sh"}, c.Procs...), "--"), argv...)
}

// ColdOCI runs p n times, each in a whole new sandbox of the driver's own
// OCI runtime (runtime: the descriptor's OCIRuntime, such as runsc run of a
// bundle like the one "runsc do" makes: the image's root tree, read-only,
// a tmpfs /tmp, the guest's compiler), start, compile and run, stop: the
// cost of the sandbox alone, with no pool and no agent. It returns the
// wall times and the CPU per run: the runtime's command and every process
// of the sandbox, counted in cgroup (the sandbox in a child of it, Sub(i)).
func ColdOCI(ctx context.Context, runtime func(stateDir string) ([]string, error), rootfs string, p Program, n int, counted Counted) (Summary, time.Duration, error) {
	dir, err := os.MkdirTemp("", "codebench-cold-runsc-")
	if err != nil {
		return Summary{}, 0, err
	}
	defer os.RemoveAll(dir)
	script := `cd /tmp && printf '%s' "$1" > ` + p.Source
	for _, argv := range p.Commands {
		script += " && " + strings.Join(argv, " ")
	}
	var samples []time.Duration
	cpu0, err := counted.CPU()
	if err != nil {
		return Summary{}, 0, err
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("cold-%d-%d", os.Getpid(), i)
		bundle := filepath.Join(dir, id)
		if err := os.Mkdir(bundle, 0o700); err != nil {
			return Summary{}, 0, err
		}
		if err := writeBundle(bundle, rootfs, counted.Sub(id), []string{"/bin/sh", "-c", script, "sh", p.Code}); err != nil {
			return Summary{}, 0, err
		}
		rt, err := runtime(filepath.Join(dir, "state"))
		if err != nil {
			return Summary{}, 0, err
		}
		argv := counted.argv(append(rt, "run", "--bundle", bundle, id))
		start := time.Now()
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil {
			return Summary{}, 0, fmt.Errorf("runsc run: %w", err)
		}
		if string(out) != p.Want {
			return Summary{}, 0, fmt.Errorf("cold runsc %s: %q", p.Name, out)
		}
		samples = append(samples, time.Since(start))
	}
	cpu1, err := counted.CPU()
	if err != nil {
		return Summary{}, 0, err
	}
	return Summarize("cold runsc "+p.Name, samples), (cpu1 - cpu0) / time.Duration(max(n, 1)), nil
}

// writeBundle writes bundle's config.json: args as root in /, the image's
// root tree read-only, a tmpfs /tmp, the namespaces of a sandbox, and the
// cgroup cgroupsPath ("": the runtime's default).
func writeBundle(bundle, rootfs, cgroupsPath string, args []string) error {
	linux := map[string]any{
		"namespaces": []map[string]string{{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}},
	}
	if cgroupsPath != "" {
		linux["cgroupsPath"] = cgroupsPath
	}
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"user": map[string]int{"uid": 0, "gid": 0}, "cwd": "/",
			"args": args,
			"env":  []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"},
		},
		"root":     map[string]any{"path": rootfs, "readonly": true},
		"hostname": "cold",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"mode=1777", "size=64m"}},
		},
		"linux": linux,
	}
	b, _ := json.Marshal(spec)
	return os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600)
}

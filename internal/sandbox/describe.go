package sandbox

import (
	"context"
	"fmt"
	"os"
)

// Descriptor is a driver describing itself, as data (the way Nomad's
// driver Capabilities do): everything a command needs to choose it, report
// its walls, reclaim its leftovers, network its sandboxes and benchmark it,
// without a switch on its name. Each driver package makes its own; a
// command keeps one ordered list of them.
type Descriptor struct {
	// Name is the candidate's name, as the worker's log, doctor and bench
	// say it ("qemu-kvm").
	Name string
	// Setting is the driver setting that selects it (CODEBENCH_DRIVER);
	// Accel, for a setting with several accelerators, is this one's
	// (CODEBENCH_ACCEL; empty: the setting has one).
	Setting, Accel string
	// Boundary: a security boundary (TCG emulation is not); auto takes one
	// that is not only where the operator allowed it.
	Boundary bool
	// Networks: its sandboxes can be given a network device (a NIC from
	// the network manager).
	Networks bool
	// Probe makes the driver and proves it works here, saying how, or why
	// it does not.
	Probe func(ctx context.Context) (Driver, string, error)
	// Walls are its walls outside the job's own: the guest kernel, the
	// VMM's jail, the host cgroup (docs/SECURITY.md).
	Walls func(d Driver) []Wall
	// Reclaimer makes a driver that reclaims what a killed process left
	// (nil: it leaves nothing).
	Reclaimer func() (Reclaimer, error)
	// TapOwner is who must own a networked sandbox's tap (the user its VMM
	// runs as), or why its sandboxes cannot have one.
	TapOwner func(d Driver) (uid, gid int, err error)
	// Notes are what doctor adds about it once chosen (nil: nothing).
	Notes func(d Driver) []string
	// BenchTargets are the figures `codebench bench` holds it to, beyond
	// the ones every driver has (docs/BENCHMARKS.md).
	BenchTargets []BenchTarget
	// OCIRuntime, where the driver has one, is the command that runs an
	// OCI bundle in a whole new sandbox of its own, with no pool and no
	// agent (its own tool: "runsc run", as "runsc do" does), keeping its
	// state under stateDir: the baseline `codebench bench` measures a job
	// against. "run --bundle DIR ID" follows it. nil: none.
	OCIRuntime func(d Driver, stateDir string) ([]string, error)
}

// Selects reports whether the driver setting and accelerator name this
// driver: its setting, and its accelerator unless accel is "auto" or empty.
func (d Descriptor) Selects(setting, accel string) bool {
	if setting != d.Setting {
		return false
	}
	return d.Accel == "" || accel == "" || accel == "auto" || accel == d.Accel
}

// Wall is one of a driver's walls around a job, as doctor reports it.
type Wall struct {
	Name    string
	Present bool
	Detail  string
	// WaivedBy names the setting with which the operator accepted the
	// wall's absence (doctor --strict does not fail on it).
	WaivedBy string
}

// BenchTarget is one figure a driver promises in `codebench bench`.
type BenchTarget struct {
	// Measure names a figure bench computes for every driver (see
	// cmd/codebench's benchMeasures).
	Measure string
	Limit   float64
	// AtLeast: the figure must reach Limit; otherwise stay under it.
	AtLeast bool
}

// Checkpointer is a driver that checkpoints a running sandbox and
// restores it (gVisor's runsc checkpoint): bench measures its restores.
type Checkpointer interface {
	Checkpoint(ctx context.Context, vm VM, dir string) error
	Restore(ctx context.Context, spec Spec, dir string) (VM, error)
}

// RootVMMRefused fails closed: as root, a VMM outside its jail (what) is
// refused unless the operator accepted it by name (allowed, from
// CODEBENCH_ALLOW_ROOT_VMM). how says what would jail it.
func RootVMMRefused(allowed bool, what, how string) error {
	if os.Geteuid() != 0 || allowed {
		return nil
	}
	return fmt.Errorf("refused: %s would run as root; %s, or accept a root VMM with CODEBENCH_ALLOW_ROOT_VMM=true", what, how)
}

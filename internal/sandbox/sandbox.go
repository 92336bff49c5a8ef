// Package sandbox defines what a sandbox driver provides: start a sandbox (a
// microVM, or a gVisor sandbox) from a guest image, dial its agent channel,
// stop it and learn when it ended. Drivers live in subpackages. Optional
// capabilities (snapshots, reclaiming a dead process's leftovers, process ids
// for measurements, a hard kill) are the small interfaces below, each named
// once; callers ask for them through the functions here, not with ad-hoc
// type assertions.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"

	"github.com/codebench/codebench/internal/agentproto"
)

// Spec describes one sandbox to start.
type Spec struct {
	// ID names the sandbox in logs and in its run directory; drivers make
	// one when it is empty.
	ID       string
	Kernel   string
	Initrd   string
	Rootfs   string // the root as a disk image (microVMs)
	RootDir  string // the root as a directory tree (gVisor)
	MemoryMB int
	VCPUs    int
	// NIC, when set, gives the sandbox a network interface (the VMM's tap
	// in a network namespace of its own); nil: no network device at all.
	NIC *NIC
}

// NIC is a sandbox's network, made by internal/network: the VMM joins
// NetNS and attaches to its tap device Tap; the guest agent gives the
// guest's interface MAC, Addr and a default route through Gateway.
type NIC struct {
	NetNS   string
	Tap     string
	MAC     string
	Addr    netip.Prefix
	Gateway netip.Addr
}

// Agent is the NIC as the guest agent configures it; nil for none.
func (n *NIC) Agent() *agentproto.Net {
	if n == nil {
		return nil
	}
	return &agentproto.Net{MAC: n.MAC, Addr: n.Addr.String(), Gateway: n.Gateway.String()}
}

// NewID makes a short sandbox id: prefix and 12 random hex digits (socket
// paths, interface and namespace names built from it must stay short).
func NewID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// DeviceMAC is the MAC of every guest's network device as the VMM creates
// it (a template's clones must match the template); the agent sets the
// NIC's own MAC on the interface once the guest runs.
const DeviceMAC = "02:cb:00:00:00:01"

// Driver starts sandboxes.
type Driver interface {
	Name() string
	// Start launches a sandbox and returns once its VMM is up. ctx bounds
	// the start only: the sandbox's lifetime is its own until Stop.
	Start(ctx context.Context, spec Spec) (VM, error)
}

// VM is one running sandbox.
type VM interface {
	ID() string
	// DialAgent connects to the guest agent's channel. The guest may not be
	// listening yet; the agent client retries its handshake.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Stop destroys the sandbox and everything it owns on the host. It
	// escalates until the VMM process has exited, and is safe to call more
	// than once.
	Stop(ctx context.Context) error
	// Done is closed when the VMM process has exited, for whatever reason.
	Done() <-chan struct{}
	// ConsoleTail returns up to n bytes of the end of the guest console log.
	ConsoleTail(n int) string
}

// Files of a snapshot template directory: every Snapshotter saves into and
// restores from this layout, and the template package checks it.
const (
	TemplateMemFile   = "mem"   // guest RAM
	TemplateStateFile = "state" // device state
)

// Snapshotter is the capability to save a booted sandbox as a template and
// start clones from it.
type Snapshotter interface {
	Driver
	// SnapshotSupport is nil when clones can be made as configured, and
	// says why not otherwise.
	SnapshotSupport() error
	// Version names the VMM build (and anything else a saved template
	// depends on): a template is only restored by the same version.
	Version() string
	// StartTemplate starts a sandbox that can later be saved into dir.
	StartTemplate(ctx context.Context, spec Spec, dir string) (VM, error)
	// Snapshot saves a sandbox from StartTemplate into dir and stops it.
	Snapshot(ctx context.Context, vm VM, dir string) error
	// Restore starts a clone from the template in dir. Clones never write
	// to the template.
	Restore(ctx context.Context, spec Spec, dir string) (VM, error)
}

// Snapshots returns drv's snapshot capability, or why it has none
// (ErrNoSnapshots).
func Snapshots(drv Driver) (Snapshotter, error) {
	s, ok := drv.(Snapshotter)
	if !ok {
		return nil, fmt.Errorf("%w: driver %s cannot save sandboxes", ErrNoSnapshots, drv.Name())
	}
	if err := s.SnapshotSupport(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSnapshots, err)
	}
	return s, nil
}

// Pauser is the capability to save a running sandbox whole (its memory
// and processes) into a directory, which ends it, and to start it again
// from there: a long-lived sandbox's pause and resume. The restored
// sandbox's agent channel goes on where the saved one stopped. A
// Checkpoint that fails does not stop the sandbox: the caller asks its
// Done whether it still runs.
type Pauser interface {
	Checkpoint(ctx context.Context, vm VM, dir string) error
	Restore(ctx context.Context, spec Spec, dir string) (VM, error)
}

// Pausing returns drv's pause capability, or ErrNoPause.
func Pausing(drv Driver) (Pauser, error) {
	p, ok := drv.(Pauser)
	if !ok {
		return nil, fmt.Errorf("%w: driver %s cannot save a running sandbox", ErrNoPause, drv.Name())
	}
	return p, nil
}

// Reclaimer is the capability to clean up what a killed process left of its
// sandboxes. The reconciler calls it for each sandbox run directory of a dead
// owner, with every driver it knows: a driver that does not recognise dir as
// one of its own leaves it alone and returns nothing.
type Reclaimer interface {
	// Reclaim ends the sandbox whose run directory is dir if its processes
	// still run (and are provably this driver's), and removes what the
	// sandbox owned outside dir. The caller removes dir itself.
	Reclaim(ctx context.Context, dir string) (killed []int, err error)
}

// Processes is the capability to name the host processes a sandbox consists
// of (its VMM; for gVisor, the sandbox and its gofer), for measurements.
type Processes interface {
	PIDs() []int
}

// PIDs returns vm's host processes, or nil when the driver cannot tell.
func PIDs(vm VM) []int {
	if p, ok := vm.(Processes); ok {
		return p.PIDs()
	}
	return nil
}

// Killer is the capability to kill a sandbox's processes at once, without
// any cleanup, the way a crash would: fault injection for tests.
type Killer interface {
	Kill() error
}

// Kill kills vm hard, or returns ErrNoKill when its driver cannot.
func Kill(vm VM) error {
	k, ok := vm.(Killer)
	if !ok {
		return ErrNoKill
	}
	return k.Kill()
}

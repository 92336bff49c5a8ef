// Package sandbox defines what a microVM driver provides: start a VM from a
// guest image, dial its agent channel, stop it and learn when it exited.
// Drivers live in subpackages (qemu, firecracker); optional capabilities such
// as snapshots are separate small interfaces checked with a type assertion.
package sandbox

import (
	"context"
	"net"
)

// Spec describes one VM to start.
type Spec struct {
	// ID names the VM in logs and in its run directory; drivers make one
	// when it is empty.
	ID       string
	Kernel   string
	Initrd   string
	Rootfs   string
	MemoryMB int
	VCPUs    int
}

// Driver starts VMs.
type Driver interface {
	Name() string
	// Start launches a VM and returns once its VMM is up. ctx bounds the
	// start only: the VM's lifetime is its own until Stop.
	Start(ctx context.Context, spec Spec) (VM, error)
}

// VM is one running microVM.
type VM interface {
	ID() string
	// DialAgent connects to the guest agent's channel. The guest may not be
	// listening yet; the agent client retries its handshake.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Stop destroys the VM and everything it owns on the host. It escalates
	// until the VMM process has exited, and is safe to call more than once.
	Stop(ctx context.Context) error
	// Done is closed when the VMM process has exited, for whatever reason.
	Done() <-chan struct{}
	// ConsoleTail returns up to n bytes of the end of the guest console log.
	ConsoleTail(n int) string
}

// Snapshotter is the optional capability to save a booted VM as a template and
// start clones from it. The pool uses it when a driver has it.
type Snapshotter interface {
	// StartTemplate starts a VM that can later be saved into dir.
	StartTemplate(ctx context.Context, spec Spec, dir string) (VM, error)
	// Snapshot saves a VM from StartTemplate into dir and stops it.
	Snapshot(ctx context.Context, vm VM, dir string) error
	// Restore starts a clone from the template in dir. Clones never write
	// to the template.
	Restore(ctx context.Context, spec Spec, dir string) (VM, error)
}

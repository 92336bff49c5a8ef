package sandbox

import "errors"

// Sentinel errors of the sandbox layer. Match them with errors.Is.
var (
	// ErrVMExited: the VMM process ended while we were waiting for it.
	ErrVMExited = errors.New("sandbox: vm exited")
	// ErrBootTimeout: the guest agent did not answer in time.
	ErrBootTimeout = errors.New("sandbox: guest did not become ready in time")
	// ErrStopFailed: the VMM process survived every stop escalation.
	ErrStopFailed = errors.New("sandbox: vm did not stop")
	// ErrNoSnapshots: the driver cannot save and restore sandboxes (here,
	// as configured).
	ErrNoSnapshots = errors.New("sandbox: no snapshot support")
	// ErrNoPause: the driver cannot pause (checkpoint) a running sandbox.
	ErrNoPause = errors.New("sandbox: no pause support")
	// ErrNoKill: the driver cannot kill a sandbox without cleanup.
	ErrNoKill = errors.New("sandbox: driver has no hard kill")
	// ErrNoNetwork: the driver (as configured) cannot give a sandbox a
	// network interface.
	ErrNoNetwork = errors.New("sandbox: no network support")
	// ErrVMMTooOld: the installed VMM lacks a feature this configuration
	// needs (a jailed QEMU older than 8.2 cannot map a template read-only).
	ErrVMMTooOld = errors.New("sandbox: the VMM is too old for this configuration")
)

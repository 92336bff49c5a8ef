// Package firecracker is the sandbox driver for Firecracker microVMs, through
// firecracker-go-sdk v1.0.0: an ELF vmlinux extracted from the image's
// Debian kernel, the image's initramfs and read-only root disk, and a vsock
// device for the agent (host side: the Unix socket with Firecracker's
// "CONNECT <port>" handshake; guest side: the agent listens on AF_VSOCK,
// told so by "codebench.agent=vsock:<port>" on the kernel command line).
//
// Lifetimes follow the SDK's pitfalls: the ctx given to Start is the VM's
// own (cancelling it kills the VMM), never a request's; ForwardSignals is an
// empty, non-nil list, so a Ctrl-C on the worker does not reach its VMs
// (the worker drains them itself); a VM's resources are released only after
// its process has exited.
package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sdk "github.com/firecracker-microvm/firecracker-go-sdk"
	models "github.com/firecracker-microvm/firecracker-go-sdk/client/models"
	"github.com/sirupsen/logrus"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/proc"
	"github.com/codebench/codebench/internal/sandbox"
)

var (
	_ sandbox.Driver      = (*Driver)(nil)
	_ sandbox.Snapshotter = (*Driver)(nil)
	_ sandbox.Reclaimer   = (*Driver)(nil)
	_ sandbox.VM          = (*VM)(nil)
	_ sandbox.Processes   = (*VM)(nil)
	_ sandbox.Killer      = (*VM)(nil)
)

// Files in a VM's run directory.
const (
	APISocket   = "fc.sock"
	VsockSocket = "v.sock"
	// PIDFile holds the VMM's pid, for the reconciler.
	PIDFile = "fc.pid"
	// AgentPort is the guest vsock port the agent listens on.
	AgentPort = 1024
	guestCID  = 3
)

// ErrNoFirecracker: the binary is not installed.
var ErrNoFirecracker = errors.New("firecracker: binary not found")

// Jailer runs each VMM under Firecracker's jailer: a chroot, its own
// uid/gid, a cgroup and optionally a network namespace.
type Jailer struct {
	Binary        string // "jailer"
	UID, GID      int
	ChrootBaseDir string // /srv/jailer by default
	NetNS         string // optional: path of a network namespace
	// CgroupVersion is the hierarchy the jailer puts the VMM in: "2", or
	// "1" on hosts whose v2 hierarchy lacks memory and pids (empty: "2").
	CgroupVersion string
	// CgroupRoot is where the cgroup hierarchies are mounted (empty:
	// /sys/fs/cgroup): the jailer's cgroups are removed from there.
	CgroupRoot string
}

// cgroups are the cgroup directories the jailer makes for VM id (and
// never removes): <root>/<exec name>/<id> on v2, the same in each v1
// controller it writes to (memory and pids by our --cgroup, cpuset by its
// NUMA placement).
func (j *Jailer) cgroups(execName, id string) []string {
	if j.CgroupVersion == "1" {
		var dirs []string
		for _, c := range []string{"memory", "pids", "cpuset"} {
			dirs = append(dirs, filepath.Join(j.CgroupRoot, c, execName, id))
		}
		return dirs
	}
	return []string{filepath.Join(j.CgroupRoot, execName, id)}
}

// removeCgroups removes the jailer's cgroups of VM id once its VMM is gone
// (an empty cgroup is removed with rmdir; a missing one is nothing to do).
func (j *Jailer) removeCgroups(execName, id string) error {
	var errs []error
	for _, d := range j.cgroups(execName, id) {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("firecracker: jailer cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// The jailer's cgroup for a VMM allows the guest's memory plus this much
// for Firecracker itself, and this many tasks (its few threads; its own
// seccomp filters forbid it to fork).
const (
	vmmOverheadMB = 128
	vmmPids       = 64
)

// jailerCgroupArgs are the jailer's --cgroup limits for a VM of memoryMB.
func jailerCgroupArgs(version string, memoryMB int) []string {
	mem := strconv.FormatInt(int64(memoryMB+vmmOverheadMB)<<20, 10)
	if version == "1" {
		// v1 limits swap only with swap accounting (memory.memsw.*),
		// which many kernels boot without: the jailer would fail.
		return []string{"--cgroup", "memory.limit_in_bytes=" + mem, "--cgroup", "pids.max=" + strconv.Itoa(vmmPids)}
	}
	// No swap: a VMM's memory limit must not turn into swapping the host.
	return []string{"--cgroup", "memory.max=" + mem, "--cgroup", "memory.swap.max=0", "--cgroup", "pids.max=" + strconv.Itoa(vmmPids)}
}

// Config is the driver's data.
type Config struct {
	Binary string // "firecracker"
	RunDir string
	// VmlinuxCache holds ELF kernels extracted from the images' bzImages.
	VmlinuxCache string
	Jailer       *Jailer
}

// Driver starts Firecracker microVMs.
type Driver struct {
	cfg Config
	log *slog.Logger
}

// New checks the configuration. It does not need the binary (so the driver
// can be configured and unit-tested anywhere); Probe says whether it runs.
func New(cfg Config, log *slog.Logger) (*Driver, error) {
	if cfg.Binary == "" {
		cfg.Binary = "firecracker"
	}
	if cfg.RunDir == "" || cfg.VmlinuxCache == "" {
		return nil, errors.New("firecracker: RunDir and VmlinuxCache are required")
	}
	if cfg.Jailer != nil && cfg.Jailer.Binary == "" {
		cfg.Jailer.Binary = "jailer"
	}
	if cfg.Jailer != nil && cfg.Jailer.ChrootBaseDir == "" {
		cfg.Jailer.ChrootBaseDir = "/srv/jailer"
	}
	if cfg.Jailer != nil && cfg.Jailer.CgroupVersion == "" {
		cfg.Jailer.CgroupVersion = "2"
	}
	if cfg.Jailer != nil && cfg.Jailer.CgroupRoot == "" {
		cfg.Jailer.CgroupRoot = "/sys/fs/cgroup"
	}
	return &Driver{cfg: cfg, log: log}, nil
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "firecracker" }

// Probe reports why this host cannot run the driver, or nil.
func (d *Driver) Probe() error {
	if _, err := exec.LookPath(d.cfg.Binary); err != nil {
		return fmt.Errorf("%w: %s is not on PATH", ErrNoFirecracker, d.cfg.Binary)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("firecracker: needs KVM: %w", err)
	}
	return f.Close()
}

// SnapshotSupport implements sandbox.Snapshotter: Firecracker restores a
// snapshot's vsock device at the Unix socket path it was saved with, so
// clones only coexist each in a jailer chroot of its own.
func (d *Driver) SnapshotSupport() error {
	if d.cfg.Jailer == nil {
		return errors.New("firecracker: snapshot clones need the jailer (each clone's vsock socket must live in its own chroot)")
	}
	return nil
}

// kernelArgs are the guest's command line. Firecracker adds the virtio-mmio
// device list itself; the initramfs passes it to the virtio_mmio module.
func kernelArgs() string {
	return strings.Join([]string{
		"console=ttyS0", "reboot=k", "panic=-1", "pci=off", "rdinit=/init",
		"quiet", "loglevel=3", "i8042.noaux", "i8042.nokbd", "random.trust_cpu=on",
		fmt.Sprintf("%s=vsock:%d", agentproto.CmdlineKey, AgentPort),
	}, " ")
}

// machineConfig is the SDK configuration for one VM: a pure function of its
// inputs, checked by unit tests without the binary.
func (d *Driver) machineConfig(spec sandbox.Spec, dir, vmlinux string) sdk.Config {
	cfg := sdk.Config{
		SocketPath:      filepath.Join(dir, APISocket),
		KernelImagePath: vmlinux,
		InitrdPath:      spec.Initrd,
		KernelArgs:      kernelArgs(),
		Drives: []models.Drive{{
			DriveID:      sdk.String("rootfs"),
			PathOnHost:   sdk.String(spec.Rootfs),
			IsRootDevice: sdk.Bool(false), // the initramfs mounts /dev/vda itself
			IsReadOnly:   sdk.Bool(true),
		}},
		VsockDevices: []sdk.VsockDevice{{ID: "agent", Path: filepath.Join(dir, VsockSocket), CID: guestCID}},
		MachineCfg: models.MachineConfiguration{
			VcpuCount:  sdk.Int64(int64(spec.VCPUs)),
			MemSizeMib: sdk.Int64(int64(spec.MemoryMB)),
			Smt:        sdk.Bool(false),
		},
		VMID: spec.ID,
		// Empty, not nil: nil means "forward SIGINT, SIGTERM, ... to the VMM".
		ForwardSignals: []os.Signal{},
	}
	if spec.NIC != nil {
		// The network's tap in the VM's own namespace, which the SDK (or
		// the jailer) starts the VMM in; the device's MAC is every
		// guest's, the agent sets the NIC's own.
		cfg.NetNS = spec.NIC.NetNS
		cfg.NetworkInterfaces = sdk.NetworkInterfaces{{StaticConfiguration: &sdk.StaticNetworkConfiguration{
			MacAddress: sandbox.DeviceMAC, HostDevName: spec.NIC.Tap}}}
	}
	if j := d.cfg.Jailer; j != nil {
		uid, gid := j.UID, j.GID
		cfg.JailerCfg = &sdk.JailerConfig{
			UID: &uid, GID: &gid, ID: spec.ID, NumaNode: sdk.Int(0),
			ExecFile: d.cfg.Binary, JailerBinary: j.Binary, ChrootBaseDir: j.ChrootBaseDir,
			ChrootStrategy: sdk.NewNaiveChrootStrategy(vmlinux), CgroupVersion: j.CgroupVersion,
		}
		cfg.NetNS = j.NetNS
		if spec.NIC != nil {
			cfg.NetNS = spec.NIC.NetNS
		}
		// Inside the chroot the sockets have short relative paths.
		cfg.SocketPath = APISocket
		cfg.VsockDevices[0].Path = VsockSocket
	}
	return cfg
}

// jailerCommand is the jailer invocation the SDK would build for cfg, plus
// --cgroup memory and pids limits for a VM of memoryMB.
func jailerCommand(ctx context.Context, cfg sdk.Config, memoryMB int, console io.Writer) *exec.Cmd {
	j := cfg.JailerCfg
	b := sdk.NewJailerCommandBuilder().WithID(j.ID).WithUID(*j.UID).WithGID(*j.GID).
		WithNumaNode(*j.NumaNode).WithExecFile(j.ExecFile).WithChrootBaseDir(j.ChrootBaseDir).
		WithCgroupVersion(j.CgroupVersion).WithFirecrackerArgs("--api-sock", APISocket).
		WithStdout(console).WithStderr(console).WithBin(j.JailerBinary)
	if cfg.NetNS != "" {
		b = b.WithNetNS(cfg.NetNS)
	}
	args := b.Args()
	sep := slices.Index(args, "--")
	args = slices.Insert(args, sep, jailerCgroupArgs(j.CgroupVersion, memoryMB)...)
	cmd := exec.CommandContext(ctx, b.Bin(), args...)
	cmd.Stdout, cmd.Stderr = console, console
	return cmd
}

// vmlinux extracts (once, cached by the bzImage's name and size) the ELF
// kernel Firecracker boots.
func (d *Driver) vmlinux(bzImage string) (string, error) {
	st, err := os.Stat(bzImage)
	if err != nil {
		return "", err
	}
	out := filepath.Join(d.cfg.VmlinuxCache, fmt.Sprintf("vmlinux-%s-%d", filepath.Base(filepath.Dir(bzImage)), st.Size()))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(d.cfg.VmlinuxCache, 0o755); err != nil {
		return "", err
	}
	return out, image.ExtractVmlinux(bzImage, out)
}

// Start implements sandbox.Driver.
func (d *Driver) Start(ctx context.Context, spec sandbox.Spec) (sandbox.VM, error) {
	return d.launch(ctx, spec, nil)
}

func (d *Driver) launch(ctx context.Context, spec sandbox.Spec, snap *sdk.SnapshotConfig) (*VM, error) {
	if err := d.Probe(); err != nil {
		return nil, err
	}
	if spec.ID == "" {
		spec.ID = sandbox.NewID("fc-")
	}
	spec.MemoryMB = max(spec.MemoryMB, 128)
	spec.VCPUs = max(spec.VCPUs, 1)
	vm := &VM{id: spec.ID, dir: filepath.Join(d.cfg.RunDir, spec.ID), done: make(chan struct{}), log: d.log.With("vm_id", spec.ID),
		console: sandbox.NewConsole(sandbox.ConsoleSize)}
	if err := sandbox.Launch(ctx, &vm.stack, d.cfg.RunDir, spec.ID, func(string) error { return d.start(ctx, vm, spec, snap) }); err != nil {
		return nil, err
	}
	return vm, nil
}

// start runs inside sandbox.Launch: the run dir is there, and the stack
// unwinds whatever is pushed here if it fails.
func (d *Driver) start(ctx context.Context, vm *VM, spec sandbox.Spec, snap *sdk.SnapshotConfig) error {
	vmlinux, err := d.vmlinux(spec.Kernel)
	if err != nil {
		return err
	}
	cfg := d.machineConfig(spec, vm.dir, vmlinux)
	// The VMM's stdout is the guest console: its end is kept in a bounded
	// ring (os/exec copies the pipe into it until the process exits).
	console := vm.console

	// The VM's lifetime context: cancelled only by Stop, as the last resort.
	vmCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	vm.cancel = cancel
	opts := []sdk.Opt{sdk.WithLogger(logrus.NewEntry(quietLogrus()))}
	if cfg.JailerCfg == nil {
		cmd := sdk.VMCommandBuilder{}.WithBin(d.cfg.Binary).WithSocketPath(cfg.SocketPath).
			WithStdout(console).WithStderr(console).Build(vmCtx)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		opts = append(opts, sdk.WithProcessRunner(cmd))
	} else {
		// The SDK's jailer command, with the cgroup limits it has no
		// field for.
		cmd := jailerCommand(vmCtx, cfg, spec.MemoryMB, console)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		opts = append(opts, sdk.WithProcessRunner(cmd))
	}
	if snap != nil {
		opts = append(opts, sdk.WithSnapshot(snap.MemFilePath, snap.SnapshotPath, func(c *sdk.SnapshotConfig) { c.ResumeVM = true }))
	}
	m, err := sdk.NewMachine(vmCtx, cfg, opts...)
	if err != nil {
		cancel()
		return fmt.Errorf("firecracker: %w", err)
	}
	vm.m = m
	if err := m.Start(vmCtx); err != nil {
		cancel()
		return fmt.Errorf("firecracker: start: %w", err)
	}
	vm.vsockPath = cfg.VsockDevices[0].Path
	if cfg.JailerCfg != nil {
		vm.vsockPath = filepath.Join(cfg.JailerCfg.ChrootBaseDir, filepath.Base(d.cfg.Binary), spec.ID, "root", VsockSocket)
		chroot := filepath.Dir(filepath.Dir(vm.vsockPath))
		vm.stack.Push("remove jailer chroot", func(context.Context) error { return os.RemoveAll(chroot) })
		// Unwound after the VMM is stopped (pushed before it): a cgroup
		// with a process in it cannot be removed.
		vm.stack.Push("remove jailer cgroups", func(context.Context) error {
			return d.cfg.Jailer.removeCgroups(filepath.Base(d.cfg.Binary), spec.ID)
		})
	}
	// Owned by the VM; Stop waits for done.
	go func() {
		vm.exitErr = m.Wait(context.Background())
		close(vm.done)
	}()
	vm.stack.Push("stop firecracker", vm.stopVMM)
	pid, err := m.PID()
	if err != nil {
		return fmt.Errorf("firecracker: the VMM's pid: %w", err) // the stack stops it
	}
	if err := proc.WritePIDFile(filepath.Join(vm.dir, PIDFile), pid); err != nil {
		return fmt.Errorf("firecracker: %w", err)
	}
	return nil
}

// Reclaim implements sandbox.Reclaimer: the VMM named by the pid file, if its
// command line carries the VM's id (the API socket path, or the jailer's
// --id), and the VM's jailer chroot and cgroups.
func (d *Driver) Reclaim(_ context.Context, dir string) ([]int, error) {
	id := filepath.Base(dir)
	var killed []int
	pid, err := proc.KillStale(filepath.Join(dir, PIDFile), "firecracker", id)
	if pid != 0 {
		killed = append(killed, pid)
	}
	if j := d.cfg.Jailer; j != nil {
		chroot := filepath.Join(j.ChrootBaseDir, filepath.Base(d.cfg.Binary), id)
		if _, serr := os.Stat(chroot); serr == nil {
			err = errors.Join(err, os.RemoveAll(chroot))
		}
		err = errors.Join(err, j.removeCgroups(filepath.Base(d.cfg.Binary), id))
	}
	return killed, err
}

// VM is one Firecracker process.
type VM struct {
	id, dir   string
	vsockPath string
	m         *sdk.Machine
	cancel    context.CancelFunc
	log       *slog.Logger
	done      chan struct{}
	exitErr   error // written before done is closed
	console   *sandbox.Console
	stack     cleanup.Stack
	stopOnce  sync.Once
	stopErr   error
}

// ID implements sandbox.VM.
func (v *VM) ID() string { return v.id }

// Done implements sandbox.VM.
func (v *VM) Done() <-chan struct{} { return v.done }

// PIDs implements sandbox.Processes: the VMM.
func (v *VM) PIDs() []int {
	if pid, err := v.m.PID(); err == nil {
		return []int{pid}
	}
	return nil
}

// Kill implements sandbox.Killer: SIGKILL to the VMM, no cleanup.
func (v *VM) Kill() error {
	pid, err := v.m.PID()
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// DialAgent implements sandbox.VM.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, sandbox.ErrVMExited
	default:
	}
	return dialVsock(ctx, v.vsockPath, AgentPort)
}

// Stop implements sandbox.VM.
func (v *VM) Stop(ctx context.Context) error {
	v.stopOnce.Do(func() { v.stopErr = v.stack.Unwind(ctx) })
	return v.stopErr
}

// stopVMM ends the VMM (sandbox.Escalate): Ctrl-Alt-Del, SIGTERM
// (StopVMM), SIGKILL, then the VM's context; each judged by the process's
// exit.
func (v *VM) stopVMM(ctx context.Context) error {
	defer v.cancel()
	steps := []sandbox.StopStep{
		{Name: "ctrl-alt-del", Do: func() error { return v.m.Shutdown(ctx) }, Wait: time.Second},
		{Name: "SIGTERM", Do: v.m.StopVMM, Wait: 2 * time.Second},
		{Name: "SIGKILL", Do: v.Kill, Wait: 3 * time.Second},
		{Name: "VM context", Do: func() error { v.cancel(); return nil }, Wait: 3 * time.Second},
	}
	kill := func() error { err := v.Kill(); v.cancel(); return err }
	return sandbox.Escalate(ctx, v.done, v.id, steps, kill, v.log)
}

// ConsoleTail implements sandbox.VM.
func (v *VM) ConsoleTail(n int) string { return v.console.Tail(n) }

// StartTemplate implements sandbox.Snapshotter: a plain boot; Firecracker
// writes the memory file at Snapshot time.
func (d *Driver) StartTemplate(ctx context.Context, spec sandbox.Spec, _ string) (sandbox.VM, error) {
	return d.Start(ctx, spec)
}

// Snapshot implements sandbox.Snapshotter: pause, save memory and state into
// dir (the template layout of package sandbox), stop.
func (d *Driver) Snapshot(ctx context.Context, v sandbox.VM, dir string) error {
	vm, ok := v.(*VM)
	if !ok {
		return fmt.Errorf("firecracker: snapshot of a %T", v)
	}
	defer vm.Stop(ctx)
	if err := vm.m.PauseVM(ctx); err != nil {
		return fmt.Errorf("firecracker: pause: %w", err)
	}
	if err := vm.m.CreateSnapshot(ctx, filepath.Join(dir, sandbox.TemplateMemFile), filepath.Join(dir, sandbox.TemplateStateFile)); err != nil {
		return fmt.Errorf("firecracker: create snapshot: %w", err)
	}
	return nil
}

// Restore implements sandbox.Snapshotter: Firecracker maps the memory file
// privately (MAP_PRIVATE), so clones never write to the template.
func (d *Driver) Restore(ctx context.Context, spec sandbox.Spec, dir string) (sandbox.VM, error) {
	if err := d.SnapshotSupport(); err != nil {
		return nil, err
	}
	return d.launch(ctx, spec, &sdk.SnapshotConfig{MemFilePath: filepath.Join(dir, sandbox.TemplateMemFile), SnapshotPath: filepath.Join(dir, sandbox.TemplateStateFile)})
}

func quietLogrus() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// Version names the VMM build for template keys: a snapshot is only restored
// by the Firecracker version that saved it.
func (d *Driver) Version() string {
	out, err := exec.Command(d.cfg.Binary, "--version").Output()
	if err != nil {
		return "firecracker unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

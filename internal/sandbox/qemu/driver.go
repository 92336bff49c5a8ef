// Package qemu is the sandbox driver for qemu-system-x86_64 -M microvm:
// QMP over a Unix socket for control, the guest console in a log file, a
// read-only root disk and a virtio-serial port for the agent.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/proc"
	"github.com/codebench/codebench/internal/sandbox"
)

var (
	_ sandbox.Driver    = (*Driver)(nil)
	_ sandbox.Reclaimer = (*Driver)(nil)
	_ sandbox.VM        = (*VM)(nil)
	_ sandbox.Processes = (*VM)(nil)
	_ sandbox.Killer    = (*VM)(nil)
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Files in a VM's run directory. The reconciler recognises our VMs by this
// layout and by the "-name codebench:<id>" on the QEMU command line.
const (
	QMPSocket   = "qmp.sock"
	AgentSocket = "agent.sock"
	// ConsoleSocket is where QEMU connects the guest's serial console to
	// the driver, which keeps its end in a bounded ring (sandbox.Console).
	ConsoleSocket = "con.sock"
	PIDFile       = "qemu.pid"
	NamePrefix    = "codebench:"
)

// Config is the driver's data.
type Config struct {
	Binary string // qemu-system-x86_64
	RunDir string // parent of every VM's run directory
	Accel  string // AccelKVM or AccelTCG (resolve "auto" with ProbeKVM first)
	// TSCKHz is passed as tsc_early_khz; without it some TCG boots hang
	// calibrating the TSC. Zero reads the host's.
	TSCKHz int64
	// Firmware is passed as -bios; empty uses DefaultFirmware if it
	// exists, else QEMU's default for microvm.
	Firmware string
	// Jail, when set, runs each QEMU jailed (see Jail).
	Jail *Jail
}

// DefaultFirmware is qboot, the minimal firmware microvm was made for. It
// is preferred to QEMU's default for microvm (SeaBIOS's bios-microvm.bin),
// which hung before the kernel here with QEMU 10.0 and SeaBIOS 1.16.3 from
// bookworm-backports.
const DefaultFirmware = "/usr/share/qemu/qboot.rom"

// Driver starts QEMU microVMs.
type Driver struct {
	cfg Config
	log *slog.Logger

	versionOnce sync.Once
	version     string // first line of qemu --version, read on first use
}

// New checks cfg and returns a driver. It does not run QEMU: a host without
// it can still construct the driver (to reclaim leftovers, or to say why it
// cannot run); Start and Probe fail there.
func New(cfg Config, log *slog.Logger) (*Driver, error) {
	if cfg.Binary == "" {
		cfg.Binary = "qemu-system-x86_64"
	}
	if cfg.Accel != AccelKVM && cfg.Accel != AccelTCG {
		return nil, fmt.Errorf("qemu: accel must be %q or %q, not %q", AccelKVM, AccelTCG, cfg.Accel)
	}
	if cfg.Firmware == "" {
		if _, err := os.Stat(DefaultFirmware); err == nil {
			cfg.Firmware = DefaultFirmware
		}
	}
	if j := cfg.Jail; j != nil && (j.Binary == "" || j.UID <= 0 || j.GID <= 0) {
		return nil, fmt.Errorf("qemu: a jail needs its binary and a user and group other than root, not %d:%d", j.UID, j.GID)
	}
	if cfg.TSCKHz == 0 {
		khz, err := HostTSCKHz()
		if err != nil {
			return nil, err
		}
		cfg.TSCKHz = khz
	}
	return &Driver{cfg: cfg, log: log}, nil
}

// Version implements sandbox.Snapshotter: the VMM build and accelerator (a
// snapshot saved by one is not restored by another).
func (d *Driver) Version() string {
	d.versionOnce.Do(func() {
		d.version = "qemu unknown"
		if out, err := exec.Command(d.cfg.Binary, "--version").Output(); err == nil {
			d.version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		}
	})
	return d.version + " accel=" + d.cfg.Accel
}

// Jailed reports whether QEMU runs in the jail (networked VMs need it).
func (d *Driver) Jailed() bool { return d.cfg.Jail != nil }

// readOnlyTemplates reports whether this QEMU can map a template's RAM file
// opened read-only, privately and writable (readonly=on,rom=off: QEMU 8.2+).
func (d *Driver) readOnlyTemplates() bool {
	major, minor, ok := parseVersion(d.Version())
	return ok && (major > 8 || major == 8 && minor >= 2)
}

// parseVersion reads "QEMU emulator version X.Y.Z ...".
func parseVersion(v string) (major, minor int, ok bool) {
	const prefix = "QEMU emulator version "
	i := strings.Index(v, prefix)
	if i < 0 {
		return 0, 0, false
	}
	parts := strings.SplitN(strings.Fields(v[i+len(prefix):] + " ")[0], ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

// Probe reports whether this QEMU can run sandboxes as configured: the
// binary is there and, when jailed, it is new enough to clone from a
// template it cannot write (QEMU 8.2+). It boots nothing.
func (d *Driver) Probe() error {
	if _, err := exec.LookPath(d.cfg.Binary); err != nil {
		return fmt.Errorf("qemu: %s not found (apt-get install qemu-system-x86): %w", d.cfg.Binary, err)
	}
	return d.SnapshotSupport()
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "qemu-" + d.cfg.Accel }

// Reclaim implements sandbox.Reclaimer: a QEMU of ours carries
// "-name codebench:<id>" and its run directory on its command line.
func (d *Driver) Reclaim(_ context.Context, dir string) ([]int, error) {
	pid, err := proc.KillStale(filepath.Join(dir, PIDFile), NamePrefix+filepath.Base(dir), dir)
	if j := d.cfg.Jail; j != nil && j.Cgroups != nil {
		err = errors.Join(err, j.Cgroups.Reclaim(filepath.Base(dir)))
	}
	if pid == 0 {
		return nil, err
	}
	return []int{pid}, err
}

// Start implements sandbox.Driver.
func (d *Driver) Start(ctx context.Context, spec sandbox.Spec) (sandbox.VM, error) {
	return d.launch(ctx, spec, launchOpts{})
}

// launchOpts select the memory and start mode of a VM.
type launchOpts struct {
	memPath  string // guest RAM in this file (memory-backend-file)
	shared   bool   // MAP_SHARED (a template) or private copy-on-write (a clone)
	incoming bool   // wait for a migration stream (-incoming defer)
}

func (d *Driver) launch(ctx context.Context, spec sandbox.Spec, opts launchOpts) (*VM, error) {
	if spec.ID == "" {
		spec.ID = NewID()
	}
	if spec.MemoryMB == 0 {
		spec.MemoryMB = 512
	}
	if spec.VCPUs == 0 {
		spec.VCPUs = 1
	}
	vm := &VM{
		id:   spec.ID,
		dir:  filepath.Join(d.cfg.RunDir, spec.ID),
		done: make(chan struct{}),
		log:  d.log.With("vm_id", spec.ID),
	}
	if err := sandbox.Launch(ctx, &vm.stack, d.cfg.RunDir, spec.ID, func(string) error { return d.start(ctx, vm, spec, opts) }); err != nil {
		return nil, err
	}
	return vm, nil
}

// start runs inside sandbox.Launch: the run dir is there, and the stack
// unwinds whatever is pushed here if it fails.
func (d *Driver) start(ctx context.Context, vm *VM, spec sandbox.Spec, opts launchOpts) error {
	if err := vm.listenConsole(); err != nil {
		return err
	}

	var cmd *exec.Cmd
	if spec.NIC != nil && d.cfg.Jail == nil {
		return fmt.Errorf("qemu: %w: a networked VM needs the QEMU jail, which joins its network namespace", sandbox.ErrNoNetwork)
	}
	if d.cfg.Jail == nil {
		cmd = exec.Command(d.cfg.Binary, d.args(spec, vm.dir, opts)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	} else {
		vm.jail = d.cfg.Jail
		bin, err := exec.LookPath(d.cfg.Binary)
		if err != nil {
			return fmt.Errorf("qemu: %w", err)
		}
		if spec, err = resolveImage(spec); err != nil {
			return err
		}
		if cmd, err = d.jailed(vm, spec, opts, append([]string{bin}, d.args(spec, vm.dir, opts)...)); err != nil {
			return err
		}
	}
	cmd.Dir = vm.dir
	// Own process group: a Ctrl-C on the worker's terminal must not reach
	// QEMU; the worker drains its VMs itself. Pdeathsig: a worker killed
	// with -9 does not leave VMs running.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	vm.stderr = sandbox.NewConsole(stderrSize)
	cmd.Stderr = vm.stderr
	// A VMM that exits closes its stderr; do not wait long for a pipe
	// something else keeps open.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu: start %s: %w", d.cfg.Binary, err)
	}
	vm.cmd = cmd
	// The waiter goroutine is owned by the VM: Stop waits for done.
	go func() {
		vm.exitErr = cmd.Wait()
		close(vm.done)
	}()
	// Pushed after the waiter so that it unwinds first: the VMM must be
	// gone before its run dir is removed.
	vm.stack.Push("stop qemu", vm.stopVMM)
	if err := proc.WritePIDFile(filepath.Join(vm.dir, PIDFile), cmd.Process.Pid); err != nil {
		return fmt.Errorf("qemu: %w", err) // the stack stops QEMU
	}

	q, err := vm.connectQMP(ctx)
	if err != nil {
		return err
	}
	vm.qmp = q // closed by stopVMM, after QMP quit had its chance
	vm.log.Debug("vm started", "pid", cmd.Process.Pid, "accel", d.cfg.Accel)
	return nil
}

func (d *Driver) args(spec sandbox.Spec, dir string, opts launchOpts) []string {
	cpu := "max"
	if d.cfg.Accel == AccelKVM {
		cpu = "host"
	}
	cmdline := strings.Join([]string{
		"console=ttyS0", "reboot=t", "panic=-1", "rdinit=/init",
		"tsc_early_khz=" + strconv.FormatInt(d.cfg.TSCKHz, 10),
		"quiet", "loglevel=3", "i8042.noaux", "i8042.nokbd", "nomodeset", "random.trust_cpu=on",
	}, " ")
	machine := "microvm,x-option-roms=off,rtc=on"
	var mem []string
	if d.cfg.Firmware != "" {
		mem = append(mem, "-bios", d.cfg.Firmware)
	}
	if opts.memPath != "" {
		machine += ",memory-backend=mem"
		backend := fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,prealloc=off", spec.MemoryMB, opts.memPath)
		switch {
		case opts.shared:
			backend += ",share=on"
		case d.readOnlyTemplates():
			// A private copy-on-write mapping of a file QEMU opens
			// read-only: the template cannot be written through it.
			backend += ",share=off,readonly=on,rom=off"
		default:
			backend += ",share=off"
		}
		mem = append(mem, "-object", backend)
	}
	accel := d.cfg.Accel
	if accel == AccelTCG {
		accel += ",tb-size=" + strconv.Itoa(tcgCacheMB)
	}
	if opts.incoming {
		mem = append(mem, "-incoming", "defer")
	}
	if spec.NIC != nil {
		// The tap the network made in the VM's namespace, which the jail
		// joined and opened as TapFD; the device's MAC is every guest's (a
		// template's clones must match it), the agent sets the NIC's own.
		mem = append(mem,
			"-netdev", "tap,id=net0,fd="+strconv.Itoa(TapFD),
			"-device", "virtio-net-device,netdev=net0,mac="+sandbox.DeviceMAC)
	}
	return append(mem,
		"-name", NamePrefix+spec.ID,
		"-M", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.Itoa(spec.MemoryMB),
		"-smp", strconv.Itoa(spec.VCPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", spec.Kernel, "-initrd", spec.Initrd, "-append", cmdline,
		"-chardev", "socket,id=con,path="+filepath.Join(dir, ConsoleSocket),
		"-serial", "chardev:con",
		"-drive", "id=root,file="+spec.Rootfs+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=agent,path="+filepath.Join(dir, AgentSocket)+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=agent",
		"-qmp", "unix:"+filepath.Join(dir, QMPSocket)+",server=on,wait=off",
	)
}

// NewID makes a short VM id (socket paths must stay under 108 bytes).
func NewID() string { return sandbox.NewID("vm-") }

// VM is one QEMU process and its run directory.
type VM struct {
	id  string
	dir string
	cmd *exec.Cmd
	qmp *qmp
	log *slog.Logger

	done    chan struct{}
	exitErr error // written before done is closed

	console *sandbox.Console
	// stderr keeps the end of QEMU's own stderr, bounded whatever a
	// misbehaving VMM writes.
	stderr *sandbox.Console
	jail   *Jail // nil: QEMU runs unjailed

	stack cleanup.Stack

	stopOnce sync.Once
	stopErr  error
}

// ID implements sandbox.VM.
func (v *VM) ID() string { return v.id }

// Done implements sandbox.VM.
func (v *VM) Done() <-chan struct{} { return v.done }

// PIDs implements sandbox.Processes: the QEMU process.
func (v *VM) PIDs() []int { return []int{v.cmd.Process.Pid} }

func (v *VM) connectQMP(ctx context.Context) (*qmp, error) {
	path := filepath.Join(v.dir, QMPSocket)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			q, err := dialQMP(dctx, path)
			cancel()
			if err == nil {
				return q, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu: waiting for qmp: %w", ctx.Err())
		case <-v.done:
			return nil, fmt.Errorf("%w: %s", sandbox.ErrVMExited, v.stderrTail())
		case <-tick.C:
		}
	}
}

// stderrSize is how much of QEMU's stderr a VM keeps: the end of it.
const stderrSize = 16 << 10

func (v *VM) stderrTail() string {
	// Quoted in errors and logs: the last few KiB say why it ended.
	return strings.TrimSpace(v.stderr.Tail(4 << 10))
}

// DialAgent implements sandbox.VM.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, sandbox.ErrVMExited
	default:
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", filepath.Join(v.dir, AgentSocket))
}

// Stop implements sandbox.VM: QMP quit, SIGTERM, SIGKILL, each judged by the
// process's exit, then the run dir goes.
func (v *VM) Stop(ctx context.Context) error {
	v.stopOnce.Do(func() {
		v.stopErr = v.stack.Unwind(ctx) // under cleanup.Detached: ctx's deadline holds
		v.log.Debug("vm stopped", "err", v.stopErr)
	})
	return v.stopErr
}

// stopVMM ends the QEMU process (sandbox.Escalate): QMP quit, SIGTERM,
// SIGKILL, each judged by the process's exit.
func (v *VM) stopVMM(ctx context.Context) error {
	defer func() {
		if v.qmp != nil {
			_ = v.qmp.Close()
		}
	}()
	signal := func(sig syscall.Signal) func() error {
		return func() error {
			if err := v.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return err
			}
			return nil
		}
	}
	var steps []sandbox.StopStep
	if v.qmp != nil {
		steps = append(steps, sandbox.StopStep{Name: "QMP quit", Wait: 2 * time.Second, Do: func() error {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := v.qmp.Execute(qctx, "quit", nil)
			return err
		}})
	}
	steps = append(steps,
		sandbox.StopStep{Name: "SIGTERM", Do: signal(syscall.SIGTERM), Wait: 3 * time.Second},
		sandbox.StopStep{Name: "SIGKILL", Do: signal(syscall.SIGKILL), Wait: 3 * time.Second})
	return sandbox.Escalate(ctx, v.done, fmt.Sprintf("qemu pid %d", v.cmd.Process.Pid), steps, signal(syscall.SIGKILL), v.log)
}

// ConsoleTail implements sandbox.VM.
func (v *VM) ConsoleTail(n int) string { return v.console.Tail(n) }

// listenConsole listens where QEMU will connect the serial console, and
// copies what arrives into the VM's console ring until QEMU exits. The
// copier is the VM's: Stop waits for it.
func (v *VM) listenConsole() error {
	v.console = sandbox.NewConsole(sandbox.ConsoleSize)
	ln, err := net.Listen("unix", filepath.Join(v.dir, ConsoleSocket))
	if err != nil {
		return fmt.Errorf("qemu: console socket: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		c, err := ln.Accept()
		_ = ln.Close() // one connection: QEMU's
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(v.console, c)
	}()
	// Unwound after QEMU is gone: its end of the console is closed, so
	// the copy has ended or ends now; a QEMU that never connected is
	// released by closing the listener.
	v.stack.Push("stop console copy", func(context.Context) error {
		_ = ln.Close()
		<-copied
		return nil
	})
	return nil
}

// HostTSCKHz reads the host's TSC frequency from /proc/cpuinfo. Under TCG
// the guest TSC runs at the host's rate, and telling the guest kernel skips
// the calibration that hangs some boots.
func HostTSCKHz() (int64, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || mhz <= 0 {
				break
			}
			return int64(math.Round(mhz * 1000)), nil
		}
	}
	return 0, errors.New("qemu: cannot read the host TSC frequency from /proc/cpuinfo (set CODEBENCH_TSC_KHZ)")
}

func lookPath(bin string) (string, error) { return exec.LookPath(bin) }

// Kill implements sandbox.Killer: SIGKILL to the VMM without cleaning up,
// the way a crash would end it.
func (v *VM) Kill() error { return v.cmd.Process.Kill() }

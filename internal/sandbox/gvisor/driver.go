// Package gvisor is the sandbox driver for gVisor (runsc), for hosts whose
// KVM cannot boot a guest: gVisor's user-space kernel is the boundary. Each
// sandbox is an OCI container of its own, destroyed after its one job: the
// image's root tree, read-only, with in-memory tmpfs for /tmp and /job; no
// network but loopback; the agent as its init ("codebench-agent serve
// --oci"), speaking the unchanged agent protocol over the container's stdin
// and stdout; its stderr is the console. runsc keeps its state under the
// sandbox's own run directory, so everything a sandbox owns on the host is
// there (or is a process that the state names).
package gvisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/proc"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

var (
	_ sandbox.Driver    = (*Driver)(nil)
	_ sandbox.Reclaimer = (*Driver)(nil)
	_ sandbox.Pauser    = (*Driver)(nil)
	_ sandbox.VM        = (*VM)(nil)
	_ sandbox.Processes = (*VM)(nil)
	_ sandbox.Killer    = (*VM)(nil)
)

// Files in a sandbox's run directory.
const (
	bundleDir = "bundle" // config.json
	stateDir  = "state"  // runsc --root
	// PIDFile holds the pid of the runsc process that runs the sandbox.
	PIDFile = "runsc.pid"
)

// Platforms runsc can use without hardware virtualization: systrap
// (runsc 2023 and later, faster) and ptrace (every version).
const (
	PlatformSystrap = "systrap"
	PlatformPtrace  = "ptrace"
)

// ErrNoRunsc: the runsc binary is not installed.
var ErrNoRunsc = errors.New("gvisor: runsc not found")

// Config is the driver's data.
type Config struct {
	Binary string // runsc
	RunDir string
	// Platform is systrap or ptrace; empty: systrap where this runsc has
	// it, else ptrace.
	Platform string
	// Cgroups, when set, puts each sandbox (runsc's sandbox and gofer
	// processes) in a host cgroup of its own with memory and process
	// limits, which runsc creates from the spec's linux.resources.
	Cgroups *hostcgroup.Manager
}

// Driver starts gVisor sandboxes.
type Driver struct {
	cfg Config
	log *slog.Logger

	platformOnce sync.Once
	platform     string
	platformErr  error
}

// New checks cfg. It runs nothing: Platform and Probe say whether runsc
// works here.
func New(cfg Config, log *slog.Logger) (*Driver, error) {
	if cfg.Binary == "" {
		cfg.Binary = "runsc"
	}
	if cfg.RunDir == "" {
		return nil, errors.New("gvisor: RunDir is required")
	}
	switch cfg.Platform {
	case "", PlatformSystrap, PlatformPtrace:
	default:
		return nil, fmt.Errorf("gvisor: platform must be %s or %s, not %q", PlatformSystrap, PlatformPtrace, cfg.Platform)
	}
	return &Driver{cfg: cfg, log: log}, nil
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "gvisor" }

// Platform detects (once) the platform runsc uses here: the configured one,
// else systrap if this runsc accepts it (bookworm's 2022 runsc does not),
// else ptrace.
func (d *Driver) Platform() (string, error) {
	d.platformOnce.Do(func() {
		if _, err := exec.LookPath(d.cfg.Binary); err != nil {
			d.platformErr = fmt.Errorf("%w: %s is not on PATH (apt-get install runsc)", ErrNoRunsc, d.cfg.Binary)
			return
		}
		if d.cfg.Platform != "" {
			d.platform = d.cfg.Platform
			return
		}
		d.platform = PlatformPtrace
		// "runsc help" lists flags, not platforms; a platform the binary
		// lacks makes "runsc do" fail at once.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dir, err := os.MkdirTemp("", "codebench-runsc-probe-")
		if err != nil {
			d.platformErr = err
			return
		}
		defer os.RemoveAll(dir)
		cmd := exec.CommandContext(ctx, d.cfg.Binary, "--root", dir, "--platform="+PlatformSystrap, "--network=none", "do", "true")
		if out, err := cmd.CombinedOutput(); err == nil {
			d.platform = PlatformSystrap
		} else {
			d.log.Debug("gvisor: systrap unavailable; using ptrace", "err", err, "output", strings.TrimSpace(string(out)))
		}
	})
	return d.platform, d.platformErr
}

// Version names the runsc build and platform.
func (d *Driver) Version() string {
	out, _ := exec.Command(d.cfg.Binary, "--version").Output()
	p, _ := d.Platform()
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]) + " platform=" + p
}

// NewID makes a short sandbox id.
func NewID() string { return sandbox.NewID("gv-") }

// Start implements sandbox.Driver: write the bundle, start "runsc run" with
// the container's stdio as the agent channel, return once it runs.
func (d *Driver) Start(ctx context.Context, spec sandbox.Spec) (sandbox.VM, error) {
	return d.launch(ctx, spec, "")
}

// Restore starts a sandbox from a checkpoint Checkpoint wrote into dir (runsc
// restore), with its own stdio: the agent goes on reading where it was.
// The pool does not use it: measured here (docs/BENCHMARKS.md), a restore
// is slower to ready than a fresh start and its first compile no faster;
// "codebench bench" measures both.
func (d *Driver) Restore(ctx context.Context, spec sandbox.Spec, dir string) (sandbox.VM, error) {
	return d.launch(ctx, spec, dir)
}

// Checkpoint saves vm into dir (runsc checkpoint), which ends it, and stops
// what is left of it. A checkpoint that fails leaves vm as runsc left it:
// running, where runsc failed before it paused the sandbox (no image file
// could be made), else whatever its Done says.
func (d *Driver) Checkpoint(ctx context.Context, v sandbox.VM, dir string) error {
	vm, ok := v.(*VM)
	if !ok {
		return fmt.Errorf("gvisor: checkpoint of a %T", v)
	}
	out, err := exec.CommandContext(ctx, d.cfg.Binary, "--root", filepath.Join(vm.dir, stateDir), "checkpoint", "--image-path="+dir, vm.id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gvisor: checkpoint: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return vm.Stop(ctx)
}

func (d *Driver) launch(ctx context.Context, spec sandbox.Spec, restoreFrom string) (sandbox.VM, error) {
	platform, err := d.Platform()
	if err != nil {
		return nil, err
	}
	if spec.NIC != nil {
		return nil, fmt.Errorf("gvisor: %w: sandboxes run with --network=none", sandbox.ErrNoNetwork)
	}
	if spec.RootDir == "" {
		return nil, errors.New("gvisor: the image has no root tree (rebuild it: codebench image build)")
	}
	if spec.ID == "" {
		spec.ID = NewID()
	}
	vm := &VM{id: spec.ID, dir: filepath.Join(d.cfg.RunDir, spec.ID), done: make(chan struct{}),
		console: sandbox.NewConsole(sandbox.ConsoleSize), log: d.log.With("vm_id", spec.ID)}
	if err := sandbox.Launch(ctx, &vm.stack, d.cfg.RunDir, spec.ID, func(string) error { return d.start(ctx, vm, spec, platform, restoreFrom) }); err != nil {
		return nil, err
	}
	return vm, nil
}

// start runs inside sandbox.Launch: the run dir is there, and the stack
// unwinds whatever is pushed here if it fails.
func (d *Driver) start(ctx context.Context, vm *VM, spec sandbox.Spec, platform, restoreFrom string) error {
	bundle := filepath.Join(vm.dir, bundleDir)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return err
	}
	oci := ociSpec(spec)
	if d.cfg.Cgroups != nil {
		// runsc removes it on a clean exit; this covers the rest (a
		// killed sandbox). Unwound after the sandbox is stopped.
		vm.stack.Push("remove cgroup", func(context.Context) error { return d.cfg.Cgroups.Reclaim(spec.ID) })
		oci.Linux.CgroupsPath = d.cfg.Cgroups.Path(spec.ID)
		oci.Linux.Resources = &resources{
			Memory: &memoryResources{Limit: int64(spec.MemoryMB+sandboxOverheadMB) << 20},
			Pids:   &pidsResources{Limit: sandboxPids},
			// The sandbox's vCPUs: a job's busy threads take those, not
			// every core of the host.
			CPU: &cpuResources{Quota: int64(max(spec.VCPUs, 1)) * hostcgroup.CPUPeriod.Microseconds(),
				Period: uint64(hostcgroup.CPUPeriod.Microseconds())},
		}
	}
	b, err := json.MarshalIndent(oci, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return err
	}

	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return err
	}
	verb := []string{"run"}
	if restoreFrom != "" {
		verb = []string{"restore", "--image-path=" + restoreFrom}
	}
	args := append([]string{"--root", filepath.Join(vm.dir, stateDir), "--platform=" + platform, "--network=none"}, verb...)
	cmd := exec.Command(d.cfg.Binary, append(args, "--bundle", bundle, spec.ID)...)
	cmd.Dir = vm.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, vm.console
	// Own process group: a Ctrl-C on the worker's terminal must not reach
	// the sandbox; Pdeathsig: a worker killed with -9 takes runsc along
	// (what runsc started is the reconciler's, through the state).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	stdinR.Close() // the child's ends
	stdoutW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		return fmt.Errorf("gvisor: start %s: %w", d.cfg.Binary, err)
	}
	vm.cmd = cmd
	vm.ch = newChannel(stdinW, stdoutR)
	// The waiter is the VM's: Stop waits for done.
	go func() {
		vm.exitErr = cmd.Wait()
		close(vm.done)
	}()
	vm.stack.Push("close agent channel", func(context.Context) error { return vm.ch.close() })
	vm.stack.Push("stop sandbox", vm.stopSandbox)
	if err := proc.WritePIDFile(filepath.Join(vm.dir, PIDFile), cmd.Process.Pid); err != nil {
		return fmt.Errorf("gvisor: %w", err) // the stack stops the sandbox
	}
	vm.log.Debug("sandbox started", "pid", cmd.Process.Pid, "platform", platform)
	return nil
}

// VM is one gVisor sandbox: the runsc process that runs it, the processes
// runsc started (named by its state), its run directory.
type VM struct {
	id, dir string
	cmd     *exec.Cmd
	ch      *channel
	console *sandbox.Console
	log     *slog.Logger

	done    chan struct{}
	exitErr error // written before done is closed

	stack    cleanup.Stack
	stopOnce sync.Once
	stopErr  error
}

// ID implements sandbox.VM.
func (v *VM) ID() string { return v.id }

// Done implements sandbox.VM.
func (v *VM) Done() <-chan struct{} { return v.done }

// ConsoleTail implements sandbox.VM.
func (v *VM) ConsoleTail(n int) string { return v.console.Tail(n) }

// DialAgent implements sandbox.VM: a session over the container's stdio.
func (v *VM) DialAgent(context.Context) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, sandbox.ErrVMExited
	default:
	}
	return v.ch.dial(), nil
}

// Stop implements sandbox.VM.
func (v *VM) Stop(ctx context.Context) error {
	v.stopOnce.Do(func() { v.stopErr = v.stack.Unwind(ctx) })
	return v.stopErr
}

// stopSandbox ends the sandbox (sandbox.Escalate), each step judged by the
// runsc process's exit: the agent's stdin closes (it exits, and with it
// the container), then SIGKILL to runsc and to the sandbox and gofer
// processes its state names. Those it started are killed after it, if
// they outlived it.
func (v *VM) stopSandbox(ctx context.Context) error {
	steps := []sandbox.StopStep{
		{Name: "close the agent's stdin", Do: v.ch.closeInput, Wait: 2 * time.Second},
		{Name: "SIGKILL", Do: v.Kill, Wait: 3 * time.Second},
	}
	err := sandbox.Escalate(ctx, v.done, fmt.Sprintf("runsc pid %d", v.cmd.Process.Pid), steps, v.Kill, v.log)
	return errors.Join(err, v.killState())
}

// killState kills the sandbox and gofer processes runsc's state names, if
// they are still there.
func (v *VM) killState() error {
	var errs []error
	for _, pid := range statePIDs(filepath.Join(v.dir, stateDir)) {
		if err := killAndWait(pid, v.id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PIDs implements sandbox.Processes: runsc, and the sandbox (the Sentry,
// which holds the guest's memory) and gofer it started.
func (v *VM) PIDs() []int {
	return append([]int{v.cmd.Process.Pid}, statePIDs(filepath.Join(v.dir, stateDir))...)
}

// Kill implements sandbox.Killer: SIGKILL to runsc's process group and to
// the sandbox's processes, no cleanup.
func (v *VM) Kill() error {
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	for _, pid := range statePIDs(filepath.Join(v.dir, stateDir)) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// Reclaim implements sandbox.Reclaimer: a gVisor sandbox's directory has
// runsc's state; its runsc process and the sandbox and gofer processes the
// state names are killed if they still run and carry the sandbox's id.
func (d *Driver) Reclaim(_ context.Context, dir string) ([]int, error) {
	id := filepath.Base(dir)
	if _, err := os.Stat(filepath.Join(dir, stateDir)); err != nil {
		return nil, nil // not a gVisor sandbox's directory
	}
	var killed []int
	var errs []error
	pid, err := proc.KillStale(filepath.Join(dir, PIDFile), "runsc", id)
	if pid != 0 {
		killed = append(killed, pid)
	}
	errs = append(errs, err)
	for _, p := range statePIDs(filepath.Join(dir, stateDir)) {
		if !proc.Alive(p) {
			continue
		}
		if err := killAndWait(p, id); err != nil {
			errs = append(errs, err)
			continue
		}
		killed = append(killed, p)
	}
	if d.cfg.Cgroups != nil {
		errs = append(errs, d.cfg.Cgroups.Reclaim(id))
	}
	return killed, errors.Join(errs...)
}

// statePIDs reads the sandbox and gofer pids from runsc's state files.
func statePIDs(root string) []int {
	files, _ := filepath.Glob(filepath.Join(root, "*.state"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st struct {
			GoferPid int `json:"goferPid"`
			Sandbox  struct {
				Pid int `json:"pid"`
			} `json:"sandbox"`
		}
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		for _, p := range []int{st.Sandbox.Pid, st.GoferPid} {
			if p > 0 {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// killAndWait kills pid if it is alive and its command line names the
// sandbox (a reused pid is someone else's), and waits for it to go.
func killAndWait(pid int, id string) error {
	if !proc.Alive(pid) {
		return nil
	}
	if cl := proc.Cmdline(pid); !strings.Contains(cl, "runsc") || !strings.Contains(cl, id) {
		return nil
	}
	return proc.KillAndWait(pid)
}

// agentArgs is the container's init.
var agentArgs = []string{agentproto.GuestAgentPath, "serve", "--oci"}

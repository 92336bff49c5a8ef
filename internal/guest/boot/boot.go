// Package boot is the guest's init: stage 1 runs from the initramfs (load the
// virtio modules, mount the read-only root disk, switch root), stage 2 runs
// as PID 1 on the real root (mount /proc, /sys, tmpfs for /tmp and /job).
package boot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
)

// The guest's layout (agentproto.Guest*, shared with the host side).
const (
	ModulesDir   = agentproto.GuestModulesDir
	ModulesOrder = agentproto.GuestModulesOrder
	AgentPath    = agentproto.GuestAgentPath
	JobRoot      = agentproto.GuestJobRoot
	RootDevice   = agentproto.GuestRootDevice
)

// Stage1 runs as /init in the initramfs and never returns on success.
func Stage1() error {
	if err := mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := mount("proc", "/proc", "proc", 0, ""); err != nil {
		return err
	}
	if err := loadModules(); err != nil {
		return err
	}
	if err := waitFor(RootDevice, 10*time.Second); err != nil {
		return err
	}
	// nosuid: the base system has setuid binaries, and nothing in a job
	// needs them; nodev: no device node on the disk means anything.
	if err := mount(RootDevice, "/newroot", "ext4", unix.MS_RDONLY|unix.MS_NOATIME|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return err
	}
	if err := unix.Mount("/dev", "/newroot/dev", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move /dev: %w", err)
	}
	_ = unix.Unmount("/proc", unix.MNT_DETACH)
	// Free the initramfs copy of the modules before leaving it.
	_ = os.RemoveAll(ModulesDir)
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return syscall.Exec(AgentPath, []string{AgentPath, "serve"}, os.Environ())
}

// Stage2 prepares the real root for jobs. It runs as PID 1.
func Stage2() error {
	steps := []struct{ src, dst, fs, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777,size=64m"},
		{"tmpfs", JobRoot, "tmpfs", "mode=0755,size=128m"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777,size=16m"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", ""},
	}
	for _, s := range steps {
		_ = os.MkdirAll(s.dst, 0o755)
		if err := mount(s.src, s.dst, s.fs, unix.MS_NOSUID|unix.MS_NODEV, s.data); err != nil && s.fs != "cgroup2" {
			return err
		}
	}
	_ = unix.Sethostname([]byte("codebench"))
	DisableNamespaces()
	// Jobs get a loopback (a client and server exercise, a language
	// server); it reaches nothing outside the guest.
	return LoopbackUp()
}

// namespaceSysctls are the knobs that let an unprivileged user make
// namespaces; a user namespace is the most common way into kernel code an
// unprivileged user could not reach otherwise. The job seccomp filter
// refuses them too; this closes them for anything that escaped it.
var namespaceSysctls = []string{
	"user/max_user_namespaces", "user/max_mnt_namespaces", "user/max_net_namespaces",
	"user/max_pid_namespaces", "user/max_ipc_namespaces", "user/max_uts_namespaces", "user/max_cgroup_namespaces",
}

// DisableNamespaces sets every namespace sysctl the kernel has to 0 and
// reports which it set.
func DisableNamespaces() []string {
	var set []string
	for _, k := range namespaceSysctls {
		if os.WriteFile(filepath.Join("/proc/sys", k), []byte("0"), 0) == nil {
			set = append(set, k)
		}
	}
	return set
}

// RemountRootNosuid makes / nosuid and nodev where its mount allows it (a
// gVisor sandbox's root, set up by runsc).
func RemountRootNosuid() error {
	return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

func mount(src, dst, fstype string, flags uintptr, data string) error {
	_ = os.MkdirAll(dst, 0o755)
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", fstype, dst, err)
	}
	return nil
}

// loadModules loads the modules listed in ModulesOrder, passing each the
// "name.param=value" arguments of the kernel command line, as modprobe would.
func loadModules() error {
	order, err := os.ReadFile(ModulesOrder)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	// vsock is the agent's channel under Firecracker only; elsewhere its
	// modules stay out of the guest kernel (a job's socket(AF_VSOCK) finds
	// no family, whatever the seccomp filter says).
	vsock := strings.Contains(string(cmdline), agentproto.CmdlineKey+"=vsock:")
	for _, file := range strings.Fields(string(order)) {
		name := strings.ReplaceAll(strings.TrimSuffix(file, ".ko"), "-", "_")
		if strings.Contains(name, "vsock") && !vsock {
			continue
		}
		if err := loadModule(filepath.Join(ModulesDir, file), moduleParams(string(cmdline), name)); err != nil {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

func moduleParams(cmdline, module string) string {
	var params []string
	for _, f := range strings.Fields(cmdline) {
		if rest, ok := strings.CutPrefix(f, module+"."); ok {
			params = append(params, rest)
		}
	}
	return strings.Join(params, " ")
}

func loadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func waitFor(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// FindPort returns the /dev node of the virtio-serial port with the given
// name (there is no udev in the guest to make /dev/virtio-ports/<name>).
func FindPort(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		entries, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := filepath.Join("/dev", e.Name())
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("virtio port %q did not appear within %s", name, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// KillUser kills every process owned by uid (a job's background children,
// including ones that left its process group) and reaps what PID 1 inherited.
// It repeats because a fork bomb keeps making new processes while we kill.
func KillUser(uid uint32) {
	for round := 0; round < 100; round++ {
		found := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", e.Name()), &st) != nil || st.Uid != uid {
				continue
			}
			found++
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		Reap()
		if found == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Reap collects exited children without blocking.
func Reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// KernelRelease reports the running kernel.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// CmdlineValue returns the value of key=value on the kernel command line.
func CmdlineValue(key string) string {
	f, err := os.Open("/proc/cmdline")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return v
		}
	}
	return ""
}

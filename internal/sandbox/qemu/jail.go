package qemu

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// JailCommand is the codebench subcommand that runs JailMain: the QEMU
// driver starts "<Jail.Binary> __qemu-jail [flags] -- qemu args..." in new
// mount, pid, network, IPC and UTS namespaces.
const JailCommand = "__qemu-jail"

// Jail runs each QEMU like Firecracker's jailer runs Firecracker: in
// namespaces of its own, where the filesystem holds only what QEMU needs
// (its binary, libraries and firmware read-only, the VM's image and
// template read-only, its run directory), no network, in a cgroup of its
// own with memory and process limits, as an unprivileged user with
// no_new_privs, then QEMU's own seccomp sandbox.
type Jail struct {
	// Binary is the codebench binary that has JailCommand.
	Binary   string
	UID, GID int
	// Groups are supplementary groups QEMU keeps (the group of /dev/kvm).
	Groups []int
	// Cgroups gives each VM a cgroup with memory and process limits; nil
	// runs QEMU without one.
	Cgroups *hostcgroup.Manager
}

// jailSpec is what one jailed QEMU sees.
type jailSpec struct {
	root      string   // an empty directory: the new root is a tmpfs on it
	readOnly  []string // bound read-only at the same paths
	readWrite []string // bound read-write at the same paths
	devices   []string // device nodes bound in /dev
	cgroups   []string // cgroup.procs files to join
	netns     string   // a network namespace to join; "": a new, empty one
	tap       string   // a tap device in netns, opened for QEMU as fd TapFD
	uid, gid  int
	groups    []int
}

// args renders the spec as the helper's flags.
func (s jailSpec) args() []string {
	a := []string{JailCommand, "--root", s.root, "--uid", strconv.Itoa(s.uid), "--gid", strconv.Itoa(s.gid)}
	for _, p := range s.readOnly {
		a = append(a, "--ro", p)
	}
	for _, p := range s.readWrite {
		a = append(a, "--rw", p)
	}
	for _, p := range s.devices {
		a = append(a, "--dev", p)
	}
	for _, p := range s.cgroups {
		a = append(a, "--cgroup", p)
	}
	for _, g := range s.groups {
		a = append(a, "--group", strconv.Itoa(g))
	}
	if s.netns != "" {
		a = append(a, "--netns", s.netns)
	}
	if s.tap != "" {
		a = append(a, "--tap", s.tap)
	}
	return a
}

// intList is a repeatable integer flag.
type intList []int

func (l *intList) String() string { return fmt.Sprint(*l) }
func (l *intList) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("bad group %q", v)
	}
	*l = append(*l, n)
	return nil
}

// jailNamespaces are the namespaces a jailed QEMU gets. A new network
// namespace leaves it no interface but a down loopback; its Unix sockets,
// which are files in the bound run directory, still work.
const jailNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

// hostLibs are the parts of the host a dynamically linked QEMU needs.
var hostLibs = []string{"/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// JailMain is the helper: it runs as root in the new namespaces, builds the
// jail's root, joins the cgroups, drops to the user and execs QEMU. It
// returns only on failure.
func JailMain(args []string) error {
	fs := flag.NewFlagSet(JailCommand, flag.ContinueOnError)
	var s jailSpec
	var ro, rw, devs, cgs stringList
	var groups intList
	fs.StringVar(&s.root, "root", "", "empty directory for the new root")
	fs.IntVar(&s.uid, "uid", -1, "user to run QEMU as")
	fs.IntVar(&s.gid, "gid", -1, "group to run QEMU as")
	fs.Var(&ro, "ro", "path bound read-only")
	fs.Var(&rw, "rw", "path bound read-write")
	fs.Var(&devs, "dev", "device node bound in /dev")
	fs.Var(&cgs, "cgroup", "cgroup.procs file to join")
	fs.Var(&groups, "group", "supplementary group to keep")
	fs.StringVar(&s.netns, "netns", "", "network namespace to join")
	fs.StringVar(&s.tap, "tap", "", "tap device (in the namespace) QEMU gets as fd TapFD")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// no_new_privs and the parent-death signal are per thread: set them on
	// the thread that execs.
	runtime.LockOSThread()
	argv := fs.Args()
	if len(argv) == 0 || s.root == "" || s.uid <= 0 || s.gid <= 0 {
		return errors.New("qemu jail: usage: --root DIR --uid N --gid N [--ro P] [--rw P] [--dev P] [--cgroup F] -- qemu args")
	}
	s.readOnly, s.readWrite, s.devices, s.cgroups, s.groups = ro, rw, devs, cgs, groups
	// The network namespace first: its path is a host file too. The
	// thread that joins it is the one that execs QEMU.
	if s.netns != "" {
		if err := joinNetNS(s.netns); err != nil {
			return fmt.Errorf("qemu jail: %w", err)
		}
	}
	if s.tap != "" {
		if err := openTap(s.tap); err != nil {
			return fmt.Errorf("qemu jail: %w", err)
		}
	}
	// The cgroups first: they are host files, gone once the root is.
	for _, f := range s.cgroups {
		if err := os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fmt.Errorf("qemu jail: join %s: %w", f, err)
		}
	}
	if err := buildRoot(s); err != nil {
		return fmt.Errorf("qemu jail: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("qemu jail: %w", err)
	}
	if err := dropPrivileges(s.uid, s.gid, s.groups); err != nil {
		return fmt.Errorf("qemu jail: %w", err)
	}
	return syscall.Exec(path, argv, []string{"PATH=/usr/bin:/bin"})
}

// joinNetNS moves the calling thread into the network namespace at path.
func joinNetNS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("join network namespace %s: %w", path, err)
	}
	return nil
}

// TapFD is the descriptor a jailed QEMU finds its tap device on: the
// helper opens it as root, so the jail holds no tun device and QEMU's user
// needs no right on it.
const TapFD = 100

// openTap attaches to the tap device name (in this thread's network
// namespace) and leaves it open, across exec, as TapFD.
func openTap(name string) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	if err := unix.Dup3(fd, TapFD, 0); err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	return nil
}

// buildRoot makes the jail's root: a tmpfs with the bound paths, a minimal
// /dev and /proc, then pivots into it and drops the old root.
func buildRoot(s jailSpec) error {
	// Nothing done here may reach the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", s.root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("tmpfs root: %w", err)
	}
	bind := func(src string, flags uintptr, rec bool) error {
		st, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			return nil // the host does not have it
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(s.root, src)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if st.IsDir() {
			err = os.MkdirAll(dst, 0o755)
		} else {
			var f *os.File
			if f, err = os.Create(dst); err == nil {
				f.Close()
			}
		}
		if err != nil {
			return err
		}
		bflags := uintptr(unix.MS_BIND)
		if rec {
			bflags |= unix.MS_REC
		}
		if err := unix.Mount(src, dst, "", bflags, ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		return unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV|flags, "")
	}
	// /bin, /lib and friends are symlinks into /usr on a merged-/usr
	// system: the same links, or the directories read-only.
	for _, top := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		if target, err := os.Readlink(top); err == nil {
			if err := os.Symlink(target, filepath.Join(s.root, top)); err != nil {
				return err
			}
			continue
		}
		if err := bind(top, unix.MS_RDONLY, true); err != nil {
			return err
		}
	}
	for _, p := range append(append([]string{}, hostLibs...), s.readOnly...) {
		if err := bind(p, unix.MS_RDONLY, true); err != nil {
			return err
		}
	}
	// Read-write binds are not recursive: the jail's own root is mounted
	// inside the VM's run directory.
	for _, p := range s.readWrite {
		if err := bind(p, 0, false); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(s.root, "dev"), 0o755); err != nil {
		return err
	}
	for _, d := range append([]string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}, s.devices...) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("device %s: %w", d, err)
		}
		if st.Mode()&os.ModeDevice == 0 {
			return fmt.Errorf("%s is not a device", d)
		}
		dst := filepath.Join(s.root, d)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount(d, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", d, err)
		}
	}
	proc := filepath.Join(s.root, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return err
	}
	// This pid namespace's own processes only.
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	old := filepath.Join(s.root, ".old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(s.root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("drop the host's root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return err
	}
	// The root itself read-only from here on.
	return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// dropPrivileges becomes uid:gid with no supplementary groups, no
// capabilities left and no_new_privs, and asks again for SIGKILL when the
// worker dies (a change of credentials clears that).
func dropPrivileges(uid, gid int, groups []int) error {
	// The syscall package's credential calls change every thread.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
}

// Jail sizes: a jailed QEMU's cgroup allows the guest's RAM plus this
// much for QEMU itself (its heap, device buffers and, under TCG, the
// translation cache, which tcgCacheMB bounds), and this many tasks (QEMU's
// threads; its seccomp sandbox forbids it to fork).
const (
	jailOverheadMB = 256
	tcgCacheMB     = 256
	jailPids       = 256
)

// jailRoot is the mount point of a jailed QEMU's root inside its run
// directory: an empty directory that only the jail's mount namespace fills.
const jailRoot = "root"

// resolveImage resolves the symlinks in spec's image paths: a jailed QEMU
// sees only the directories they are really in.
func resolveImage(spec sandbox.Spec) (sandbox.Spec, error) {
	for _, p := range []*string{&spec.Kernel, &spec.Initrd, &spec.Rootfs} {
		if *p == "" {
			continue
		}
		real, err := filepath.EvalSymlinks(*p)
		if err != nil {
			return spec, fmt.Errorf("qemu jail: %w", err)
		}
		*p = real
	}
	return spec, nil
}

// jailed wraps argv (QEMU's absolute path and arguments) in the jail for
// vm: the run directory handed to the VM's user, a cgroup with limits
// pushed on the VM's cleanup stack, and the paths QEMU may see.
func (d *Driver) jailed(vm *VM, spec sandbox.Spec, opts launchOpts, argv []string) (*exec.Cmd, error) {
	j := d.cfg.Jail
	s := jailSpec{root: filepath.Join(vm.dir, jailRoot), uid: j.UID, gid: j.GID, groups: j.Groups,
		readWrite: []string{vm.dir}}
	if err := os.Mkdir(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("qemu jail: %w", err)
	}
	if err := os.Chown(vm.dir, j.UID, j.GID); err != nil {
		return nil, fmt.Errorf("qemu jail: %w", err)
	}
	if err := vm.grant(filepath.Join(vm.dir, ConsoleSocket)); err != nil {
		return nil, err
	}
	// The image and firmware, read-only (launch resolved their symlinks).
	for _, f := range []string{spec.Kernel, spec.Initrd, spec.Rootfs, d.cfg.Firmware} {
		if f != "" {
			s.readOnly = appendNew(s.readOnly, filepath.Dir(f))
		}
	}
	if opts.memPath != "" {
		if opts.shared {
			// Building a template: QEMU fills the RAM file, which is
			// its user's until Snapshot hands it back to root.
			f, err := os.OpenFile(opts.memPath, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return nil, fmt.Errorf("qemu jail: template memory: %w", err)
			}
			f.Close()
			if err := os.Chown(opts.memPath, j.UID, j.GID); err != nil {
				return nil, fmt.Errorf("qemu jail: %w", err)
			}
			s.readWrite = append(s.readWrite, opts.memPath)
		} else {
			s.readOnly = append(s.readOnly, opts.memPath)
		}
	}
	if d.cfg.Accel == AccelKVM {
		s.devices = append(s.devices, "/dev/kvm")
	}
	if j.Cgroups != nil {
		mem := int64(spec.MemoryMB+jailOverheadMB) << 20
		if d.cfg.Accel == AccelTCG {
			mem += tcgCacheMB << 20
		}
		// The CPU limit is the VM's vCPUs: a guest's busy threads take
		// those, not every core of the host.
		g, err := j.Cgroups.Create(spec.ID, hostcgroup.Limits{MemoryBytes: mem, Pids: jailPids, CPUs: max(spec.VCPUs, 1)})
		if err != nil {
			return nil, fmt.Errorf("qemu jail: %w", err)
		}
		// Pushed before QEMU's stop: removed once QEMU is gone.
		vm.stack.Push("remove cgroup", func(context.Context) error { return g.Remove() })
		s.cgroups = g.Procs()
	}
	flags := uintptr(jailNamespaces)
	if spec.NIC != nil {
		// The VM's own namespace, which holds its tap and nothing of the
		// host's; the helper opens the tap for QEMU.
		flags &^= unix.CLONE_NEWNET
		s.netns, s.tap = spec.NIC.NetNS, spec.NIC.Tap
	}
	cmd := exec.Command(j.Binary, append(append(s.args(), "--"), argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	return cmd, nil
}

// templateDone hands a built template's RAM file back to root, read-only:
// no VM's user can open it for writing again.
func (d *Driver) templateDone(memPath string) error {
	if d.cfg.Jail == nil {
		return nil
	}
	if err := os.Chown(memPath, 0, 0); err != nil {
		return fmt.Errorf("qemu jail: %w", err)
	}
	return os.Chmod(memPath, 0o444)
}

// grant gives a socket the driver listens on to the VM's user.
func (v *VM) grant(path string) error {
	if v.jail == nil {
		return nil
	}
	if err := os.Chown(path, v.jail.UID, v.jail.GID); err != nil {
		return fmt.Errorf("qemu jail: %w", err)
	}
	return nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// Jail modes (CODEBENCH_QEMU_JAIL).
const (
	JailAuto = "auto" // jailed where the host allows: root, and the VM user exists
	JailOn   = "on"   // jailed, or the driver fails
	JailOff  = "off"
)

// NewJail resolves mode for the VM user name and the codebench binary.
// It returns nil and why when mode is auto and this host cannot jail
// (not root, no such user), an error when mode is on and it cannot. A host
// without usable cgroups gets a jail without one under auto, and the
// reason.
func NewJail(mode, userName, binary string) (*Jail, string, error) {
	fail := func(err error) (*Jail, string, error) {
		if mode == JailOn {
			return nil, "", fmt.Errorf("qemu jail: %w", err)
		}
		return nil, err.Error(), nil
	}
	switch mode {
	case JailOff:
		return nil, "QEMU jail off (CODEBENCH_QEMU_JAIL=off)", nil
	case JailAuto, JailOn:
	default:
		return nil, "", fmt.Errorf("qemu jail: mode must be %s, %s or %s, not %q", JailAuto, JailOn, JailOff, mode)
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("not root: QEMU runs as this user, unjailed"))
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return fail(fmt.Errorf("no VM user %q (scripts/install-deps.sh creates it): %w", userName, err))
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid <= 0 || gid <= 0 {
		return fail(fmt.Errorf("VM user %q must not be root", userName))
	}
	j := &Jail{Binary: binary, UID: uid, GID: gid}
	var st unix.Stat_t
	if unix.Stat("/dev/kvm", &st) == nil && st.Gid != 0 {
		j.Groups = []int{int(st.Gid)}
	}
	why := fmt.Sprintf("QEMU jailed as %s (%d:%d)", userName, uid, gid)
	cg, err := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	if err != nil {
		if mode == JailOn {
			return nil, "", fmt.Errorf("qemu jail: %w", err)
		}
		return j, why + ", without a cgroup: " + err.Error(), nil
	}
	j.Cgroups = cg
	return j, why + ", " + cg.Describe(), nil
}

//go:build linux && amd64

package runner

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Jobs run under a seccomp filter (and no_new_privs) that refuses what a
// judge never needs and what kernel exploits start from; docs/SECURITY.md
// says why each is there. Everything else is allowed: the filter is a
// wall behind the unprivileged user, the limits and the guest kernel, not a
// sandbox of its own.
var deniedSyscalls = []struct {
	nr  uintptr
	why string
}{
	{unix.SYS_INIT_MODULE, "kernel modules"}, {unix.SYS_FINIT_MODULE, "kernel modules"}, {unix.SYS_DELETE_MODULE, "kernel modules"},
	{unix.SYS_KEXEC_LOAD, "kexec"}, {unix.SYS_KEXEC_FILE_LOAD, "kexec"},
	{unix.SYS_BPF, "eBPF: verifier bugs are a common kernel exploit path"},
	{unix.SYS_PERF_EVENT_OPEN, "perf: kernel attack surface and side channels"},
	{unix.SYS_KEYCTL, "kernel keyrings"}, {unix.SYS_ADD_KEY, "kernel keyrings"}, {unix.SYS_REQUEST_KEY, "kernel keyrings"},
	{unix.SYS_USERFAULTFD, "userfaultfd: makes kernel races winnable"},
	{unix.SYS_IO_URING_SETUP, "io_uring: large, often exploited"}, {unix.SYS_IO_URING_ENTER, "io_uring"}, {unix.SYS_IO_URING_REGISTER, "io_uring"},
	{unix.SYS_PTRACE, "ptrace of other processes"}, {unix.SYS_PROCESS_VM_READV, "other processes' memory"}, {unix.SYS_PROCESS_VM_WRITEV, "other processes' memory"},
	{unix.SYS_MOUNT, "mounts"}, {unix.SYS_UMOUNT2, "mounts"}, {unix.SYS_PIVOT_ROOT, "mounts"},
	{unix.SYS_OPEN_TREE, "mounts"}, {unix.SYS_MOVE_MOUNT, "mounts"}, {unix.SYS_FSOPEN, "mounts"}, {unix.SYS_FSCONFIG, "mounts"},
	{unix.SYS_FSMOUNT, "mounts"}, {unix.SYS_FSPICK, "mounts"}, {unix.SYS_MOUNT_SETATTR, "mounts"},
	{unix.SYS_SETNS, "namespaces"},
	{unix.SYS_REBOOT, "reboot"}, {unix.SYS_SWAPON, "swap"}, {unix.SYS_SWAPOFF, "swap"}, {unix.SYS_ACCT, "accounting"},
	{unix.SYS_IOPL, "I/O ports"}, {unix.SYS_IOPERM, "I/O ports"}, {unix.SYS_SYSLOG, "the kernel log"},
	{unix.SYS_QUOTACTL, "quotas"}, {unix.SYS_LOOKUP_DCOOKIE, "profiling"}, {unix.SYS_OPEN_BY_HANDLE_AT, "file handles"},
	{unix.SYS_NAME_TO_HANDLE_AT, "file handles"},
	{unix.SYS_MODIFY_LDT, "the LDT: 16-bit segments, old exploit surface"},
	{unix.SYS_MSGGET, "SysV message queues: a frequent kernel exploit primitive"}, {unix.SYS_MSGSND, "SysV message queues"},
	{unix.SYS_MSGRCV, "SysV message queues"}, {unix.SYS_MSGCTL, "SysV message queues"},
}

// allowedFamilies are the socket families a job may open (socket and
// socketpair): local and IP sockets. vsock, netlink, AF_ALG, packet and
// the rest are refused (EAFNOSUPPORT), as if the kernel had none.
var allowedFamilies = []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

// allowedPersonalities are the personality() arguments a job may pass:
// Linux's own, and the query. ADDR_NO_RANDOMIZE and the rest are refused.
var allowedPersonalities = []uint32{0, 0xffffffff}

// nsFlags are the clone/unshare flags that make namespaces: a user namespace
// is the most common way into kernel code an unprivileged user cannot
// otherwise reach.
const nsFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWPID |
	unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP

// Classic BPF, as seccomp reads it.
const (
	bpfLdW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfRet   = unix.BPF_RET | unix.BPF_K
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
	// struct seccomp_data: nr, arch, instruction pointer, args[6]
	offNr   = 0
	offArch = 4
	offArg0 = 16 // the low 32 bits, on a little-endian machine
)

func retErrno(errno unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(errno) }

// jobFilter assembles the filter. allowClone3 lets clone3 through: the
// runner itself forks with it where it places the job with
// CLONE_INTO_CGROUP (cgroup v2), and the thread that forks carries the
// filter. Its namespace flags are then out of the filter's sight; the
// guest's namespace sysctls (boot.DisableNamespaces: every max_*_namespaces
// is 0) refuse them to everyone.
func jobFilter(allowClone3 bool) []unix.SockFilter {
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, K: k, Jt: jt, Jf: jf}
	}
	f := []unix.SockFilter{
		stmt(bpfLdW, offArch),
		jump(bpfJeq, unix.AUDIT_ARCH_X86_64, 1, 0),
		stmt(bpfRet, retKill), // another ABI's syscall numbers: never
		stmt(bpfLdW, offNr),
		jump(bpfJset, 0x40000000, 0, 1), // the x32 ABI
		stmt(bpfRet, retErrno(unix.ENOSYS)),
	}
	for _, d := range deniedSyscalls {
		f = append(f, jump(bpfJeq, uint32(d.nr), 0, 1), stmt(bpfRet, retErrno(unix.EPERM)))
	}
	// clone3 passes its flags in memory, out of the filter's sight: ENOSYS
	// makes the C library fall back to clone, whose flags it can see.
	if !allowClone3 {
		f = append(f, jump(bpfJeq, unix.SYS_CLONE3, 0, 1), stmt(bpfRet, retErrno(unix.ENOSYS)))
	}
	// Calls whose first argument decides: each jumps to a block that
	// loads it and checks it.
	nsBlock := []unix.SockFilter{
		stmt(bpfLdW, offArg0),
		jump(bpfJset, nsFlags, 0, 1),
		stmt(bpfRet, retErrno(unix.EPERM)),
		stmt(bpfRet, retAllow),
	}
	oneOf := func(values []uint32, refuse unix.Errno) []unix.SockFilter {
		b := []unix.SockFilter{stmt(bpfLdW, offArg0)}
		for i, v := range values {
			// Past the remaining checks and the refusal, to the allow.
			b = append(b, jump(bpfJeq, v, uint8(len(values)-i), 0))
		}
		return append(b, stmt(bpfRet, retErrno(refuse)), stmt(bpfRet, retAllow))
	}
	famBlock := oneOf(allowedFamilies, unix.EAFNOSUPPORT)
	persBlock := oneOf(allowedPersonalities, unix.EPERM)
	dispatch := []struct {
		nr    uintptr
		block int // 0 ns, 1 families, 2 personality
	}{{unix.SYS_CLONE, 0}, {unix.SYS_UNSHARE, 0}, {unix.SYS_SOCKET, 1}, {unix.SYS_SOCKETPAIR, 1}, {unix.SYS_PERSONALITY, 2}}
	// Where each block starts, counted from the first dispatch jump.
	start := []int{len(dispatch) + 1}
	start = append(start, start[0]+len(nsBlock))
	start = append(start, start[1]+len(famBlock))
	for i, d := range dispatch {
		f = append(f, jump(bpfJeq, uint32(d.nr), uint8(start[d.block]-i-1), 0))
	}
	f = append(f, stmt(bpfRet, retAllow))
	f = append(f, nsBlock...)
	f = append(f, famBlock...)
	return append(f, persBlock...)
}

// restrictThread sets no_new_privs and installs the job filter on the
// calling thread, which must be locked to its goroutine and never serve
// anything else: a child forked from it inherits both.
func restrictThread(allowClone3 bool) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	f := jobFilter(allowClone3)
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp filter: %w", err)
	}
	return nil
}

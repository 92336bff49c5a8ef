//go:build linux && amd64

package runner

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Jobs run under a seccomp filter (and no_new_privs) that is an allowlist:
// the system calls compilers, interpreters, runtimes and programs of the
// image's languages make, and nothing else. A call on no list fails with
// ENOSYS, as if this kernel had none, so that programs fall back where they
// can; the calls below fail with EPERM instead, each for the reason given
// (docs/SECURITY.md). The filter is a wall behind the unprivileged user, the
// limits and the guest kernel, not a sandbox of its own.
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

// allowedSyscalls are the calls a job may make whatever their arguments:
// files, memory, processes and threads, signals, time, pipes and sockets,
// polling, SysV shared memory and semaphores, scheduling. Docker's default
// profile is the model, less what needs a capability or reaches another
// process. clone, unshare, socket, socketpair and personality are allowed
// for some arguments only (below); clone3 fails with ENOSYS, since its flags
// are in memory where the filter cannot see them, and the C library then
// falls back to clone.
var allowedSyscalls = []uintptr{
	// files and directories
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_OPEN, unix.SYS_OPENAT, unix.SYS_OPENAT2, unix.SYS_CLOSE, unix.SYS_CLOSE_RANGE,
	unix.SYS_CREAT, unix.SYS_STAT, unix.SYS_FSTAT, unix.SYS_LSTAT, unix.SYS_NEWFSTATAT, unix.SYS_STATX, unix.SYS_STATFS,
	unix.SYS_FSTATFS, unix.SYS_LSEEK, unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_READV, unix.SYS_WRITEV,
	unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_ACCESS, unix.SYS_FACCESSAT,
	unix.SYS_FACCESSAT2, unix.SYS_DUP, unix.SYS_DUP2, unix.SYS_DUP3, unix.SYS_FCNTL, unix.SYS_FLOCK, unix.SYS_FSYNC,
	unix.SYS_FDATASYNC, unix.SYS_SYNC, unix.SYS_SYNCFS, unix.SYS_SYNC_FILE_RANGE, unix.SYS_TRUNCATE, unix.SYS_FTRUNCATE,
	unix.SYS_FALLOCATE, unix.SYS_FADVISE64, unix.SYS_READAHEAD, unix.SYS_GETDENTS, unix.SYS_GETDENTS64,
	unix.SYS_GETCWD, unix.SYS_CHDIR, unix.SYS_FCHDIR, unix.SYS_RENAME, unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2,
	unix.SYS_MKDIR, unix.SYS_MKDIRAT, unix.SYS_RMDIR, unix.SYS_LINK, unix.SYS_LINKAT, unix.SYS_UNLINK, unix.SYS_UNLINKAT,
	unix.SYS_SYMLINK, unix.SYS_SYMLINKAT, unix.SYS_READLINK, unix.SYS_READLINKAT, unix.SYS_MKNOD, unix.SYS_MKNODAT,
	unix.SYS_CHMOD, unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_CHOWN, unix.SYS_FCHOWN, unix.SYS_LCHOWN,
	unix.SYS_FCHOWNAT, unix.SYS_UMASK, unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_UTIMENSAT, unix.SYS_FUTIMESAT,
	unix.SYS_GETXATTR, unix.SYS_LGETXATTR, unix.SYS_FGETXATTR, unix.SYS_SETXATTR, unix.SYS_LSETXATTR,
	unix.SYS_FSETXATTR, unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR, unix.SYS_FLISTXATTR, unix.SYS_REMOVEXATTR,
	unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR, unix.SYS_SENDFILE, unix.SYS_COPY_FILE_RANGE, unix.SYS_SPLICE,
	unix.SYS_TEE, unix.SYS_VMSPLICE, unix.SYS_IOCTL, unix.SYS_PIPE, unix.SYS_PIPE2, unix.SYS_MEMFD_CREATE,
	unix.SYS_INOTIFY_INIT, unix.SYS_INOTIFY_INIT1, unix.SYS_INOTIFY_ADD_WATCH, unix.SYS_INOTIFY_RM_WATCH,
	unix.SYS_IO_SETUP, unix.SYS_IO_DESTROY, unix.SYS_IO_SUBMIT, unix.SYS_IO_CANCEL, unix.SYS_IO_GETEVENTS,
	unix.SYS_IO_PGETEVENTS,
	// memory
	unix.SYS_BRK, unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MREMAP, unix.SYS_MADVISE, unix.SYS_MSYNC,
	unix.SYS_MINCORE, unix.SYS_MLOCK, unix.SYS_MLOCK2, unix.SYS_MUNLOCK, unix.SYS_MLOCKALL, unix.SYS_MUNLOCKALL,
	unix.SYS_REMAP_FILE_PAGES, unix.SYS_MEMBARRIER, unix.SYS_PKEY_ALLOC, unix.SYS_PKEY_FREE, unix.SYS_PKEY_MPROTECT,
	unix.SYS_GET_MEMPOLICY, unix.SYS_SET_MEMPOLICY, unix.SYS_MBIND,
	// processes and threads
	unix.SYS_FORK, unix.SYS_VFORK, unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_EXIT, unix.SYS_EXIT_GROUP,
	unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_KILL, unix.SYS_TKILL, unix.SYS_TGKILL, unix.SYS_PIDFD_OPEN,
	unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_GETPID, unix.SYS_GETPPID, unix.SYS_GETTID, unix.SYS_GETPGID,
	unix.SYS_GETPGRP, unix.SYS_SETPGID, unix.SYS_GETSID, unix.SYS_SETSID, unix.SYS_GETUID, unix.SYS_GETEUID,
	unix.SYS_GETGID, unix.SYS_GETEGID, unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_GETGROUPS, unix.SYS_SETUID,
	unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID, unix.SYS_SETRESUID, unix.SYS_SETRESGID,
	unix.SYS_SETFSUID, unix.SYS_SETFSGID, unix.SYS_SETGROUPS, unix.SYS_CAPGET, unix.SYS_CAPSET, unix.SYS_PRCTL,
	unix.SYS_ARCH_PRCTL, unix.SYS_SET_TID_ADDRESS, unix.SYS_SET_ROBUST_LIST, unix.SYS_GET_ROBUST_LIST,
	unix.SYS_RSEQ, unix.SYS_FUTEX, unix.SYS_FUTEX_WAITV, unix.SYS_SET_THREAD_AREA, unix.SYS_GET_THREAD_AREA,
	unix.SYS_GETRLIMIT, unix.SYS_SETRLIMIT, unix.SYS_PRLIMIT64, unix.SYS_GETRUSAGE, unix.SYS_TIMES,
	unix.SYS_GETPRIORITY, unix.SYS_SETPRIORITY, unix.SYS_IOPRIO_GET, unix.SYS_IOPRIO_SET, unix.SYS_SECCOMP,
	unix.SYS_LANDLOCK_CREATE_RULESET, unix.SYS_LANDLOCK_ADD_RULE, unix.SYS_LANDLOCK_RESTRICT_SELF,
	// scheduling
	unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY, unix.SYS_SCHED_SETAFFINITY, unix.SYS_SCHED_GETPARAM,
	unix.SYS_SCHED_SETPARAM, unix.SYS_SCHED_GETSCHEDULER, unix.SYS_SCHED_SETSCHEDULER, unix.SYS_SCHED_GETATTR,
	unix.SYS_SCHED_SETATTR, unix.SYS_SCHED_GET_PRIORITY_MAX, unix.SYS_SCHED_GET_PRIORITY_MIN,
	unix.SYS_SCHED_RR_GET_INTERVAL, unix.SYS_GETCPU,
	// signals
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_RT_SIGPENDING,
	unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_SIGTIMEDWAIT, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_TGSIGQUEUEINFO,
	unix.SYS_SIGALTSTACK, unix.SYS_SIGNALFD, unix.SYS_SIGNALFD4, unix.SYS_PAUSE, unix.SYS_ALARM,
	unix.SYS_RESTART_SYSCALL,
	// time
	unix.SYS_CLOCK_GETTIME, unix.SYS_CLOCK_GETRES, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_NANOSLEEP, unix.SYS_GETTIMEOFDAY,
	unix.SYS_TIME, unix.SYS_GETITIMER, unix.SYS_SETITIMER, unix.SYS_TIMER_CREATE, unix.SYS_TIMER_DELETE,
	unix.SYS_TIMER_GETTIME, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_GETOVERRUN, unix.SYS_TIMERFD_CREATE,
	unix.SYS_TIMERFD_GETTIME, unix.SYS_TIMERFD_SETTIME,
	// polling and events
	unix.SYS_POLL, unix.SYS_PPOLL, unix.SYS_SELECT, unix.SYS_PSELECT6, unix.SYS_EPOLL_CREATE, unix.SYS_EPOLL_CREATE1,
	unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_PWAIT2, unix.SYS_EVENTFD,
	unix.SYS_EVENTFD2,
	// sockets (socket and socketpair are checked for their family)
	unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_CONNECT, unix.SYS_SHUTDOWN,
	unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME, unix.SYS_GETSOCKOPT, unix.SYS_SETSOCKOPT, unix.SYS_SENDTO,
	unix.SYS_RECVFROM, unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG, unix.SYS_RECVMMSG,
	// SysV shared memory and semaphores (message queues are denied)
	unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMDT, unix.SYS_SHMCTL, unix.SYS_SEMGET, unix.SYS_SEMOP,
	unix.SYS_SEMTIMEDOP, unix.SYS_SEMCTL,
	// the system
	unix.SYS_UNAME, unix.SYS_SYSINFO, unix.SYS_GETRANDOM,
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

// The verdicts a call number can have, before its arguments are looked at.
type verdict int

const (
	vNone      verdict = iota // on no list: ENOSYS
	vAllow                    // allowed, whatever the arguments
	vDeny                     // EPERM
	vNoSys                    // ENOSYS on purpose (clone3)
	vNamespace                // its flags (argument 0) must make no namespace
	vFamily                   // its family (argument 0) must be allowed
	vPersona                  // its personality (argument 0) must be allowed
)

// verdicts maps every call number on a list to its verdict.
func verdicts() map[uint32]verdict {
	m := map[uint32]verdict{}
	for _, nr := range allowedSyscalls {
		m[uint32(nr)] = vAllow
	}
	for _, d := range deniedSyscalls {
		m[uint32(d.nr)] = vDeny
	}
	// clone3 passes its flags in memory, out of the filter's sight: ENOSYS
	// makes the C library fall back to clone, whose flags it can see. The
	// runner itself forks with clone (the trampoline, not CLONE_INTO_CGROUP,
	// places a job in its cgroup), so nothing needs clone3.
	m[unix.SYS_CLONE3] = vNoSys
	m[unix.SYS_CLONE], m[unix.SYS_UNSHARE] = vNamespace, vNamespace
	m[unix.SYS_SOCKET], m[unix.SYS_SOCKETPAIR] = vFamily, vFamily
	m[unix.SYS_PERSONALITY] = vPersona
	return m
}

// jobFilter assembles the filter: the architecture, then a binary search
// on the call number over the runs of consecutive numbers that share a
// verdict, each run's verdict a return, or a jump to the block that checks
// the call's first argument; ENOSYS for the numbers on no list.
//
// The filter is short and a decision takes ~20 instructions on purpose:
// gVisor compiles a filter when it is installed and evaluates it for every
// call number on every clone (to cache the verdicts that depend on the
// number alone), so its length and its paths are paid for by every process
// a job starts: the earlier lookup in buckets (727 instructions) cost ~7 ms
// per install and ~2 ms per fork, a linear list of ~300 comparisons before
// it ~100 ms of CPU per hello.c compile (docs/BENCHMARKS.md).
func jobFilter() []unix.SockFilter {
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, K: k, Jt: jt, Jf: jf}
	}
	prog := []unix.SockFilter{
		stmt(bpfLdW, offArch),
		jump(bpfJeq, unix.AUDIT_ARCH_X86_64, 1, 0),
		stmt(bpfRet, retKill), // another ABI's syscall numbers: never
		stmt(bpfLdW, offNr),
		jump(bpfJset, 0x40000000, 0, 1), // the x32 ABI
		stmt(bpfRet, retErrno(unix.ENOSYS)),
	}
	// The argument blocks, each entered with the call number loaded.
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
	blocks := map[verdict][]unix.SockFilter{
		vNamespace: nsBlock,
		vFamily:    oneOf(allowedFamilies, unix.EAFNOSUPPORT),
		vPersona:   oneOf(allowedPersonalities, unix.EPERM),
	}
	rets := map[verdict]uint32{vNone: retErrno(unix.ENOSYS), vAllow: retAllow, vDeny: retErrno(unix.EPERM), vNoSys: retErrno(unix.ENOSYS)}

	// The runs: from each start, every number up to the next start has
	// the run's verdict (ENOSYS and "on no list" are one verdict).
	type run struct {
		start uint32
		v     verdict
	}
	m := verdicts()
	same := func(v verdict) verdict {
		if v == vNoSys {
			return vNone
		}
		return v
	}
	top := uint32(0)
	for nr := range m {
		top = max(top, nr)
	}
	runs := []run{{0, same(m[0])}}
	for nr := uint32(1); nr <= top+1; nr++ {
		if v := same(m[nr]); v != runs[len(runs)-1].v || blocks[v] != nil {
			runs = append(runs, run{nr, v}) // an argument's number is a run of its own
		}
	}

	// Jumps to the blocks are patched once the blocks' places are known.
	type fix struct {
		at int
		v  verdict
	}
	var fixes []fix
	// search emits the decision among runs[lo:hi], the number in A and at
	// least runs[lo].start: the left half inline after the comparison,
	// then the right half, the comparison's true branch.
	var search func(lo, hi int)
	search = func(lo, hi int) {
		if hi-lo == 1 {
			if r, ok := rets[runs[lo].v]; ok {
				prog = append(prog, stmt(bpfRet, r))
			} else {
				fixes = append(fixes, fix{at: len(prog), v: runs[lo].v})
				prog = append(prog, stmt(unix.BPF_JMP|unix.BPF_JA, 0))
			}
			return
		}
		mid := (lo + hi) / 2
		at := len(prog)
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, runs[mid].start, 0, 0))
		search(lo, mid)
		off := len(prog) - at - 1
		if off > 0xff {
			panic("seccomp filter: a conditional jump too far") // TestJobFilter guards it
		}
		prog[at].Jt = uint8(off)
		search(mid, hi)
	}
	search(0, len(runs))
	blockAt := map[verdict]int{}
	for _, v := range []verdict{vNamespace, vFamily, vPersona} {
		blockAt[v] = len(prog)
		prog = append(prog, blocks[v]...)
	}
	for _, f := range fixes {
		prog[f.at].K = uint32(blockAt[f.v] - f.at - 1) // BPF_JA counts from the next instruction
	}
	return prog
}

// restrictThread sets no_new_privs and installs the job filter on the
// calling thread, which must be locked to its goroutine and never serve
// anything else: a child forked from it inherits both.
func restrictThread() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	f := jobFilter()
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp filter: %w", err)
	}
	return nil
}

//go:build linux && amd64

package runner

import (
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// runBPF interprets the classic BPF subset jobFilter emits on a
// seccomp_data, the way the kernel (and gVisor) does.
func runBPF(t *testing.T, prog []unix.SockFilter, nr, arch uint32, arg0 uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	binary.LittleEndian.PutUint64(data[offArg0:], arg0)
	var a, x uint32
	for pc, steps := 0, 0; ; steps++ {
		if pc >= len(prog) || steps > len(prog) {
			t.Fatalf("nr %d: ran off the program at %d", nr, pc)
		}
		in := prog[pc]
		pc++
		switch in.Code {
		case bpfLdW:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case bpfRet:
			return in.K
		case unix.BPF_LD | unix.BPF_IMM:
			a = in.K
		case unix.BPF_MISC | unix.BPF_TAX:
			x = a
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			a &= in.K
		case unix.BPF_ALU | unix.BPF_LSH | unix.BPF_X:
			a <<= x & 31
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case bpfJeq, bpfJset, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var ok bool
			switch in.Code {
			case bpfJeq:
				ok = a == in.K
			case bpfJset:
				ok = a&in.K != 0
			default:
				ok = a >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("instruction %#x the test does not know", in.Code)
		}
	}
}

// TestJobFilter: the filter's verdict for every call number, on the
// architecture and off it, and for the calls whose first argument decides,
// is the lists' (deniedSyscalls EPERM, clone3 ENOSYS, allowedSyscalls,
// namespaces, families, personalities), and ENOSYS for numbers on no list;
// and a call is decided in a few dozen instructions at most.
func TestJobFilter(t *testing.T) {
	prog := jobFilter()
	if len(prog) > 0xffff {
		t.Fatalf("%d instructions", len(prog))
	}
	enosys, eperm := retErrno(unix.ENOSYS), retErrno(unix.EPERM)
	want := func(nr uint32, arg0 uint64) uint32 {
		switch {
		case nr == unix.SYS_CLONE3:
			return enosys
		case slices.ContainsFunc(deniedSyscalls, func(d struct {
			nr  uintptr
			why string
		}) bool {
			return uint32(d.nr) == nr
		}):
			return eperm
		case nr == unix.SYS_CLONE || nr == unix.SYS_UNSHARE:
			if uint32(arg0)&nsFlags != 0 {
				return eperm
			}
			return retAllow
		case nr == unix.SYS_SOCKET || nr == unix.SYS_SOCKETPAIR:
			if slices.Contains(allowedFamilies, uint32(arg0)) {
				return retAllow
			}
			return retErrno(unix.EAFNOSUPPORT)
		case nr == unix.SYS_PERSONALITY:
			if slices.Contains(allowedPersonalities, uint32(arg0)) {
				return retAllow
			}
			return eperm
		case slices.Contains(allowedSyscalls, uintptr(nr)):
			return retAllow
		}
		return enosys
	}
	args := []uint64{0, 1, unix.AF_INET, unix.AF_VSOCK, unix.AF_NETLINK, unix.CLONE_NEWUSER, unix.CLONE_VM | unix.CLONE_THREAD, 0xffffffff, 0x0040000}
	allowed := 0
	for nr := uint32(0); nr < 600; nr++ {
		for _, arg := range args {
			got := runBPF(t, prog, nr, unix.AUDIT_ARCH_X86_64, arg)
			if w := want(nr, arg); got != w {
				t.Fatalf("nr %d arg0 %#x: %#x, want %#x", nr, arg, got, w)
			}
			if got == retAllow && arg == 0 {
				allowed++
			}
		}
		if got := runBPF(t, prog, nr|0x40000000, unix.AUDIT_ARCH_X86_64, 0); got != enosys {
			t.Fatalf("x32 nr %d: %#x", nr, got)
		}
		if got := runBPF(t, prog, nr, unix.AUDIT_ARCH_I386, 0); got != retKill {
			t.Fatalf("i386 nr %d: %#x", nr, got)
		}
	}
	if allowed < len(allowedSyscalls) {
		t.Fatalf("%d calls allowed, the list has %d", allowed, len(allowedSyscalls))
	}
	// The cost of a decision: the head, the search, one word's code (its
	// few special numbers, the bit, two masks); and the whole filter is
	// short (gVisor pays for its length on every clone).
	if limit := 28; longestPath(prog) > limit {
		t.Fatalf("a call takes %d instructions, more than %d", longestPath(prog), limit)
	}
	if len(prog) > 260 {
		t.Fatalf("the filter has %d instructions, more than 260", len(prog))
	}
	t.Logf("%d instructions, a decision in at most %d", len(prog), longestPath(prog))
}

// longestPath is the most instructions any input runs through the filter
// up to its argument blocks (each a few more).
func longestPath(prog []unix.SockFilter) int {
	// Instructions are only ever jumped forward: the longest path to each
	// instruction, in order.
	depth := make([]int, len(prog)+1)
	for i := range depth {
		depth[i] = -1
	}
	depth[0] = 1
	longest := 0
	for pc, in := range prog {
		if depth[pc] < 0 {
			continue
		}
		longest = max(longest, depth[pc])
		if in.Code == bpfLdW && in.K == offArg0 {
			continue // an argument block: not the lookup
		}
		next := func(to int) {
			if to < len(depth) {
				depth[to] = max(depth[to], depth[pc]+1)
			}
		}
		switch {
		case in.Code == bpfRet:
		case in.Code == unix.BPF_JMP|unix.BPF_JA:
			next(pc + 1 + int(in.K))
		case in.Code&unix.BPF_JMP == unix.BPF_JMP:
			next(pc + 1 + int(in.Jt))
			next(pc + 1 + int(in.Jf))
		default:
			next(pc + 1)
		}
	}
	return longest
}

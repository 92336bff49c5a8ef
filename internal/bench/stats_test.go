package bench

import (
	"syscall"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 10; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	s := Summarize("x", samples)
	if s.Min != time.Millisecond || s.Max != 10*time.Millisecond || s.P50 != 5*time.Millisecond ||
		s.P90 != 9*time.Millisecond || s.P99 != 10*time.Millisecond || s.N != 10 {
		t.Fatalf("%+v", s)
	}
	if z := Summarize("empty", nil); z.N != 0 || z.P50 != 0 {
		t.Fatalf("%+v", z)
	}
}

// TestCPUMark: CPU this process burns between a mark and Since is counted
// for it and for the machine. The burn is measured by the kernel's own
// account of this process (getrusage), not by a wall clock: on a loaded
// 2-core machine 300 ms of wall time may hold far less than 300 ms of CPU.
func TestCPUMark(t *testing.T) {
	const burn = 300 * time.Millisecond
	m := MarkCPU(nil)
	start, deadline := rusageCPU(t), time.Now().Add(60*time.Second)
	for rusageCPU(t)-start < burn {
		if time.Now().After(deadline) {
			t.Fatalf("burned %v of CPU in 60 s", rusageCPU(t)-start)
		}
	}
	u := m.Since(2)
	// /proc counts in 10 ms ticks; allow a few of them.
	const slack = 0.05
	if u.ProcessSec < burn.Seconds()-slack || u.MachineSec < u.ProcessSec-slack || u.PerJobSec != u.MachineSec/2 {
		t.Fatalf("burned %v: %+v", burn, u)
	}
	if u.SandboxesSec != 0 || u.OtherSec < 0 {
		t.Fatalf("%+v", u)
	}
}

func rusageCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

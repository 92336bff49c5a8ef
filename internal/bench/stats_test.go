package bench

import (
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
// for it and for the machine (lower bounds only: other processes may run).
func TestCPUMark(t *testing.T) {
	m := MarkCPU(nil)
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
	}
	u := m.Since(2)
	if u.ProcessSec < 0.15 || u.MachineSec < 0.15 || u.PerJobSec != u.MachineSec/2 {
		t.Fatalf("%+v", u)
	}
	if u.SandboxesSec != 0 || u.OtherSec < 0 {
		t.Fatalf("%+v", u)
	}
}

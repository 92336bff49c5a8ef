package runner

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOutputSharedBudget writes to both streams from many goroutines at once
// (run it with -race): the budget holds exactly, the overflow callback runs
// once, and nothing deadlocks (the two-lock capture this replaced could).
func TestOutputSharedBudget(t *testing.T) {
	tests := []struct {
		name      string
		limit     int64
		writers   int
		writes    int
		chunk     int
		wantTotal int64
		wantOver  bool
	}{
		{"over the budget", 10_000, 32, 500, 7, 10_000, true},
		{"exactly the budget", 32 * 10 * 5, 32, 10, 5, 32 * 10 * 5, false},
		{"under the budget", 1 << 20, 8, 100, 3, 8 * 100 * 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOutput(tt.limit)
			var overflows atomic.Int32
			o.onOverflow = func() { overflows.Add(1) }
			var wg sync.WaitGroup
			for g := range tt.writers {
				w := o.writer(g % 2)
				wg.Go(func() {
					p := []byte(strings.Repeat("x", tt.chunk))
					for range tt.writes {
						if n, err := w.Write(p); n != len(p) || err != nil {
							t.Errorf("write: %d %v", n, err)
							return
						}
					}
				})
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("writers deadlocked")
			}
			total := int64(len(o.text(stdoutStream)) + len(o.text(stderrStream)))
			if total != tt.wantTotal || o.overflowed() != tt.wantOver {
				t.Fatalf("kept %d bytes (want %d), overflowed %v (want %v)", total, tt.wantTotal, o.overflowed(), tt.wantOver)
			}
			if want := map[bool]int32{true: 1, false: 0}[tt.wantOver]; overflows.Load() != want {
				t.Fatalf("overflow callback ran %d times, want %d", overflows.Load(), want)
			}
		})
	}
}

func TestEscapeInvalidUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          "plain",
		"ok\xff\xfe\x00": `ok\xff\xfe` + "\x00",
		"é\xc3":          `é\xc3`,
	} {
		if got := EscapeInvalidUTF8([]byte(in)); got != want {
			t.Errorf("EscapeInvalidUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

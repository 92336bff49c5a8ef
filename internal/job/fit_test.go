package job

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFit(t *testing.T) {
	code := 1
	tests := []struct {
		name  string
		st    Status
		limit int
	}{
		{"huge stdout, small rest", Status{ID: "a", Status: StatusFailed, Stdout: strings.Repeat("x", 3<<20), Stderr: "warning\n", ExitCode: &code}, 1 << 20},
		{"control bytes cost six", Status{ID: "a", Status: StatusFailed, Stdout: strings.Repeat("\x01", 1<<20), Stderr: strings.Repeat("\x02", 1<<20)}, 512 << 10},
		{"everything large", Status{ID: "a", Status: StatusFailed, Stdout: strings.Repeat("é", 1<<20), Stderr: strings.Repeat("\"", 1<<20),
			CompileOutput: strings.Repeat("c", 1<<20), Error: strings.Repeat("e", 1<<20), Message: strings.Repeat("m", 1<<20)}, 64 << 10},
		{"under minFit", Status{ID: "a", Status: StatusFailed, Stdout: strings.Repeat("x", 1<<20)}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origOut, origErr := len(tt.st.Stdout), tt.st.Stderr
			if !tt.st.Fit(tt.limit) {
				t.Fatal("Fit cut nothing")
			}
			b := tt.st.Marshal()
			if len(b) > max(tt.limit, minFit) {
				t.Fatalf("status is %d bytes, limit %d", len(b), tt.limit)
			}
			var back Status
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.Trimmed == nil || back.Trimmed.Stdout != origOut {
				t.Fatalf("trimmed %+v, want stdout %d", back.Trimmed, origOut)
			}
			if !strings.Contains(back.Stdout, "trimmed to fit") || !strings.HasPrefix(tt.st.Stdout, back.Stdout[:10]) {
				t.Fatalf("stdout not marked: %.100q", back.Stdout)
			}
			if origErr == "warning\n" && back.Stderr != origErr {
				t.Fatalf("a short stderr was cut: %q", back.Stderr)
			}
			// Most of the room is used: a fit that throws everything away fits too.
			if len(b) < max(tt.limit, minFit)/2 {
				t.Fatalf("status is %d bytes for a limit of %d: too much was cut", len(b), tt.limit)
			}
		})
	}
	small := Status{ID: "a", Status: StatusDone, Stdout: "Hello, World!"}
	if small.Fit(1<<20) || small.Trimmed != nil {
		t.Fatal("a small status was changed")
	}
}

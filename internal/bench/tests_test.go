package bench

import (
	"context"
	"testing"
	"time"
)

// TestFloorScript: the floor's script, run natively with Debian's gcc and
// python3, compiles the sum program and its checker with the image's C
// command, runs each as many times as asked with their files, checks their
// outputs, and prints one timed line per run that parseFloor reads.
func TestFloorScript(t *testing.T) {
	for _, tool := range []string{"gcc", "python3", "bash"} {
		if nativeCommand(tool) == "" {
			t.Skipf("no %s under %v on this host", tool, nativePath)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := runNativeScript(ctx, floorScript(3), floorArgs())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]time.Duration{}
	if err := parseFloor(out, got); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"run", "checker", "python"} {
		if len(got[kind]) != 3 {
			t.Fatalf("%s: %d runs, want 3: %q", kind, len(got[kind]), out)
		}
		for _, d := range got[kind] {
			if d <= 0 || d > 10*time.Second {
				t.Fatalf("%s: a run of %s", kind, d)
			}
		}
	}
	if err := parseFloor([]byte("run 1.0\n"), got); err == nil {
		t.Fatal("a short line was read")
	}
}

package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestProcessTreeCPU: a process's CPU is read with its descendants', each
// by the kind its command line names, and a reaped child's time goes to
// its parent's kind (the Sentry's to the stubs).
func TestProcessTreeCPU(t *testing.T) {
	// A shell that burns CPU in a child it reaps (awk), then in itself,
	// then waits in a live child (sleep).
	cmd := exec.Command("/bin/sh", "-c", `awk 'BEGIN{for(i=0;i<3000000;i++)s+=i}'; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo ready; exec sleep 30`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	// "ready" comes just before the exec: wait until the process is sleep.
	deadline := time.Now().Add(10 * time.Second)
	for processKind(cmd.Process.Pid) != "sleep" {
		if time.Now().After(deadline) {
			t.Fatalf("the shell never became sleep: %q", processKind(cmd.Process.Pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := processTreeCPU([]int{cmd.Process.Pid})
	// The shell exec'd sleep: its own and its reaped awk's time are now
	// "sleep"'s.
	if got["sleep"] < 20*time.Millisecond {
		t.Fatalf("the tree's CPU: %v", got)
	}
	if _, ok := got["sh"]; ok {
		t.Fatalf("a kind that no longer runs: %v", got)
	}
	self := processTreeCPU([]int{os.Getpid()})
	if self["sleep"] < got["sleep"] {
		t.Fatalf("this process's tree does not hold its child's time: %v vs %v", self, got)
	}
	if processKind(-1) != KindStubs {
		t.Fatalf("a process with no command line is a stub: %q", processKind(-1))
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/codebench/codebench/internal/testenv"
)

// TestBenchShort runs "codebench bench" in a short mode, as CI does: the
// benchmark must keep working, and its headline comparison must hold.
func TestBenchShort(t *testing.T) {
	vm := testenv.NeedVM(t)
	cmd := exec.Command(binary, "bench", "--local", "-n", "4", "-c", "2", "--pool", "2", "--rounds", "1", "--json")
	cmd.Env = append(os.Environ(), "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "b"))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if rep.Load == nil || rep.Load.EndToEnd.N != 4 || rep.Native.N != 4 || len(rep.Targets) != 4 {
		t.Fatalf("incomplete report: %s", out)
	}
	if rep.ColdBoot.Ready.N != 2 || rep.Restore.Ready.N != 2 {
		t.Fatalf("VM samples: %+v %+v", rep.ColdBoot, rep.Restore)
	}
	// Noisy machines aside, a restore is an order of magnitude faster.
	if rep.Restore.Ready.P50*5 > rep.ColdBoot.Ready.P50 {
		t.Fatalf("restore p50 %s is not 5x faster than cold boot p50 %s", rep.Restore.Ready.P50, rep.ColdBoot.Ready.P50)
	}
	if rep.Restore.PSSKB <= 0 || rep.ColdBoot.PSSKB <= 0 {
		t.Fatalf("PSS not measured: %+v %+v", rep.Restore, rep.ColdBoot)
	}
	t.Logf("cold p50 %s, restore p50 %s, PSS cold %d KiB clone %d KiB, e2e p50 %s",
		rep.ColdBoot.Ready.P50, rep.Restore.Ready.P50, rep.ColdBoot.PSSKB, rep.Restore.PSSKB, rep.Load.EndToEnd.P50)
}

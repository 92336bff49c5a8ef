package firecracker

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/proc"
)

// TestReclaim: a leftover VMM (its pid file in the VM dir, "firecracker"
// and the VM id on its command line) is killed and its jailer chroot goes;
// without the id on the command line the process is not ours.
func TestReclaim(t *testing.T) {
	for _, version := range []string{"2", "1"} {
		t.Run("cgroup v"+version, func(t *testing.T) { testReclaim(t, version) })
	}
}

func testReclaim(t *testing.T, cgroupVersion string) {
	chroots, cgroups := t.TempDir(), t.TempDir()
	j := &Jailer{UID: 1, GID: 1, ChrootBaseDir: chroots, CgroupVersion: cgroupVersion, CgroupRoot: cgroups}
	d, err := New(Config{RunDir: t.TempDir(), VmlinuxCache: t.TempDir(), Jailer: j}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	// The jailer's cgroups for the VM (it never removes them itself).
	made := j.cgroups("firecracker", "fc-abc")
	for _, c := range made {
		if err := os.MkdirAll(c, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if len(made) == 0 || (cgroupVersion == "1") != (len(made) == 3) {
		t.Fatalf("v%s cgroups %v", cgroupVersion, made)
	}
	runDir := t.TempDir()
	vmDir := filepath.Join(runDir, "fc-abc")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	chroot := filepath.Join(chroots, "firecracker", "fc-abc", "root")
	if err := os.MkdirAll(chroot, 0o700); err != nil {
		t.Fatal(err)
	}
	vmm := exec.Command("sh", "-c", "sleep 60 # firecracker --id fc-abc --api-sock fc.sock")
	if err := vmm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vmm.Process.Kill(); _, _ = vmm.Process.Wait() })
	if err := os.WriteFile(filepath.Join(vmDir, PIDFile), []byte(strconv.Itoa(vmm.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	killed, err := d.Reclaim(context.Background(), vmDir)
	if err != nil || len(killed) != 1 || killed[0] != vmm.Process.Pid {
		t.Fatalf("killed %v err %v", killed, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for proc.Alive(vmm.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(chroots, "firecracker", "fc-abc")); !os.IsNotExist(err) {
		t.Fatalf("jailer chroot left: %v", err)
	}
	for _, c := range made {
		if _, err := os.Stat(c); !os.IsNotExist(err) {
			t.Fatalf("jailer cgroup %s left: %v", c, err)
		}
	}
	// A QEMU VM's directory is not Firecracker's: nothing happens.
	if killed, err := d.Reclaim(context.Background(), filepath.Join(runDir, "vm-other")); len(killed) != 0 || err != nil {
		t.Fatalf("reclaim of a foreign dir: %v %v", killed, err)
	}
}

package firecracker

import (
	"path/filepath"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// ConfigFrom is the driver's config from its section of the settings; its
// VMs live under runDir, the kernels it extracts are cached under dataDir,
// and the jailer is told the host's cgroup version (cg: nil where none).
func ConfigFrom(vm config.VM, runDir, dataDir string, cg *hostcgroup.Manager) Config {
	fc := Config{Binary: vm.Firecracker, RunDir: runDir, VmlinuxCache: filepath.Join(dataDir, "cache", "vmlinux")}
	if j := vm.Jailer; j.Enabled {
		fc.Jailer = &Jailer{Binary: j.Binary, UID: j.UID, GID: j.GID, ChrootBaseDir: j.Chroot, NetNS: j.NetNS}
		if cg != nil && cg.Version == "v1" {
			fc.Jailer.CgroupVersion = "1"
		}
	}
	return fc
}

package qemu

import (
	"os"

	"github.com/codebench/codebench/internal/config"
)

// ConfigFrom is the driver's config from its section of the settings,
// its jail resolved (this binary is the jail's helper), with a line
// saying how QEMU runs; its VMs live under runDir.
func ConfigFrom(vm config.VM, runDir string) (Config, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return Config{}, "", err
	}
	j, why, err := NewJail(vm.QEMUJail, vm.VMUser, exe)
	if err != nil {
		return Config{}, "", err
	}
	return Config{Binary: vm.QEMU, RunDir: runDir, TSCKHz: vm.TSCKHz, Jail: j}, why, nil
}

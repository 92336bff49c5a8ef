package gvisor

import (
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
)

// ConfigFrom is the driver's config from its section of the settings; its
// sandboxes live under runDir and get host cgroups from cg (nil: none).
func ConfigFrom(vm config.VM, runDir string, cg *hostcgroup.Manager) Config {
	return Config{Binary: vm.Runsc, RunDir: runDir, Platform: vm.GVisorPlatform, Cgroups: cg}
}

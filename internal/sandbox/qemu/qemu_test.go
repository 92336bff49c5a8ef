package qemu_test

import (
	"testing"

	"github.com/codebench/codebench/internal/sandbox/sandboxtest"
	"github.com/codebench/codebench/internal/testenv"
)

func TestConformance(t *testing.T) {
	env := testenv.NeedVM(t)
	h := sandboxtest.Harness{
		Driver: env.Driver,
		Spec:   env.Spec,
		Leftovers: func() (int, []string) {
			return testenv.QEMUProcesses(env.RunDir), testenv.Entries(env.RunDir)
		},
		// A jailed QEMU (as CI runs it) has a host cgroup.
		CPULimitRequired: env.Config.VM.QEMUJail == "on",
	}
	if env.Jail != nil && env.Jail.Cgroups != nil && env.Jail.Cgroups.HasCPU() {
		h.CPUUsage = env.Jail.Cgroups.CPUUsage
	}
	sandboxtest.Run(t, h)
}

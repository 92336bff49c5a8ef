package qemu_test

import (
	"testing"

	"github.com/codebench/codebench/internal/sandbox/sandboxtest"
	"github.com/codebench/codebench/internal/testenv"
)

func TestConformance(t *testing.T) {
	env := testenv.NeedVM(t)
	sandboxtest.Run(t, sandboxtest.Harness{
		Driver: env.Driver,
		Spec:   env.Spec,
		Leftovers: func() (int, []string) {
			return testenv.QEMUProcesses(env.RunDir), testenv.Entries(env.RunDir)
		},
	})
}

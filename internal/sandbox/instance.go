package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codebench/codebench/internal/agentclient"
	"github.com/codebench/codebench/internal/agentproto"
)

// Instance is a VM whose agent has answered the handshake: ready for a job.
type Instance struct {
	VM    VM
	Agent *agentclient.Client
	Hello *agentproto.HelloInfo
	// BootTime is from Start to the agent's hello answer.
	BootTime time.Duration
}

// Launch starts a VM with drv and waits until its agent is ready or ctx ends.
// On failure nothing is left running.
func Launch(ctx context.Context, drv Driver, spec Spec) (*Instance, error) {
	return LaunchWith(ctx, func(ctx context.Context) (VM, error) { return drv.Start(ctx, spec) })
}

// LaunchWith is Launch for any way of starting a VM (a cold boot, a template
// VM, a restored clone).
func LaunchWith(ctx context.Context, start func(context.Context) (VM, error)) (*Instance, error) {
	t0 := time.Now()
	vm, err := start(ctx)
	if err != nil {
		return nil, err
	}
	// Stop waiting as soon as the VMM dies: a crashed boot must not cost the
	// whole timeout.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-vm.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	client, hello, err := agentclient.Connect(cctx, vm.DialAgent, agentclient.Options{})
	exited := isDone(vm.Done())
	cancel()
	if err != nil {
		stopErr := vm.Stop(context.WithoutCancel(ctx))
		switch {
		case exited:
			err = fmt.Errorf("%w during boot; console:\n%s", ErrVMExited, vm.ConsoleTail(2000))
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("%w: %w; console:\n%s", ErrBootTimeout, err, vm.ConsoleTail(2000))
		}
		return nil, errors.Join(err, stopErr)
	}
	return &Instance{VM: vm, Agent: client, Hello: hello, BootTime: time.Since(t0)}, nil
}

// Stop closes the agent connection and destroys the VM.
func (i *Instance) Stop(ctx context.Context) error {
	return errors.Join(i.Agent.Close(), i.VM.Stop(ctx))
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

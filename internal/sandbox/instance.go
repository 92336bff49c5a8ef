package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/codebench/codebench/internal/agentclient"
	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
)

// Instance is a VM whose agent has answered the handshake: ready for a job.
type Instance struct {
	VM    VM
	Agent *agentclient.Client
	// ReadyIn is from the start of the VMM to the agent's hello answer
	// (for a clone: restore to ready, identity included).
	ReadyIn time.Duration
}

// Boot cold-boots a VM with drv and waits until its agent is ready or ctx
// ends. On failure nothing is left running.
func Boot(ctx context.Context, drv Driver, spec Spec) (*Instance, error) {
	return StartInstance(ctx, func(ctx context.Context) (VM, error) { return drv.Start(ctx, spec) })
}

// StartInstance is Boot for any way of starting a VM (a cold boot, a
// template VM, a restored clone).
func StartInstance(ctx context.Context, start func(context.Context) (VM, error)) (*Instance, error) {
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
	client, _, err := agentclient.Connect(cctx, vm.DialAgent, agentclient.Options{})
	exited := IsDone(vm.Done())
	cancel()
	if err != nil {
		stopErr := cleanup.Run(ctx, vm.Stop)
		switch {
		case exited:
			err = fmt.Errorf("%w during boot; console:\n%s", ErrVMExited, vm.ConsoleTail(2000))
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("%w: %w; console:\n%s", ErrBootTimeout, err, vm.ConsoleTail(2000))
		}
		return nil, errors.Join(err, stopErr)
	}
	return &Instance{VM: vm, Agent: client, ReadyIn: time.Since(t0)}, nil
}

// Identify gives the instance its own identity: fresh entropy, the host's
// clock and, for a networked sandbox, its interface (nic; nil: none). A
// clone needs it (it shares its template's); a networked cold boot for
// its interface.
func (i *Instance) Identify(ctx context.Context, nic *NIC) error {
	seed := make([]byte, 64)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	return i.Agent.SetIdentity(ctx, &agentproto.Identity{Seed: seed, UnixNano: time.Now().UnixNano(), Net: nic.Agent()})
}

// ID names the VM.
func (i *Instance) ID() string { return i.VM.ID() }

// Run runs one request on the agent; progress (may be nil) gets streamed
// output.
func (i *Instance) Run(ctx context.Context, req *agentproto.RunRequest, progress func(agentproto.Output)) (*agentproto.RunResult, error) {
	return i.Agent.Run(ctx, req, progress)
}

// ConsoleTail is the end of the VM's console log.
func (i *Instance) ConsoleTail(n int) string { return i.VM.ConsoleTail(n) }

// Stop closes the agent connection and destroys the VM.
func (i *Instance) Stop(ctx context.Context) error {
	return errors.Join(i.Agent.Close(), i.VM.Stop(ctx))
}

// IsDone reports whether ch (a VM's Done) is closed, without waiting.
func IsDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

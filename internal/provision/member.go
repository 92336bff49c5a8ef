package provision

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/proc"
	"github.com/codebench/codebench/internal/sandbox"
)

// Member is a pool member: a sandbox whose agent answered. It runs a job
// and stops like the instance it is.
type Member struct {
	*sandbox.Instance
	// ready is when the agent last answered (its handshake or identity).
	ready time.Time
	// stopped, when set, is called once when the member is stopped.
	stopped func()
	// detach, when set, takes the member's network away once it stopped.
	detach   func(context.Context) error
	stopOnce sync.Once
}

// Stop stops the sandbox (once, like the instance), takes its network
// away and reports it.
func (m *Member) Stop(ctx context.Context) error {
	err := m.Instance.Stop(ctx)
	m.stopOnce.Do(func() {
		if m.detach != nil {
			err = errors.Join(err, cleanup.Run(ctx, m.detach))
		}
		if m.stopped != nil {
			m.stopped()
		}
	})
	return err
}

// freshFor is how long after its agent answered a member is handed out
// without a ping: its VMM is alive and its connection up, checked for free.
const freshFor = 5 * time.Second

// Healthy checks the member before it is handed out: the VMM has not exited
// (nor is it a zombie: its processes are alive),
// the agent connection is up, and the agent answers a ping unless it
// answered within freshFor (a ping is a round trip into the guest).
func (m *Member) Healthy(ctx context.Context) error {
	select {
	case <-m.VM.Done():
		return sandbox.ErrVMExited
	default:
	}
	// A VMM killed a moment ago is still exiting (on a busy host, for as
	// long as unmapping its guest's memory takes, its agent socket still
	// open), or a zombie, before its waiter closes Done and before its
	// agent connection is seen to drop: a fresh member would be handed out
	// dead.
	for _, pid := range sandbox.PIDs(m.VM) {
		if !proc.Alive(pid) || proc.Exiting(pid) {
			return fmt.Errorf("%w: pid %d", sandbox.ErrVMExited, pid)
		}
	}
	if err := m.Agent.Err(); err != nil {
		return err
	}
	if time.Since(m.ready) < freshFor {
		return nil
	}
	return m.Agent.Ping(ctx)
}

package sandbox

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// stuckVM is a VMM that exited during boot and whose Stop hangs until its
// context ends (a VMM that will not die).
type stuckVM struct{ done chan struct{} }

func (v *stuckVM) ID() string                                  { return "stuck" }
func (v *stuckVM) DialAgent(context.Context) (net.Conn, error) { return nil, errors.New("no agent") }
func (v *stuckVM) Stop(ctx context.Context) error              { <-ctx.Done(); return ctx.Err() }
func (v *stuckVM) Done() <-chan struct{}                       { return v.done }
func (v *stuckVM) ConsoleTail(int) string                      { return "" }

// TestFailedBootStopKeepsTheDeadline: a boot that fails stops its VM under
// the boot's own deadline, so a stuck VMM is abandoned then; the stop once
// ran under context.WithoutCancel, which dropped the deadline too.
func TestFailedBootStopKeepsTheDeadline(t *testing.T) {
	vm := &stuckVM{done: make(chan struct{})}
	close(vm.done)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := StartInstance(ctx, func(context.Context) (VM, error) { return vm, nil })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrVMExited) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the VM's exit and the abandoned stop", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a failed boot waited on a stuck VMM past its deadline")
	}
}

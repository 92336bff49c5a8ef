package provision

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentclient"
	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/sandbox"
)

type fakeVM struct{ done chan struct{} }

func (v *fakeVM) ID() string                                  { return "fake" }
func (v *fakeVM) DialAgent(context.Context) (net.Conn, error) { return nil, errors.New("no") }
func (v *fakeVM) Stop(context.Context) error                  { return nil }
func (v *fakeVM) Done() <-chan struct{}                       { return v.done }
func (v *fakeVM) ConsoleTail(int) string                      { return "" }

// fakeMember is a Member whose agent counts the pings it answers.
func fakeMember(t *testing.T, ready time.Time) (*Member, *fakeVM, *atomic.Int32, net.Conn) {
	t.Helper()
	host, guest := net.Pipe()
	var pings atomic.Int32
	go func() {
		for {
			b, err := agentproto.ReadFrame(guest, agentproto.MaxRequestFrame)
			if err != nil {
				return
			}
			var req agentproto.Request
			_ = json.Unmarshal(b, &req)
			r := &agentproto.Response{ID: req.ID, Op: req.Op}
			switch req.Op {
			case agentproto.OpPing:
				pings.Add(1)
			case agentproto.OpHello:
				// Only a hello's answer carries hello (the client refuses
				// members an op does not have).
				r.Hello = &agentproto.HelloInfo{Version: 1}
			}
			_ = agentproto.WriteMessage(guest, r)
		}
	}()
	c, _, err := agentclient.Connect(context.Background(), func(context.Context) (net.Conn, error) { return host, nil }, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); guest.Close() })
	vm := &fakeVM{done: make(chan struct{})}
	return &Member{Instance: &sandbox.Instance{VM: vm, Agent: c}, ready: ready}, vm, &pings, guest
}

func TestMemberHealthy(t *testing.T) {
	ctx := context.Background()
	t.Run("fresh: no round trip", func(t *testing.T) {
		s, _, pings, _ := fakeMember(t, time.Now())
		if err := s.Healthy(ctx); err != nil || pings.Load() != 0 {
			t.Fatalf("err %v, %d pings", err, pings.Load())
		}
	})
	t.Run("stale: pinged", func(t *testing.T) {
		s, _, pings, _ := fakeMember(t, time.Now().Add(-time.Minute))
		if err := s.Healthy(ctx); err != nil || pings.Load() != 1 {
			t.Fatalf("err %v, %d pings", err, pings.Load())
		}
	})
	t.Run("VMM exited", func(t *testing.T) {
		s, vm, _, _ := fakeMember(t, time.Now())
		close(vm.done)
		if err := s.Healthy(ctx); !errors.Is(err, sandbox.ErrVMExited) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("VMM killed, its exit not yet seen", func(t *testing.T) {
		s, vm, pings, _ := fakeMember(t, time.Now())
		dead := exec.Command("true")
		if err := dead.Run(); err != nil {
			t.Fatal(err)
		}
		s.Instance.VM = &processVM{fakeVM: vm, pids: []int{dead.Process.Pid}}
		if err := s.Healthy(ctx); !errors.Is(err, sandbox.ErrVMExited) || pings.Load() != 0 {
			t.Fatalf("err %v, %d pings", err, pings.Load())
		}
		s.Instance.VM = &processVM{fakeVM: vm, pids: []int{os.Getpid()}}
		if err := s.Healthy(ctx); err != nil {
			t.Fatalf("a live VMM: %v", err)
		}
	})
	t.Run("agent connection lost", func(t *testing.T) {
		s, _, _, guest := fakeMember(t, time.Now())
		guest.Close()
		deadline := time.Now().Add(2 * time.Second)
		for s.Agent.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := s.Healthy(ctx); !errors.Is(err, agentclient.ErrClosed) {
			t.Fatalf("err %v", err)
		}
	})
}

// TestMemberStopKeepsTheDeadline: a member's network detach (a CNI DEL)
// that hangs is abandoned at the deadline of the Stop that runs it. The
// detach once ran under context.WithoutCancel, which dropped the deadline
// with the cancel: a hung DEL held the job's teardown forever.
func TestMemberStopKeepsTheDeadline(t *testing.T) {
	m, _, _, _ := fakeMember(t, time.Now())
	stopped := false
	m.stopped = func() { stopped = true }
	m.detach = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Stop(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !stopped {
			t.Fatalf("err %v, stopped reported %v", err, stopped)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return by its deadline: the detach lost it")
	}
}

// processVM is a fakeVM whose host processes are pids.
type processVM struct {
	*fakeVM
	pids []int
}

func (v *processVM) PIDs() []int { return v.pids }

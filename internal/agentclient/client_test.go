package agentclient

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// fakeAgent serves the guest side of one connection: it answers hellos and
// hands every other request to handle, which returns false to stop. It
// returns a client connected to it.
func fakeAgent(t *testing.T, handle func(guest net.Conn, req agentproto.Request) bool) *Client {
	t.Helper()
	host, guest := net.Pipe()
	go func() {
		defer guest.Close()
		for {
			b, err := agentproto.ReadFrame(guest, agentproto.MaxRequestFrame)
			if err != nil {
				return
			}
			var req agentproto.Request
			_ = json.Unmarshal(b, &req)
			if req.Op == agentproto.OpHello {
				_ = agentproto.WriteMessage(guest, &agentproto.Response{ID: req.ID, Op: req.Op, Hello: &agentproto.HelloInfo{Version: 1}})
				continue
			}
			if !handle(guest, req) {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	used := false
	c, _, err := Connect(ctx, func(context.Context) (net.Conn, error) {
		if used {
			return nil, errors.New("one connection only")
		}
		used = true
		return host, nil
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hostileAgent answers the handshake, then does what misbehave says with
// the next request. It is the guest after user code took over the agent.
func hostileAgent(t *testing.T, misbehave func(c net.Conn)) *Client {
	t.Helper()
	return fakeAgent(t, func(guest net.Conn, _ agentproto.Request) bool {
		misbehave(guest)
		return false
	})
}

func TestHostileAgent(t *testing.T) {
	tests := []struct {
		name      string
		misbehave func(c net.Conn)
		want      error
	}{
		{"garbage", func(c net.Conn) { _ = agentproto.WriteFrame(c, []byte("\x00\xffnot json at all")) }, ErrProtocol},
		{"1 GiB frame", func(c net.Conn) {
			hdr := make([]byte, 4)
			binary.BigEndian.PutUint32(hdr, 1<<30)
			_, _ = c.Write(hdr)
			_, _ = c.Write(make([]byte, 1<<16)) // and a little of it
		}, ErrProtocol},
		{"hangs up", func(c net.Conn) {}, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hostileAgent(t, tt.misbehave)
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := c.Run(ctx, &agentproto.RunRequest{Language: "c", Code: "x"}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %s to notice", d)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := int64(after.TotalAlloc) - int64(before.TotalAlloc); grew > 64<<20 {
				t.Fatalf("allocated %d MiB for a hostile frame", grew>>20)
			}
		})
	}
}

func TestSilentAgentTimesOut(t *testing.T) {
	c := hostileAgent(t, func(c net.Conn) { time.Sleep(10 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Run(ctx, &agentproto.RunRequest{Language: "c", Code: "x"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// TestStaleAnswerFromAnAbandonedConnection: the guest's answer to a hello
// sent on an earlier connection arrives on this one (the virtio-serial port
// is one stream across host connections). It must not be taken for the
// answer to a run.
func TestStaleAnswerFromAnAbandonedConnection(t *testing.T) {
	c := fakeAgent(t, func(guest net.Conn, req agentproto.Request) bool {
		if req.Op == agentproto.OpRun {
			// First a stale hello answer carrying this very id (as an
			// old connection's could), then the real answer.
			_ = agentproto.WriteMessage(guest, &agentproto.Response{ID: req.ID, Op: agentproto.OpHello, Hello: &agentproto.HelloInfo{Version: 1}})
			_ = agentproto.WriteMessage(guest, &agentproto.Response{ID: req.ID, Op: req.Op, Run: &agentproto.RunResult{Stdout: "real"}})
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Run(ctx, &agentproto.RunRequest{Language: "c", Code: "x"}, nil)
	if err != nil || res.Stdout != "real" {
		t.Fatalf("run got %+v, %v", res, err)
	}
	if c.nextID < 1<<20 {
		t.Fatalf("request ids start at %d: they must not restart near 1 on every connection", c.nextID)
	}
}

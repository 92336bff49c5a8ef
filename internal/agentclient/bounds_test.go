package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// maxOutputRequest is a job at the worker's largest output limit (4 MiB),
// with tests and streaming: the request whose answer may be largest.
func maxOutputRequest() *agentproto.RunRequest {
	tests := make([]agentproto.TestCase, 64)
	return &agentproto.RunRequest{Language: "c", Code: "x", Stream: true, Tests: tests,
		Limits: agentproto.Limits{OutputBytes: 4 << 20, WallMS: 60_000}}
}

// allocated runs fn and returns what the process allocated meanwhile.
func allocated(fn func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHostileAgentIsCountedBeforeDecoded: with a job's maximum output, a
// hostile agent's largest frame of empty tests, an output frame carrying a
// run body, and a flood of 200,000 output frames each end the call with a
// protocol error (the job's internal_error) having allocated under 256 MiB.
// They once allocated 5.8 GB, 2.36 GB and never ended.
func TestHostileAgentIsCountedBeforeDecoded(t *testing.T) {
	req := maxOutputRequest()
	bound := int(agentproto.ResponseBound(&agentproto.Request{Op: agentproto.OpRun, Run: req}))
	// The largest frame the host reads for req, all empty test objects.
	testsFrame := func(id uint64, op string) []byte {
		head := fmt.Sprintf(`{"id":%d,"op":%q,"run":{"tests":[`, id, op)
		tail := `{}]}}`
		n := (bound - len(head) - len(tail)) / 3
		frame := []byte(head + strings.Repeat(`{},`, n) + tail)
		if len(frame) > bound || len(frame)+3 <= bound {
			panic(fmt.Sprintf("test frame of %d bytes for bound %d", len(frame), bound))
		}
		return frame
	}
	for _, tc := range []struct {
		name string
		send func(guest net.Conn, id uint64)
		why  string
	}{
		{"largest frame of empty tests", func(guest net.Conn, id uint64) {
			_ = agentproto.WriteFrame(guest, testsFrame(id, agentproto.OpRun))
		}, "JSON values"},
		{"output frames carrying run bodies", func(guest net.Conn, id uint64) {
			body := testsFrame(id, agentproto.OpOutput)
			for range 3 {
				if agentproto.WriteFrame(guest, body) != nil {
					return
				}
			}
		}, "JSON values"},
		{"output frame with a small run body", func(guest net.Conn, id uint64) {
			_ = agentproto.WriteFrame(guest, []byte(fmt.Sprintf(`{"id":%d,"op":"output","output":{"seq":1},"run":{"stdout":"x"}}`, id)))
		}, "carries run"},
		{"200,000 empty output frames", func(guest net.Conn, id uint64) {
			frame := []byte(fmt.Sprintf(`{"id":%d,"op":"output","output":{}}`, id))
			for range 200_000 {
				if agentproto.WriteFrame(guest, frame) != nil {
					return
				}
			}
		}, "output frames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeAgent(t, func(guest net.Conn, r agentproto.Request) bool {
				tc.send(guest, r.ID)
				return false
			})
			var err error
			frames := 0
			grew := allocated(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err = c.Run(ctx, req, func(agentproto.Output) { frames++ })
			})
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("err = %v, want a protocol error saying %q", err, tc.why)
			}
			if grew > 256<<20 {
				t.Fatalf("allocated %d MiB", grew>>20)
			}
			if limit := agentproto.StreamFrames(req); frames > limit {
				t.Fatalf("%d output frames reached the caller, at most %d may", frames, limit)
			}
			t.Logf("%v; allocated %d MiB, %d frames passed on", err, grew>>20, frames)
		})
	}
}

// TestUnknownSignalIsAProtocolError: a signal must be a signal's name (a
// 3 MiB one once passed, and no fitting could cut it below the broker's
// limit).
func TestUnknownSignalIsAProtocolError(t *testing.T) {
	sig := strings.Repeat("S", 3<<20)
	c := fakeAgent(t, func(guest net.Conn, r agentproto.Request) bool {
		_ = agentproto.WriteMessage(guest, &agentproto.Response{ID: r.ID, Op: r.Op,
			Run: &agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 137, Signal: sig}}})
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Run(ctx, &agentproto.RunRequest{Language: "c", Code: "x", Limits: agentproto.Limits{OutputBytes: 4 << 20}}, nil)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "no signal's name") || len(err.Error()) > 4096 {
		t.Fatalf("err (%d bytes) = %.300v", len(err.Error()), err)
	}
}

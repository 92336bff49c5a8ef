package agentclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
)

// streamFrame writes one frame of size bytes whose payload is head, then
// fill repeated, then tail, from a small buffer: the fake agent itself must
// not allocate what it sends.
func streamFrame(c net.Conn, head, fill, tail string, size int) {
	hdr := make([]byte, 4)
	binary.BigEndian.PutUint32(hdr, uint32(size))
	if _, err := c.Write(append(hdr, head...)); err != nil {
		return
	}
	chunk := []byte(strings.Repeat(fill, max(1, 64<<10/len(fill))))
	left := size - len(head) - len(tail)
	for left > 0 {
		n := min(left, len(chunk))
		if _, err := c.Write(chunk[:n]); err != nil {
			return
		}
		left -= n
	}
	_, _ = c.Write([]byte(tail))
}

// conn is a sandbox whose agent is a Client: the job path of the worker.
type conn struct{ *Client }

func (c conn) ConsoleTail(int) string { return "" }

// TestHostileAnswersAreBoundedByTheRequest: a guest that took over the agent
// answers a job whose output limit is 100 bytes. Each answer ends the job as
// internal_error within seconds, and the host allocates less than 64 MiB for
// it, whatever the guest claims or sends.
func TestHostileAnswersAreBoundedByTheRequest(t *testing.T) {
	tests := []struct {
		name   string
		answer func(c net.Conn, req agentproto.Request)
	}{
		{"10 M empty runs", func(c net.Conn, req agentproto.Request) {
			head := fmt.Sprintf(`{"id":%d,"op":"run","run":{"compiled":true,"runs":[`, req.ID)
			streamFrame(c, head, `{},`, `{}]}}`, len(head)+3*10_000_000+len(`{}]}}`))
		}},
		{"32 MiB of stdout for a 100-byte limit", func(c net.Conn, req agentproto.Request) {
			head := fmt.Sprintf(`{"id":%d,"op":"run","run":{"compiled":true,"stdout":"`, req.ID)
			streamFrame(c, head, "x", `"}}`, 32<<20-1)
		}},
		{"stdout under the frame bound but over the output limit", func(c net.Conn, req agentproto.Request) {
			_ = agentproto.WriteMessage(c, &agentproto.Response{ID: req.ID, Op: req.Op,
				Run: &agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{}, Stdout: strings.Repeat("x", 300<<10)}})
		}},
		{"more runs than asked", func(c net.Conn, req agentproto.Request) {
			_ = agentproto.WriteMessage(c, &agentproto.Response{ID: req.ID, Op: req.Op,
				Run: &agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{}, Runs: make([]agentproto.Phase, 50)}})
		}},
		{"a flood of unsolicited frames", func(c net.Conn, req agentproto.Request) {
			for i := range 100_000 {
				if agentproto.WriteMessage(c, &agentproto.Response{ID: req.ID + 1 + uint64(i), Op: "run"}) != nil {
					return
				}
			}
		}},
		{"an unsolicited 1 GiB frame", func(c net.Conn, req agentproto.Request) {
			streamFrame(c, `{"id":7,"op":"ping"}`, " ", "", 1<<30)
		}},
		{"an error with id 0", func(c net.Conn, req agentproto.Request) {
			_ = agentproto.WriteMessage(c, &agentproto.Response{Error: &agentproto.Error{Code: agentproto.CodeFrameTooLarge, Message: "no"}})
			time.Sleep(10 * time.Second) // and then silence: the call must not wait for it
		}},
	}
	p := job.Policy{Defaults: job.Limits{WallMS: 1000, OutputBytes: 100}, CompileWall: 1000}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeAgent(t, func(guest net.Conn, req agentproto.Request) bool {
				if req.Op == agentproto.OpRun {
					tt.answer(guest, req)
					return false
				}
				return true
			})
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			st := execute.Job(context.Background(), p, conn{c}, &job.Job{ID: "h", Language: "c", Code: "int main(){}"}, nil)
			took := time.Since(start)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			grew := int64(after.TotalAlloc) - int64(before.TotalAlloc)
			t.Logf("%s: %s %q in %s, %d KiB allocated", tt.name, st.Verdict, st.Error, took.Round(time.Millisecond), grew>>10)
			if st.Verdict != job.VerdictInternalError {
				t.Fatalf("verdict %s, want internal_error", st.Verdict)
			}
			if took > 5*time.Second {
				t.Fatalf("took %s", took)
			}
			if grew > 64<<20 {
				t.Fatalf("the host allocated %d MiB", grew>>20)
			}
		})
	}
}

// TestRequestOverTheFrameIsNotSent: the host refuses to send what the agent
// could only refuse.
func TestRequestOverTheFrameIsNotSent(t *testing.T) {
	sent := make(chan agentproto.Request, 1)
	c := fakeAgent(t, func(_ net.Conn, req agentproto.Request) bool { sent <- req; return true })
	_, err := c.Run(context.Background(), &agentproto.RunRequest{Language: "c", Code: strings.Repeat("x", agentproto.MaxRequestFrame)}, nil)
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("err = %v", err)
	}
	select {
	case req := <-sent:
		t.Fatalf("the agent received %s", req.Op)
	case <-time.After(100 * time.Millisecond):
	}
}

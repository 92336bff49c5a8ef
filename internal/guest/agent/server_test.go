package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentclient"
	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/guest/runner"
)

type fakeRunner struct{}

func (fakeRunner) Run(_ context.Context, req *agentproto.RunRequest, _ runner.Progress) (*agentproto.RunResult, error) {
	return &agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{}, Stdout: "ran " + req.Code}, nil
}

func startServer(t *testing.T) net.Conn {
	t.Helper()
	host, guest := net.Pipe()
	s := &Server{Runner: fakeRunner{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = s.ServeConn(ctx, guest) }()
	t.Cleanup(func() { cancel(); host.Close(); guest.Close(); <-done })
	_ = host.SetDeadline(time.Now().Add(10 * time.Second))
	return host
}

func roundTrip(t *testing.T, c net.Conn, frame []byte) agentproto.Response {
	t.Helper()
	if err := agentproto.WriteFrame(c, frame); err != nil {
		t.Fatal(err)
	}
	return readResp(t, c)
}

func readResp(t *testing.T, c net.Conn) agentproto.Response {
	t.Helper()
	b, err := agentproto.ReadFrame(c, agentproto.MaxResponseFrame)
	if err != nil {
		t.Fatal(err)
	}
	var r agentproto.Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServerRefusesBadInputAndStaysUp(t *testing.T) {
	c := startServer(t)
	steps := []struct {
		name  string
		frame string
		code  string // expected error code, "" = success
	}{
		{"garbage", `{{{not json`, agentproto.CodeBadFrame},
		{"ping before hello", `{"id":1,"op":"ping"}`, agentproto.CodeHandshakeRequired},
		{"version mismatch", `{"id":2,"op":"hello","version":99}`, agentproto.CodeVersionMismatch},
		{"hello", `{"id":3,"op":"hello","version":1}`, ""},
		{"unknown op", `{"id":4,"op":"format_disk"}`, agentproto.CodeUnknownOp},
		{"run without body", `{"id":5,"op":"run"}`, agentproto.CodeBadRequest},
		{"ping", `{"id":6,"op":"ping"}`, ""},
	}
	for _, s := range steps {
		r := roundTrip(t, c, []byte(s.frame))
		got := ""
		if r.Error != nil {
			got = r.Error.Code
		}
		if got != s.code {
			t.Fatalf("%s: error code %q, want %q (%+v)", s.name, got, s.code, r.Error)
		}
	}
	// An oversized frame is refused, skipped, and the stream stays in sync.
	big := agentproto.MaxRequestFrame + 10
	hdr := make([]byte, 4)
	binary.BigEndian.PutUint32(hdr, uint32(big))
	written := make(chan struct{})
	go func() {
		defer close(written)
		// One write, so nothing can come between the header and its body.
		_, _ = c.Write(append(hdr, make([]byte, big)...))
	}()
	if r := readResp(t, c); r.Error == nil || r.Error.Code != agentproto.CodeFrameTooLarge {
		t.Fatalf("oversized frame: %+v", r)
	}
	<-written // the agent has skipped the whole body
	if r := roundTrip(t, c, []byte(`{"id":7,"op":"ping"}`)); r.Error != nil || r.ID != 7 {
		t.Fatalf("ping after oversized frame: %+v", r)
	}
	// Empty frame.
	_, _ = c.Write([]byte{0, 0, 0, 0})
	if r := readResp(t, c); r.Error == nil || r.Error.Code != agentproto.CodeBadFrame {
		t.Fatalf("empty frame: %+v", r)
	}
}

func TestClientAgainstServer(t *testing.T) {
	c := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	used := false
	cl, hello, err := agentclient.Connect(ctx, func(context.Context) (net.Conn, error) {
		if used {
			return nil, io.EOF
		}
		used = true
		return c, nil
	}, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if hello.Version != agentproto.Version {
		t.Fatalf("hello %+v", hello)
	}
	if err := cl.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := cl.Run(ctx, &agentproto.RunRequest{Language: "c", Code: "x"}, nil)
	if err != nil || res.Stdout != "ran x" {
		t.Fatalf("run: %+v %v", res, err)
	}
}

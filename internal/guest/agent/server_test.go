package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
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

// TestEnvdHandover: OpEnvd is checked (a body, bounded envs), answered,
// and then the server reads nothing more of its channel: envd owns it
// until envd ends, which ends the server.
func TestEnvdHandover(t *testing.T) {
	host, guest := net.Pipe()
	envdDone := make(chan struct{})
	var got *agentproto.Envd
	s := &Server{Runner: fakeRunner{}, Log: slog.New(slog.DiscardHandler),
		Envd: func(req *agentproto.Envd) (func() error, error) {
			got = req
			return func() error { <-envdDone; return nil }, nil
		}}
	served := make(chan error, 1)
	go func() { _, err := s.ServeConn(context.Background(), guest); served <- err }()
	defer host.Close()
	_ = host.SetDeadline(time.Now().Add(10 * time.Second))
	hello, _ := agentproto.Marshal(agentproto.Request{ID: 1, Op: agentproto.OpHello, Version: agentproto.Version})
	if r := roundTrip(t, host, hello); r.Error != nil {
		t.Fatal(r.Error)
	}
	many := map[string]string{}
	for i := range agentproto.MaxEnvdVars + 1 {
		many[string(rune('A'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676))] = "x"
	}
	for _, tc := range []struct {
		name string
		req  agentproto.Request
		code string
	}{
		{"no body", agentproto.Request{ID: 2, Op: agentproto.OpEnvd}, agentproto.CodeBadRequest},
		{"too many envs", agentproto.Request{ID: 3, Op: agentproto.OpEnvd, Envd: &agentproto.Envd{Envs: many}}, agentproto.CodeBadRequest},
		{"a bad env name", agentproto.Request{ID: 4, Op: agentproto.OpEnvd, Envd: &agentproto.Envd{Envs: map[string]string{"A=B": "1"}}}, agentproto.CodeBadRequest},
	} {
		b, _ := agentproto.Marshal(tc.req)
		if r := roundTrip(t, host, b); r.Error == nil || r.Error.Code != tc.code {
			t.Fatalf("%s: %+v", tc.name, r.Error)
		}
	}
	b, _ := agentproto.Marshal(agentproto.Request{ID: 5, Op: agentproto.OpEnvd, Envd: &agentproto.Envd{Envs: map[string]string{"A": "1"}, HomeMB: 64}})
	if r := roundTrip(t, host, b); r.Error != nil || r.ID != 5 {
		t.Fatalf("envd: %+v", r)
	}
	if got == nil || got.Envs["A"] != "1" || got.HomeMB != 64 {
		t.Fatalf("envd got %+v", got)
	}
	// The channel is envd's now: a frame written to it is not the
	// server's to read (a write on the pipe blocks: nobody reads).
	_ = host.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	if err := agentproto.WriteFrame(host, hello); err == nil {
		t.Fatal("the server read its channel after the handover")
	}
	close(envdDone)
	select {
	case err := <-served:
		if !errors.Is(err, ErrHandedOver) {
			t.Fatalf("served: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server outlived envd")
	}
}

// TestEnvdRefusedWithout: a server without Envd (a VM's agent) refuses
// the op.
func TestEnvdRefusedWithout(t *testing.T) {
	c := startServer(t)
	hello, _ := agentproto.Marshal(agentproto.Request{ID: 1, Op: agentproto.OpHello, Version: agentproto.Version})
	roundTrip(t, c, hello)
	b, _ := agentproto.Marshal(agentproto.Request{ID: 2, Op: agentproto.OpEnvd, Envd: &agentproto.Envd{}})
	if r := roundTrip(t, c, b); r.Error == nil || r.Error.Code != agentproto.CodeUnknownOp {
		t.Fatalf("%+v", r.Error)
	}
}

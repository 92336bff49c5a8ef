// Package agent is the in-guest server: it speaks agentproto over the agent
// channel, one request at a time, and must never die on bad input: every bad
// frame gets an error answer and the stream stays in sync.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/guest/runner"
)

// Runner is what the server needs to run a program; progress (nil unless
// the request streams) gets output while it runs.
type Runner interface {
	Run(ctx context.Context, req *agentproto.RunRequest, progress runner.Progress) (*agentproto.RunResult, error)
}

// Host is what the server does to the guest itself for reset and identity;
// PID 1 wires the real thing, tests a fake.
type Host interface {
	Reset() error
	SetIdentity(id *agentproto.Identity) error
}

// Server answers requests on one channel.
type Server struct {
	Hello  agentproto.HelloInfo
	Runner Runner
	Host   Host // nil: reset and identity are refused
	// Envd, when set, makes the sandbox a long-lived one (OpEnvd): it
	// starts envd on the channel and returns what waits for it to end.
	// nil: the op is refused.
	Envd func(req *agentproto.Envd) (wait func() error, err error)
	Log  *slog.Logger
}

// ErrHandedOver: the channel was handed to envd, which ended; the agent's
// work is over.
var ErrHandedOver = errors.New("agent: the channel was handed to envd")

// Open opens the agent channel. The virtio-serial port reads EOF whenever the
// host side is not connected, so the server reopens it after every EOF. An
// Open that returns ErrChannelGone ends Serve.
type Open func() (io.ReadWriteCloser, error)

// ErrChannelGone: the channel cannot be opened again (a container's stdio,
// closed by the host): the agent's work is over.
var ErrChannelGone = errors.New("agent: channel gone")

// Serve reopens the channel until ctx is done.
func (s *Server) Serve(ctx context.Context, open Open) error {
	backoff := 5 * time.Millisecond
	for ctx.Err() == nil {
		ch, err := open()
		if errors.Is(err, ErrChannelGone) {
			return err
		}
		if err != nil {
			s.Log.Warn("open agent channel", "err", err)
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		served, err := s.ServeConn(ctx, ch)
		_ = ch.Close()
		if served {
			backoff = 5 * time.Millisecond
		} else {
			// Nobody connected: poll gently. A clone's host connects within
			// milliseconds, so the ceiling stays low.
			backoff = min(backoff*2, 20*time.Millisecond)
		}
		if !errors.Is(err, io.EOF) { // ServeConn returns only when the channel failed
			s.Log.Debug("agent channel closed", "err", err)
		}
		sleep(ctx, backoff)
	}
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ServeConn serves one connection until it fails. served reports whether
// at least one frame arrived.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriter) (served bool, err error) {
	handshake := false
	w := &frameWriter{w: rw}
	for {
		frame, err := agentproto.ReadFrame(rw, agentproto.MaxRequestFrame)
		var tooLarge *agentproto.FrameTooLargeError
		switch {
		case errors.As(err, &tooLarge):
			served = true
			if err := w.write(&agentproto.Response{Error: &agentproto.Error{Code: agentproto.CodeFrameTooLarge, Message: tooLarge.Error()}}); err != nil {
				return served, err
			}
			if err := agentproto.Discard(rw, tooLarge.Size); err != nil {
				return served, err
			}
			continue
		case errors.Is(err, agentproto.ErrEmptyFrame):
			served = true
			if err := w.write(&agentproto.Response{Error: &agentproto.Error{Code: agentproto.CodeBadFrame, Message: "empty frame"}}); err != nil {
				return served, err
			}
			continue
		case err != nil:
			return served, err
		}
		served = true
		var handover func() error
		resp := s.handle(ctx, frame, &handshake, &handover, w)
		if err := w.write(resp); err != nil {
			return served, err
		}
		if handover != nil {
			// envd reads and writes the channel from now on: this
			// server must not read another byte of it.
			return served, fmt.Errorf("%w: %w", ErrHandedOver, handover())
		}
	}
}

// frameWriter serialises frames: streamed output is written from the
// runner while its answer is pending.
type frameWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (f *frameWriter) write(r *agentproto.Response) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return agentproto.WriteMessage(f.w, r)
}

func (s *Server) handle(ctx context.Context, frame []byte, handshake *bool, handover *func() error, w *frameWriter) *agentproto.Response {
	var req agentproto.Request
	if err := json.Unmarshal(frame, &req); err != nil {
		return errResp(0, "", agentproto.CodeBadFrame, "decode request: "+err.Error())
	}
	switch req.Op {
	case agentproto.OpHello:
		if req.Version != agentproto.Version {
			return errResp(req.ID, req.Op, agentproto.CodeVersionMismatch,
				fmt.Sprintf("agent speaks version %d, host sent %d", agentproto.Version, req.Version))
		}
		*handshake = true
		h := s.Hello
		h.Version = agentproto.Version
		return &agentproto.Response{ID: req.ID, Op: req.Op, Hello: &h}
	case agentproto.OpPing, agentproto.OpRun, agentproto.OpReset, agentproto.OpIdentity, agentproto.OpEnvd:
		if !*handshake {
			return errResp(req.ID, req.Op, agentproto.CodeHandshakeRequired, "send hello first")
		}
	default:
		return errResp(req.ID, req.Op, agentproto.CodeUnknownOp, fmt.Sprintf("unknown op %q", req.Op))
	}
	switch req.Op {
	case agentproto.OpPing:
		return &agentproto.Response{ID: req.ID, Op: req.Op}
	case agentproto.OpEnvd:
		if s.Envd == nil {
			return errResp(req.ID, req.Op, agentproto.CodeUnknownOp, "long-lived sandboxes are not served here")
		}
		if req.Envd == nil {
			return errResp(req.ID, req.Op, agentproto.CodeBadRequest, "envd without a body")
		}
		if err := agentproto.CheckEnvs(req.Envd.Envs); err != nil {
			return errResp(req.ID, req.Op, agentproto.CodeBadRequest, err.Error())
		}
		wait, err := s.Envd(req.Envd)
		if err != nil {
			return errResp(req.ID, req.Op, agentproto.CodeInternal, err.Error())
		}
		*handover = wait
		return &agentproto.Response{ID: req.ID, Op: req.Op}
	case agentproto.OpReset, agentproto.OpIdentity:
		if s.Host == nil {
			return errResp(req.ID, req.Op, agentproto.CodeUnknownOp, req.Op+" is not supported here")
		}
		var err error
		if req.Op == agentproto.OpReset {
			err = s.Host.Reset()
		} else if req.Identity == nil {
			return errResp(req.ID, req.Op, agentproto.CodeBadRequest, "identity without a body")
		} else {
			err = s.Host.SetIdentity(req.Identity)
		}
		if err != nil {
			return errResp(req.ID, req.Op, agentproto.CodeInternal, err.Error())
		}
		return &agentproto.Response{ID: req.ID, Op: req.Op}
	}
	if req.Run == nil {
		return errResp(req.ID, req.Op, agentproto.CodeBadRequest, "run without a run request")
	}
	start := time.Now()
	progress := func(o agentproto.Output) {
		// A lost frame is not worth the run: the answer has all the output.
		_ = w.write(&agentproto.Response{ID: req.ID, Op: agentproto.OpOutput, Output: &o})
	}
	res, err := s.Runner.Run(ctx, req.Run, progress)
	switch {
	case errors.Is(err, runner.ErrBadRequest):
		return errResp(req.ID, req.Op, agentproto.CodeBadRequest, err.Error())
	case err != nil:
		return errResp(req.ID, req.Op, agentproto.CodeInternal, err.Error())
	}
	res.AgentUS = time.Since(start).Microseconds()
	return &agentproto.Response{ID: req.ID, Op: req.Op, Run: res}
}

func errResp(id uint64, op, code, msg string) *agentproto.Response {
	return &agentproto.Response{ID: id, Op: op, Error: &agentproto.Error{Code: code, Message: msg}}
}

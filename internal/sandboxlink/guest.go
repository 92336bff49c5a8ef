package sandboxlink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Serve is the guest's half: it serves h on every stream the host opens,
// epoch after epoch, until rw ends (the sandbox is being destroyed) or ctx
// is done. It never returns for a bad epoch: a host that restarted simply
// starts a new one.
func Serve(ctx context.Context, rw io.ReadWriter, h http.Handler, log *slog.Logger) error {
	g := &guest{rw: rw, h: h, log: log}
	defer g.leaveEpoch(0)
	frames := make(chan frame)
	errc := make(chan error, 1)
	go func() { // owned: ends when rw does; Serve waits for it below or the sandbox ends
		for {
			f, err := readFrame(rw)
			if err != nil {
				errc <- err
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case f := <-frames:
			g.handle(f)
		}
	}
}

type guest struct {
	rw  io.ReadWriter
	h   http.Handler
	log *slog.Logger

	wmu      sync.Mutex // one frame at a time; held from quiesced to the next start
	quiesced bool
	epoch    atomic.Uint32
	cur      *guestEpoch
}

// guestEpoch is one host half's streams: a yamux server on one end of a
// pipe, the other end framed onto the channel.
type guestEpoch struct {
	epoch    uint32
	linkEnd  net.Conn // what the host sent goes in here
	sess     *yamux.Session
	srv      *http.Server
	served   chan struct{}
	pumpDone chan struct{}
}

func (g *guest) handle(f frame) {
	switch f.kind {
	case kindStart:
		g.leaveEpoch(f.epoch)
		g.startEpoch(f.epoch)
		g.send(kindStarted, f.epoch, nil)
	case kindData:
		if g.cur != nil && f.epoch == g.cur.epoch {
			// Blocks while yamux reads it: yamux's windows bound what
			// the host may have in flight.
			_, _ = g.cur.linkEnd.Write(f.payload)
		}
	case kindQuiesce:
		if g.quiesced {
			return
		}
		g.wmu.Lock()
		g.quiesced = true
		// The last frame before the checkpoint; the lock stays held, so
		// nothing else is written until a host half starts an epoch.
		if err := writeFrame(g.rw, kindQuiesced, f.epoch, nil); err != nil {
			g.log.Warn("link: quiesced", "err", err)
		}
	default:
		g.log.Warn("link: unexpected frame from the host", "kind", f.kind)
	}
}

// send writes one frame of the current epoch, unless the link is quiesced
// or the epoch is over.
func (g *guest) send(kind byte, epoch uint32, p []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.epoch.Load() != epoch {
		return errEpochOver
	}
	return writeFrame(g.rw, kind, epoch, p)
}

var errEpochOver = errors.New("sandboxlink: epoch over")

func (g *guest) startEpoch(epoch uint32) {
	a, b := net.Pipe()
	sess, err := yamux.Server(a, yamuxConfig())
	if err != nil { // only for a bad config
		g.log.Error("link: yamux", "err", err)
		return
	}
	e := &guestEpoch{epoch: epoch, linkEnd: b, sess: sess, served: make(chan struct{}), pumpDone: make(chan struct{}),
		srv: &http.Server{Handler: g.h, ReadHeaderTimeout: time.Minute, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)}}
	go func() {
		defer close(e.served)
		_ = e.srv.Serve(sess)
	}()
	go func() {
		defer close(e.pumpDone)
		pumpOut(b, func(p []byte) error { return g.send(kindData, epoch, p) })
	}()
	g.cur = e
}

// leaveEpoch makes next the epoch frames may be written for, lifts a
// quiesce, then drops the current epoch's streams (requests in flight end
// with an error; processes they started go on) and waits for its
// goroutines: its pump, once it has the write lock, finds its epoch over.
func (g *guest) leaveEpoch(next uint32) {
	g.epoch.Store(next)
	if g.quiesced {
		g.quiesced = false
		g.wmu.Unlock()
	}
	e := g.cur
	if e == nil {
		return
	}
	g.cur = nil
	_ = e.sess.Close()
	_ = e.linkEnd.Close()
	_ = e.srv.Close()
	<-e.served
	<-e.pumpDone
}

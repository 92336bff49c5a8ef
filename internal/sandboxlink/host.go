package sandboxlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// ErrClosed: the link was closed or quiesced; open streams on a new one.
var ErrClosed = errors.New("sandboxlink: link closed")

// Link is the host's half for one epoch. Open streams with Open; Quiesce
// before a checkpoint; Close when the sandbox goes.
type Link struct {
	ch    io.ReadWriteCloser // a session over the agent channel
	epoch uint32
	sess  *yamux.Session
	end   net.Conn // the pipe end the link writes the guest's data into

	wmu      sync.Mutex
	quiesced bool
	started  chan struct{}
	quietCh  chan struct{} // closed when the guest answered quiesced
	readDone chan struct{}
	readErr  error // set before readDone is closed
	pumpDone chan struct{}
	once     sync.Once
}

// Dial starts epoch (nonzero, and not the guest's last one: a sandbox host
// counts them) on ch and returns once the guest answered. What the guest
// still sends of an earlier epoch is dropped.
func Dial(ctx context.Context, ch io.ReadWriteCloser, epoch uint32) (*Link, error) {
	if epoch == 0 {
		return nil, errors.New("sandboxlink: epoch 0 is reserved")
	}
	a, b := net.Pipe()
	l := &Link{ch: ch, epoch: epoch, end: b, started: make(chan struct{}), quietCh: make(chan struct{}),
		readDone: make(chan struct{}), pumpDone: make(chan struct{})}
	go l.read()
	if err := l.send(kindStart, nil); err != nil {
		l.Close()
		return nil, fmt.Errorf("sandboxlink: start: %w", err)
	}
	select {
	case <-l.started:
	case <-l.readDone:
		l.Close()
		return nil, fmt.Errorf("sandboxlink: the guest did not start the link: %w", l.readErr)
	case <-ctx.Done():
		l.Close()
		return nil, fmt.Errorf("sandboxlink: the guest did not start the link: %w", ctx.Err())
	}
	sess, err := yamux.Client(a, yamuxConfig())
	if err != nil {
		l.Close()
		return nil, err
	}
	l.sess = sess
	go func() {
		defer close(l.pumpDone)
		pumpOut(b, func(p []byte) error { return l.send(kindData, p) })
	}()
	return l, nil
}

func (l *Link) send(kind byte, p []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.quiesced {
		return ErrClosed
	}
	return l.write(kind, p)
}

// writeTimeout bounds one frame's write: a guest that stops reading its
// channel fails the link instead of blocking the host.
const writeTimeout = 30 * time.Second

// write writes one frame, under wmu, with its own write deadline (the
// channel may carry an earlier user's deadline, e.g. the agent client's).
func (l *Link) write(kind byte, p []byte) error {
	if d, ok := l.ch.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	return writeFrame(l.ch, kind, l.epoch, p)
}

// read takes the guest's frames until the channel ends or the guest is
// quiesced.
func (l *Link) read() {
	defer close(l.readDone)
	startedOnce := false
	for {
		f, err := readFrame(l.ch)
		if err != nil {
			l.readErr = err
			_ = l.end.Close()
			return
		}
		if f.epoch != l.epoch {
			continue // an earlier host half's
		}
		switch f.kind {
		case kindStarted:
			if !startedOnce {
				startedOnce = true
				close(l.started)
			}
		case kindData:
			if !startedOnce {
				continue
			}
			// A write fails once the streams are closed (a quiesce
			// under way): what the guest still sent is dropped.
			_, _ = l.end.Write(f.payload)
		case kindQuiesced:
			close(l.quietCh)
			l.readErr = ErrClosed
			_ = l.end.Close()
			return // nothing follows until a restore
		default:
			l.readErr = fmt.Errorf("%w: kind %d from the guest", ErrBadFrame, f.kind)
			_ = l.end.Close()
			return
		}
	}
}

// Open opens a stream to the guest's server.
func (l *Link) Open(ctx context.Context) (net.Conn, error) {
	select {
	case <-l.readDone:
		return nil, ErrClosed
	default:
	}
	s, err := l.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return s, nil
}

// Done is closed when the link can carry nothing more.
func (l *Link) Done() <-chan struct{} { return l.readDone }

// Quiesce ends every stream, tells the guest to write nothing more, and
// waits for its answer: the channel is then quiet both ways, ready for a
// checkpoint. The link cannot be used afterwards.
func (l *Link) Quiesce(ctx context.Context) error {
	_ = l.sess.Close()
	<-l.pumpDone
	l.wmu.Lock()
	err := l.write(kindQuiesce, nil)
	l.quiesced = true
	l.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("sandboxlink: quiesce: %w", err)
	}
	select {
	case <-l.quietCh:
		<-l.readDone
		return nil
	case <-l.readDone:
		select {
		case <-l.quietCh: // both are closed: the guest did answer
			return nil
		default:
		}
		return fmt.Errorf("sandboxlink: quiesce: %w", l.readErr)
	case <-ctx.Done():
		return fmt.Errorf("sandboxlink: quiesce: the guest did not answer: %w", ctx.Err())
	}
}

// Close ends the link and its goroutines (not the sandbox).
func (l *Link) Close() error {
	l.once.Do(func() {
		if l.sess != nil {
			_ = l.sess.Close()
		}
		_ = l.end.Close()
		_ = l.ch.Close()
		<-l.readDone
		if l.sess != nil {
			<-l.pumpDone
		}
	})
	return nil
}

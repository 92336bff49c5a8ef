package gvisor

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// channel is a sandbox's agent channel: the container's stdin and stdout,
// one byte stream for the sandbox's whole life. Each DialAgent gets a
// session over it, and closing a session does not close the stream: as on a
// virtio-serial port, the next session continues where the last left off
// (the agent client's random request ids tell a stale answer from the
// next). The stream itself closes with the sandbox.
type channel struct {
	w *os.File // the container's stdin
	r *os.File // the container's stdout

	wmu sync.Mutex // serialises writes: a frame is one Write

	rmu     sync.Mutex // one Read at a time; guards pending
	pending []byte     // what the last reader took from chunks but did not use

	chunks chan []byte   // the container's stdout, read by pump
	eof    chan struct{} // closed when the pump ends: stdout ended, or close
	stop   chan struct{} // closed by close: the pump drops what it reads
	once   sync.Once
}

// newChannel starts the pump reading r (the container's stdout) and returns
// the channel; the pump ends when r does, or at close.
func newChannel(w, r *os.File) *channel {
	c := &channel{w: w, r: r, chunks: make(chan []byte), eof: make(chan struct{}), stop: make(chan struct{})}
	go c.pump()
	return c
}

func (c *channel) pump() {
	defer close(c.eof)
	for {
		buf := make([]byte, 32<<10)
		n, err := c.r.Read(buf)
		if n > 0 {
			select {
			case c.chunks <- buf[:n]:
			case <-c.stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// closeInput closes the container's stdin: the agent reads EOF and exits.
func (c *channel) closeInput() error {
	var err error
	c.once.Do(func() { err = c.w.Close() })
	return err
}

// close ends the channel: stdin, then stdout (which unblocks the pump), and
// waits for the pump.
func (c *channel) close() error {
	err := c.closeInput()
	close(c.stop)
	err = errors.Join(err, c.r.Close())
	<-c.eof
	return err
}

// session is one host connection over the channel.
type session struct {
	c      *channel
	closed chan struct{}
	once   sync.Once
}

var _ net.Conn = (*session)(nil)

func (c *channel) dial() *session { return &session{c: c, closed: make(chan struct{})} }

// Read implements net.Conn.
func (s *session) Read(p []byte) (int, error) {
	c := s.c
	c.rmu.Lock()
	defer c.rmu.Unlock()
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	if len(c.pending) == 0 {
		select {
		case <-s.closed:
			return 0, net.ErrClosed
		case <-c.eof:
			return 0, io.EOF
		case chunk := <-c.chunks:
			c.pending = chunk
		}
		select {
		case <-s.closed: // closed meanwhile: the chunk is the next session's
			return 0, net.ErrClosed
		default:
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write implements net.Conn.
func (s *session) Write(p []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	s.c.wmu.Lock()
	defer s.c.wmu.Unlock()
	return s.c.w.Write(p)
}

// Close ends the session, not the stream.
func (s *session) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// SetWriteDeadline bounds writes (to a guest that stopped reading).
func (s *session) SetWriteDeadline(t time.Time) error { return s.c.w.SetWriteDeadline(t) }

// SetDeadline and SetReadDeadline: the agent client bounds reads with its
// contexts and closes the session instead.
func (s *session) SetDeadline(t time.Time) error   { return s.SetWriteDeadline(t) }
func (s *session) SetReadDeadline(time.Time) error { return errors.ErrUnsupported }
func (s *session) LocalAddr() net.Addr             { return stdioAddr{} }
func (s *session) RemoteAddr() net.Addr            { return stdioAddr{} }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "container stdio" }

// Package sandboxlink carries many streams between the host and a long-lived
// sandbox over its one agent channel (a container's stdin and stdout), and
// survives a checkpoint of the sandbox: the guest's half is saved with the
// guest, the host's half is made anew after a restore, or after the host
// restarts.
//
// The channel carries frames (kind, epoch, length, payload). Streams are
// yamux streams inside the data frames of one epoch. A host half begins an
// epoch with a start frame; the guest drops every stream of the epoch before
// (its processes go on) and answers started. Before a checkpoint the host
// quiesces the link: it stops writing, sends quiesce, and the guest answers
// quiesced and writes nothing more until the next start, so no frame is cut
// in two by the checkpoint, in either direction.
package sandboxlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// Frame kinds.
const (
	kindData       byte = 1
	kindQuiesce    byte = 2
	kindQuiesced   byte = 3
	kindStart      byte = 4
	kindStarted    byte = 5
	headerSize          = 9
	maxPayload          = 64 << 10 // a data frame's payload; a larger header is a broken peer
	maxStreamsRecv      = 256      // yamux's accept backlog: streams a peer may open unanswered
)

// ErrBadFrame: the peer sent a frame this side cannot read (a kind it does
// not know, or a payload above the bound); the link is over.
var ErrBadFrame = errors.New("sandboxlink: bad frame")

type frame struct {
	kind    byte
	epoch   uint32
	payload []byte
}

func writeFrame(w io.Writer, kind byte, epoch uint32, p []byte) error {
	buf := make([]byte, headerSize+len(p))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:5], epoch)
	binary.BigEndian.PutUint32(buf[5:9], uint32(len(p)))
	copy(buf[headerSize:], p)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame, its payload bounded before it is allocated.
func readFrame(r io.Reader) (frame, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	f := frame{kind: hdr[0], epoch: binary.BigEndian.Uint32(hdr[1:5])}
	n := binary.BigEndian.Uint32(hdr[5:9])
	if f.kind < kindData || f.kind > kindStarted {
		return frame{}, fmt.Errorf("%w: kind %d", ErrBadFrame, f.kind)
	}
	if n > maxPayload {
		return frame{}, fmt.Errorf("%w: %d bytes", ErrBadFrame, n)
	}
	if n > 0 {
		f.payload = make([]byte, n)
		if _, err := io.ReadFull(r, f.payload); err != nil {
			return frame{}, fmt.Errorf("sandboxlink: short frame: %w", err)
		}
	}
	return f, nil
}

// yamuxConfig: no keepalives (a paused guest cannot answer one, and the
// host knows when its sandbox dies), no log, a bounded backlog.
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.AcceptBacklog = maxStreamsRecv
	c.StreamOpenTimeout = 30 * time.Second
	c.ConnectionWriteTimeout = 30 * time.Second
	return c
}

// pumpOut frames what yamux writes into one end of a pipe as data frames of
// one epoch; send writes a frame or refuses it (another epoch is on).
func pumpOut(r io.Reader, send func([]byte) error) {
	buf := make([]byte, maxPayload)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if send(buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

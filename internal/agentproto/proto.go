// Package agentproto is the wire protocol between the host and the in-guest
// agent: length-prefixed JSON frames carrying versioned requests and responses.
// Both sides import it, so the host and the guest can never disagree on a field.
package agentproto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// CmdlineKey on the guest kernel command line selects the agent channel:
// "vsock:<port>" for AF_VSOCK, absent for the virtio-serial port "agent".
const CmdlineKey = "codebench.agent"

// Version is the protocol version. The host sends it in its hello; an agent
// speaking another version answers with CodeVersionMismatch.
const Version = 1

// Frame size bounds. The guest is untrusted once user code has run, so the
// host never reads more than MaxResponseFrame; the agent refuses requests above
// MaxRequestFrame (programs and extra files are bounded well below it).
const (
	MaxRequestFrame  = 8 << 20
	MaxResponseFrame = 32 << 20
	headerSize       = 4
)

// Operations.
const (
	OpHello = "hello"
	OpPing  = "ping"
	OpRun   = "run"
	// OpReset empties the job and temp directories: a template is saved
	// clean, so every clone starts with nothing from the warm-up.
	OpReset = "reset"
	// OpIdentity gives a restored clone its own identity: fresh entropy for
	// the kernel RNG (then an immediate reseed) and the current time.
	OpIdentity = "identity"
	// OpOutput marks the agent's frames of streamed output during a run.
	OpOutput = "output"
	// OpEnvd makes the sandbox a long-lived one (see Envd).
	OpEnvd = "envd"
)

// Error codes an agent answers with.
const (
	CodeBadFrame          = "bad_frame"
	CodeFrameTooLarge     = "frame_too_large"
	CodeVersionMismatch   = "version_mismatch"
	CodeHandshakeRequired = "handshake_required"
	CodeUnknownOp         = "unknown_op"
	CodeBadRequest        = "bad_request"
	CodeInternal          = "internal"
)

var (
	// ErrFrameTooLarge is returned by ReadFrame when the header announces a
	// frame above the reader's limit. The payload has not been consumed.
	ErrFrameTooLarge = errors.New("agentproto: frame too large")
	// ErrEmptyFrame is returned for a zero-length frame.
	ErrEmptyFrame = errors.New("agentproto: empty frame")
)

// FrameTooLargeError carries the announced size so a reader can skip it.
type FrameTooLargeError struct {
	Size  uint32
	Limit uint32
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("agentproto: frame of %d bytes exceeds limit %d", e.Size, e.Limit)
}

func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// WriteFrame writes one frame: a 4-byte big-endian length and the payload.
func WriteFrame(w io.Writer, payload []byte) error {
	if len(payload) == 0 {
		return ErrEmptyFrame
	}
	buf := make([]byte, headerSize+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[headerSize:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame of at most limit bytes. On *FrameTooLargeError the
// payload is still unread; Discard can skip it to keep the stream in sync.
func ReadFrame(r io.Reader, limit uint32) ([]byte, error) {
	n, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, &FrameTooLargeError{Size: n, Limit: limit}
	}
	return ReadPayload(r, n)
}

// ReadHeader reads a frame's header and returns the payload's size, for a
// reader that decides the limit only then. An empty frame is ErrEmptyFrame.
func ReadHeader(r io.Reader) (uint32, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return 0, ErrEmptyFrame
	}
	return n, nil
}

// ReadPayload reads a payload of n bytes whose size the caller checked.
func ReadPayload(r io.Reader, n uint32) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("agentproto: short frame: %w", err)
	}
	return buf, nil
}

// Discard skips n bytes of r.
func Discard(r io.Reader, n uint32) error {
	_, err := io.CopyN(io.Discard, r, int64(n))
	return err
}

// Marshal encodes v as the payload of one frame: JSON without HTML escaping
// (program text is full of < and &, and each would cost six bytes).
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("agentproto: encode: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// WriteMessage encodes v (see Marshal) and writes it as one frame.
func WriteMessage(w io.Writer, v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	return WriteFrame(w, b)
}

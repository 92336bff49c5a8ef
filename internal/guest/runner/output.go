package runner

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// Streams of a phase's output.
const (
	stdoutStream = 0
	stderrStream = 1
)

// output captures one phase's stdout and stderr under one shared budget. The
// two streams are copied by two goroutines of os/exec; one lock guards both
// buffers and the budget, so there is no lock order to get wrong.
type output struct {
	limit int64 // more than this from both streams together is an overflow
	keep  int64 // at most this much of it is kept (the request's total budget)
	// onOverflow is called once, outside the lock, when the limit is first
	// exceeded (the runner kills the phase). Set before writes start.
	onOverflow func()

	mu      sync.Mutex // guards bufs, written, over
	bufs    [2]bytes.Buffer
	written int64 // accepted bytes of both streams, kept or not
	over    bool
}

// newOutput accepts limit bytes and keeps all of them.
func newOutput(limit int64) *output { return &output{limit: limit, keep: limit} }

// stream is an io.Writer into one of the buffers.
type stream struct {
	o *output
	i int
}

func (s stream) Write(p []byte) (int, error) { return s.o.write(s.i, p) }

// writer returns the writer for stream i (stdoutStream or stderrStream).
func (o *output) writer(i int) io.Writer { return stream{o, i} }

func (o *output) write(i int, p []byte) (int, error) {
	o.mu.Lock()
	room := max(o.limit-o.written, 0)
	accepted := p
	first := false
	if int64(len(p)) > room {
		accepted = p[:room]
		first = !o.over
		o.over = true
	}
	o.written += int64(len(accepted))
	keepRoom := max(o.keep-int64(o.bufs[0].Len()+o.bufs[1].Len()), 0)
	o.bufs[i].Write(accepted[:min(int64(len(accepted)), keepRoom)])
	o.mu.Unlock()
	if first && o.onOverflow != nil {
		o.onOverflow()
	}
	// Report success so the copier keeps draining (and discarding) the pipe
	// until the killed process closes it.
	return len(p), nil
}

func (o *output) overflowed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.over
}

// kept is how many bytes of both streams are kept.
func (o *output) kept() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int64(o.bufs[0].Len() + o.bufs[1].Len())
}

// text returns stream i as valid UTF-8 (see EscapeInvalidUTF8).
func (o *output) text(i int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return EscapeInvalidUTF8(o.bufs[i].Bytes())
}

// since returns what stream i kept after offset off, up to a character
// boundary (an incomplete character waits for the next call), and the new
// offset. Streaming reads it while the phase runs.
func (o *output) since(i, off int) (string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.bufs[i].Bytes()
	if off >= len(b) {
		return "", off
	}
	chunk := b[off:]
	end := len(chunk)
	// Hold back a character cut in two by the pipe (at most 3 bytes).
	for k := 1; k <= 3 && k <= len(chunk); k++ {
		if c := chunk[len(chunk)-k]; utf8.RuneStart(c) {
			if !utf8.FullRune(chunk[len(chunk)-k:]) {
				end = len(chunk) - k
			}
			break
		}
	}
	return EscapeInvalidUTF8(chunk[:end]), off + end
}

// EscapeInvalidUTF8 keeps valid UTF-8 as is and writes each invalid byte as
// the four characters \xNN, so binary output survives JSON and can be told
// apart from text.
func EscapeInvalidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&sb, "\\x%02x", b[0])
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

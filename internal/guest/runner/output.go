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
	limit int64
	// onOverflow is called once, outside the lock, when the budget is
	// first exceeded (the runner kills the phase). Set before writes start.
	onOverflow func()

	mu   sync.Mutex // guards bufs, over
	bufs [2]bytes.Buffer
	over bool
}

func newOutput(limit int64) *output { return &output{limit: limit} }

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
	room := max(o.limit-int64(o.bufs[0].Len()+o.bufs[1].Len()), 0)
	first := false
	if int64(len(p)) > room {
		o.bufs[i].Write(p[:room])
		first = !o.over
		o.over = true
	} else {
		o.bufs[i].Write(p)
	}
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

// text returns stream i as valid UTF-8 (see EscapeInvalidUTF8).
func (o *output) text(i int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return EscapeInvalidUTF8(o.bufs[i].Bytes())
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

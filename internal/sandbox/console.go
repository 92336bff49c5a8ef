package sandbox

import (
	"sync"
	"unicode/utf8"
)

// ConsoleSize is how much of a guest's console a driver keeps: the end of it.
const ConsoleSize = 64 << 10

// Console keeps the last bytes a guest wrote to its console, in a fixed ring
// in the host process: it costs the same for a quiet guest and for one that
// floods its console, and it outlives the VMM, so a crashed guest's last
// words can still be quoted.
type Console struct {
	mu    sync.Mutex // guards ring, total
	ring  []byte
	total int64 // bytes ever written; the ring holds the last len(ring)
}

// NewConsole keeps the last size bytes.
func NewConsole(size int) *Console { return &Console{ring: make([]byte, size)} }

// Write implements io.Writer; it never fails.
func (c *Console) Write(p []byte) (int, error) {
	n := len(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	size := len(c.ring)
	if len(p) > size {
		c.total += int64(len(p) - size)
		p = p[len(p)-size:]
	}
	at := int(c.total % int64(size))
	k := copy(c.ring[at:], p)
	copy(c.ring, p[k:])
	c.total += int64(len(p))
	return n, nil
}

// Tail returns up to n bytes of the end, starting at a character boundary.
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	size := int64(len(c.ring))
	n = int(min(int64(n), c.total, size))
	out := make([]byte, n)
	start := (c.total - int64(n)) % size
	k := copy(out, c.ring[start:])
	copy(out[k:], c.ring)
	for len(out) > 0 && !utf8.RuneStart(out[0]) {
		out = out[1:]
	}
	return string(out)
}

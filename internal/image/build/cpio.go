package build

import (
	"fmt"
	"io"
)

// cpioWriter writes the "newc" format the kernel unpacks as an initramfs.
// It is small enough to write here rather than shell out to cpio.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	off int64
	err error
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
)

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&modeDir != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string) { c.header(name, modeDir|0o755, 0) }

// File adds a regular file.
func (c *cpioWriter) File(name string, perm uint32, body []byte) {
	c.header(name, modeFile|perm, len(body))
	c.write(body)
	c.pad()
}

// Close writes the trailer.
func (c *cpioWriter) Close() error {
	c.ino = 0
	c.header("TRAILER!!!", 0, 0)
	return c.err
}

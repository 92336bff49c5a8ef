package sandbox

import (
	"strings"
	"testing"
)

func TestConsoleKeepsTheEnd(t *testing.T) {
	c := NewConsole(16)
	if c.Tail(10) != "" {
		t.Fatal("empty console has a tail")
	}
	c.Write([]byte("hello "))
	c.Write([]byte("world"))
	if got := c.Tail(100); got != "hello world" {
		t.Fatalf("tail %q", got)
	}
	c.Write([]byte(", and a long line after it"))
	if got := c.Tail(100); got != "ng line after it" {
		t.Fatalf("tail %q", got)
	}
	if got := c.Tail(5); got != "er it" {
		t.Fatalf("tail %q", got)
	}
	// A flood costs no more than the ring.
	for range 10_000 {
		c.Write([]byte(strings.Repeat("x", 1000)))
	}
	c.Write([]byte("the end"))
	if got := c.Tail(16); got != "xxxxxxxxxthe end" {
		t.Fatalf("tail %q", got)
	}
	if len(c.ring) != 16 {
		t.Fatal("the ring grew")
	}
	// A tail never starts inside a character.
	c.Write([]byte("ééééééééé"))
	if got := c.Tail(5); got != "éé" {
		t.Fatalf("tail %q", got)
	}
}

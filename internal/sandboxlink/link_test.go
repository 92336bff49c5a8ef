package sandboxlink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// noClose is a channel session: closing it ends its reads and leaves the
// stream, as the gVisor driver's sessions do.
type noClose struct{ net.Conn }

func (n *noClose) Close() error { return n.SetReadDeadline(time.Now()) }

func get(t *testing.T, l *Link, path string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return l.Open(ctx) }}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://sandbox" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestLinkEpochs(t *testing.T) {
	hostEnd, guestEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20))
			return
		}
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	})
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, guestEnd, h, slog.New(slog.DiscardHandler)) }()

	for epoch := uint32(1); epoch <= 3; epoch++ {
		// Each epoch is a new host half on the same stream, as after a
		// restore or a restart of the host; the stream carries a write
		// deadline an earlier user left (the agent client sets one).
		_ = hostEnd.SetWriteDeadline(time.Now().Add(-time.Second))
		_ = hostEnd.SetReadDeadline(time.Time{})
		l, err := Dial(ctx, &noClose{Conn: hostEnd}, epoch)
		if err != nil {
			t.Fatalf("epoch %d: %v", epoch, err)
		}
		if got := get(t, l, "/a"); got != "hello /a" {
			t.Fatalf("epoch %d: got %q", epoch, got)
		}
		// Concurrent streams, one of them larger than any window.
		errc := make(chan string, 2)
		go func() { errc <- get(t, l, "/big") }()
		go func() { errc <- get(t, l, "/b") }()
		for range 2 {
			if got := <-errc; got != "hello /b" && len(got) != 1<<20 {
				t.Fatalf("epoch %d: got %d bytes", epoch, len(got))
			}
		}
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := l.Quiesce(qctx); err != nil {
			t.Fatalf("epoch %d: quiesce: %v", epoch, err)
		}
		qcancel()
		if _, err := l.Open(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("open after quiesce: %v", err)
		}
		l.Close()
	}
	hostEnd.Close()
	select {
	case err := <-served:
		if err != nil && !strings.Contains(err.Error(), "closed pipe") {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the guest half did not end with its stream")
	}
}

func TestLinkBadFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"payload above the bound", append([]byte{kindData, 0, 0, 0, 1}, binary.BigEndian.AppendUint32(nil, maxPayload+1)...)},
		{"unknown kind", append([]byte{9, 0, 0, 0, 1}, 0, 0, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readFrame(bytes.NewReader(tc.hdr))
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v, want ErrBadFrame", err)
			}
		})
	}
	// A host half whose guest answers with a huge frame fails, without
	// allocating it.
	hostEnd, guestEnd := net.Pipe()
	go func() {
		hdr := make([]byte, headerSize)
		_, _ = io.ReadFull(guestEnd, hdr)
		_, _ = guestEnd.Write(append([]byte{kindStarted, 0, 0, 0, 1}, binary.BigEndian.AppendUint32(nil, 1<<31)...))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Dial(ctx, hostEnd, 1); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("dial: %v, want ErrBadFrame", err)
	}
}

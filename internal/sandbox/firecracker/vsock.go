package firecracker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// dialVsock connects to a guest vsock port through Firecracker's host-side
// Unix socket: send "CONNECT <port>\n", expect "OK <host port>\n". The answer
// is read byte by byte (bounded), so nothing after it is swallowed.
func dialVsock(ctx context.Context, udsPath string, port uint32) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", udsPath)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("vsock: send CONNECT: %w", err)
	}
	line, err := readLine(conn, 64)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("vsock: read CONNECT answer: %w", err)
	}
	if !strings.HasPrefix(line, "OK ") {
		conn.Close()
		return nil, fmt.Errorf("vsock: CONNECT %d refused: %q", port, line)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

func readLine(conn net.Conn, limit int) (string, error) {
	var sb strings.Builder
	b := make([]byte, 1)
	for sb.Len() < limit {
		if _, err := conn.Read(b); err != nil {
			return sb.String(), err
		}
		if b[0] == '\n' {
			return sb.String(), nil
		}
		sb.WriteByte(b[0])
	}
	return sb.String(), fmt.Errorf("line longer than %d bytes", limit)
}

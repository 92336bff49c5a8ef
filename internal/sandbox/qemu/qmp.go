package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp is a minimal QEMU Machine Protocol client: one command at a time,
// asynchronous events skipped.
type qmp struct {
	mu   sync.Mutex // serialises commands on conn
	conn net.Conn
	r    *bufio.Reader
}

type qmpMessage struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	QMP   json.RawMessage `json:"QMP"`
	ID    string          `json:"id"`
}

const qmpLineLimit = 1 << 20

func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmp{conn: conn, r: bufio.NewReaderSize(conn, qmpLineLimit)}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	greet, err := q.read()
	if err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", errors.Join(err, errors.New("no greeting")))
	}
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) read() (*qmpMessage, error) {
	line, err := q.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("qmp: line over %d bytes", qmpLineLimit)
	}
	if err != nil {
		return nil, err
	}
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("qmp: decode: %w", err)
	}
	return &m, nil
}

// Execute runs one command and returns its "return" value.
func (q *qmp) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.execute(ctx, cmd, args)
}

func (q *qmp) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = q.conn.SetDeadline(deadline)
	defer q.conn.SetDeadline(time.Time{})
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	}
}

func (q *qmp) Close() error { return q.conn.Close() }

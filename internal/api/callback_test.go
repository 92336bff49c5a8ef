package api

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/judge0"
)

// TestCallbackWalls: an allow-list entry names a host and its ports (80
// and 443 when it names none) and maybe a path prefix; a callback's host
// is resolved once, and an address in a denied range (loopback, private,
// link-local, metadata) is reached only when the allow-list names that
// address exactly: a name rebound to one is refused.
func TestCallbackWalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	local := ln.Addr().String()
	c := newCallbacks(Config{CallbackAllow: []string{"hooks.example", "h2.example:8080/judge/", local, "rebind.example:8080", "[::1]:9"}},
		judge0.New(nil, judge0.DefaultLimits), newMetrics(func() int { return 0 }), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for raw, ok := range map[string]bool{
		"http://hooks.example/x": true, "https://hooks.example/x": true, "http://HOOKS.example:80/": true,
		"http://hooks.example:15672/api/queues":    false, // a bare host is not every port
		"http://h2.example:8080/judge/cb":          true,
		"http://h2.example:8080/other":             false, // the path prefix
		"http://h2.example/judge/":                 false, // the port
		"http://" + local + "/anything":            true,
		"http://[::1]:9/":                          true,
		"http://169.254.169.254/latest/meta-data/": false,
		"http://hooks.example@evil.example/":       false,
		"ftp://hooks.example/":                     false,
	} {
		if err := c.check(raw); (err == nil) != ok {
			t.Errorf("%s: %v", raw, err)
		}
	}
	// Resolution: once per try, checked, dialled as resolved.
	resolved := map[string]string{"rebind.example": "169.254.169.254", "loopback.example": "127.0.0.1"}
	looks := 0
	c.resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
		looks++
		return []netip.Addr{netip.MustParseAddr(resolved[host])}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, addr := range []string{"rebind.example:8080", "loopback.example:80"} {
		if conn, err := c.dial(ctx, "tcp", addr); err == nil || !strings.Contains(err.Error(), "names the address") {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("%s: dialled a denied range: %v", addr, err)
		}
	}
	if looks != 2 {
		t.Errorf("%d lookups for 2 dials", looks)
	}
	conn, err := c.dial(ctx, "tcp", local)
	if err != nil {
		t.Fatalf("the address named exactly: %v", err)
	}
	conn.Close()
	for ip, denied := range map[string]bool{"10.1.2.3": true, "172.20.0.1": true, "192.168.1.1": true, "100.64.0.1": true, "169.254.169.254": true,
		"127.0.0.1": true, "::1": true, "fe80::1": true, "fd00::1": true, "0.0.0.0": true, "8.8.8.8": false, "2606:4700::1": false} {
		if got := deniedAddr(netip.MustParseAddr(ip)); got != denied {
			t.Errorf("%s: denied %v", ip, got)
		}
	}
}

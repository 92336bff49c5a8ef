package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/config"
)

// NeedNetwork skips (or fails, with CODEBENCH_REQUIRE_NETWORK set) unless
// this host can make guest networks: root, nft, ip, and the CNI plugins
// on the configured path.
func NeedNetwork(t testing.TB) config.Config {
	t.Helper()
	cfg := Config(t)
	if os.Geteuid() != 0 {
		missing(t, "CODEBENCH_REQUIRE_NETWORK", "guest networks need root")
	}
	for _, b := range []string{"nft", "ip", "curl"} {
		if _, err := exec.LookPath(b); err != nil {
			missing(t, "CODEBENCH_REQUIRE_NETWORK", "no %s (scripts/install-deps.sh installs it)", b)
		}
	}
	for _, p := range []string{"ptp", "host-local", "tc-redirect-tap"} {
		found := false
		for _, d := range filepath.SplitList(cfg.Network.CNIPath) {
			if _, err := os.Stat(filepath.Join(d, p)); err == nil {
				found = true
			}
		}
		if !found {
			missing(t, "CODEBENCH_REQUIRE_NETWORK", "no CNI plugin %s in %s (scripts/install-deps.sh)", p, cfg.Network.CNIPath)
		}
	}
	return cfg
}

// TestHost is a host a test made: a network namespace of its own, linked
// to this host by a veth pair (this host's end HostSide, the namespace's
// Addr, one /24), serving HTTP on Addr:Port from its own namespace. Its
// page is Token.
type TestHost struct {
	NS       string
	Addr     netip.Addr
	HostSide netip.Addr
	Port     int
	Token    string
}

// URL is the test host's page.
func (h *TestHost) URL() string { return fmt.Sprintf("http://%s:%d/", h.Addr, h.Port) }

// Every test host also serves BigFile, BigFileSize bytes of zeros.
const (
	BigFile     = "big"
	BigFileSize = 2 << 20
)

// NewTestHost makes the test host named name (a few letters) on the /24
// of subnet (x.y.z.0/24): this host is .1, the test host .2; extra
// addresses are added to its interface too (and served), and this host
// routes them to it.
func NewTestHost(t testing.TB, name string, subnet netip.Prefix, extra ...netip.Addr) *TestHost {
	t.Helper()
	base := subnet.Masked().Addr().As4()
	hostSide := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 1})
	addr := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 2})
	h := &TestHost{NS: "cbt-" + name, Addr: addr, HostSide: hostSide, Port: 8080, Token: "codebench-test-host-" + name}
	hostIf, nsIf := "cbt"+name+"h", "cbt"+name+"n"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command("ip", "netns", "del", h.NS).Run()
	_ = exec.Command("ip", "link", "del", hostIf).Run()
	run("ip", "netns", "add", h.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.NS).Run() })
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "link", "set", nsIf, "netns", h.NS)
	run("ip", "addr", "add", hostSide.String()+"/24", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	in := func(args ...string) { run(append([]string{"ip", "netns", "exec", h.NS}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("ip", "addr", "add", addr.String()+"/24", "dev", nsIf)
	for _, a := range extra {
		in("ip", "addr", "add", a.String()+"/32", "dev", nsIf)
	}
	in("ip", "link", "set", nsIf, "up")
	in("ip", "route", "add", "default", "via", hostSide.String())
	// This host routes the extra addresses to the test host too: a packet
	// for one of them never follows this host's default route out.
	for _, a := range extra {
		run("ip", "route", "add", a.String()+"/32", "via", addr.String(), "dev", hostIf)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(h.Token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// BigFile: for tests of a bandwidth limit.
	if err := os.WriteFile(filepath.Join(dir, BigFile), make([]byte, BigFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command("ip", "netns", "exec", h.NS, "python3", "-m", "http.server", "--bind", "0.0.0.0", "--directory", dir, fmt.Sprint(h.Port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr.String(), fmt.Sprint(h.Port)), time.Second)
		if err == nil {
			c.Close()
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("test host %s never served: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FetchFrom runs curl inside the network namespace at nsPath (a guest's)
// and returns the body, or an error when the connection failed.
func FetchFrom(ctx context.Context, nsPath, url string) (string, error) {
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+nsPath, "curl", "-sS", "--max-time", "3", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

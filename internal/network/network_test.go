package network_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/network"
	"github.com/codebench/codebench/internal/testenv"
)

const helperEnv = "CODEBENCH_NETWORK_TEST_HELPER"

// TestMain: the reclaim test's helper is this binary, attaching sandboxes
// until it is killed.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(helper(cfg))
	}
	os.Exit(testenv.Main(m))
}

func helper(cfgJSON string) int {
	var cfg network.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Println("helper:", err)
		return 1
	}
	ctx := context.Background()
	m, err := network.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println("helper:", err)
		return 1
	}
	for i := range 3 {
		if _, err := m.Attach(ctx, fmt.Sprintf("k%d", i)); err != nil {
			fmt.Println("helper:", err)
			return 1
		}
	}
	fmt.Println("attached")
	time.Sleep(time.Hour) // until killed
	return 0
}

func testConfig(t *testing.T, name string, subnet string, allow ...string) network.Config {
	cfg := testenv.NeedNetwork(t)
	c := network.Config{Name: name, StateDir: t.TempDir(), PluginDirs: filepath.SplitList(cfg.Network.CNIPath),
		Subnet: netip.MustParsePrefix(subnet), IPMasq: true, ConnPerSecond: 50}
	for _, a := range allow {
		c.Allow = append(c.Allow, netip.MustParsePrefix(a))
	}
	return c
}

// serveHost serves "host" over HTTP on every address of this host, on a
// port of its own.
func serveHost(t *testing.T) int {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "host") }),
		ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close below
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func fetchHere(url string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	r, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	var b strings.Builder
	s := bufio.NewScanner(r.Body)
	for s.Scan() {
		b.WriteString(s.Text() + "\n")
	}
	return b.String(), nil
}

func waitServing(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := fetchHere(url)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered the host: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReclaimAfterKill: a worker killed with -9 holding three networks
// leaves namespaces, leases, veths and its fences; the next one with the
// same network reclaims them all.
func TestReclaimAfterKill(t *testing.T) {
	cfg := testConfig(t, "tk", "10.201.0.0/24")
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "attached" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	records, _ := filepath.Glob(filepath.Join(cfg.StateDir, "attachments", "*.json"))
	var hostIfs []string
	for _, r := range records {
		var a struct {
			HostIf string `json:"host_if"`
		}
		b, _ := os.ReadFile(r)
		_ = json.Unmarshal(b, &a)
		hostIfs = append(hostIfs, a.HostIf)
	}
	if len(hostIfs) != 3 {
		t.Fatalf("the killed worker recorded %d attachments, want 3", len(hostIfs))
	}
	m, err := network.New(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ns, leases, recs, _ := m.Leftovers(ctx)
	if len(ns)+len(leases)+len(recs) > 0 {
		t.Fatalf("after reclaim: namespaces %v, leases %v, records %v", ns, leases, recs)
	}
	for _, itf := range hostIfs {
		if exec.Command("ip", "link", "show", itf).Run() == nil {
			t.Errorf("host veth %s left", itf)
		}
	}
	noMasquerade(t, "codebench-tk")
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// noMasquerade fails if ptp's masquerading rules for the network are left.
func noMasquerade(t *testing.T, network string) {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	if strings.Contains(string(out), `name: \"`+network+`\"`) {
		t.Fatalf("masquerading rules of %s left:\n%s", network, out)
	}
}

// BenchmarkAttachDetach: what a networked sandbox adds to its start and
// its teardown: a namespace, CNI ADD (ptp, host-local, tc-redirect-tap)
// and the fence elements; then CNI DEL, the elements, the namespace.
//
//	go test -run '^$' -bench AttachDetach -benchtime 20x ./internal/network
func BenchmarkAttachDetach(b *testing.B) {
	cfg := testenv.NeedNetwork(b)
	c := network.Config{Name: "bn", StateDir: b.TempDir(), PluginDirs: filepath.SplitList(cfg.Network.CNIPath),
		Subnet: netip.MustParsePrefix("10.204.0.0/24"), IPMasq: true}
	ctx := context.Background()
	m, err := network.New(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	var attach, detach time.Duration
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("b%d", i)
		t0 := time.Now()
		if _, err := m.Attach(ctx, id); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Detach(ctx, id); err != nil {
			b.Fatal(err)
		}
		attach += t1.Sub(t0)
		detach += time.Since(t1)
	}
	b.ReportMetric(float64(attach.Milliseconds())/float64(b.N), "attach-ms/op")
	b.ReportMetric(float64(detach.Milliseconds())/float64(b.N), "detach-ms/op")
}

// TestAttachSparesOtherChildren: making networks leaves every thread of
// the worker as it was. A VMM is started with a parent-death signal, which
// follows the thread that forked it: a network made by moving a Go thread
// into a new namespace (and letting it end) killed whatever VM that thread
// had started before.
func TestAttachSparesOtherChildren(t *testing.T) {
	cfg := testConfig(t, "ts", "10.205.0.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var children []*exec.Cmd
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 16 {
		wg.Add(1)
		go func() { // from as many threads as the scheduler uses
			defer wg.Done()
			c := exec.Command("sleep", "600")
			c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := c.Start(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			children = append(children, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range children {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	m, err := network.New(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for i := range 12 {
		id := fmt.Sprintf("s%d", i)
		if _, err := m.Attach(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := m.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, c := range children {
		if err := c.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("a child started before the networks were made is gone: %v", err)
		}
		var ws syscall.WaitStatus
		if pid, _ := syscall.Wait4(c.Process.Pid, &ws, syscall.WNOHANG, nil); pid == c.Process.Pid {
			t.Fatalf("a child started before the networks were made was killed: %v", ws)
		}
	}
}

// TestCheckNamesWhatIsMissing: a plugin directory without the plugins is
// reported plugin by plugin.
func TestCheckNamesWhatIsMissing(t *testing.T) {
	err := network.Check([]string{t.TempDir()}, false)
	for _, p := range []string{"ptp", "host-local", "tc-redirect-tap"} {
		if err == nil || !strings.Contains(err.Error(), "CNI plugin "+p+" not found") {
			t.Errorf("Check without %s: %v", p, err)
		}
	}
}

// TestStuckCNIDelIsAbandoned: a CNI plugin that hangs on DEL is killed at
// the deadline its caller set; the attachment and its namespace stay known
// until a DEL succeeds, so nothing the plugins hold is lost track of. A lower layer once stripped the
// deadline, and a hung DEL held a job's teardown forever.
func TestStuckCNIDelIsAbandoned(t *testing.T) {
	cfg := testConfig(t, "tq", "10.206.0.0/24")
	marker := filepath.Join(t.TempDir(), "stuck")
	wrapped := t.TempDir()
	for _, dir := range cfg.PluginDirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			real := filepath.Join(dir, e.Name())
			if st, err := os.Stat(real); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				continue
			}
			if _, err := os.Stat(filepath.Join(wrapped, e.Name())); err == nil {
				continue // the first directory's wins, as in findPlugin
			}
			script := fmt.Sprintf("#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ -e %q ]; then exec sleep 3600; fi\nexec %q \"$@\"\n", marker, real)
			if err := os.WriteFile(filepath.Join(wrapped, e.Name()), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg.PluginDirs = []string{wrapped}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := network.New(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	nic, err := m.Attach(ctx, "k0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const bound = 2 * time.Second
	dctx, dcancel := context.WithTimeout(context.Background(), bound)
	defer dcancel()
	start := time.Now()
	err = m.Detach(dctx, "k0")
	took := time.Since(start)
	t.Logf("detach with a hung DEL returned after %s: %v", took.Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "CNI del") {
		t.Fatalf("a hung DEL was not reported: %v", err)
	}
	// The plugin sleeps an hour: anything near the bound means it was cut.
	if took > bound+20*time.Second {
		t.Fatalf("detach took %s with a deadline %s away", took, bound)
	}
	// The attachment and its namespace are kept: once the plugin answers
	// again, Close runs the DEL again and nothing of it is left.
	if _, err := os.Stat(nic.NetNS); err != nil {
		t.Fatalf("the namespace %s went before a DEL succeeded: %v", nic.NetNS, err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatalf("close after the plugin recovered: %v", err)
	}
	noMasquerade(t, "codebench-tq")
	if ns, leases, records, _ := m.Leftovers(ctx); len(ns)+len(leases)+len(records) != 0 {
		t.Fatalf("left: namespaces %v, leases %v, records %v", ns, leases, records)
	}
}

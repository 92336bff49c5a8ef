package network_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/network"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
	"github.com/codebench/codebench/internal/testenv"
)

// probeCode tries each target from inside a guest: TCP connect, an HTTP
// GET, the first bytes of the answer, or the error.
const probeCode = `import json, socket, time
targets = json.loads(%q)
res = {"_at": time.time()}
for name, host, port in targets:
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while len(data) < 4096:
            b = s.recv(4096)
            if not b:
                break
            data += b
        s.close()
        res[name] = data.decode(errors="replace")
    except Exception as e:
        res[name] = "ERR " + type(e).__name__
print(json.dumps(res))
`

// serveCode serves HTTP on 8081 inside a guest for a while, checks that
// it serves (on its loopback), and reports when it was up and who came.
const serveCode = `import http.server, json, threading, time, urllib.request
hits = []
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        hits.append(self.client_address[0])
        self.send_response(200); self.end_headers(); self.wfile.write(b"guest-two")
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("0.0.0.0", 8081), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
ok = urllib.request.urlopen("http://127.0.0.1:8081/", timeout=5).read() == b"guest-two"
print("serving" if ok else "not serving", flush=True)
time.sleep(%d)
print(json.dumps({"self": ok, "hits": len(hits) - 1}))
`

// rateCode opens 40 connections one after the other, each given 0.3 s.
const rateCode = `import json, socket, time
ok, t0 = 0, time.time()
for i in range(40):
    try:
        socket.create_connection((%q, %d), timeout=0.3).close()
        ok += 1
    except Exception:
        pass
print(json.dumps({"ok": ok, "elapsed": time.time() - t0}))
`

var netLimits = agentproto.Limits{WallMS: 90_000, CPUMS: 30_000, CompileWallMS: 60_000, MemoryKB: 256 << 10, Processes: 64, OutputBytes: 64 << 10}

// runPython runs code in inst and returns its stdout.
func runPython(ctx context.Context, t *testing.T, inst *sandbox.Instance, code string) string {
	t.Helper()
	return runPythonStreaming(ctx, t, inst, code, nil)
}

// runPythonStreaming is runPython that hands progress the output while
// the program runs.
func runPythonStreaming(ctx context.Context, t *testing.T, inst *sandbox.Instance, code string, progress func(agentproto.Output)) string {
	t.Helper()
	res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: code, Limits: netLimits, Stream: progress != nil}, progress)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Run == nil || res.Run.ExitCode != 0 {
		t.Fatalf("run failed: %+v\nstderr: %s", res.Run, res.Stderr)
	}
	return res.Stdout
}

// bootNetworked cold-boots a VM on m's network and configures its
// interface, as the provisioner does.
func bootNetworked(ctx context.Context, t *testing.T, vm *testenv.VM, m *network.Manager) (*sandbox.Instance, *sandbox.NIC) {
	t.Helper()
	spec := vm.Spec
	spec.ID = sandbox.NewID("vm-")
	nic, err := m.Attach(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Detach(context.Background(), spec.ID) })
	spec.NIC = nic
	inst, err := sandbox.Boot(ctx, vm.Driver, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Stop(context.Background()) })
	if err := inst.Identify(ctx, nic); err != nil {
		t.Fatal(err)
	}
	return inst, nic
}

// newManager starts a network manager on cfg, closed with the test.
func newManager(ctx context.Context, t *testing.T, cfg network.Config) *network.Manager {
	t.Helper()
	m, err := network.New(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// probe has g connect to each target ({name, host, port}) and returns what
// each answered, or "ERR ..." where it could not connect.
func probe(ctx context.Context, t *testing.T, g *sandbox.Instance, targets [][]any) map[string]any {
	t.Helper()
	tj, _ := json.Marshal(targets)
	var got map[string]any
	out := runPython(ctx, t, g, fmt.Sprintf(probeCode, string(tj)))
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	return got
}

// TestGuestFences: a networked guest reaches the allowed test host, and
// nothing else: not the host (its side of the link, its other addresses,
// even one inside the allowed range), not another guest, not a metadata
// address, not a host outside the allow-list. The allow-list includes the
// guests' own subnet and the metadata range: what stops those is the
// fence, not the list. A guest without a network has only lo.
func TestGuestFences(t *testing.T) {
	vm := testenv.NeedJail(t)
	cfg := testConfig(t, "tf", "10.200.0.0/24", "10.99.1.0/24", "169.254.0.0/16", "10.200.0.0/24")
	cfg.TapUID, cfg.TapGID = vm.Jail.UID, vm.Jail.GID
	cfg.ConnPerSecond = 4
	metadata := netip.MustParseAddr("169.254.169.254")
	allowed := testenv.NewTestHost(t, "fa", netip.MustParsePrefix("10.99.1.0/24"), metadata)
	outside := testenv.NewTestHost(t, "fb", netip.MustParsePrefix("10.99.2.0/24"))
	hostPort := serveHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m := newManager(ctx, t, cfg)
	g1, nic1 := bootNetworked(ctx, t, vm, m)
	g2, nic2 := bootNetworked(ctx, t, vm, m)
	plain, err := sandbox.Boot(ctx, vm.Driver, vm.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Stop(context.Background())

	// The other guest serves while the first one probes: the probe starts
	// once it said it serves.
	var wg sync.WaitGroup
	var served string
	serving := make(chan struct{})
	var once sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer once.Do(func() { close(serving) })
		served = runPythonStreaming(ctx, t, g2, fmt.Sprintf(serveCode, 25), func(o agentproto.Output) {
			if strings.Contains(o.Stdout, "serving") {
				once.Do(func() { close(serving) })
			}
		})
	}()
	<-serving

	targets := [][]any{
		{"allowed", allowed.Addr.String(), allowed.Port},
		{"outside", outside.Addr.String(), outside.Port},
		{"gateway", nic1.Gateway.String(), hostPort},
		{"host_in_allowed", allowed.HostSide.String(), hostPort},
		{"host_outside", outside.HostSide.String(), hostPort},
		{"other_guest", nic2.Addr.Addr().String(), 8081},
		{"metadata", metadata.String(), allowed.Port},
	}
	got := probe(ctx, t, g1, targets)
	wg.Wait()
	var srv struct {
		Self bool `json:"self"`
		Hits int  `json:"hits"`
	}
	last := served[strings.LastIndex(strings.TrimSpace(served), "\n")+1:]
	if err := json.Unmarshal([]byte(last), &srv); err != nil || !srv.Self || !strings.HasPrefix(served, "serving\n") {
		t.Fatalf("the other guest did not serve through the probe: %q, %v", served, err)
	}
	if srv.Hits != 0 {
		t.Errorf("the other guest was reached %d times", srv.Hits)
	}
	for _, tg := range targets {
		name := tg[0].(string)
		body, _ := got[name].(string)
		if name == "allowed" {
			if !strings.Contains(body, allowed.Token) {
				t.Errorf("allowed test host: %q", body)
			}
			continue
		}
		if !strings.HasPrefix(body, "ERR ") {
			t.Errorf("%s (%v:%v) reached: %q", name, tg[1], tg[2], body)
		}
	}
	// Sanity: what the guest could not reach is up.
	if body, err := fetchHere(fmt.Sprintf("http://%s:%d/", allowed.HostSide, hostPort)); err != nil || body != "host\n" {
		t.Fatalf("the host's own server: %q %v", body, err)
	}
	waitServing(t, outside.URL())

	// The connection rate: 40 connections to the allowed host as fast
	// as the guest makes them; past the burst (2x the rate) only the rate
	// gets through.
	out := runPython(ctx, t, g1, fmt.Sprintf(rateCode, allowed.Addr, allowed.Port))
	var rate struct {
		OK      int     `json:"ok"`
		Elapsed float64 `json:"elapsed"`
	}
	if err := json.Unmarshal([]byte(out), &rate); err != nil {
		t.Fatalf("rate probe %q: %v", out, err)
	}
	t.Logf("rate limit %d/s: %d of 40 connections in %.2fs", cfg.ConnPerSecond, rate.OK, rate.Elapsed)
	most := 2*cfg.ConnPerSecond + int(float64(cfg.ConnPerSecond)*rate.Elapsed) + 2
	// Bounded by what the rate allows in the time the guest took (a slow
	// guest may stay under it: then only the bound is checked).
	if rate.OK < 2*cfg.ConnPerSecond || rate.OK > most {
		t.Errorf("rate limit %d/s: %d of 40 connections in %.1fs got through, want %d..%d", cfg.ConnPerSecond, rate.OK, rate.Elapsed, 2*cfg.ConnPerSecond, most)
	}

	ifs := runPython(ctx, t, plain, `import os; print(sorted(os.listdir("/sys/class/net")))`)
	if strings.TrimSpace(ifs) != "['lo']" {
		t.Errorf("a guest without a network has interfaces %s", ifs)
	}
	ifs = runPython(ctx, t, g1, `import os; print(sorted(os.listdir("/sys/class/net")))`)
	if strings.TrimSpace(ifs) != "['eth0', 'lo']" {
		t.Errorf("a networked guest has interfaces %s", ifs)
	}
}

// TestNetworkedClones: networked sandboxes cloned from a template with a
// network device, each on a network of its own, 20 of them one after
// the other, each reaching the allowed host; then nothing is left: no
// namespace, lease, record, and the fences go with the manager.
func TestNetworkedClones(t *testing.T) {
	vm := testenv.NeedJail(t)
	cfg := testConfig(t, "tc", "10.202.0.0/24", "10.99.3.0/24")
	cfg.TapUID, cfg.TapGID = vm.Jail.UID, vm.Jail.GID
	allowed := testenv.NewTestHost(t, "ca", netip.MustParsePrefix("10.99.3.0/24"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m, err := network.New(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	tcfg := template.Config{Root: t.TempDir(), ImageHash: vm.Image.Manifest.Hash, Languages: []lang.Language{lang.Builtin()["python"]},
		BootLimit: 2 * time.Minute, Network: m}
	p, err := provision.New(ctx, vm.Driver, vm.Spec, tcfg, true, provision.Rotation{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Template() == nil {
		t.Fatal("no template with a network device")
	}
	code := fmt.Sprintf(probeCode, fmt.Sprintf(`[["allowed", %q, %d]]`, allowed.Addr, allowed.Port))
	for i := range 20 {
		mem, err := p.Provision(ctx)
		if err != nil {
			t.Fatalf("clone %d: %v", i, err)
		}
		out := runPython(ctx, t, mem.Instance, code)
		if !strings.Contains(out, allowed.Token) {
			t.Errorf("clone %d: %s", i, out)
		}
		if err := mem.Stop(ctx); err != nil {
			t.Fatalf("clone %d stop: %v", i, err)
		}
	}
	ns, leases, records, table := m.Leftovers(ctx)
	if len(ns)+len(leases)+len(records) > 0 || !table {
		t.Fatalf("after 20 jobs: namespaces %v, leases %v, records %v, table %v", ns, leases, records, table)
	}
	noMasquerade(t, "codebench-tc")
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, table := m.Leftovers(ctx); table {
		t.Fatal("fences table left after Close")
	}
}

// TestWideAllowListStillFenced: with allow = 0.0.0.0/0, a guest still
// cannot reach Azure's wire server (168.63.129.16), a CGNAT metadata
// address (100.100.100.200), a private address the list does not name,
// nor the broker's host even when the list names its subnet; it reaches a
// private test host whose subnet the list names. All are test hosts in
// namespaces this test makes.
func TestWideAllowListStillFenced(t *testing.T) {
	vm := testenv.NeedJail(t)
	cfg := testConfig(t, "tw", "10.201.0.0/24", "0.0.0.0/0", "10.99.6.0/24", "10.99.7.0/24")
	cfg.TapUID, cfg.TapGID = vm.Jail.UID, vm.Jail.GID
	wire, cgnat := netip.MustParseAddr("168.63.129.16"), netip.MustParseAddr("100.100.100.200")
	clouds := testenv.NewTestHost(t, "wa", netip.MustParsePrefix("10.99.5.0/24"), wire, cgnat)
	named := testenv.NewTestHost(t, "wb", netip.MustParsePrefix("10.99.6.0/24"))
	broker := testenv.NewTestHost(t, "wc", netip.MustParsePrefix("10.99.7.0/24"))
	cfg.Deny = []netip.Prefix{netip.PrefixFrom(broker.Addr, 32)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, _ := bootNetworked(ctx, t, vm, newManager(ctx, t, cfg))
	targets := [][]any{
		{"named", named.Addr.String(), named.Port},
		{"wire_server", wire.String(), clouds.Port},
		{"cgnat", cgnat.String(), clouds.Port},
		{"private_unnamed", clouds.Addr.String(), clouds.Port},
		{"broker", broker.Addr.String(), broker.Port},
	}
	got := probe(ctx, t, g, targets)
	for _, tg := range targets {
		name := tg[0].(string)
		body, _ := got[name].(string)
		switch {
		case name == "named" && !strings.Contains(body, named.Token):
			t.Errorf("the named test host was not reached: %q", body)
		case name != "named" && !strings.HasPrefix(body, "ERR "):
			t.Errorf("%s (%v) reached under allow 0.0.0.0/0: %q", name, tg[1], body)
		}
	}
	// What the guest could not reach is up: reachable from this host.
	for _, h := range []*testenv.TestHost{clouds, broker} {
		waitServing(t, h.URL())
	}
	waitServing(t, fmt.Sprintf("http://%s:%d/", wire, clouds.Port))
}

// TestBandwidthLimit: with a per-guest bandwidth limit, a guest's download
// of 2 MiB takes at least half what the limit allows (a lower bound: a
// slow machine only makes it longer), while a guest without the limit, in
// the same run, is faster than that bound (the calibration: without it
// the bound would prove nothing).
func TestBandwidthLimit(t *testing.T) {
	vm := testenv.NeedJail(t)
	host := testenv.NewTestHost(t, "ba", netip.MustParsePrefix("10.99.8.0/24"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	download := func(name, subnet string, kbps int) float64 {
		cfg := testConfig(t, name, subnet, "10.99.8.0/24")
		cfg.TapUID, cfg.TapGID = vm.Jail.UID, vm.Jail.GID
		cfg.BandwidthKBps = kbps
		m, err := network.New(ctx, cfg, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(context.Background())
		g, _ := bootNetworked(ctx, t, vm, m)
		defer g.Stop(context.Background())
		out := runPython(ctx, t, g, fmt.Sprintf(`import json, time, urllib.request
start = time.time()
n = len(urllib.request.urlopen("http://%s:%d/%s", timeout=120).read())
print(json.dumps({"bytes": n, "seconds": time.time() - start}))`, host.Addr, host.Port, testenv.BigFile))
		var got struct {
			Bytes   int     `json:"bytes"`
			Seconds float64 `json:"seconds"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &got); err != nil || got.Bytes != testenv.BigFileSize {
			t.Fatalf("download %q: %v", out, err)
		}
		return got.Seconds
	}
	const kbps = 200
	free := download("tu", "10.203.0.0/24", 0)
	limited := download("tb", "10.202.0.0/24", kbps)
	// nft's kbytes are 1024 bytes; the burst is a quarter of the rate.
	least := float64(testenv.BigFileSize-kbps/4*1024) / float64(kbps*1024)
	t.Logf("2 MiB: %.2fs without a limit, %.2fs at %d KB/s (the limit allows %.2fs at the least)", free, limited, kbps, least)
	if limited < least/2 {
		t.Fatalf("at %d KB/s the download took %.2fs: the limit does not hold (at least %.2fs)", kbps, limited, least/2)
	}
	if free >= least/2 {
		t.Logf("this machine is too slow to tell the limit apart (%.2fs without it)", free)
	}
}

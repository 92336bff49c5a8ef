// Package testenv gates integration tests on real capabilities (a built guest
// image, QEMU, a RabbitMQ server). A test skips with the reason when a
// capability is absent, unless CODEBENCH_REQUIRE_VM / CODEBENCH_REQUIRE_RABBITMQ
// is set, as CI does: there a missing capability is a failure, not a skip.
package testenv

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the test cluster's admin connection

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/drivers"
	"github.com/codebench/codebench/internal/sandbox/firecracker"
	"github.com/codebench/codebench/internal/sandbox/gvisor"
	"github.com/codebench/codebench/internal/sandbox/hostcgroup"
	"github.com/codebench/codebench/internal/sandbox/qemu"
)

// Config is the configuration tests run with: the environment's, as is
// (NeedVM and NeedGVisor give each test a run dir of its own).
func Config(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func missing(t testing.TB, envVar, format string, args ...any) {
	t.Helper()
	if os.Getenv(envVar) != "" {
		t.Fatalf("required capability missing ("+envVar+" is set): "+format, args...)
	}
	t.Skipf(format, args...)
}

// Main runs a test binary's tests. A package whose tests start QEMU VMs
// calls it from TestMain: the QEMU driver re-executes the running binary
// as each VM's jail helper, and in a test that binary is the test binary.
func Main(m *testing.M) int {
	if ok, err := drivers.Reexec(os.Args[1:]); ok {
		fmt.Fprintln(os.Stderr, "driver helper:", err)
		return 1
	}
	return m.Run()
}

// VM is what a test needs to boot guests.
type VM struct {
	Config config.Config
	Image  *image.Image
	Driver *qemu.Driver
	Spec   sandbox.Spec
	RunDir string
	// Jail is how the driver jails QEMU (nil: unjailed, JailWhy says why).
	Jail    *qemu.Jail
	JailWhy string
	// Emulated: QEMU runs under TCG (no usable KVM), every guest
	// instruction emulated.
	Emulated bool
}

// NeedVM returns a QEMU driver on the current guest image, with a fresh run
// dir, or skips.
func NeedVM(t testing.TB) *VM {
	t.Helper()
	cfg := Config(t)
	if _, err := exec.LookPath(cfg.VM.QEMU); err != nil {
		missing(t, "CODEBENCH_REQUIRE_VM", "no %s: %v", cfg.VM.QEMU, err)
	}
	img, err := image.ForLanguages(cfg.DataDir, cfg.Image, cfg.ImageLanguages)
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_VM", "no guest image (run codebench image build): %v", err)
	}
	runDir, err := os.MkdirTemp("/run", "cbt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(runDir) })
	spec := drivers.Spec(img, cfg.VM)
	qcfg, why, err := qemu.ConfigFrom(cfg.VM, runDir)
	if err != nil {
		t.Fatal(err)
	}
	jail := qcfg.Jail
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	probe, err := qemu.ResolveAccel(ctx, cfg.VM.Accel, qcfg, spec, filepath.Join(cfg.DataDir, "accel-probe.json"), Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	qcfg.Accel = probe.Accel
	d, err := qemu.New(qcfg, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Probe(); err != nil {
		missing(t, "CODEBENCH_REQUIRE_VM", "capability QEMU as configured (jail %s): %v", cfg.VM.QEMUJail, err)
	}
	return &VM{Config: cfg, Image: img, Driver: d, Spec: spec, RunDir: runDir, Jail: jail, JailWhy: why, Emulated: probe.Accel == qemu.AccelTCG}
}

// NeedJail is NeedVM for a test of the QEMU jail: it skips where this host
// cannot jail QEMU (fails where CODEBENCH_REQUIRE_VM is set: CI must).
func NeedJail(t testing.TB) *VM {
	t.Helper()
	vm := NeedVM(t)
	if vm.Jail == nil || vm.Jail.Cgroups == nil {
		missing(t, "CODEBENCH_REQUIRE_VM", "QEMU is not jailed with a cgroup here: %s", vm.JailWhy)
	}
	return vm
}

// GVisor is what a test needs to start gVisor sandboxes.
type GVisor struct {
	Config config.Config
	Image  *image.Image
	Driver *gvisor.Driver
	Spec   sandbox.Spec
	RunDir string
	// Cgroups is where sandboxes get host cgroups (nil: none, CgroupsErr
	// says why).
	Cgroups    *hostcgroup.Manager
	CgroupsErr error
}

// imageAndRunDir are the current guest image (missing: skip, or fail where
// require is set) and a fresh run dir under /run named prefix..., removed
// after the test.
func imageAndRunDir(t testing.TB, cfg config.Config, require, prefix string) (*image.Image, string) {
	t.Helper()
	img, err := image.ForLanguages(cfg.DataDir, cfg.Image, cfg.ImageLanguages)
	if err != nil {
		missing(t, require, "no guest image (run codebench image build): %v", err)
	}
	runDir, err := os.MkdirTemp("/run", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(runDir) })
	return img, runDir
}

// NeedGVisor returns a gVisor driver on the current guest image, with a
// fresh run dir, or skips (fails where CODEBENCH_REQUIRE_GVISOR is set).
func NeedGVisor(t testing.TB) *GVisor {
	t.Helper()
	cfg := Config(t)
	img, runDir := imageAndRunDir(t, cfg, "CODEBENCH_REQUIRE_GVISOR", "cbg-")
	cg, cgErr := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	d, err := gvisor.New(gvisor.ConfigFrom(cfg.VM, runDir, cg), Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	platform, err := d.Platform()
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_GVISOR", "gVisor cannot run here: %v", err)
	}
	if platform == gvisor.PlatformPtrace && cfg.VM.GVisorPlatform == "" {
		missing(t, "CODEBENCH_REQUIRE_GVISOR", "capability gVisor systrap: %s has only ptrace, which the walls and the "+
			"docs do not describe (scripts/install-deps.sh installs bookworm-backports' runsc)", d.Version())
	}
	spec := drivers.Spec(img, cfg.VM)
	return &GVisor{Config: cfg, Image: img, Driver: d, Spec: spec, RunDir: runDir, Cgroups: cg, CgroupsErr: cgErr}
}

// Sandbox is a driver ready for driver-neutral tests: the image, a spec on
// it, a fresh run dir, and how to count the driver's processes there.
type Sandbox struct {
	Name   string
	Config config.Config
	Image  *image.Image
	Driver sandbox.Driver
	Spec   sandbox.Spec
	RunDir string
	// Emulated: the driver emulates the guest's instructions (QEMU under
	// TCG): what takes seconds under KVM or gVisor may take a minute.
	Emulated bool
	// process names the driver's processes on the host (their command
	// lines also name the run dir).
	process string
}

// Processes counts the driver's live processes under the run dir.
func (s *Sandbox) Processes() int { return Processes(s.RunDir, s.process) }

// Sandbox is the QEMU driver as a Sandbox.
func (v *VM) Sandbox() *Sandbox {
	return &Sandbox{Name: "qemu", Config: v.Config, Image: v.Image, Driver: v.Driver, Spec: v.Spec, RunDir: v.RunDir, Emulated: v.Emulated, process: "qemu-system"}
}

// Sandbox is the gVisor driver as a Sandbox.
func (g *GVisor) Sandbox() *Sandbox {
	return &Sandbox{Name: "gvisor", Config: g.Config, Image: g.Image, Driver: g.Driver, Spec: g.Spec, RunDir: g.RunDir, process: "runsc"}
}

// sandboxes are how a test gets each driver of the one list
// (drivers.List), by its setting.
var sandboxes = map[string]func(t testing.TB) *Sandbox{
	"firecracker": func(t testing.TB) *Sandbox { return NeedFirecracker(t) },
	"qemu":        func(t testing.TB) *Sandbox { return NeedVM(t).Sandbox() },
	"gvisor":      func(t testing.TB) *Sandbox { return NeedGVisor(t).Sandbox() },
}

// EachSandbox runs fn as a subtest for every driver of the one list
// (drivers.List, once per setting, whatever its accelerators); each skips
// (or fails, where required) on its own when it cannot run here. A driver
// added to the list that the tests cannot start fails here.
func EachSandbox(t *testing.T, fn func(t *testing.T, sb *Sandbox)) {
	seen := map[string]bool{}
	for _, d := range drivers.List(Config(t), sandbox.Spec{}, Logger(t)) {
		if seen[d.Setting] {
			continue
		}
		seen[d.Setting] = true
		need, ok := sandboxes[d.Setting]
		if !ok {
			t.Fatalf("testenv cannot start driver %s (add it to testenv's sandboxes)", d.Setting)
		}
		t.Run(d.Setting, func(t *testing.T) { fn(t, need(t)) })
	}
}

// NeedFirecracker returns the Firecracker driver on the current guest
// image, with a fresh run dir, or skips: the binary is not installable on
// this project's machines (Debian has no package), and it needs a KVM that
// boots the guest.
func NeedFirecracker(t testing.TB) *Sandbox {
	t.Helper()
	cfg := Config(t)
	if _, err := exec.LookPath(cfg.VM.Firecracker); err != nil {
		t.Skipf("capability Firecracker: no %s binary (not installable here: Debian has no package): %v", cfg.VM.Firecracker, err)
	}
	img, runDir := imageAndRunDir(t, cfg, "CODEBENCH_REQUIRE_VM", "cbf-")
	cg, _ := hostcgroup.Detect(hostcgroup.Root, hostcgroup.DefaultName)
	d, err := firecracker.New(firecracker.ConfigFrom(cfg.VM, runDir, cfg.DataDir, cg), Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Probe(); err != nil {
		t.Skipf("capability Firecracker: cannot run on this host: %v", err)
	}
	spec := drivers.Spec(img, cfg.VM)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inst, err := sandbox.Boot(ctx, d, spec)
	if err != nil {
		t.Skipf("capability Firecracker: this host's KVM does not boot the guest: %v", err)
	}
	_ = inst.Stop(ctx)
	return &Sandbox{Name: "firecracker", Config: cfg, Image: img, Driver: d, Spec: spec, RunDir: runDir, process: "firecracker"}
}

// KillProcesses sends SIGKILL to the driver's processes under the run dir,
// the way a crash would end them, and returns how many it signalled.
func (s *Sandbox) KillProcesses() int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && containsBytes(b, []byte(s.RunDir+"/")) && containsBytes(b, []byte(s.process)) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// RabbitURL returns a reachable broker URL or skips.
func RabbitURL(t testing.TB) string {
	t.Helper()
	cfg := Config(t)
	u, err := url.Parse(cfg.Worker.RabbitURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_RABBITMQ", "no RabbitMQ at %s: %v", u.Host, err)
	}
	c.Close()
	return cfg.Worker.RabbitURL
}

// Logger logs to the test's output when -v, else discards below warnings.
func Logger(t testing.TB) *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// QEMUProcesses counts live QEMU processes whose command line mentions dir.
func QEMUProcesses(dir string) int { return Processes(dir, "qemu-system") }

// SandboxProcesses counts live processes of any driver (QEMU, runsc and
// what runsc started) whose command line mentions dir.
func SandboxProcesses(dir string) int { return Processes(dir, "") }

// Processes counts live processes whose command line mentions dir and name.
func Processes(dir, name string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if containsBytes(b, []byte(dir+"/")) && containsBytes(b, []byte(name)) {
			// Zombies have an empty cmdline, so a match is a live process.
			n++
		}
	}
	return n
}

func containsBytes(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return true
		}
	}
	return false
}

// Entries lists dir's entries (the VMs' run dirs still present).
func Entries(dir string) []string {
	var names []string
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// Vhost creates a fresh RabbitMQ virtual host for one test (deleted at the
// end) and returns the AMQP URL for it: test packages run in parallel and
// must not consume each other's jobs. It uses the management API with the
// URL's credentials.
func Vhost(t testing.TB, name string) string {
	t.Helper()
	base := RabbitURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	vhost := fmt.Sprintf("cbt-%s-%d", name, time.Now().UnixNano())
	m := NewManagement(t)
	m.Do(t, "PUT", "vhosts/"+vhost, "{}", nil)
	m.Do(t, "PUT", "permissions/"+vhost+"/"+m.user, `{"configure":".*","write":".*","read":".*"}`, nil)
	t.Cleanup(func() { m.Do(t, "DELETE", "vhosts/"+vhost, "", nil) })
	u.Path = "/" + vhost
	return u.String()
}

// Management is the broker's HTTP management API, with the credentials of
// the configured AMQP URL.
type Management struct {
	base, user, pass string
}

// NewManagement returns the configured management API or skips.
func NewManagement(t testing.TB) *Management {
	t.Helper()
	cfg := Config(t)
	u, err := url.Parse(RabbitURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	return &Management{base: strings.TrimSuffix(cfg.Worker.ManagementURL, "/") + "/api/", user: u.User.Username(), pass: pass}
}

// Do calls the API and decodes the answer into out (when not nil); a status
// other than 2xx fails the test.
func (m *Management) Do(t testing.TB, method, path, body string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, m.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(m.user, m.pass)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_RABBITMQ", "RabbitMQ management API unreachable: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("management API %s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("management API %s %s: %v: %s", method, path, err, b)
		}
	}
}

// BrokerEval evaluates an Erlang expression on the test broker's node with
// rabbitmqctl (to change a setting such as max_message_size for one test).
func BrokerEval(t testing.TB, expr string) string {
	t.Helper()
	cfg := Config(t)
	out, err := exec.Command("rabbitmqctl", "-q", "-n", cfg.Worker.BrokerNode, "eval", expr).CombinedOutput()
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_RABBITMQ", "rabbitmqctl eval on %s: %v: %s", cfg.Worker.BrokerNode, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Footprint counts the live processes whose command line names dir (a
// driver's run dir: the VMMs, runsc and its sandboxes) and their resident
// memory: what a worker's sandboxes hold on the host, unlike the host's
// totals, which other tests running at the same time move.
func Footprint(dir string) (procs int, rssKB int64) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !containsBytes(b, []byte(dir+"/")) {
			continue
		}
		procs++
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rssKB += n
			}
		}
	}
	return procs, rssKB
}

// Postgres returns the URL of a fresh database of its own on the test
// PostgreSQL cluster (scripts/postgres.sh, which make test starts; its
// admin URL in CODEBENCH_TEST_POSTGRES_URL), dropped after the test.
func Postgres(t testing.TB, name string) string {
	t.Helper()
	admin := os.Getenv("CODEBENCH_TEST_POSTGRES_URL")
	if admin == "" {
		missing(t, "CODEBENCH_REQUIRE_POSTGRES", "capability PostgreSQL: no test cluster (CODEBENCH_TEST_POSTGRES_URL; scripts/test.sh starts one)")
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		missing(t, "CODEBENCH_REQUIRE_POSTGRES", "capability PostgreSQL: %s: %v", admin, err)
	}
	dbName := fmt.Sprintf("cbt_%s_%d", name, time.Now().UnixNano())
	if _, err := db.Exec(`CREATE DATABASE ` + dbName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec(`DROP DATABASE IF EXISTS ` + dbName + ` WITH (FORCE)`) })
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + dbName
	return u.String()
}

// UserLike is a user of the test's own with the permissions role (one of
// the users scripts/rabbitmq.sh creates: codebench-worker,
// codebench-producer, codebench-api) has on the broker the test set-up
// started, on the vhost of vhostURL (Vhost): its URL there. It fails
// where the broker has no such role.
func UserLike(t testing.TB, role, vhostURL string) string {
	t.Helper()
	m := NewManagement(t)
	u, err := url.Parse(vhostURL)
	if err != nil {
		t.Fatal(err)
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	var perms []struct{ Vhost, Configure, Write, Read string }
	m.Do(t, "GET", "users/"+role+"/permissions", "", &perms)
	if len(perms) == 0 {
		t.Fatalf("the broker has no permissions for %s (scripts/rabbitmq.sh creates it)", role)
	}
	name := fmt.Sprintf("%s-%d", role, time.Now().UnixNano())
	m.Do(t, "PUT", "users/"+name, `{"password":"pw","tags":""}`, nil)
	t.Cleanup(func() { m.Do(t, "DELETE", "users/"+name, "", nil) })
	m.Do(t, "PUT", "permissions/"+url.PathEscape(vhost)+"/"+name,
		fmt.Sprintf(`{"configure":%q,"write":%q,"read":%q}`, perms[0].Configure, perms[0].Write, perms[0].Read), nil)
	u.User = url.UserPassword(name, "pw")
	return u.String()
}

// NeedImage returns the last image built for the language profile
// languages (CODEBENCH_LANGUAGES's values), or skips (fails where VMs are
// required: make test builds every profile its tests use).
func NeedImage(t testing.TB, languages string) *image.Image {
	t.Helper()
	cfg := Config(t)
	img, err := image.ForLanguages(cfg.DataDir, "", languages)
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_VM", "capability: the %s languages' image (codebench image build --languages %s): %v", languages, languages, err)
	}
	return img
}

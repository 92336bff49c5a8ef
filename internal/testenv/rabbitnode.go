package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Node is a RabbitMQ node a test starts for itself with scripts/rabbitmq.sh:
// its own name, ports (loopback only) and data directory, so that it can be
// stopped, killed and clustered without touching the suite's broker. It is
// stopped and removed when the test ends.
type Node struct {
	Name     string // short name; the node is Name@localhost
	Port     int    // AMQP; management is Port+10000, distribution Port+20000
	Base     string
	URL      string // amqp://admin:admin@127.0.0.1:Port/
	MgmtURL  string
	conf     string
	env      []string
	repoRoot string
}

// StartNode starts a fresh node. conf is extra rabbitmq.conf lines; env is
// extra environment for the script (e.g. CODEBENCH_QUORUM=true for the
// topology it declares after each start).
func StartNode(t testing.TB, name string, port int, conf string, env ...string) *Node {
	if os.Getenv("CODEBENCH_UNIT_ONLY") != "" {
		t.Skip("make unit starts no broker (CODEBENCH_UNIT_ONLY)")
	}
	t.Helper()
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		missing(t, "CODEBENCH_REQUIRE_RABBITMQ", "rabbitmq-server is not installed: %v", err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Under /tmp, not t.TempDir: the node runs as the rabbitmq user, which
	// cannot enter a test's private temporary directory.
	base, err := os.MkdirTemp("", "cb-rmq-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Name: name, Port: port, Base: base, conf: conf, env: env, repoRoot: root,
		URL:     fmt.Sprintf("amqp://admin:admin@127.0.0.1:%d/", port),
		MgmtURL: fmt.Sprintf("http://127.0.0.1:%d", port+10000)}
	t.Cleanup(func() {
		_ = n.script("stop")
		n.Kill(t) // whatever is left
		_ = os.RemoveAll(base)
	})
	if err := n.script("start", "RMQ_FRESH=1"); err != nil {
		t.Fatalf("start node %s: %v", name, err)
	}
	return n
}

// Node is the Erlang node name.
func (n *Node) Node() string { return n.Name + "@localhost" }

func (n *Node) script(cmd string, env ...string) error {
	c := exec.Command(filepath.Join(n.repoRoot, "scripts", "rabbitmq.sh"), cmd)
	c.Env = append(os.Environ(), append([]string{
		"RMQ_NAME=" + n.Name, "RMQ_PORT=" + strconv.Itoa(n.Port), "RMQ_MGMT_PORT=" + strconv.Itoa(n.Port+10000),
		"RMQ_BASE=" + n.Base, "RMQ_CONF=" + n.conf, "RABBITMQ_USER=admin", "RABBITMQ_PASSWORD=admin",
		// Not the suite's RMQ_FRESH=1 (scripts/test.sh exports it for its
		// own broker): a restarted node keeps its data unless asked.
		"RMQ_FRESH=",
	}, append(n.env, env...)...)...)
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmq.sh %s: %w: %s", cmd, err, out)
	}
	return nil
}

// Stop stops the node cleanly (rabbitmqctl stop).
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if err := n.script("stop"); err != nil {
		t.Fatal(err)
	}
}

// Start starts the node again, with its data.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	if err := n.script("start"); err != nil {
		t.Fatal(err)
	}
}

// Kill ends the node with SIGKILL, as a crash would, and waits for it.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Base, "pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("node %s (pid %d) did not die", n.Name, pid)
}

// Ctl runs rabbitmqctl against the node.
func (n *Node) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	c := exec.Command("rabbitmqctl", append([]string{"-q", "-n", n.Node()}, args...)...)
	c.Env = append(os.Environ(), "ERL_EPMD_ADDRESS=127.0.0.1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s on %s: %v: %s", strings.Join(args, " "), n.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// repoRoot is the directory holding go.mod, above the test's package.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/telemetry"
)

// TestSystemdUnit: systemd-analyze verify finds nothing to say about the
// units, the worker's and the API's (a warning is a failure), with
// ExecStart pointing at a built binary.
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CODEBENCH_REQUIRE_VM") != "" {
			t.Fatalf("systemd-analyze missing: %v", err)
		}
		t.Skipf("systemd-analyze missing: %v", err)
	}
	for _, name := range []string{"worker", "api"} {
		b, err := os.ReadFile("../../deploy/systemd/codebench-" + name + ".service")
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(b), "/usr/local/bin/codebench", binary)
		if !strings.Contains(unit, binary+" "+name+" --config /etc/codebench/codebench.toml") {
			t.Fatalf("%s: ExecStart does not run %s with the config file", name, name)
		}
		p := filepath.Join(t.TempDir(), "codebench-"+name+".service")
		if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("%s: systemd-analyze verify: %v\n%s", name, err, out)
		}
	}
}

// TestExampleConfig: the example config loads (every key known, every
// value valid) and --print-config accepts it.
func TestExampleConfig(t *testing.T) {
	c, err := config.Load(func(string) (string, bool) { return "", false }, "../../deploy/codebench.toml", nil)
	if err == nil {
		t.Fatal("the example names files that do not exist here, and still loaded") // its password file
	}
	if !strings.Contains(err.Error(), "rabbitmq_password_file") {
		t.Fatalf("example config: %v", err)
	}
	pass := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pass, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = config.Load(func(string) (string, bool) { return "", false }, "../../deploy/codebench.toml",
		map[string]string{"rabbitmq_password_file": pass})
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if !c.Worker.Quorum || c.MetricsAddr != "127.0.0.1:9464" || c.Worker.RabbitURL != "amqps://codebench:pw@127.0.0.1:5671/" {
		t.Fatalf("example config loaded as %+v", c.Worker)
	}
	// Only the file and the password: the test broker's settings
	// in this environment would (rightly) override the file's.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CODEBENCH_") && !strings.HasPrefix(kv, "RABBITMQ_") {
			env = append(env, kv)
		}
	}
	env = append(env, "CODEBENCH_RUN_DIR="+t.TempDir(), "CODEBENCH_RABBITMQ_PASSWORD_FILE="+pass)
	r := runCLIEnv(t, env, "worker", "--config", "../../deploy/codebench.toml", "--print-config")
	if r.exit != 0 || !strings.Contains(r.stdout, `rabbitmq_url = "amqps://codebench:xxxxx@127.0.0.1:5671/"`) || strings.Contains(r.stdout, ":pw@") {
		t.Fatalf("--print-config: exit %d\n%s%s", r.exit, r.stdout, r.stderr)
	}
}

// exported is every metric name the worker exports.
func exported(t *testing.T) []string {
	t.Helper()
	m := telemetry.New([]string{"c"})
	m.WatchPool(func() (int, int, int) { return 0, 0, 0 })
	// Vectors are gathered once they have a series: give each one.
	m.JobFinished("c", "done", "ok", job.Timings{TotalUS: 1, CompileUS: 1, RunUS: 1})
	m.JobRequeued("test")
	m.SandboxStarted("boot", 1)
	m.SandboxFailed("boot")
	m.StatusTrimmed(1)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "codebench_") {
			names = append(names, f.GetName())
		}
	}
	return names
}

// TestGrafanaDashboard: the dashboard parses, every codebench metric its
// queries use is one the worker exports, and every one the worker exports
// is on it.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/codebench-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	have := exported(t)
	used := map[string]bool{}
	name := regexp.MustCompile(`codebench_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suf); ok && slices.Contains(have, b) {
						base = b
					}
				}
				if !slices.Contains(have, base) {
					t.Errorf("panel %q queries %s, which the worker does not export", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	for _, n := range have {
		if !used[n] {
			t.Errorf("the worker exports %s, but no panel shows it", n)
		}
	}
}

// TestKEDAScaledObject: the example scales a Deployment on the length of
// the queue the worker consumes.
func TestKEDAScaledObject(t *testing.T) {
	f, err := os.Open("../../deploy/keda/scaledobject.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := map[string]map[string]any{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		kinds[doc["kind"].(string)] = doc
	}
	so := kinds["ScaledObject"]
	if so == nil || kinds["TriggerAuthentication"] == nil {
		t.Fatalf("documents: %v", kinds)
	}
	spec := so["spec"].(map[string]any)
	trig := spec["triggers"].([]any)[0].(map[string]any)
	md := trig["metadata"].(map[string]any)
	if trig["type"] != "rabbitmq" || md["queueName"] != queue.JobsQueue || md["mode"] != "QueueLength" {
		t.Fatalf("trigger %v", trig)
	}
	auth := trig["authenticationRef"].(map[string]any)["name"]
	if auth != kinds["TriggerAuthentication"]["metadata"].(map[string]any)["name"] {
		t.Fatalf("trigger authenticates with %v", auth)
	}
}

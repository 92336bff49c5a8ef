package main

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigLoadedOnceUnderTheUnit: with the shipped systemd unit's own
// command line, the file's debug sets the log level and its shutdown_grace
// moves the hard deadline. Both once came from the environment alone, so
// under --config the level stayed info and the process exited mid-drain.
func TestConfigLoadedOnceUnderTheUnit(t *testing.T) {
	argv := unitExecStart(t, "../../deploy/systemd/codebench-worker.service")
	file := filepath.Join(t.TempDir(), "codebench.toml")
	if err := os.WriteFile(file, []byte("debug = true\nshutdown_grace = \"7m\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, a := range argv {
		if a == "/etc/codebench/codebench.toml" {
			argv[i] = file
		}
	}
	noEnv := func(string) (string, bool) { return "", false }
	inv, err := parseInvocation(argv, noEnv)
	if err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	if inv.name != "worker" || inv.level != slog.LevelDebug || inv.hardDeadline != 7*time.Minute+hardDeadlineMargin {
		t.Fatalf("%q: command %q, level %v, hard deadline %s; want worker, debug, 7m + %s", argv, inv.name, inv.level, inv.hardDeadline, hardDeadlineMargin)
	}
	// Flags beat the file, and every command loads the same way.
	inv, err = parseInvocation([]string{"doctor", "--config", file, "--debug=false", "--shutdown-grace", "1s"}, noEnv)
	if err != nil || inv.level != slog.LevelInfo || inv.cfg.Worker.Grace != time.Second || inv.hardDeadline != 0 {
		t.Fatalf("doctor with flags: %v level %v grace %s deadline %s", err, inv.level, inv.cfg.Worker.Grace, inv.hardDeadline)
	}
	// A command's own flag wins over the setting of the same name.
	inv, err = parseInvocation([]string{"doctor", "--driver", "gvisor"}, noEnv)
	if err != nil || inv.cfg.VM.Driver == "gvisor" {
		t.Fatalf("doctor --driver reached the setting: %v %q", err, inv.cfg.VM.Driver)
	}
}

// TestAPIUnit: the API's unit starts the api command with the shared
// configuration file, and no secret on its command line.
func TestAPIUnit(t *testing.T) {
	argv := unitExecStart(t, "../../deploy/systemd/codebench-api.service")
	noEnv := func(string) (string, bool) { return "", false }
	for i, a := range argv {
		if a == "/etc/codebench/codebench.toml" {
			argv[i] = filepath.Join(t.TempDir(), "none.toml")
			if err := os.WriteFile(argv[i], []byte("api_addr = \"127.0.0.1:2999\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	inv, err := parseInvocation(argv, noEnv)
	if err != nil || inv.name != "api" || inv.cfg.API.Addr != "127.0.0.1:2999" {
		t.Fatalf("%q: %v %q %q", argv, err, inv.name, inv.cfg.API.Addr)
	}
}

// unitExecStart is the unit's ExecStart, without the binary.
func unitExecStart(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			return strings.Fields(rest)[1:]
		}
	}
	t.Fatalf("%s has no ExecStart", path)
	return nil
}

// TestSandboxesUnit: the sandbox host's unit starts "codebench sandboxes"
// with the shared config file.
func TestSandboxesUnit(t *testing.T) {
	argv := unitExecStart(t, "../../deploy/systemd/codebench-sandboxes.service")
	for i, a := range argv {
		if a == "/etc/codebench/codebench.toml" {
			argv[i] = filepath.Join(t.TempDir(), "c.toml")
			if err := os.WriteFile(argv[i], []byte("sandboxes_addr = \"127.0.0.1:2998\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	inv, err := parseInvocation(argv, func(string) (string, bool) { return "", false })
	if err != nil || inv.name != "sandboxes" || inv.cfg.Sandboxes.Addr != "127.0.0.1:2998" || inv.hardDeadline != sandboxesShutdown+hardDeadlineMargin {
		t.Fatalf("%q: %v %+v", argv, err, inv)
	}
	// Another driver than gVisor is refused, saying why.
	if r := runCLIEnv(t, append(os.Environ(), "CODEBENCH_DRIVER=qemu"), "sandboxes"); r.exit == 0 || !strings.Contains(r.stderr, "run on gVisor") {
		t.Fatalf("sandboxes on qemu: exit %d: %s", r.exit, r.stderr)
	}
	// Off loopback, API keys are required.
	if _, err := parseInvocation([]string{"sandboxes", "--sandboxes-addr", "0.0.0.0:2359"}, func(string) (string, bool) { return "", false }); err == nil {
		t.Fatal("a non-loopback address without API keys was accepted")
	}
}

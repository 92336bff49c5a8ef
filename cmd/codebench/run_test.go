package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/sandbox/drivers"
	"github.com/codebench/codebench/internal/testenv"
)

// These tests run the real binary, as a user would, against real VMs.

var binary string

func TestMain(m *testing.M) {
	// The QEMU driver re-executes this test binary as its jail helper.
	if drivers.IsReexec(os.Args[1:]) {
		os.Exit(testenv.Main(m))
	}
	dir, err := os.MkdirTemp("", "codebench-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "codebench")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	exit           int
}

func runCLI(t *testing.T, runDir string, args ...string) result {
	t.Helper()
	return runCLIWith(t, nil, runDir, args...)
}

func runCLIWith(t *testing.T, env []string, runDir string, args ...string) result {
	t.Helper()
	return runCLIEnv(t, append(append(os.Environ(), "CODEBENCH_RUN_DIR="+runDir), env...), args...)
}

// runCLIEnv runs the binary with exactly env.
func runCLIEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRunCommand runs "codebench run" on the driver this host chooses by
// default (auto) and on QEMU explicitly.
func TestRunCommand(t *testing.T) {
	env := testenv.NeedVM(t)
	tests := []struct {
		name       string
		args       []string
		wantStdout string
		wantStderr string
		wantExit   int
	}{
		{"c", []string{"run", "../../examples/hello.c"}, "Hello, World!\n", "verdict=ok", 0},
		{"cpp", []string{"run", "../../examples/hello.cpp"}, "Hello, World!\n", "verdict=ok", 0},
		{"python", []string{"run", "../../examples/hello.py"}, "Hello, World!\n", "verdict=ok", 0},
		{"compile error", []string{"run", "../../examples/compile_error.c"}, "", "undefined_variable", exitCompileError},
		{"timeout", []string{"run", "--wall-ms", "1500", "../../examples/forever.c"}, "", "verdict=time_limit", exitTimeLimit},
		{"json", []string{"run", "--json", "../../examples/hello.py"}, `"stdout": "Hello, World!\n"`, "", 0},
	}
	for _, drv := range []struct {
		name string
		env  []string
	}{
		{"auto", nil},
		{"qemu", []string{"CODEBENCH_DRIVER=qemu", "CODEBENCH_ALLOW_TCG=1"}},
	} {
		t.Run(drv.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					runDir := filepath.Join(env.RunDir, drv.name+"-"+strings.ReplaceAll(tt.name, " ", "-"))
					r := runCLIWith(t, drv.env, runDir, tt.args...)
					if r.exit != tt.wantExit || !strings.Contains(r.stdout, tt.wantStdout) || !strings.Contains(r.stderr, tt.wantStderr) {
						t.Fatalf("exit %d, want %d\nstdout: %q (want %q)\nstderr: %s (want %q)", r.exit, tt.wantExit, r.stdout, tt.wantStdout, r.stderr, tt.wantStderr)
					}
					// The sandbox is gone: no process, no run dir entry.
					if n := testenv.SandboxProcesses(runDir); n != 0 {
						t.Fatalf("%d sandbox processes left", n)
					}
					if left := testenv.Entries(runDir); len(left) != 0 {
						t.Fatalf("run dir entries left: %v", left)
					}
				})
			}
		})
	}
}

func TestRunRefusesUnknownExtension(t *testing.T) {
	f := filepath.Join(t.TempDir(), "prog.swift") // Debian serves no Swift
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "/run/cbt-noext", "run", f)
	if r.exit == 0 || !strings.Contains(r.stderr, "--lang") {
		t.Fatalf("exit %d stderr %s", r.exit, r.stderr)
	}
}

// TestRunJobRefusesUnknownField: run --job refuses what a worker refuses,
// a field it does not know (a misspelt "interactor" would judge nothing).
func TestRunJobRefusesUnknownField(t *testing.T) {
	f := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(f, []byte(`{"id":"x","language":"python","code":"print(1)","tests":[{}],"interactr":{"language":"python","code":"x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "/run/cbt-unknown", "run", "--job", f)
	if r.exit == 0 || !strings.Contains(r.stderr, `unknown field "interactr"`) {
		t.Fatalf("exit %d stderr %s", r.exit, r.stderr)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/testenv"
)

// startAPI starts "codebench api" on a free loopback port with a store of
// its own, and waits until it answers.
func startAPI(t *testing.T, logs io.Writer, env ...string) (*exec.Cmd, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, "api")
	cmd.Env = append(append(os.Environ(), "CODEBENCH_API_ADDR="+addr), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	base := "http://" + addr
	eventually(t, "the API", 30*time.Second, func() bool {
		resp, err := http.Get(base + "/languages")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return cmd, base
}

// apiCall sends a JSON request and decodes the JSON answer.
func apiCall(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func statusID(m map[string]any) float64 {
	st, _ := m["status"].(map[string]any)
	id, _ := st["id"].(float64)
	return id
}

// TestJudge0API runs Judge0 clients' requests against "codebench api" in
// front of a real worker (the default driver) over a real broker: each
// status id a program can cause, base64 both ways, a submission polled
// without wait, and the API killed with -9 mid-run then restarted: the
// token it gave out still reaches its result (the status waited in the
// durable reply queue).
func TestJudge0API(t *testing.T) {
	vm := testenv.NeedVM(t)
	url := testenv.Vhost(t, "api")
	var wlogs, alogs bytes.Buffer
	startWorkerBinary(t, &wlogs, "RABBITMQ_URL="+url, "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "api"), "CODEBENCH_POOL_SIZE=2")
	db := filepath.Join(t.TempDir(), "api.db")
	apiEnv := []string{"RABBITMQ_URL=" + url, "CODEBENCH_API_DATABASE_URL=" + db}
	api, base := startAPI(t, &alogs, apiEnv...)
	defer func() {
		if t.Failed() {
			t.Logf("worker:\n%s\napi:\n%s", wlogs.String(), alogs.String())
		}
	}()

	type sub = map[string]any
	for _, tc := range []struct {
		name  string
		sub   sub
		want  float64
		check func(m map[string]any) string
	}{
		{"hello C", sub{"source_code": "#include <stdio.h>\nint main(void){printf(\"Hello, World!\\n\");return 0;}", "language_id": 50}, 3,
			func(m map[string]any) string {
				if m["stdout"] != "Hello, World!\n" || m["exit_code"] != 0.0 || m["time"] == nil || m["memory"] == nil {
					return "stdout, exit code, time, memory"
				}
				return ""
			}},
		{"compile error", sub{"source_code": "int main(void){ return x; }", "language_id": 50}, 6,
			func(m map[string]any) string {
				if s, _ := m["compile_output"].(string); !strings.Contains(s, "error") {
					return "compile_output"
				}
				return ""
			}},
		{"non-zero exit", sub{"source_code": "import sys\nsys.exit(3)", "language_id": 71}, 11,
			func(m map[string]any) string {
				if m["exit_code"] != 3.0 {
					return "exit_code"
				}
				return ""
			}},
		{"SIGSEGV", sub{"source_code": "int main(void){ volatile int *p = 0; return *p; }", "language_id": 50}, 7,
			func(m map[string]any) string {
				if m["exit_signal"] != 11.0 {
					return "exit_signal"
				}
				return ""
			}},
		{"SIGFPE", sub{"source_code": "int main(void){ volatile int z = 0; return 1 / z; }", "language_id": 50}, 9, nil},
		{"SIGABRT", sub{"source_code": "#include <stdlib.h>\nint main(void){ abort(); }", "language_id": 50}, 10, nil},
		{"wrong answer", sub{"source_code": "print(41)", "language_id": 71, "expected_output": "42"}, 4, nil},
		{"accepted, trailing white space", sub{"source_code": "print('42  ')", "language_id": 71, "expected_output": "42\n\n"}, 3, nil},
		{"time limit", sub{"source_code": "while True: pass", "language_id": 71, "cpu_time_limit": 1, "wall_time_limit": 3}, 5, nil},
		{"stdin and arguments", sub{"source_code": "import sys\nprint(input(), sys.argv[1:])", "language_id": 71, "stdin": "in", "command_line_arguments": "a b"}, 3,
			func(m map[string]any) string {
				if m["stdout"] != "in ['a', 'b']\n" {
					return "stdout"
				}
				return ""
			}},
	} {
		code, m := apiCall(t, "POST", base+"/submissions?wait=true&fields=*", tc.sub)
		if code != 201 || statusID(m) != tc.want {
			t.Errorf("%s: %d status %v, want %v: %v", tc.name, code, m["status"], tc.want, m)
			continue
		}
		if tc.check != nil {
			if what := tc.check(m); what != "" {
				t.Errorf("%s: %s: %v", tc.name, what, m)
			}
		}
	}

	// base64 both ways, no wait, polled as the Python SDK polls.
	code, m := apiCall(t, "POST", base+"/submissions?base64_encoded=true", map[string]any{
		"source_code": "cHJpbnQoIsOpIiAqIDQwKQ==", "language_id": 71}) // print("é" * 40)
	tok, _ := m["token"].(string)
	if code != 201 || len(m) != 1 || tok == "" {
		t.Fatalf("no wait: %d %v", code, m)
	}
	eventually(t, "the polled result", 2*time.Minute, func() bool {
		_, m = apiCall(t, "GET", base+"/submissions/"+tok+"?base64_encoded=true&fields=*", nil)
		return statusID(m) >= 3
	})
	// Ruby's Base64.encode64 of "é" * 40 + "\n": 60 characters a line.
	want := "w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nD\nqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6kK\n"
	if statusID(m) != 3 || m["stdout"] != want {
		t.Fatalf("base64: %v", m)
	}

	// kill -9 of the API while a job runs, then a restart: the token is
	// answered (the worker's status waited in the durable reply queue).
	code, m = apiCall(t, "POST", base+"/submissions", map[string]any{"source_code": "import time\ntime.sleep(2)\nprint('late')", "language_id": 71})
	tok, _ = m["token"].(string)
	if code != 201 || tok == "" {
		t.Fatalf("before the kill: %d %v", code, m)
	}
	if err := api.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = api.Process.Wait()
	time.Sleep(3 * time.Second) // the job ends while no API runs
	_, base = startAPI(t, &alogs, apiEnv...)
	eventually(t, "the result after the restart", 2*time.Minute, func() bool {
		_, m = apiCall(t, "GET", base+"/submissions/"+tok, nil)
		return statusID(m) >= 3
	})
	if statusID(m) != 3 || m["stdout"] != "late\n" {
		t.Fatalf("after the restart: %v", m)
	}
}

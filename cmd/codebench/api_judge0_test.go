package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/testenv"
)

// TestJudge0API runs Judge0 clients' requests against "codebench api" in
// front of a real worker (the default driver) over a real broker: each
// status id a program can cause, base64 both ways, a submission polled
// without wait, additional files, a callback, DELETE, /workers, the
// playground, and the API killed with -9 mid-burst then restarted: every
// token it gave out still reaches its result.
func TestJudge0API(t *testing.T) {
	vm := testenv.NeedVM(t)
	url := testenv.Vhost(t, "api")
	var wlogs, alogs bytes.Buffer
	startWorkerBinary(t, &wlogs, "RABBITMQ_URL="+url, "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "api"), "CODEBENCH_POOL_SIZE=2")
	db := filepath.Join(t.TempDir(), "api.db")
	// Callbacks go to a test server on loopback, the one host allowed.
	callbacks := make(chan map[string]any, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if r.Method == http.MethodPut && json.NewDecoder(r.Body).Decode(&m) == nil {
			callbacks <- m
		}
	}))
	defer hook.Close()
	apiEnv := []string{"RABBITMQ_URL=" + url, "CODEBENCH_API_DATABASE_URL=" + db,
		"CODEBENCH_API_CALLBACK_ALLOW=" + strings.TrimPrefix(hook.URL, "http://"),
		"CODEBENCH_API_ENABLE_DELETE=true", "CODEBENCH_API_AUTHZ_TOKENS=admin"}
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
		// 7, not 1: gcc turns 1 / z into a compare (its only values are
		// -1, 0 and 1), with no division to fault.
		{"SIGFPE", sub{"source_code": "#include <stdio.h>\nint main(void){ volatile int z = 0; printf(\"%d\\n\", 7 / z); return 0; }", "language_id": 50}, 9, nil},
		{"SIGABRT", sub{"source_code": "#include <stdlib.h>\nint main(void){ abort(); }", "language_id": 50}, 10, nil},
		// A file over max_file_size (KB): the kernel's SIGXFSZ.
		{"SIGXFSZ", sub{"source_code": "#include <stdio.h>\nint main(void){ FILE *f = fopen(\"big\", \"w\"); for (int i = 0; i < 1 << 20; i++) fputc('x', f); fclose(f); return 0; }",
			"language_id": 50, "max_file_size": 64}, 8,
			func(m map[string]any) string {
				if m["exit_signal"] != 25.0 {
					return "exit_signal"
				}
				return ""
			}},
		{"another signal", sub{"source_code": "#include <signal.h>\n#include <unistd.h>\nint main(void){ kill(getpid(), SIGUSR1); pause(); }", "language_id": 50}, 12,
			func(m map[string]any) string {
				if m["exit_signal"] != 10.0 {
					return "exit_signal"
				}
				return ""
			}},
		{"additional files", sub{"source_code": "#include <stdio.h>\n#include \"greet.h\"\nint main(void){ FILE *f = fopen(\"data.txt\", \"r\"); int n = 0; fscanf(f, \"%d\", &n); printf(GREETING \" %d\\n\", n); return 0; }",
			"language_id": 50, "additional_files": zipOf(t, map[string]string{"greet.h": "#define GREETING \"hi from a header\"\n", "data.txt": "42\n"})}, 3,
			func(m map[string]any) string {
				if m["stdout"] != "hi from a header 42\n" {
					return "stdout"
				}
				return ""
			}},
		{"wrong answer", sub{"source_code": "print(41)", "language_id": 71, "expected_output": "42"}, 4, nil},
		{"accepted, trailing white space", sub{"source_code": "print('42  ')", "language_id": 71, "expected_output": "42\n\n"}, 3, nil},
		{"time limit", sub{"source_code": "while True: pass", "language_id": 71, "cpu_time_limit": 1, "wall_time_limit": 3}, 5, nil},
		{"stderr to stdout, interleaved", sub{"source_code": "import sys\nfor i in range(2):\n    print('out', i, flush=True)\n    print('err', i, file=sys.stderr, flush=True)",
			"language_id": 71, "redirect_stderr_to_stdout": true}, 3,
			func(m map[string]any) string {
				if m["stdout"] != "out 0\nerr 0\nout 1\nerr 1\n" || m["stderr"] != nil {
					return "stdout, stderr"
				}
				return ""
			}},
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

	// A zip bomb in additional_files: 422, nothing unpacked past the bound.
	code, m = apiCall(t, "POST", base+"/submissions", map[string]any{"source_code": "int main(){}", "language_id": 50,
		"additional_files": zipOf(t, map[string]string{"zeros": strings.Repeat("\x00", 64<<20)})})
	if e, _ := json.Marshal(m["additional_files"]); code != 422 || !strings.Contains(string(e), "max_extract_size") {
		t.Fatalf("zip bomb: %d %v", code, m)
	}

	// A callback: the default fields, base64, PUT to the allowed host.
	code, m = apiCall(t, "POST", base+"/submissions", map[string]any{"source_code": "print('called back')", "language_id": 71, "callback_url": hook.URL + "/done"})
	if code != 201 {
		t.Fatalf("with a callback: %d %v", code, m)
	}
	select {
	case cb := <-callbacks:
		if cb["token"] != m["token"] || statusID(cb) != 3 || cb["stdout"] != "Y2FsbGVkIGJhY2sK\n" {
			t.Fatalf("callback: %v", cb)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("no callback")
	}
	if code, m := apiCall(t, "POST", base+"/submissions", map[string]any{"source_code": "x", "language_id": 71, "callback_url": "http://10.1.2.3/"}); code != 422 {
		t.Fatalf("a callback to a host not allowed: %d %v", code, m)
	}

	// DELETE, authorized: the finished submission, base64, then gone.
	req, _ := http.NewRequest("DELETE", base+"/submissions/"+tok+"?fields=token,stdout", nil)
	req.Header.Set("X-Auth-User", "admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var deleted map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&deleted)
	resp.Body.Close()
	if resp.StatusCode != 200 || deleted["stdout"] != want {
		t.Fatalf("delete: %d %v", resp.StatusCode, deleted)
	}
	if code, _ := apiCall(t, "GET", base+"/submissions/"+tok, nil); code != 404 {
		t.Fatalf("deleted, then GET: %d", code)
	}

	// /workers: the real worker consumes the jobs queue.
	resp, err = http.Get(base + "/workers")
	if err != nil {
		t.Fatal(err)
	}
	var workers []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&workers)
	resp.Body.Close()
	if len(workers) != 1 || workers[0]["available"] != 1.0 || workers[0]["queue"] != "jobs" {
		t.Fatalf("workers: %v", workers)
	}

	// Piston v2's execute, on the same worker: a compile and run stage,
	// a run timeout, a compile memory limit.
	for _, tc := range []struct {
		name  string
		req   map[string]any
		check func(compile, run map[string]any) bool
	}{
		{"hello C", map[string]any{"language": "c", "version": "*", "files": []map[string]any{{"content": "#include <stdio.h>\nint main(void){puts(\"Hello, World!\");return 0;}"}}},
			func(compile, run map[string]any) bool {
				return compile != nil && compile["code"] == 0.0 && run["stdout"] == "Hello, World!\n" && run["code"] == 0.0 && run["signal"] == nil
			}},
		{"run timeout", map[string]any{"language": "python", "version": "*", "files": []map[string]any{{"content": "while True: pass"}}, "run_timeout": 1500},
			func(_, run map[string]any) bool { return run["status"] == "TO" && run["code"] == nil }},
		{"compile memory limit", map[string]any{"language": "cpp", "version": "*", "files": []map[string]any{{"content": "#include <iostream>\nint main(){std::cout << 1;}"}}, "compile_memory_limit": 8 << 20},
			func(compile, run map[string]any) bool {
				return compile != nil && compile["code"] == 1.0 && run == nil // Piston runs nothing after a failed compile
			}},
	} {
		code, m := apiCall(t, "POST", base+"/api/v2/execute", tc.req)
		compile, _ := m["compile"].(map[string]any)
		run, _ := m["run"].(map[string]any)
		if code != 200 || !tc.check(compile, run) {
			t.Errorf("piston %s: %d %v", tc.name, code, m)
		}
	}

	t.Run("playground", func(t *testing.T) { testPlayground(t, base) })

	// kill -9 of the API mid-burst, then a restart: every token given out
	// is answered (statuses waited in the durable reply queue; what was
	// stored and not published is published again); on SQLite, then on
	// PostgreSQL (a store several API nodes can share).
	t.Run("kill9/sqlite", func(t *testing.T) { killAndRestartAPI(t, api, &alogs, apiEnv) })
	pgEnv := []string{"RABBITMQ_URL=" + url, "CODEBENCH_API_DATABASE_URL=" + testenv.Postgres(t, "api")}
	pgAPI, _ := startAPI(t, &alogs, pgEnv...)
	t.Run("kill9/postgres", func(t *testing.T) { killAndRestartAPI(t, pgAPI, &alogs, pgEnv) })
}

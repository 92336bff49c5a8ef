package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/testenv"
)

// nodeJobs is how many wait=true submissions, and as many Piston
// executes, each node answers (CODEBENCH_API_NODES_JOBS; 100 by default).
func nodeJobs() int { return envCount("CODEBENCH_API_NODES_JOBS", 100) }

// TestAPINodes: two API nodes on one PostgreSQL, in front of one worker,
// each answer their own wait=true submissions and Piston executes with
// their own program's output; both in-flight gauges return to 0; one node
// killed with -9 in the middle of a burst and restarted loses no
// submission.
func TestAPINodes(t *testing.T) {
	vm := testenv.NeedVM(t)
	db := testenv.Postgres(t, "nodes")
	var wlogs, alogs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("worker:\n%s\napis:\n%s", wlogs.String(), alogs.String())
		}
	}()
	startWorkerBinary(t, &wlogs, "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "nodes"), "CODEBENCH_POOL_SIZE=2", "CODEBENCH_CONCURRENCY=2")
	env := func(node string) []string {
		return []string{"CODEBENCH_API_DATABASE_URL=" + db, "CODEBENCH_API_NODE=" + node}
	}
	n1, base1 := startAPI(t, &alogs, env("n1")...)
	_, base2 := startAPI(t, &alogs, env("n2")...)

	jobs := nodeJobs()
	var wg sync.WaitGroup
	errs := make(chan error, 4*jobs)
	for node, base := range map[string]string{"n1": base1, "n2": base2} {
		for client := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := client; i < jobs; i += 2 {
					want := fmt.Sprintf("%s-%d", node, i)
					if client == 0 {
						code, m := post(base+"/submissions?wait=true", map[string]any{"source_code": "print('" + want + "')", "language_id": 71})
						if code != 201 || m["stdout"] != want+"\n" {
							errs <- fmt.Errorf("%s submission %d: %d %v", node, i, code, m)
						}
					} else {
						code, m := post(base+"/api/v2/execute", map[string]any{"language": "python", "version": "*",
							"files": []map[string]string{{"content": "print('" + want + "')"}}})
						run, _ := m["run"].(map[string]any)
						if code != 200 || run["stdout"] != want+"\n" {
							errs <- fmt.Errorf("%s execute %d: %d %v", node, i, code, m)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, base := range []string{base1, base2} {
		eventually(t, "the in-flight gauge at 0 on "+base, time.Minute, func() bool { return inFlight(t, base) == 0 })
	}

	// n1 killed with -9 in the middle of a burst, then restarted as n1:
	// every token it gave out gets its own program's result.
	const burst = 12
	given := map[string]int{}
	for i := range burst {
		code, m := post(base1+"/submissions", map[string]any{"source_code": fmt.Sprintf("import time\ntime.sleep(0.3)\nprint(%d)", i), "language_id": 71})
		if code == 201 {
			given[m["token"].(string)] = i
		}
		if i == burst/2 {
			if err := n1.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_, _ = n1.Process.Wait()
			break
		}
	}
	_, base1 = startAPI(t, &alogs, env("n1")...)
	for tok, i := range given {
		var m map[string]any
		eventually(t, "a result after the restart", 3*time.Minute, func() bool {
			_, m = apiCall(t, "GET", base2+"/submissions/"+tok, nil)
			return statusID(m) >= 3
		})
		if statusID(m) != 3 || m["stdout"] != fmt.Sprintf("%d\n", i) {
			t.Errorf("token %s (program %d): %v", tok, i, m)
		}
	}
	for _, base := range []string{base1, base2} {
		eventually(t, "the in-flight gauge at 0 after the restart on "+base, time.Minute, func() bool { return inFlight(t, base) == 0 })
	}
}

// post sends a JSON body and decodes a JSON answer (no t: it runs in the
// test's goroutines; a failure is the answer's error).
func post(url string, body any) (int, map[string]any) {
	code, m, err := jsonRequest("POST", url, body)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	return code, m
}

// inFlight reads a node's codebench_api_submissions_in_flight.
func inFlight(t *testing.T, base string) int {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "codebench_api_submissions_in_flight "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Fatalf("no in-flight gauge in %s/metrics", base)
	return -1
}

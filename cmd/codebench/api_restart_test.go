package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/testenv"
)

// TestAPIBrokerRestart: the broker (a node of the test's own) stops and
// starts again while a burst of submissions is in flight; every token the
// API gave out reaches its final result, on SQLite and on PostgreSQL.
func TestAPIBrokerRestart(t *testing.T) {
	vm := testenv.NeedVM(t)
	node := testenv.StartNode(t, "cb-api", 5692, "")
	var wlogs, alogs bytes.Buffer
	startWorkerBinary(t, &wlogs, "RABBITMQ_URL="+node.URL, "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "apibr"), "CODEBENCH_POOL_SIZE=2")
	defer func() {
		if t.Failed() {
			t.Logf("worker:\n%s\napi:\n%s", wlogs.String(), alogs.String())
		}
	}()
	for _, st := range []struct{ name, url string }{
		{"sqlite", filepath.Join(t.TempDir(), "api.db")},
		{"postgres", testenv.Postgres(t, "apibr")},
	} {
		t.Run(st.name, func(t *testing.T) {
			_, base := startAPI(t, &alogs, "RABBITMQ_URL="+node.URL, "CODEBENCH_API_DATABASE_URL="+st.url)
			var tokens []string
			submit := func(n int) {
				for i := 0; i < n; i++ {
					code, m := apiCall(t, "POST", base+"/submissions", map[string]any{
						"source_code": fmt.Sprintf("import time\ntime.sleep(0.2)\nprint(%d)", i), "language_id": 71})
					switch tok, _ := m["token"].(string); {
					case code == 201 && tok != "":
						tokens = append(tokens, tok)
					case code == 503: // refused while the broker is away: no token given out
					default:
						t.Fatalf("submit: %d %v", code, m)
					}
				}
			}
			submit(12)
			node.Stop(t)
			submit(3) // refused (503), or accepted: either way, no token lost
			node.Start(t)
			submit(5)
			eventually(t, "every token's result", 4*time.Minute, func() bool {
				for _, tok := range tokens {
					if _, m := apiCall(t, "GET", base+"/submissions/"+tok, nil); statusID(m) < 3 {
						return false
					}
				}
				return true
			})
			for _, tok := range tokens {
				if _, m := apiCall(t, "GET", base+"/submissions/"+tok, nil); statusID(m) != 3 {
					t.Errorf("%s: %v", tok, m)
				}
			}
			t.Logf("%d tokens given out across the restart, all answered", len(tokens))
		})
	}
}

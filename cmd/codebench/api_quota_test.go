package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/codebench/codebench/internal/testenv"
)

// TestAPIQuotas: against the real API and worker, a client over its quota
// (one submission in flight) gets 429 with Retry-After while a second
// client's submission is accepted and finishes.
func TestAPIQuotas(t *testing.T) {
	vm := testenv.NeedVM(t)
	var wlogs, alogs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("worker:\n%s\napi:\n%s", wlogs.String(), alogs.String())
		}
	}()
	startWorkerBinary(t, &wlogs, "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "quota"), "CODEBENCH_POOL_SIZE=2")
	_, base := startAPI(t, &alogs, "CODEBENCH_API_DATABASE_URL="+filepath.Join(t.TempDir(), "api.db"),
		"CODEBENCH_API_CLIENT_IN_FLIGHT=1", "CODEBENCH_API_AUTH_TOKENS=alice,bob")
	submit := func(tok, query, src string) (*http.Response, map[string]any) {
		b, _ := json.Marshal(map[string]any{"source_code": src, "language_id": 71})
		req, _ := http.NewRequest("POST", base+"/submissions"+query, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	if resp, m := submit("alice", "", "import time\ntime.sleep(3)\nprint('alice')"); resp.StatusCode != 201 {
		t.Fatalf("alice's first: %d %v", resp.StatusCode, m)
	}
	if resp, m := submit("alice", "", "print('again')"); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("alice over her quota: %d %v %v", resp.StatusCode, m, resp.Header)
	}
	resp, m := submit("bob", "?wait=true", "print('bob')")
	if resp.StatusCode != 201 || m["stdout"] != "bob\n" {
		t.Fatalf("bob: %d %v", resp.StatusCode, m)
	}
}

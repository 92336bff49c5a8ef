package api

import (
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
)

// TestQuotas: a client over one of its quotas gets 429 with Retry-After,
// while another client's submissions are accepted and finish; the store's
// budget refuses everyone (503).
func TestQuotas(t *testing.T) {
	fw := &fakeWorker{}
	srv, hs := newTestServer(t, Config{AuthTokens: []string{"alice", "bob"},
		Quotas: Quotas{InFlight: 2, PerMinute: 3, Sandbox: time.Minute}}, fw)
	post := func(tok, body string) (int, map[string]any, string) {
		code, m, h := do(t, "POST", hs.URL+"/submissions?X-Auth-Token="+tok, body)
		return code, m, h.Get("Retry-After")
	}
	short := `{"source_code":"x","language_id":50,"wall_time_limit":1}`
	for i := range 2 {
		if code, m, _ := post("alice", short); code != 201 {
			t.Fatalf("alice's %d: %d %v", i, code, m)
		}
	}
	code, m, retry := post("alice", short)
	if code != 429 || retry == "" || !strings.Contains(m["error"].(string), "in flight") {
		t.Fatalf("alice over her in-flight quota: %d %v, Retry-After %q", code, m, retry)
	}
	// bob is another client: accepted, and finishes.
	code, m, _ = post("bob", short)
	if code != 201 {
		t.Fatalf("bob: %d %v", code, m)
	}
	bobs := m["token"].(string)
	if err := srv.HandleStatus(t.Context(), fromWorker(marshal(hello(fw.published(bobs))))); err != nil {
		t.Fatal(err)
	}
	if _, m, _ := do(t, "GET", hs.URL+"/submissions/"+bobs+"?X-Auth-Token=bob", ""); statusID(m) != 3 {
		t.Fatalf("bob's result: %v", m)
	}
	// alice's finish; her per-minute quota (3) is what stops her now.
	for _, j := range fw.jobs[:2] {
		if err := srv.HandleStatus(t.Context(), fromWorker(marshal(hello(j)))); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, _ := post("alice", short); code != 201 {
		t.Fatalf("alice's third: %d", code)
	}
	if code, m, _ := post("alice", short); code != 429 || !strings.Contains(m["error"].(string), "last minute") {
		t.Fatalf("alice over her per-minute quota: %d %v", code, m)
	}
	// A submission that may take more sandbox time than a client's quota.
	if code, m, _ := post("bob", `{"source_code":"x","language_id":50,"wall_time_limit":20,"number_of_runs":5}`); code != 429 || !strings.Contains(m["error"].(string), "sandbox time") {
		t.Fatalf("bob over his sandbox quota: %d %v", code, m)
	}

	// The store's budget: a store over it takes nothing (503).
	_, full := newTestServer(t, Config{StoreMaxBytes: 1}, &fakeWorker{})
	if code, m, _ := do(t, "POST", full.URL+"/submissions", short); code != 503 || !strings.Contains(m["error"].(string), "store is full") {
		t.Fatalf("a full store: %d %v", code, m)
	}
}

func marshal(st *job.Status) []byte { return st.Marshal() }

func statusID(m map[string]any) float64 {
	st, _ := m["status"].(map[string]any)
	id, _ := st["id"].(float64)
	return id
}

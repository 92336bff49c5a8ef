package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPageHeaders: every playground path, the page under /playground/
// included, carries the policy that keeps it from being framed or
// sniffed.
func TestPageHeaders(t *testing.T) {
	_, hs := newTestServer(t, Config{}, &fakeWorker{})
	for _, path := range []string{"/", "/playground/index.html", "/playground/app.js", "/playground/style.css"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, h)
		}
	}
}

// TestHasToken: a token is taken from the header or the query parameter,
// only whole and exact.
func TestHasToken(t *testing.T) {
	tokens := []string{"alpha-token", "beta-token"}
	for _, tc := range []struct {
		header, query string
		want          bool
	}{
		{"alpha-token", "", true}, {"", "beta-token", true}, {"beta-token", "", true},
		{"alpha-toke", "", false}, {"alpha-token-x", "", false}, {"", "", false}, {"ALPHA-TOKEN", "", false},
	} {
		r := httptest.NewRequest("GET", "/?X-Auth-Token="+tc.query, nil)
		if tc.header != "" {
			r.Header.Set("X-Auth-Token", tc.header)
		}
		if got := hasToken(r, "X-Auth-Token", tokens); got != tc.want {
			t.Errorf("header %q query %q: %v", tc.header, tc.query, got)
		}
	}
	if hasToken(httptest.NewRequest("GET", "/", nil), "X-Auth-Token", nil) {
		t.Error("a token taken where none is configured")
	}
}

// pingFails is a store whose ping names its database.
type pingFails struct{ brokenStore }

func (pingFails) Ping(context.Context) error {
	return errors.New(`failed to connect to host=db.internal user=api database=codebench`)
}

// TestReadyzSaysNoSecrets: /readyz says which part is down, not the
// store's error (host, user, database).
func TestReadyzSaysNoSecrets(t *testing.T) {
	srv := New(Config{ReplyQueue: "codebench.api.test"}, Deps{Store: pingFails{}, Publisher: &fakeWorker{}, Languages: testLanguages,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(b) != "the store is unavailable\n" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
}

// TestSafeDefaults: a text/plain (or form) POST is 415 and creates
// nothing; CORS answers no origin by default and the configured ones when
// set (the Judge0 IDE on its own origin); a foreign Host is refused (421);
// the operator's endpoints answer loopback clients, or others with an
// authz token; the health probes need no token.
func TestSafeDefaults(t *testing.T) {
	fw := &fakeWorker{answer: hello}
	srv, hs := newTestServer(t, Config{AuthTokens: []string{"tok"}, AuthzTokens: []string{"admin"}}, fw)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		req, _ := http.NewRequest("POST", hs.URL+"/submissions?X-Auth-Token=tok", strings.NewReader(`{"source_code":"x","language_id":50}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("a %q POST: %d", ct, resp.StatusCode)
		}
	}
	if code, _, _ := do(t, "POST", hs.URL+"/submissions?X-Auth-Token=tok", `{"source_code":"x","language_id":50}`, "Content-Type", "application/json; charset=utf-8"); code != 201 {
		t.Fatalf("a JSON POST: %d", code)
	}
	if len(fw.jobs) != 1 {
		t.Fatalf("%d jobs published", len(fw.jobs))
	}
	// No CORS answer by default, for any origin.
	if _, _, h := do(t, "GET", hs.URL+"/languages?X-Auth-Token=tok", "", "Origin", "https://evil.example"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS: %v", h)
	}
	// A foreign Host (DNS rebinding): refused, whatever the path.
	for _, path := range []string{"/languages?X-Auth-Token=tok", "/metrics", "/healthz"} {
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		req.Host = "evil.example:2358"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("%s with a foreign Host: %d", path, resp.StatusCode)
		}
	}
	// The health probes answer without a token; the rest does not.
	if code, _, _ := do(t, "GET", hs.URL+"/healthz", ""); code != 200 {
		t.Fatalf("healthz without a token: %d", code)
	}
	if code, _, _ := do(t, "GET", hs.URL+"/languages", ""); code != 401 {
		t.Fatalf("languages without a token: %d", code)
	}
	// The operator's endpoints from another machine: only with the authz
	// token (loopback clients: TestHealthAndMetrics).
	h := srv.Handler()
	for _, path := range []string{"/metrics", "/system_info", "/statistics", "/workers"} {
		for _, authz := range []string{"", "admin"} {
			r := httptest.NewRequest("GET", "http://127.0.0.1"+path+"?X-Auth-Token=tok", nil)
			r.RemoteAddr = "192.0.2.7:40000"
			if authz != "" {
				r.Header.Set("X-Auth-User", authz)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if forbidden := w.Code == http.StatusForbidden; forbidden != (authz == "") {
				t.Errorf("%s from afar, authz %q: %d", path, authz, w.Code)
			}
		}
	}
	// The Judge0 IDE on its own origin works once that origin is named.
	_, ide := newTestServer(t, Config{CORSOrigins: []string{"https://ide.judge0.com"}}, &fakeWorker{})
	_, _, hd := do(t, "OPTIONS", ide.URL+"/submissions", "", "Origin", "https://ide.judge0.com", "Access-Control-Request-Method", "POST")
	if hd.Get("Access-Control-Allow-Origin") != "https://ide.judge0.com" {
		t.Fatalf("the named origin: %v", hd)
	}
	if _, _, hd := do(t, "OPTIONS", ide.URL+"/submissions", "", "Origin", "https://evil.example"); hd.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin: %v", hd)
	}
}

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

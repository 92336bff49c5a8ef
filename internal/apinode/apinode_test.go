package apinode

import (
	"errors"
	"testing"

	"github.com/codebench/codebench/internal/api"
)

// TestListenRefusesAnOpenAPI: beyond loopback only with auth tokens.
func TestListenRefusesAnOpenAPI(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		tokens []string
		ok     bool
	}{
		{"127.0.0.1:0", nil, true}, {"localhost:0", nil, true}, {"[::1]:0", nil, true},
		{"0.0.0.0:0", nil, false}, {":0", nil, false}, {"[::]:0", nil, false},
		{"0.0.0.0:0", []string{"tok"}, true},
	} {
		ln, err := Listen(Config{API: api.Config{ReplyQueue: "codebench.api.t", AuthTokens: tc.tokens}}, tc.addr)
		if ln != nil {
			ln.Close()
		}
		if (err == nil) != tc.ok || (!tc.ok && !errors.Is(err, ErrOpenToTheNetwork)) {
			t.Errorf("%s with %d tokens: %v", tc.addr, len(tc.tokens), err)
		}
	}
	if _, err := Listen(Config{API: api.Config{ReplyQueue: "other"}}, "127.0.0.1:0"); err == nil {
		t.Error("a reply queue outside the API's namespace taken")
	}
}

func TestStoreName(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://api:secret@db.internal:5432/cb?password=x": "postgres://db.internal:5432",
		"/var/lib/codebench/api.db":                            "/var/lib/codebench/api.db",
	} {
		if got := storeName(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

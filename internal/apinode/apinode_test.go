package apinode

import (
	"errors"
	"os"
	"path/filepath"
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

// TestDefaultStore: the store's directory is 0700; the first release's
// file (and its -wal, -shm) moves into it once.
func TestDefaultStore(t *testing.T) {
	data := t.TempDir()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.WriteFile(filepath.Join(data, "api.db"+suffix), []byte(suffix), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path, err := DefaultStore(data)
	if err != nil || path != filepath.Join(data, "api", "api.db") {
		t.Fatalf("%s %v", path, err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("the directory: %v %v", st.Mode(), err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(path + suffix); err != nil || string(b) != suffix {
			t.Fatalf("%s not moved: %v", suffix, err)
		}
		if _, err := os.Stat(filepath.Join(data, "api.db"+suffix)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind", suffix)
		}
	}
	if again, err := DefaultStore(data); err != nil || again != path {
		t.Fatalf("again: %s %v", again, err)
	}
}

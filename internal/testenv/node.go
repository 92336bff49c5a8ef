package testenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/codebench/codebench/internal/e2bsdk"
)

// NeedE2BSDK installs the pinned E2B SDK (internal/e2bsdk), once, under
// the data dir's cache, writes the scripts of dir (*.mjs) beside it, and
// returns that directory to run them from. It skips without a Node.js the
// SDK runs on (fails where CODEBENCH_REQUIRE_NODE is set).
func NeedE2BSDK(t testing.TB, dir string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.mjs"))
	scripts := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		scripts[filepath.Base(p)] = b
	}
	out, err := e2bsdk.Install(context.Background(), filepath.Join(Config(t).DataDir, "cache"), scripts)
	if errors.Is(err, e2bsdk.ErrNoNode) {
		missing(t, "CODEBENCH_REQUIRE_NODE", "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

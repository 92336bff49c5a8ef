package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// minNode is the oldest Node.js the pinned E2B SDK runs on (its engines
// field): Debian 12's own nodejs (18) is older.
var minNode = [3]int{20, 18, 1}

// NeedNodePackages installs the npm packages pinned in dir's package.json,
// once per content of that file, into <data dir>/cache/npm-<hash>, copies
// dir's scripts beside them, and returns that directory to run them from.
// It skips without Node.js >= 20.18.1 and npm (fails where
// CODEBENCH_REQUIRE_NODE is set).
func NeedNodePackages(t testing.TB, dir string) string {
	t.Helper()
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		missing(t, "CODEBENCH_REQUIRE_NODE", "no node: %v", err)
	}
	if v := strings.TrimSpace(string(out)); !atLeast(v, minNode) {
		missing(t, "CODEBENCH_REQUIRE_NODE", "node %s is older than %d.%d.%d, which the E2B SDK needs", v, minNode[0], minNode[1], minNode[2])
	}
	if _, err := exec.LookPath("npm"); err != nil {
		missing(t, "CODEBENCH_REQUIRE_NODE", "no npm: %v", err)
	}
	pkg, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkg)
	cache := filepath.Join(Config(t).DataDir, "cache", "npm-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(cache, ".complete")); err != nil {
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(cache), "npm-tmp-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		if err := os.WriteFile(filepath.Join(tmp, "package.json"), pkg, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install in %s: %v\n%s", tmp, err, out)
		}
		_ = os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644)
		_ = os.Chmod(tmp, 0o755)
		if err := os.Rename(tmp, cache); err != nil {
			// Another test installed it meanwhile; a half-made one, left
			// by a killed run, has no .complete and is replaced.
			if _, serr := os.Stat(filepath.Join(cache, ".complete")); serr != nil {
				_ = os.RemoveAll(cache)
				if err := os.Rename(tmp, cache); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	scripts, _ := filepath.Glob(filepath.Join(dir, "*.mjs"))
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cache, filepath.Base(s)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cache
}

// atLeast compares "v20.20.2" with a version.
func atLeast(v string, min [3]int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	for i := 0; i < 3; i++ {
		n := 0
		if i < len(parts) {
			n, _ = strconv.Atoi(strings.TrimFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' }))
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}

// Package e2bsdk installs the unmodified E2B SDK (npm e2b, pinned in
// package.json) for the programs that drive codebench sandboxes with it: the
// conformance test and "codebench bench --sandboxes". It needs the host's
// Node.js (at least 20.18.1, the SDK's engines field: Debian 12's own
// nodejs, 18, is older) and npm, which reads its registry from npm's own
// configuration.
package e2bsdk

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

//go:embed package.json
var packageJSON []byte

// MinNode is the oldest Node.js the pinned SDK runs on.
var MinNode = [3]int{20, 18, 1}

// ErrNoNode: node or npm is missing, or node is too old.
var ErrNoNode = errors.New("e2bsdk: no usable Node.js")

// CheckNode checks node and npm.
func CheckNode(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "node", "--version").Output()
	if err != nil {
		return fmt.Errorf("%w: node: %v", ErrNoNode, err)
	}
	if v := strings.TrimSpace(string(out)); !atLeast(v, MinNode) {
		return fmt.Errorf("%w: node %s is older than %d.%d.%d, which the E2B SDK needs", ErrNoNode, v, MinNode[0], MinNode[1], MinNode[2])
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return fmt.Errorf("%w: npm: %v", ErrNoNode, err)
	}
	return nil
}

// atLeast compares "v20.20.2" with a version.
func atLeast(v string, min [3]int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	for i := range 3 {
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

// Install installs the pinned SDK once per content of package.json into
// cacheRoot/npm-<hash>, writes scripts (name → body) beside it, and
// returns that directory to run them from (node <script> there).
func Install(ctx context.Context, cacheRoot string, scripts map[string][]byte) (string, error) {
	if err := CheckNode(ctx); err != nil {
		return "", err
	}
	sum := sha256.Sum256(packageJSON)
	dir := filepath.Join(cacheRoot, "npm-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		if err := install(ctx, cacheRoot, dir); err != nil {
			return "", err
		}
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), body, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// install runs npm in a directory of its own and renames it into place; a
// concurrent install that finished first wins, and a half-made one (no
// .complete, left by a killed run) is replaced.
func install(ctx context.Context, cacheRoot, dir string) error {
	if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(cacheRoot, "npm-tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), packageJSON, 0o644); err != nil {
		return err
	}
	// No lock file: the lock would carry the registry's address; the SDK
	// itself is pinned exactly.
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("e2bsdk: npm install: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return nil
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}
	return nil
}

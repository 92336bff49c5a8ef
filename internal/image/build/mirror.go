package build

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DebianMirror finds the mirror the host's apt uses for suite, from
// /etc/apt/sources.list.d/*.sources (deb822) or /etc/apt/sources.list, so no
// mirror's host name is ever written into our code.
func DebianMirror(aptRoot, suite string) (string, error) {
	if aptRoot == "" {
		aptRoot = "/etc/apt"
	}
	files, _ := filepath.Glob(filepath.Join(aptRoot, "sources.list.d", "*.sources"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorFromDeb822(string(b), suite); m != "" {
			return m, nil
		}
	}
	lists, _ := filepath.Glob(filepath.Join(aptRoot, "sources.list.d", "*.list"))
	lists = append([]string{filepath.Join(aptRoot, "sources.list")}, lists...)
	for _, f := range lists {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorFromList(string(b), suite); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("no apt source for suite %q under %s (set CODEBENCH_DEBIAN_MIRROR)", suite, aptRoot)
}

func mirrorFromDeb822(text, suite string) string {
	for _, para := range strings.Split(text, "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(para))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") ||
			!slices.Contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func mirrorFromList(text, suite string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == suite {
			return f[0]
		}
	}
	return ""
}

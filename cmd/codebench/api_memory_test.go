package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/testenv"
)

// peakRSSKB is a process's peak resident set (VmHWM), in KiB.
func peakRSSKB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestAPIPeakMemory drives every shape that blew up the first release's
// API (issue 29: a batch read of one large submission 20 times, a batch of
// empty objects, Piston's files and args, control characters that grow
// when escaped, a large valid-looking source), each at the 8 MiB body
// limit, against the real "codebench api", and holds its peak RSS to at
// most 64 MiB above what it had once serving.
func TestAPIPeakMemory(t *testing.T) {
	testenv.RabbitURL(t)
	var logs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("api:\n%s", logs.String())
		}
	}()
	api, base := startAPI(t, &logs, "CODEBENCH_API_DATABASE_URL="+filepath.Join(t.TempDir(), "api.db"),
		"CODEBENCH_API_REPLY_QUEUE=codebench.api.memory", "CODEBENCH_API_AUTHZ_TOKENS=admin")
	const limit = 8 << 20
	post := func(path, ctype, body string) (int, string) {
		resp, err := http.Post(base+path, ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	// One large submission (1 MiB of source: the workers' max_code_bytes),
	// queued (no worker here).
	code, out := post("/submissions", "application/json", `{"source_code":"`+strings.Repeat("x", 1<<20-64)+`","language_id":71}`)
	if code != 201 {
		t.Fatalf("the large submission: %d %.200s", code, out)
	}
	token := out[strings.Index(out, `"token":"`)+9 : strings.LastIndex(out, `"`)]
	base0 := peakRSSKB(t, api.Process.Pid)
	fill := func(prefix, item, suffix string) string {
		n := (limit - 1024 - len(prefix) - len(suffix)) / (len(item) + 1)
		return prefix + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + suffix
	}
	ctrl := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, (limit-1024)*3/4))
	for _, s := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"a batch read of one token 20 times", "GET", "/submissions/batch?fields=source_code&tokens=" + strings.TrimSuffix(strings.Repeat(token+",", 20), ","), "", 400},
		{"the list of every field", "GET", "/submissions?fields=*&per_page=1000&X-Auth-User=admin", "", 200},
		{"a batch of empty objects", "POST", "/submissions/batch", fill(`{"submissions":[`, `{}`, `]}`), 400},
		{"a submission of unknown keys", "POST", "/submissions", fill(`{"source_code":"x","language_id":71,`, `"k":1`, `}`), 400},
		{"Piston's arguments", "POST", "/api/v2/execute", fill(`{"language":"python","version":"*","files":[{"content":"x"}],"args":[`, `"a"`, `]}`), 400},
		{"Piston's files", "POST", "/api/v2/execute", fill(`{"language":"python","version":"*","files":[`, `{"content":"x"}`, `]}`), 400},
		{"control characters, base64", "POST", "/submissions?base64_encoded=true", `{"source_code":"` + ctrl + `","language_id":71}`, 422},
		{"a source at the body limit", "POST", "/submissions", `{"source_code":"` + strings.Repeat("x", limit-1024) + `","language_id":71}`, 422},
		{"Piston files at the body limit", "POST", "/api/v2/execute", `{"language":"python","version":"*","files":[{"content":"` + strings.Repeat("x", limit-1024) + `"}]}`, 400},
	} {
		for range 3 {
			var code int
			var out string
			if s.method == "GET" {
				resp, err := http.Get(base + s.path)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				_, _ = b.ReadFrom(resp.Body)
				resp.Body.Close()
				code, out = resp.StatusCode, b.String()
			} else {
				code, out = post(s.path, "application/json", s.body)
			}
			if code != s.want {
				t.Fatalf("%s: %d %.300s", s.name, code, out)
			}
		}
		peak := peakRSSKB(t, api.Process.Pid)
		t.Logf("%s: peak RSS %d MiB (+%d MiB)", s.name, peak>>10, (peak-base0)>>10)
		if peak-base0 > 64<<10 {
			t.Fatalf("%s: the API's peak RSS grew by %d MiB (from %d MiB), over 64", s.name, (peak-base0)>>10, base0>>10)
		}
	}
}

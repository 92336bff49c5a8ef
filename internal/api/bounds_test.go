package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
)

// allocated is what f allocated in this process (the server and the
// client both run here), in bytes.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestBodiesCountedBeforeDecoded: bodies of many small values, at the
// body limit, are refused before they are decoded: the request allocates
// a few times its body, not tens of times (the first release allocated
// 68 times a batch body, 116 times a Piston body).
func TestBodiesCountedBeforeDecoded(t *testing.T) {
	const limit = 8 << 20
	fw := &fakeWorker{}
	_, hs := newTestServer(t, Config{MaxBody: limit}, fw)
	fill := func(prefix, item, suffix string) string {
		n := (limit - len(prefix) - len(suffix)) / (len(item) + 1)
		return prefix + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + suffix
	}
	for _, tc := range []struct {
		name, path, body string
	}{
		{"a batch of empty objects", "/submissions/batch", fill(`{"submissions":[`, `{}`, `]}`)},
		{"a submission of unknown keys", "/submissions", fill(`{"source_code":"x","language_id":50,`, `"k":1`, `}`)},
		{"a submission with a huge array", "/submissions", fill(`{"source_code":"x","language_id":50,"stdin":[`, `0`, `]}`)},
		{"Piston's arguments", "/api/v2/execute", fill(`{"language":"c","version":"*","files":[{"content":"x"}],"args":[`, `"a"`, `]}`)},
		{"Piston's files", "/api/v2/execute", fill(`{"language":"c","version":"*","files":[`, `{"content":"x"}`, `]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			var m map[string]any
			n := allocated(func() {
				code, m, _ = do(t, "POST", hs.URL+tc.path, tc.body, "Content-Type", "application/json")
			})
			if code != 400 || !strings.Contains(fmt.Sprint(m), "JSON values") {
				t.Fatalf("%d %v", code, m)
			}
			if n > 6*uint64(len(tc.body)) {
				t.Fatalf("a %d-byte body allocated %d bytes (%.1fx)", len(tc.body), n, float64(n)/float64(len(tc.body)))
			}
		})
	}
	if len(fw.jobs) != 0 {
		t.Fatalf("%d jobs published", len(fw.jobs))
	}
}

// TestJobBytesAsPublished: control characters that JSON escapes in six
// bytes make a job over the workers' limit out of a body within the
// API's: refused (422), nothing stored or published.
func TestJobBytesAsPublished(t *testing.T) {
	fw := &fakeWorker{}
	_, hs := newTestServer(t, Config{Policy: job.Policy{MaxJobBytes: 1 << 20}}, fw)
	src := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 400<<10)) // 400 KiB, 2.4 MiB as JSON
	code, m, _ := do(t, "POST", hs.URL+"/submissions?base64_encoded=true", `{"source_code":"`+src+`","language_id":50}`)
	if code != 422 || !strings.Contains(fmt.Sprint(m), "as published") || len(fw.jobs) != 0 {
		t.Fatalf("%d %v, %d published", code, m, len(fw.jobs))
	}
}

// TestAnswersBounded: a batch read names each token once, and no answer of
// several submissions is over twice the body limit.
func TestAnswersBounded(t *testing.T) {
	fw := &fakeWorker{answer: hello}
	_, hs := newTestServer(t, Config{MaxBody: 64 << 10, AuthzTokens: []string{"admin"}}, fw)
	var tokens []string
	for range 3 {
		code, m, _ := do(t, "POST", hs.URL+"/submissions", `{"source_code":"`+strings.Repeat("x", 50<<10)+`","language_id":50}`)
		if code != 201 {
			t.Fatalf("%d %v", code, m)
		}
		tokens = append(tokens, m["token"].(string))
	}
	if code, m, _ := do(t, "GET", hs.URL+"/submissions/batch?tokens="+tokens[0]+","+tokens[0], ""); code != 400 || !strings.Contains(fmt.Sprint(m), "twice") {
		t.Fatalf("a token twice: %d %v", code, m)
	}
	if code, m, _ := do(t, "GET", hs.URL+"/submissions/batch?fields=source_code&tokens="+strings.Join(tokens[:2], ","), ""); code != 200 {
		t.Fatalf("two: %d %v", code, m)
	}
	for _, path := range []string{"/submissions/batch?fields=source_code&tokens=" + strings.Join(tokens, ","),
		"/submissions?fields=source_code&per_page=10&X-Auth-User=admin"} {
		if code, m, _ := do(t, "GET", hs.URL+path, ""); code != 400 || !strings.Contains(fmt.Sprint(m), "fewer") {
			t.Fatalf("%s: %d %v", path, code, m)
		}
	}
}

// TestBodiesAtOnce: the bodies handled at once take at most maxBodies
// times the body limit; the next waits for room (and gives up with its
// client); small bodies go through side by side.
func TestBodiesAtOnce(t *testing.T) {
	srv, hs := newTestServer(t, Config{}, &fakeWorker{})
	all := int64(maxBodies) * srv.cfg.MaxBody
	if !srv.bodies.TryAcquire(all - 10) {
		t.Fatal("no room at the start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/submissions", strings.NewReader(`{"source_code":"x","language_id":50}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("answered while every place was taken: %d %s", resp.StatusCode, b)
	}
	srv.bodies.Release(all - 10)
	if code, m, _ := do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":50}`); code != 201 {
		t.Fatalf("%d %v", code, m)
	}
	// Every request has ended (the abandoned one may have been let in
	// when room came back, and answered nobody): all the room is back.
	deadline := time.Now().Add(5 * time.Second)
	for !srv.bodies.TryAcquire(all) {
		if time.Now().After(deadline) {
			t.Fatal("room still held after the answers")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

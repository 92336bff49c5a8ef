package e2b

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/sandboxes"
)

// fakeManager holds sandboxes in a map; its errors are the manager's.
type fakeManager struct {
	boxes     []sandboxes.Info
	createErr error
	pauseErr  error
	filter    sandboxes.Filter
	proxied   *http.Request
}

func (f *fakeManager) Create(_ context.Context, key string, req sandboxes.CreateRequest) (sandboxes.Info, error) {
	if f.createErr != nil {
		return sandboxes.Info{}, f.createErr
	}
	i := sandboxes.Info{ID: fmt.Sprintf("sb%d", len(f.boxes)), TemplateID: req.TemplateID, Token: "tok", Owner: sandboxes.Owner(key),
		State: sandboxes.StateRunning, Metadata: req.Metadata}
	f.boxes = append(f.boxes, i)
	return i, nil
}

func (f *fakeManager) Get(key, id string) (sandboxes.Info, error) {
	for _, b := range f.boxes {
		if b.ID == id && b.Owner == sandboxes.Owner(key) {
			return b, nil
		}
	}
	return sandboxes.Info{}, sandboxes.ErrNotFound
}

func (f *fakeManager) List(key string, flt sandboxes.Filter) []sandboxes.Info {
	f.filter = flt
	var out []sandboxes.Info
	for _, b := range f.boxes {
		if b.Owner == sandboxes.Owner(key) {
			out = append(out, b)
		}
	}
	return out
}

func (f *fakeManager) Kill(_ context.Context, key, id string) error {
	_, err := f.Get(key, id)
	return err
}

func (f *fakeManager) Pause(_ context.Context, key, id string) error {
	if _, err := f.Get(key, id); err != nil {
		return err
	}
	return f.pauseErr
}

func (f *fakeManager) Connect(_ context.Context, key, id string, _ time.Duration) (sandboxes.Info, bool, error) {
	i, err := f.Get(key, id)
	return i, true, err
}

func (f *fakeManager) SetTimeout(key, id string, _ time.Duration) error {
	_, err := f.Get(key, id)
	return err
}

func (f *fakeManager) Metrics(key, id string) ([]sandboxes.Metric, error) {
	if _, err := f.Get(key, id); err != nil {
		return nil, err
	}
	return []sandboxes.Metric{{Time: time.Unix(1_800_000_000, 0), CPUCount: 1, CPUPct: 12.5, MemUsed: 1 << 20, MemTotal: 1 << 30}}, nil
}

func (f *fakeManager) Transport(id, token string) (http.RoundTripper, error) {
	for _, b := range f.boxes {
		if b.ID != id {
			continue
		}
		if token != b.Token {
			return nil, sandboxes.ErrBadToken
		}
		if b.State != sandboxes.StateRunning {
			return nil, sandboxes.ErrNotRunning
		}
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			f.proxied = r
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("from envd")), Header: http.Header{}}, nil
		}), nil
	}
	return nil, sandboxes.ErrNotFound
}

func (f *fakeManager) Token(id string) (string, bool) {
	for _, b := range f.boxes {
		if b.ID == id {
			return b.Token, true
		}
	}
	return "", false
}

func (f *fakeManager) Find(match func(string) bool) (string, bool) {
	for _, b := range f.boxes {
		if b.State == sandboxes.StateRunning && match(b.Token) {
			return b.ID, true
		}
	}
	return "", false
}

type roundTrip func(*http.Request) (*http.Response, error)

func (r roundTrip) RoundTrip(req *http.Request) (*http.Response, error) { return r(req) }

type call struct {
	method, path, body string
	header             map[string]string
}

func do(t *testing.T, h http.Handler, c call) (int, map[string]any, http.Header, string) {
	t.Helper()
	r := httptest.NewRequest(c.method, "http://127.0.0.1:2359"+c.path, strings.NewReader(c.body))
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var obj map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &obj)
	return w.Code, obj, w.Header(), w.Body.String()
}

func TestControlPlane(t *testing.T) {
	f := &fakeManager{}
	s := New(f, []string{"key-a", "key-b"}, slog.New(slog.DiscardHandler))
	key := map[string]string{"X-API-KEY": "key-a"}

	code, body, _, _ := do(t, s, call{method: "POST", path: "/v2/sandboxes", body: `{"templateID":"base","metadata":{"k":"v"}}`, header: key})
	if code != 201 || body["envdVersion"] != EnvdVersion || body["envdAccessToken"] != "tok" || body["sandboxID"] != "sb0" {
		t.Fatalf("create: %d %v", code, body)
	}
	for _, tc := range []struct {
		name string
		c    call
		code int
	}{
		{"no key", call{method: "GET", path: "/sandboxes/sb0"}, 401},
		{"a wrong key", call{method: "GET", path: "/sandboxes/sb0", header: map[string]string{"X-API-KEY": "nope"}}, 401},
		{"another key's sandbox", call{method: "GET", path: "/sandboxes/sb0", header: map[string]string{"X-API-KEY": "key-b"}}, 404},
		{"kill of an unknown one", call{method: "DELETE", path: "/sandboxes/nope", header: key}, 404},
		{"pause of an unknown one", call{method: "POST", path: "/sandboxes/nope/pause", header: key}, 404},
		{"the code interpreter's template", call{method: "POST", path: "/sandboxes", body: `{"templateID":"code-interpreter-v1"}`, header: key}, 400},
		{"network rules asked", call{method: "POST", path: "/v2/sandboxes", body: `{"network":{"allowOut":["1.1.1.1"]}}`, header: key}, 400},
		{"volumes asked", call{method: "POST", path: "/v2/sandboxes", body: `{"volumeMounts":[{"name":"v","path":"/data"}]}`, header: key}, 400},
		{"auto-resume asked", call{method: "POST", path: "/v2/sandboxes", body: `{"autoResume":{"enabled":true}}`, header: key}, 400},
		{"internet access asked", call{method: "POST", path: "/sandboxes", body: `{"allow_internet_access":true}`, header: key}, 400},
		{"a bad body", call{method: "POST", path: "/sandboxes", body: `{`, header: key}, 400},
		{"a body over the bound", call{method: "POST", path: "/sandboxes", body: `{"metadata":{"k":"` + strings.Repeat("x", maxControlBody) + `"}}`, header: key}, 413},
		{"not the API", call{method: "GET", path: "/templates", header: key}, 404},
		{"get", call{method: "GET", path: "/sandboxes/sb0", header: key}, 200},
		{"timeout", call{method: "POST", path: "/sandboxes/sb0/timeout", body: `{"timeout":30}`, header: key}, 204},
		{"connect", call{method: "POST", path: "/v2/sandboxes/sb0/connect", body: `{"timeout":30}`, header: key}, 201},
		{"metrics", call{method: "GET", path: "/sandboxes/sb0/metrics", header: key}, 200},
		{"metrics of an unknown one", call{method: "GET", path: "/sandboxes/nope/metrics", header: key}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _, raw := do(t, s, tc.c)
			if code != tc.code {
				t.Fatalf("%d, want %d: %s", code, tc.code, raw)
			}
			// The SDK reads an error's code from the body.
			if code >= 400 && body["code"] != float64(code) {
				t.Fatalf("error body %s has no code %d", raw, code)
			}
		})
	}
	for _, tc := range []struct {
		err  error
		code int
	}{
		{sandboxes.ErrAlreadyPaused, 409}, {fmt.Errorf("x: %w", sandboxes.ErrQuota), 429}, {sandboxes.ErrFull, 503}, {sandboxes.ErrBadRequest, 400},
	} {
		f.pauseErr = tc.err
		if code, body, _, _ := do(t, s, call{method: "POST", path: "/sandboxes/sb0/pause", header: key}); code != tc.code || body["code"] != float64(tc.code) {
			t.Fatalf("pause %v: %d %v", tc.err, code, body)
		}
	}
}

func TestListPages(t *testing.T) {
	f := &fakeManager{}
	s := New(f, nil, slog.New(slog.DiscardHandler))
	for range 3 {
		_, _ = f.Create(context.Background(), "any", sandboxes.CreateRequest{})
	}
	var ids []string
	next := ""
	for page := 0; page < 5; page++ {
		q := url.Values{"limit": {"2"}, "metadata": {"k=v&a%2520b=c"}, "state": {"running,paused"}}
		if next != "" {
			q.Set("nextToken", next)
		}
		r := httptest.NewRequest("GET", "http://127.0.0.1/v2/sandboxes?"+q.Encode(), nil)
		r.Header.Set("X-API-KEY", "any")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var items []map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &items)
		for _, it := range items {
			ids = append(ids, it["sandboxID"].(string))
		}
		if next = w.Header().Get("X-Next-Token"); next == "" {
			break
		}
	}
	if strings.Join(ids, ",") != "sb0,sb1,sb2" {
		t.Fatalf("pages: %v", ids)
	}
	if f.filter.Metadata["k"] != "v" || f.filter.Metadata["a b"] != "c" || strings.Join(f.filter.States, ",") != "running,paused" {
		t.Fatalf("filter: %+v", f.filter)
	}
	// Without keys, only loopback names are served.
	r := httptest.NewRequest("GET", "http://rebound.example/v2/sandboxes", nil)
	r.Header.Set("X-API-KEY", "any")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != 403 {
		t.Fatalf("a rebound host name: %d", w.Code)
	}
}

func TestDataPlane(t *testing.T) {
	f := &fakeManager{boxes: []sandboxes.Info{
		{ID: "run", Token: "tok", State: sandboxes.StateRunning},
		{ID: "zzz", Token: "tok", State: sandboxes.StatePaused},
	}}
	s := New(f, []string{"k"}, slog.New(slog.DiscardHandler))
	hdr := func(id, token string) map[string]string {
		return map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "49983", "X-Access-Token": token}
	}
	sum := sha256.Sum256([]byte("a.txt:read:user:tok"))
	sig := "v1_" + strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")
	for _, tc := range []struct {
		name string
		c    call
		code int
	}{
		{"proxied", call{method: "POST", path: "/process.Process/List", body: "{}", header: hdr("run", "tok")}, 200},
		{"a wrong token", call{method: "POST", path: "/process.Process/List", body: "{}", header: hdr("run", "bad")}, 401},
		{"no token", call{method: "POST", path: "/process.Process/List", body: "{}", header: hdr("run", "")}, 401},
		{"health without a token", call{method: "GET", path: "/health", header: hdr("run", "")}, 200},
		{"a paused sandbox", call{method: "GET", path: "/health", header: hdr("zzz", "tok")}, 502},
		{"an unknown sandbox", call{method: "GET", path: "/health", header: hdr("nope", "tok")}, 502},
		{"another port", call{method: "POST", path: "/execute", header: map[string]string{"E2b-Sandbox-Id": "run", "E2b-Sandbox-Port": "49999", "X-Access-Token": "tok"}}, 502},
		{"a presigned download", call{method: "GET", path: "/files?path=a.txt&username=user&signature=" + url.QueryEscape(sig), header: hdr("run", "")}, 200},
		{"a presigned download, bad signature", call{method: "GET", path: "/files?path=b.txt&username=user&signature=" + url.QueryEscape(sig), header: hdr("run", "")}, 401},
		{"a presigned URL without the sandbox's id", call{method: "GET", path: "/files?path=a.txt&username=user&signature=" + url.QueryEscape(sig)}, 200},
		{"a presigned URL no sandbox signed", call{method: "GET", path: "/files?path=c.txt&username=user&signature=" + url.QueryEscape(sig)}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.proxied = nil
			code, _, _, raw := do(t, s, tc.c)
			if code != tc.code {
				t.Fatalf("%d, want %d: %s", code, tc.code, raw)
			}
			if code == 200 && (f.proxied == nil || f.proxied.Header.Get("X-Access-Token") != "") {
				t.Fatalf("not proxied, or the token went into the sandbox: %+v", f.proxied)
			}
		})
	}
}

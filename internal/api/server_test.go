package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/store"
	"github.com/codebench/codebench/internal/submission"
)

// fakeWorker is the seam behind the publisher: it records each job and,
// when answer is set, answers it as a worker would (running, then the
// status answer makes) through the server's reply path.
type fakeWorker struct {
	mu     sync.Mutex
	jobs   []job.Job
	fail   error
	answer func(j job.Job) *job.Status
	srv    *Server
	// queue is the reply queue its jobs must name ("": the test server's).
	queue string
}

func (f *fakeWorker) PublishJobReply(_ context.Context, body []byte, replyTo, corr string) error {
	if f.fail != nil {
		return f.fail
	}
	var j job.Job
	want := f.queue
	if want == "" {
		want = "codebench.api.test"
	}
	if err := json.Unmarshal(body, &j); err != nil || replyTo != want || corr != j.ID {
		return errors.New("bad publish")
	}
	f.mu.Lock()
	f.jobs = append(f.jobs, j)
	f.mu.Unlock()
	if f.answer != nil {
		go func() {
			time.Sleep(20 * time.Millisecond)
			// As a worker does: the job's reply secret on every status.
			rs := job.Progress(j.ID, job.StatusRunning)
			rs.ReplySecret = j.ReplySecret
			running, _ := json.Marshal(rs)
			_ = f.srv.HandleStatus(context.Background(), fromWorker(running))
			st := f.answer(j)
			st.ReplySecret = j.ReplySecret
			final, _ := json.Marshal(st)
			_ = f.srv.HandleStatus(context.Background(), fromWorker(final))
		}()
	}
	return nil
}

// published is the job published under token, last.
func (f *fakeWorker) published(token string) job.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.jobs) - 1; i >= 0; i-- {
		if f.jobs[i].ID == token {
			return f.jobs[i]
		}
	}
	return job.Job{ID: token}
}

// fromWorker is a status as the workers publish it.
func fromWorker(body []byte) queue.Message {
	return queue.Message{Body: body, UserID: "worker", AppID: queue.AppID}
}

// testLanguages are C and Python, C with a version.
var testLanguages = Languages{Ours: map[string]lang.Language{"c": lang.Builtin()["c"], "python": lang.Builtin()["python"]},
	Versions: map[string]string{"c": "12.2.0"}}

func newTestServer(t *testing.T, cfg Config, fw *fakeWorker, with ...func(*Deps)) (*Server, *httptest.Server) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.ReplyQueue, cfg.WorkerUser = "codebench.api.test", "worker"
	d := Deps{Store: st, Publisher: fw, Languages: testLanguages, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range with {
		f(&d)
	}
	srv := New(cfg, d)
	fw.srv = srv
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return srv, hs
}

func do(t *testing.T, method, url, body string, hdr ...string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // what Judge0's clients send; a test may say otherwise
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header
}

func hello(j job.Job) *job.Status {
	code := 0
	return &job.Status{ID: j.ID, Status: job.StatusDone, Verdict: job.VerdictOK, Stdout: "Hello, World!\n", ExitCode: &code, CPUUserUS: 1000, MemUsage: 800, ExecDuration: 3000,
		ReplySecret: j.ReplySecret}
}

func TestSubmissions(t *testing.T) {
	fw := &fakeWorker{answer: hello}
	_, hs := newTestServer(t, Config{}, fw)
	code, m, _ := do(t, "POST", hs.URL+"/submissions?wait=true", `{"source_code":"int main(){}","language_id":50,"stdin":"in","compiler_options":"-O2"}`)
	st, _ := m["status"].(map[string]any)
	if code != 201 || st["id"] != 3.0 || m["stdout"] != "Hello, World!\n" || m["time"] != "0.001" || m["memory"] != 800.0 || len(m) != len(judge0.DefaultFields) {
		t.Fatalf("wait=true: %d %v", code, m)
	}
	fw.mu.Lock()
	j := fw.jobs[0]
	fw.mu.Unlock()
	if j.Language != "c" || j.Stdin != "in" || j.Limits.CPUMS != 5000 || j.Limits.WallMS != 10000 || j.Limits.MemoryKB != 128000 || len(j.CompileFlags) != 1 {
		t.Fatalf("the job: %+v", j)
	}
	code, m, _ = do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":71}`)
	tok, _ := m["token"].(string)
	if code != 201 || len(m) != 1 || len(tok) != 36 {
		t.Fatalf("no wait: %d %v", code, m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, m, _ = do(t, "GET", hs.URL+"/submissions/"+tok+"?base64_encoded=true&fields=*", "")
		if st, _ := m["status"].(map[string]any); code == 200 && st["id"] == 3.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never finished: %d %v", code, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(m) != len(judge0.Columns) || m["stdout"] != "SGVsbG8sIFdvcmxkIQo=\n" || m["source_code"] != "eA==\n" || m["finished_at"] == nil {
		t.Fatalf("fields=* base64: %v", m)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		key, want          string
	}{
		{"GET", "/submissions/nope", "", 404, "error", "Not Found"},
		{"GET", "/submissions/" + tok + "?fields=token,bogus", "", 400, "error", "invalid fields: [bogus]"},
		{"POST", "/submissions", `{"source_code":`, 400, "", ""},
		{"POST", "/submissions", `{"source_code":"x","language_id":999}`, 422, "language_id", "language with id 999 doesn't exist"},
		{"POST", "/submissions", `{"source_code":"x","language_id":50,"compiler_options":"-fplugin=evil.so"}`, 422, "compiler_options", ""},
		{"POST", "/submissions", `{"source_code":"` + strings.Repeat("a", 9<<20) + `"}`, 413, "", ""},
		{"DELETE", "/submissions/" + tok, "", 403, "", ""},
		{"GET", "/submissions", "", 403, "", ""},
	} {
		code, m, _ := do(t, tc.method, hs.URL+tc.path, tc.body)
		if code != tc.code {
			t.Errorf("%s %s: %d, want %d: %v", tc.method, tc.path, code, tc.code, m)
			continue
		}
		if tc.key != "" && !strings.Contains(jsonString(m[tc.key]), tc.want) {
			t.Errorf("%s %s: %v, want %s %q", tc.method, tc.path, m, tc.key, tc.want)
		}
	}
	// CORS is off by default (TestSafeDefaults has it configured).
	_, _, h := do(t, "OPTIONS", hs.URL+"/submissions", "", "Origin", "https://ide.example", "Access-Control-Request-Method", "POST")
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS by default: %v", h)
	}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestBatchAndLists(t *testing.T) {
	fw := &fakeWorker{answer: hello}
	_, hs := newTestServer(t, Config{AuthzTokens: []string{"admin"}}, fw)
	resp, err := http.Post(hs.URL+"/submissions/batch", "application/json", strings.NewReader(
		`{"submissions":[{"source_code":"a","language_id":50},{"source_code":"b","language_id":12345},{"source_code":"c","language_id":71}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var items []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&items)
	resp.Body.Close()
	if resp.StatusCode != 201 || len(items) != 3 || items[0]["token"] == nil || items[1]["language_id"] == nil || items[2]["token"] == nil {
		t.Fatalf("batch: %d %v", resp.StatusCode, items)
	}
	time.Sleep(200 * time.Millisecond)
	code, m, _ := do(t, "GET", hs.URL+"/submissions/batch?tokens="+items[0]["token"].(string)+",missing,"+items[2]["token"].(string), "")
	subs, _ := m["submissions"].([]any)
	if code != 200 || len(subs) != 3 || subs[1] != nil || subs[0] == nil {
		t.Fatalf("batch show: %d %v", code, m)
	}
	code, m, _ = do(t, "GET", hs.URL+"/submissions?per_page=1", "", "X-Auth-User", "admin")
	meta, _ := m["meta"].(map[string]any)
	if code != 200 || meta["total_count"] != 2.0 || meta["total_pages"] != 2.0 || meta["next_page"] != 2.0 {
		t.Fatalf("list: %d %v", code, m)
	}
	for path, n := range map[string]int{"/statuses": 14, "/languages": 2, "/languages/all": 2} {
		resp, _ := http.Get(hs.URL + path)
		var list []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if len(list) != n {
			t.Errorf("%s: %v", path, list)
		}
	}
	code, m, _ = do(t, "GET", hs.URL+"/config_info", "")
	// v1.13.1's app/helpers/config.rb has 39 (the issue says 40; the
	// source is the reference).
	if code != 200 || len(m) != 39 || m["max_submission_batch_size"] != 20.0 || m["enable_wait_result"] != true {
		t.Fatalf("config_info: %d keys: %v", len(m), m)
	}
	if _, m, _ = do(t, "GET", hs.URL+"/about", ""); m["version"] != "1.13.1" {
		t.Fatalf("about: %v", m)
	}
	if code, m, _ = do(t, "GET", hs.URL+"/languages/50", ""); code != 200 || m["name"] != "C (GCC 12.2.0)" || m["source_file"] != "main.c" {
		t.Fatalf("language: %v", m)
	}
}

func TestAuthQueueBoundAndRecovery(t *testing.T) {
	fw := &fakeWorker{}
	srv, hs := newTestServer(t, Config{AuthTokens: []string{"sesame"}, MaxQueue: 1}, fw)
	if code, _, _ := do(t, "GET", hs.URL+"/languages", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _, _ := do(t, "GET", hs.URL+"/languages?X-Auth-Token=sesame", "", "X-RapidAPI-Key", "ignored"); code != 200 {
		t.Fatalf("token as a query parameter: %d", code)
	}
	body := `{"source_code":"x","language_id":50}`
	code, m, _ := do(t, "POST", hs.URL+"/submissions", body, "X-Auth-Token", "sesame")
	if code != 201 {
		t.Fatalf("first: %d %v", code, m)
	}
	tok := m["token"].(string)
	// Nobody answers: the queue (1) is full.
	if code, m, _ := do(t, "POST", hs.URL+"/submissions", body, "X-Auth-Token", "sesame"); code != 503 || m["error"] != "queue is full" {
		t.Fatalf("over the bound: %d %v", code, m)
	}
	// A restart republishes what is unfinished; the answer frees the place.
	fw.mu.Lock()
	fw.jobs = nil
	fw.mu.Unlock()
	if n, err := srv.Recover(context.Background()); n != 1 || err != nil {
		t.Fatalf("recover: %d %v", n, err)
	}
	fw.mu.Lock()
	if len(fw.jobs) != 1 || fw.jobs[0].ID != tok {
		t.Fatalf("republished: %+v", fw.jobs)
	}
	fw.mu.Unlock()
	final, _ := json.Marshal(hello(fw.published(tok)))
	// A producer that learnt the token and named the reply queue as its
	// reply_to: its status is not the workers' (user_id), and is dropped.
	forged := queue.Message{Body: final, UserID: "mallory", AppID: queue.AppID}
	if err := srv.HandleStatus(context.Background(), forged); err != nil || srv.InFlight() != 1 {
		t.Fatalf("forged status: %v, in flight %d", err, srv.InFlight())
	}
	// A job of the same token that somebody else published, run by a
	// worker in good faith: the workers' status, without this job's reply
	// secret (or with another), is dropped.
	for _, secret := range []string{"", "0123456789abcdef0123456789abcdef"} {
		other := hello(job.Job{ID: tok})
		other.Stdout, other.ReplySecret = "forged\n", secret
		b, _ := json.Marshal(other)
		if err := srv.HandleStatus(context.Background(), fromWorker(b)); err != nil || srv.InFlight() != 1 {
			t.Fatalf("a status with secret %q: %v, in flight %d", secret, err, srv.InFlight())
		}
	}
	if _, m, _ := do(t, "GET", hs.URL+"/submissions/"+tok+"?X-Auth-Token=sesame", ""); m["status"].(map[string]any)["id"] != 1.0 {
		t.Fatalf("a forged status was stored: %v", m)
	}
	if err := srv.HandleStatus(context.Background(), fromWorker(final)); err != nil || srv.InFlight() != 0 {
		t.Fatalf("status: %v, in flight %d", err, srv.InFlight())
	}
	// A status of a token the store does not have, and junk: dropped.
	if err := srv.HandleStatus(context.Background(), fromWorker([]byte(`{"id":"unknown","status":"done"}`))); err != nil {
		t.Fatal(err)
	}
	if err := srv.HandleStatus(context.Background(), fromWorker([]byte(`not json`))); err != nil {
		t.Fatal(err)
	}
	// A publish that fails: 503, and the token is not kept.
	fw.fail = errors.New("broker down")
	code, m, _ = do(t, "POST", hs.URL+"/submissions", body, "X-Auth-Token", "sesame")
	if code != 503 || srv.InFlight() != 0 {
		t.Fatalf("publish failure: %d %v (in flight %d)", code, m, srv.InFlight())
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(m)
}

func TestPistonExecute(t *testing.T) {
	fw := &fakeWorker{answer: hello}
	_, hs := newTestServer(t, Config{}, fw)
	resp, err := http.Get(hs.URL + "/api/v2/runtimes")
	if err != nil {
		t.Fatal(err)
	}
	var rts []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&rts)
	resp.Body.Close()
	if len(rts) != 2 || rts[0]["language"] != "c" || rts[0]["version"] != "12.2.0" {
		t.Fatalf("runtimes: %v", rts)
	}
	if code, _, _ := do(t, "POST", hs.URL+"/api/v2/execute", `{}`, "Content-Type", "text/plain"); code != 415 {
		t.Fatalf("not JSON: %d", code)
	}
	code, m, _ := do(t, "POST", hs.URL+"/api/v2/execute", `{"language":"cobol","version":"*","files":[{"content":"x"}]}`, "Content-Type", "application/json")
	if code != 400 || m["message"] != "cobol-* runtime is unknown" {
		t.Fatalf("unknown runtime: %d %v", code, m)
	}
	code, m, _ = do(t, "POST", hs.URL+"/api/v2/execute", `{"language":"c","version":"*","files":[{"content":"int main(){}"},{"name":"util.h","content":"#define X 1"}],"args":["1"],"stdin":"in"}`,
		"Content-Type", "application/json")
	run, _ := m["run"].(map[string]any)
	if code != 200 || m["language"] != "c" || m["compile"] == nil || run["stdout"] != "Hello, World!\n" || run["code"] != 0.0 || run["memory"] != 800.0*1024 {
		t.Fatalf("execute: %d %v", code, m)
	}
	fw.mu.Lock()
	j := fw.jobs[len(fw.jobs)-1]
	fw.mu.Unlock()
	if j.Files["util.h"] != "#define X 1" || len(j.Args) != 1 || j.Stdin != "in" {
		t.Fatalf("the job: %+v", j)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	fw := &fakeWorker{answer: hello}
	var notReady atomic.Bool
	_, hs := newTestServer(t, Config{}, fw, func(d *Deps) {
		d.Ready = func() error {
			if notReady.Load() {
				return errors.New("not connected to the broker")
			}
			return nil
		}
	})
	get := func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	notReady.Store(true)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "broker") {
		t.Fatalf("readyz, no broker: %d %q", code, body)
	}
	notReady.Store(false)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz: %d", code)
	}
	if code, _, _ := do(t, "POST", hs.URL+"/submissions?wait=true", `{"source_code":"x","language_id":50}`); code != 201 {
		t.Fatal(code)
	}
	get("/submissions/nope")
	_, body := get("/metrics")
	for _, want := range []string{
		`codebench_api_requests_total{code="201",route="POST /submissions"} 1`,
		`codebench_api_requests_total{code="404",route="GET /submissions/{token}"} 1`,
		`codebench_api_statuses_total{outcome="stored"} 2`,
		`codebench_api_submissions_in_flight 0`,
		`codebench_api_request_seconds_count{route="POST /submissions"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}

// TestCallbacks: a finished submission's default fields, base64, are PUT
// to its callback_url (a test server on loopback), retried after a
// failure; a host outside the allow-list is a 422; none allowed: off.
func TestCallbacks(t *testing.T) {
	type put struct {
		method, ctype string
		body          map[string]any
	}
	got := make(chan put, 10)
	var calls int
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusBadGateway) // the first try fails
			return
		}
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		got <- put{r.Method, r.Header.Get("Content-Type"), m}
	}))
	defer hook.Close()
	fw := &fakeWorker{answer: hello}
	hookHost := strings.TrimPrefix(hook.URL, "http://")
	srv, hs := newTestServer(t, Config{CallbackAllow: []string{hookHost}, CallbackTimeout: 2 * time.Second}, fw)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.RunCallbacks(ctx) }()
	defer func() { cancel(); <-done }()

	code, m, _ := do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":50,"callback_url":"`+hook.URL+`/hook"}`)
	if code != 201 {
		t.Fatalf("%d %v", code, m)
	}
	select {
	case p := <-got:
		st, _ := p.body["status"].(map[string]any)
		if p.method != "PUT" || p.ctype != "application/json" || p.body["token"] != m["token"] || st["id"] != 3.0 ||
			p.body["stdout"] != "SGVsbG8sIFdvcmxkIQo=\n" || len(p.body) != len(judge0.DefaultFields) {
			t.Fatalf("callback: %+v", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no callback")
	}
	for _, bad := range []string{"http://169.254.169.254/latest", "http://" + hookHost + "@evil.test/", "ftp://" + hookHost + "/", "not a url"} {
		code, m, _ := do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":50,"callback_url":"`+bad+`"}`)
		if code != 422 || m["callback_url"] == nil {
			t.Errorf("callback_url %q: %d %v", bad, code, m)
		}
	}
	_, off := newTestServer(t, Config{}, &fakeWorker{})
	code, m, _ = do(t, "POST", off.URL+"/submissions", `{"source_code":"x","language_id":50,"callback_url":"`+hook.URL+`"}`)
	if code != 422 || !strings.Contains(jsonString(m["callback_url"]), "not allowed") {
		t.Fatalf("callbacks off: %d %v", code, m)
	}
	if _, m, _ := do(t, "GET", off.URL+"/config_info", ""); m["enable_callbacks"] != false {
		t.Fatalf("config_info with callbacks off: %v", m)
	}
}

// TestDelete: off by default (400, as Judge0); on, an authorized DELETE of
// a finished submission answers its fields in base64 and removes it; one
// still in queue is a 400.
func TestDelete(t *testing.T) {
	_, off := newTestServer(t, Config{AuthzTokens: []string{"admin"}}, &fakeWorker{answer: hello})
	if code, m, _ := do(t, "DELETE", off.URL+"/submissions/x", "", "X-Auth-User", "admin"); code != 400 || m["error"] != "delete not allowed" {
		t.Fatalf("off: %d %v", code, m)
	}
	fw := &fakeWorker{answer: hello}
	_, hs := newTestServer(t, Config{AuthzTokens: []string{"admin"}, EnableDelete: true}, fw)
	_, m, _ := do(t, "POST", hs.URL+"/submissions?wait=true", `{"source_code":"x","language_id":50}`)
	tok := m["token"].(string)
	if code, _, _ := do(t, "DELETE", hs.URL+"/submissions/"+tok, ""); code != 403 {
		t.Fatalf("no authz: %d", code)
	}
	code, m, _ := do(t, "DELETE", hs.URL+"/submissions/"+tok+"?fields=token,stdout", "", "X-Auth-User", "admin")
	if code != 200 || m["token"] != tok || m["stdout"] != "SGVsbG8sIFdvcmxkIQo=\n" || len(m) != 2 {
		t.Fatalf("delete: %d %v", code, m)
	}
	if code, _, _ := do(t, "GET", hs.URL+"/submissions/"+tok, ""); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
	if code, _, _ := do(t, "DELETE", hs.URL+"/submissions/"+tok, "", "X-Auth-User", "admin"); code != 404 {
		t.Fatalf("twice: %d", code)
	}
	fw.answer = nil // nobody answers: it stays in queue
	_, m, _ = do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":50}`)
	code, m, _ = do(t, "DELETE", hs.URL+"/submissions/"+m["token"].(string), "", "X-Auth-User", "admin")
	if code != 400 || m["error"] != "submission cannot be deleted because its status is 1 (In Queue)" {
		t.Fatalf("in queue: %d %v", code, m)
	}
}

type fakeQueue struct {
	messages, consumers int
	looks               *int
}

func (q fakeQueue) JobsQueue(context.Context) (int, int, error) {
	*q.looks++
	return q.messages, q.consumers, nil
}

// laterQueue is a queue that cannot be looked at until one is stored.
type laterQueue struct{ atomic.Pointer[fakeQueue] }

func (q *laterQueue) JobsQueue(ctx context.Context) (int, int, error) {
	f := q.Load()
	if f == nil {
		return 0, 0, errors.New("no broker")
	}
	return f.JobsQueue(ctx)
}

// TestWorkersAndSystemInfo: /workers is the jobs queue's depth and its
// consumers; /system_info is lscpu's and free's facts as strings.
func TestWorkersAndSystemInfo(t *testing.T) {
	queue := &laterQueue{}
	_, hs := newTestServer(t, Config{}, &fakeWorker{}, func(d *Deps) { d.Queue = queue })
	if code, _, _ := do(t, "GET", hs.URL+"/workers", ""); code != 503 {
		t.Fatalf("no queue: %d", code)
	}
	for range 3 {
		if code, _, _ := do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":50}`); code != 201 {
			t.Fatal(code)
		}
	}
	// 3 in flight, 1 waiting in the queue, 4 workers: 2 working, 2 idle.
	looks := 0
	queue.Store(&fakeQueue{messages: 1, consumers: 4, looks: &looks})
	resp, err := http.Get(hs.URL + "/workers")
	if err != nil {
		t.Fatal(err)
	}
	var ws []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ws)
	resp.Body.Close()
	if len(ws) != 1 || ws[0]["queue"] != "jobs" || ws[0]["size"] != 1.0 || ws[0]["available"] != 4.0 || ws[0]["working"] != 2.0 || ws[0]["idle"] != 2.0 || len(ws[0]) != 7 {
		t.Fatalf("workers: %v", ws)
	}
	// A second look within a second is the first one's.
	if code, _, _ := do(t, "GET", hs.URL+"/workers", ""); code != 200 || looks != 1 {
		t.Fatalf("a second GET /workers: %d, %d looks at the queue", code, looks)
	}
	code, m, _ := do(t, "GET", hs.URL+"/system_info", "")
	if code != 200 || m["CPU(s)"] == nil || m["Mem"] == nil || !strings.HasSuffix(m["Mem"].(string), "i") {
		t.Fatalf("system_info: %d %v", code, m)
	}
	for in, want := range map[string]string{"24554324 kB": "23.4Gi", "0 kB": "0B", "512 kB": "512Ki", "2048 kB": "2Mi"} {
		if got := humanKB(in); got != want {
			t.Errorf("humanKB(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSlowClients: a client that stops in its headers, or trickles its
// body, is cut off at the server's timeouts (short ones here), and the
// server goes on answering others.
func TestSlowClients(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := Config{ReplyQueue: "codebench.api.test", ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond}
	srv := New(cfg, Deps{Store: st, Publisher: &fakeWorker{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	defer func() { _ = hs.Close(); <-done }()

	for _, c := range []struct {
		name  string
		write func(net.Conn)
	}{
		{"silent in its headers", func(c net.Conn) { io.WriteString(c, "POST /submissions HTTP/1.1\r\nHost: x\r\n") }},
		{"a trickled body", func(c net.Conn) {
			io.WriteString(c, "POST /submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
			for range 50 {
				if _, err := io.WriteString(c, " "); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			go c.write(conn)
			// The server closes the connection (maybe after a 408 or 400):
			// reading ends well before the client would have finished (5 s).
			_ = conn.SetReadDeadline(time.Now().Add(4 * time.Second))
			_, err = io.ReadAll(conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("still open after %v", time.Since(start))
			}
		})
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the slow clients: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestBurst: 10,000 submissions at once, 32 clients, a queue bound of
// 3,000 and no worker answering: each gets 201 or 503, exactly 3,000 are
// accepted, every token given out is stored; then every one is answered
// and reaches its result, and the bound is free again.
func TestBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 requests: not in -short")
	}
	const total, bound, clients = 10000, 3000, 32
	fw := &fakeWorker{}
	srv, hs := newTestServer(t, Config{MaxQueue: bound}, fw)
	var mu sync.Mutex
	var tokens []string
	codes := map[int]int{}
	next := make(chan struct{}, total)
	for range total {
		next <- struct{}{}
	}
	close(next)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				resp, err := client.Post(hs.URL+"/submissions", "application/json", strings.NewReader(`{"source_code":"print(1)","language_id":71}`))
				if err != nil {
					t.Error(err)
					return
				}
				var m map[string]string
				_ = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 201 {
					tokens = append(tokens, m["token"])
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if codes[201] != bound || codes[503] != total-bound || len(codes) != 2 {
		t.Fatalf("codes %v, want %d × 201 and %d × 503", codes, bound, total-bound)
	}
	fw.mu.Lock()
	published := len(fw.jobs)
	fw.mu.Unlock()
	if published != bound || srv.InFlight() != bound {
		t.Fatalf("published %d, in flight %d", published, srv.InFlight())
	}
	for _, tok := range tokens {
		final, _ := json.Marshal(hello(fw.published(tok)))
		if err := srv.HandleStatus(context.Background(), fromWorker(final)); err != nil {
			t.Fatal(err)
		}
	}
	if srv.InFlight() != 0 {
		t.Fatalf("in flight after every answer: %d", srv.InFlight())
	}
	counts, err := srv.store.Counts(context.Background())
	if err != nil || counts[submission.Outcome{State: job.StatusDone, Verdict: job.VerdictOK}] != bound || len(counts) != 1 {
		t.Fatalf("the store: %v %v", counts, err)
	}
}

// TestPlaygroundStreams: the playground's submissions ask the worker to
// stream; the output statuses are kept, in order, bounded, until the final
// one, and read back while the job runs.
func TestPlaygroundStreams(t *testing.T) {
	fw := &fakeWorker{}
	srv, hs := newTestServer(t, Config{}, fw)
	code, m, _ := do(t, "POST", hs.URL+"/playground/submissions", `{"source_code":"cHJpbnQoMSk=","language_id":71}`) // base64
	tok, _ := m["token"].(string)
	if code != 201 || tok == "" {
		t.Fatalf("%d %v", code, m)
	}
	fw.mu.Lock()
	j := fw.jobs[0]
	fw.mu.Unlock()
	if !j.Stream || j.Code != "print(1)" {
		t.Fatalf("the job: %+v", j)
	}
	status := func(st *job.Status) {
		st.ReplySecret = j.ReplySecret
		b, _ := json.Marshal(st)
		if err := srv.HandleStatus(context.Background(), fromWorker(b)); err != nil {
			t.Fatal(err)
		}
	}
	status(job.Output(tok, 1, "tick\n", ""))
	status(job.Output(tok, 1, "tick\n", "")) // redelivered: dropped
	status(job.Output(tok, 2, "tock\n", "warn\n"))
	// An output status without the job's reply secret is not its output.
	forged := job.Output(tok, 3, "forged\n", "")
	forged.ReplySecret = "not-the-jobs"
	if err := srv.HandleStatus(context.Background(), fromWorker(forged.Marshal())); err != nil {
		t.Fatal(err)
	}
	code, m, _ = do(t, "GET", hs.URL+"/playground/output/"+tok, "")
	if code != 200 || m["seq"] != 2.0 || m["stdout"] != "tick\ntock\n" || m["stderr"] != "warn\n" || m["truncated"] != false {
		t.Fatalf("output so far: %d %v", code, m)
	}
	status(job.Output(tok, 3, strings.Repeat("x", maxLiveBytes), ""))
	if _, m, _ = do(t, "GET", hs.URL+"/playground/output/"+tok, ""); len(m["stdout"].(string))+len(m["stderr"].(string)) != maxLiveBytes || m["truncated"] != true {
		t.Fatalf("over the bound: %d bytes, truncated %v", len(m["stdout"].(string)), m["truncated"])
	}
	status(hello(fw.published(tok)))
	if code, _, _ := do(t, "GET", hs.URL+"/playground/output/"+tok, ""); code != 404 {
		t.Fatalf("after the final status: %d", code)
	}
	// Judge0's own route never streams.
	do(t, "POST", hs.URL+"/submissions", `{"source_code":"x","language_id":71}`)
	fw.mu.Lock()
	j = fw.jobs[1]
	fw.mu.Unlock()
	if j.Stream {
		t.Fatal("POST /submissions streams")
	}
	// At most maxLive streamed at once; beyond, no room (the job runs
	// without streaming).
	for i := range maxLive {
		if !srv.live.start(fmt.Sprint(i), "s") {
			t.Fatalf("no room for %d", i)
		}
	}
	if srv.live.start("one more", "s") {
		t.Fatal("room beyond maxLive")
	}
}

package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/submission"
)

// brokenStore is a store whose every call fails (the database is down),
// but for the calls ok names.
type brokenStore struct{ ok map[string]bool }

var errDown = errors.New("the database is down")

func (b brokenStore) fail(call string) error {
	if b.ok[call] {
		return nil
	}
	return errDown
}

func (b brokenStore) Insert(context.Context, *submission.Record, string, time.Time, time.Duration) error {
	return b.fail("insert")
}
func (b brokenStore) Update(context.Context, *submission.Record, time.Time) (bool, error) {
	return false, b.fail("update")
}
func (b brokenStore) Unfinished(context.Context, string) (int, int, error) {
	return 0, 0, b.fail("unfinished")
}
func (b brokenStore) UsageOf(context.Context, string, time.Time) (submission.Usage, error) {
	return submission.Usage{}, errDown
}
func (b brokenStore) Size(context.Context) (int64, error) { return 0, errDown }
func (b brokenStore) Overdue(context.Context, time.Time, int) ([]*submission.Record, error) {
	return nil, errDown
}
func (b brokenStore) Heartbeat(context.Context, string, time.Time) error { return errDown }
func (b brokenStore) Adopt(context.Context, string, time.Time, int) ([]*submission.Record, error) {
	return nil, errDown
}
func (b brokenStore) Get(context.Context, string) (*submission.Record, error) {
	return nil, errDown
}
func (b brokenStore) List(context.Context, int, int) ([]*submission.Record, int, error) {
	return nil, 0, errDown
}
func (b brokenStore) Pending(context.Context, string, int) ([]*submission.Record, error) {
	return nil, errDown
}
func (b brokenStore) Delete(context.Context, string) error { return errDown }
func (b brokenStore) Counts(context.Context) (map[submission.Outcome]int, error) {
	return nil, errDown
}
func (b brokenStore) Ping(context.Context) error { return errDown }

// TestStoreErrors: every answer that needs the store is a 500 (or 503 for
// the probes) with a message that says nothing of the database, nothing is
// published for a submission that was not stored, and a status that could
// not be stored is not acknowledged (HandleStatus returns the error).
func TestStoreErrors(t *testing.T) {
	fw := &fakeWorker{}
	srv := New(Config{ReplyQueue: "codebench.api.test", AuthzTokens: []string{"admin"}, EnableDelete: true},
		Deps{Store: brokenStore{}, Publisher: fw, Languages: testLanguages, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/submissions", `{"source_code":"x","language_id":50}`, 500},
		{"POST", "/submissions?wait=true", `{"source_code":"x","language_id":50}`, 500},
		{"GET", "/submissions/abc", "", 500},
		{"GET", "/submissions?page=1", "", 500},
		{"DELETE", "/submissions/abc", "", 500},
		{"GET", "/statistics", "", 500},
		{"POST", "/api/v2/execute", `{"language":"c","version":"*","files":[{"content":"int main(){}"}]}`, 500},
		{"POST", "/playground/submissions", `{"source_code":"eA==","language_id":50}`, 500},
	} {
		code, m, _ := do(t, tc.method, hs.URL+tc.path, tc.body, "Content-Type", "application/json", "X-Auth-User", "admin")
		if code != tc.code {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, code, m, tc.code)
		}
		for _, v := range m {
			if s, ok := v.(string); ok && s == errDown.Error() {
				t.Errorf("%s %s: the store's error given out: %v", tc.method, tc.path, m)
			}
		}
	}
	if len(fw.jobs) != 0 {
		t.Fatalf("%d jobs published that were never stored", len(fw.jobs))
	}
	if code, _, _ := do(t, "GET", hs.URL+"/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the store down: %d", code)
	}
	if code, _, _ := do(t, "GET", hs.URL+"/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	if _, err := srv.Recover(context.Background()); !errors.Is(err, errDown) {
		t.Fatalf("recover: %v", err)
	}
	if err := srv.Tend(context.Background(), time.Now()); !errors.Is(err, errDown) {
		t.Fatalf("tend: %v", err)
	}
	st := []byte(`{"id":"abc","status":"done","verdict":"ok"}`)
	if err := srv.HandleStatus(context.Background(), fromWorker(st)); !errors.Is(err, errDown) {
		t.Fatalf("a status the store could not take was acknowledged: %v", err)
	}
}

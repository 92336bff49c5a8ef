package api

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/store"
	"github.com/codebench/codebench/internal/submission"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestNodes: two API nodes on one store. A node that stops (no heartbeat)
// has its unfinished submissions adopted by the other, which publishes
// them again with its own reply queue; a submission whose final status is
// overdue is ended by the reaper with Judge0's Internal Error and a
// message saying why; the in-flight count is the store's, the same on
// both nodes.
func TestNodes(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := &clock{t: time.Now()}
	node := func(name string, fw *fakeWorker) (*Server, *httptest.Server) {
		fw.queue = "codebench.api.replies." + name
		srv := New(Config{ReplyQueue: fw.queue, Node: name, QueueTimeout: time.Minute}, Deps{Store: st, Publisher: fw, Languages: testLanguages,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.now})
		fw.srv = srv
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		return srv, hs
	}
	fa, fb := &fakeWorker{}, &fakeWorker{}
	a, ha := node("a", fa)
	b, _ := node("b", fb)
	ctx := context.Background()
	if err := a.Tend(ctx, c.now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	code, m, _ := do(t, "POST", ha.URL+"/submissions", `{"source_code":"x","language_id":50}`)
	tok, _ := m["token"].(string)
	if code != 201 || len(fa.jobs) != 1 || a.InFlight() != 1 || b.InFlight() != 1 {
		t.Fatalf("%d %v: published %d, in flight %d and %d", code, m, len(fa.jobs), a.InFlight(), b.InFlight())
	}
	// a is alive: b adopts nothing.
	if err := b.Tend(ctx, c.now().Add(-30*time.Second)); err != nil || len(fb.jobs) != 0 {
		t.Fatalf("adopted from a live node: %v, %d", err, len(fb.jobs))
	}
	// a goes silent: b adopts its submission and publishes it again, with
	// b's reply queue (fakeWorker checks it) and the same reply secret.
	c.add(45 * time.Second)
	if err := b.Tend(ctx, c.now().Add(-30*time.Second)); err != nil || len(fb.jobs) != 1 || fb.jobs[0].ID != tok ||
		fb.jobs[0].ReplySecret != fa.jobs[0].ReplySecret {
		t.Fatalf("adoption: %v, %+v", err, fb.jobs)
	}
	// Nothing comes back: past the queue timeout and the job's budget, the
	// reaper ends it, once.
	c.add(time.Minute + b.subs.budget(submissionOf(t, st, tok)))
	if err := b.Tend(ctx, c.now().Add(-30*time.Second)); err != nil {
		t.Fatal(err)
	}
	rec := submissionOf(t, st, tok)
	if !rec.Finished() || judge0.StatusID(rec) != judge0.InternalError || rec.Status.Message == "" || a.InFlight() != 0 || b.InFlight() != 0 {
		t.Fatalf("after the reaper: %+v, in flight %d %d", rec.Status, a.InFlight(), b.InFlight())
	}
	// A late final from a worker changes nothing.
	final := hello(fb.published(tok))
	if _, changed, err := b.subs.take(ctx, final); err != nil || changed {
		t.Fatalf("a late final: %v %v", changed, err)
	}
}

func submissionOf(t *testing.T, st *store.Store, token string) *submission.Record {
	t.Helper()
	r, err := st.Get(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// countingStore counts the store's GROUP BYs.
type countingStore struct {
	*store.Store
	counts int
}

func (c *countingStore) Counts(ctx context.Context) (map[submission.Outcome]int, error) {
	c.counts++
	return c.Store.Counts(ctx)
}

// TestStatisticsCachedAndLiveSlotsReaped: /statistics counts the store at
// most every statsTTL; a playground submission whose final never comes has
// its live-output slot freed by the reaper.
func TestStatisticsCachedAndLiveSlotsReaped(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs := &countingStore{Store: st}
	c := &clock{t: time.Now()}
	fw := &fakeWorker{}
	srv := New(Config{ReplyQueue: "codebench.api.test", Node: "n", QueueTimeout: time.Minute}, Deps{Store: cs, Publisher: fw,
		Languages: testLanguages, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.now})
	fw.srv = srv
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	for range 3 {
		if code, _, _ := do(t, "GET", hs.URL+"/statistics", ""); code != 200 {
			t.Fatal(code)
		}
	}
	c.add(statsTTL)
	do(t, "GET", hs.URL+"/statistics", "")
	if cs.counts != 2 {
		t.Fatalf("%d counts for 4 requests over two periods", cs.counts)
	}
	code, m, _ := do(t, "POST", hs.URL+"/playground/submissions", `{"source_code":"cHJpbnQoMSk=","language_id":71}`)
	tok, _ := m["token"].(string)
	if code != 201 || srv.live.snapshot(tok) == nil {
		t.Fatalf("%d %v: no live slot", code, m)
	}
	c.add(time.Minute + srv.subs.budget(submissionOf(t, st, tok)) + time.Second)
	if err := srv.Tend(context.Background(), c.now()); err != nil {
		t.Fatal(err)
	}
	if srv.live.snapshot(tok) != nil {
		t.Fatal("the live slot outlived the reaped submission")
	}
}

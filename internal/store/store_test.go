package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/submission"
	"github.com/codebench/codebench/internal/testenv"
)

// TestStore runs the store's contract on both databases: a SQLite file, and
// a real PostgreSQL (the test cluster of scripts/postgres.sh).
func TestStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testStore(t, filepath.Join(t.TempDir(), "api.db")) })
	t.Run("postgres", func(t *testing.T) { testStore(t, testenv.Postgres(t, "store")) })
}

func testStore(t *testing.T, path string) {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 123e6, time.UTC)
	newRec := func(token, code string, created time.Time) *submission.Record {
		r, err := submission.New(token, "judge0", job.Job{Language: "c", Code: code, Stdin: "in", Limits: job.Limits{CPUMS: 5000}},
			map[string]any{"language_id": 50}, created)
		if err != nil {
			t.Fatal(err)
		}
		r.Owner = "client-1"
		return r
	}
	recs := []*submission.Record{newRec("a", "x", t0), newRec("b", "y", t0.Add(time.Second))}
	for _, r := range recs {
		if err := s.Insert(ctx, r, "node-a", t0.Add(time.Hour), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Insert(ctx, recs[0], "node-a", t0, 0); err == nil {
		t.Fatal("a token stored twice")
	}
	got, err := s.Get(ctx, "a")
	if err != nil || got.Job.Code != "x" || got.Job.Stdin != "in" || got.Job.ID != "a" || !got.CreatedAt.Equal(t0) || got.FinishedAt != nil ||
		got.Status != nil || got.Owner != "client-1" || got.Door != "judge0" || string(got.Options) != `{"language_id":50}` || got.Schema != submission.Schema {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, "zz"); !errors.Is(err, submission.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	// Running, then done; a redelivered running afterwards changes nothing.
	got.Take(&job.Status{ID: "a", Status: job.StatusRunning}, t0)
	if ok, err := s.Update(ctx, got, t0.Add(time.Minute)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	code := 0
	got.Take(&job.Status{ID: "a", Status: job.StatusDone, Verdict: job.VerdictOK, Stdout: "hi", ExitCode: &code, CPUUserUS: 1500, MemUsage: 900}, t0.Add(2*time.Second))
	if ok, err := s.Update(ctx, got, time.Time{}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	late := *got
	late.FinishedAt = nil
	late.Take(&job.Status{ID: "a", Status: job.StatusFailed, Verdict: job.VerdictInternalError}, t0.Add(3*time.Second))
	if ok, err := s.Update(ctx, &late, time.Time{}); ok || err != nil {
		t.Fatalf("a final result was overwritten: %v %v", ok, err)
	}
	got, _ = s.Get(ctx, "a")
	if got.Status == nil || got.Status.Verdict != job.VerdictOK || got.Status.Stdout != "hi" || got.Status.CPUUserUS != 1500 ||
		got.FinishedAt == nil || !got.FinishedAt.Equal(t0.Add(2*time.Second)) || got.Job.Code != "x" {
		t.Fatalf("after done: %+v", got)
	}
	pending, err := s.Pending(ctx, "node-a", 10)
	if err != nil || len(pending) != 1 || pending[0].Token != "b" {
		t.Fatalf("pending: %v %v", pending, err)
	}
	if other, err := s.Pending(ctx, "node-b", 10); err != nil || len(other) != 0 {
		t.Fatalf("another node's pending: %v %v", other, err)
	}
	if mine, all, err := s.Unfinished(ctx, "node-a"); mine != 1 || all != 1 || err != nil {
		t.Fatalf("unfinished: %d %d %v", mine, all, err)
	}
	if mine, all, err := s.Unfinished(ctx, "node-b"); mine != 0 || all != 1 || err != nil {
		t.Fatalf("unfinished, another node: %d %d %v", mine, all, err)
	}
	// client-1 made both; one is in flight, with 10 s of sandbox time.
	if u, err := s.UsageOf(ctx, "client-1", t0.Add(-time.Minute)); err != nil || u.InFlight != 1 || u.Sandbox != 10*time.Second || u.Recent != 2 {
		t.Fatalf("usage: %+v %v", u, err)
	}
	if u, err := s.UsageOf(ctx, "client-1", t0.Add(time.Hour)); err != nil || u.Recent != 0 || u.InFlight != 1 {
		t.Fatalf("usage later: %+v %v", u, err)
	}
	if u, err := s.UsageOf(ctx, "nobody", t0); err != nil || u != (submission.Usage{}) {
		t.Fatalf("nobody's usage: %+v %v", u, err)
	}
	if n, err := s.Size(ctx); err != nil || n <= 0 {
		t.Fatalf("size: %d %v", n, err)
	}
	// Overdue: b's deadline is an hour after t0.
	if due, err := s.Overdue(ctx, t0.Add(30*time.Minute), 10); err != nil || len(due) != 0 {
		t.Fatalf("overdue early: %v %v", due, err)
	}
	if due, err := s.Overdue(ctx, t0.Add(2*time.Hour), 10); err != nil || len(due) != 1 || due[0].Token != "b" {
		t.Fatalf("overdue: %v %v", due, err)
	}
	// Adoption: node-a alive, nothing to adopt; node-a silent, node-b
	// adopts b; node-b alive, node-c adopts nothing.
	if err := s.Heartbeat(ctx, "node-a", t0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Adopt(ctx, "node-b", t0.Add(-time.Minute), 10); err != nil || len(got) != 0 {
		t.Fatalf("adopted from a live node: %v %v", got, err)
	}
	if got, err := s.Adopt(ctx, "node-b", t0.Add(time.Minute), 10); err != nil || len(got) != 1 || got[0].Token != "b" {
		t.Fatalf("adopt: %v %v", got, err)
	}
	if err := s.Heartbeat(ctx, "node-b", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Adopt(ctx, "node-c", t0.Add(time.Minute), 10); err != nil || len(got) != 0 {
		t.Fatalf("adopted from node-b, alive: %v %v", got, err)
	}
	if mine, err := s.Pending(ctx, "node-b", 10); err != nil || len(mine) != 1 {
		t.Fatalf("node-b's pending: %v %v", mine, err)
	}
	list, total, err := s.List(ctx, 1, 1)
	if err != nil || total != 2 || len(list) != 1 || list[0].Token != "b" {
		t.Fatalf("list: %v %d %v", list, total, err)
	}
	counts, err := s.Counts(ctx)
	if err != nil || counts[submission.Outcome{State: job.StatusDone, Verdict: job.VerdictOK}] != 1 || counts[submission.Outcome{State: submission.Queued}] != 1 {
		t.Fatalf("counts: %v %v", counts, err)
	}
	// Expiry takes finished submissions only.
	if n, err := s.Expire(ctx, t0.Add(time.Hour)); n != 1 || err != nil {
		t.Fatalf("expire: %d %v", n, err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b"); !errors.Is(err, submission.ErrNotFound) {
		t.Fatal(err)
	}
	s.Close()
	// Reopened, twice at once (two API nodes starting): the migrations are
	// applied once, and neither fails.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := Open(ctx, path)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkStore times the steps a wait=true submission takes in the
// store: the insert, a status's read and update, the answer's read
// (SQLite, on the disk under TMPDIR).
//
//	go test -run '^$' -bench Store -benchtime 500x ./internal/store/
func BenchmarkStore(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "api.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var insert, update, read time.Duration
	for i := 0; i < b.N; i++ {
		r, err := submission.New(fmt.Sprint(i), "judge0", job.Job{Language: "python", Code: "print(1)"}, nil, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := s.Insert(ctx, r, "n", time.Now().Add(time.Hour), 0); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		got, err := s.Get(ctx, r.Token)
		if err != nil {
			b.Fatal(err)
		}
		code := 0
		got.Take(&job.Status{ID: r.Token, Status: job.StatusDone, Verdict: job.VerdictOK, Stdout: "1\n", ExitCode: &code}, time.Now())
		if _, err := s.Update(ctx, got, time.Time{}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := s.Get(ctx, r.Token); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		insert, update, read = insert+t1.Sub(t0), update+t2.Sub(t1), read+t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(insert.Microseconds())/n, "insert-us")
	b.ReportMetric(float64(update.Microseconds())/n, "get+update-us")
	b.ReportMetric(float64(read.Microseconds())/n, "read-us")
}

// TestNewerRecord: a record written by a newer binary (its schema above
// this one's) is refused with a reason, not misread.
func TestNewerRecord(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, _ := submission.New("n", "judge0", job.Job{Code: "x"}, nil, time.Now())
	if err := s.Insert(ctx, r, "n", time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE records SET schema = $1`, submission.Schema+1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "n"); err == nil || errors.Is(err, submission.ErrNotFound) {
		t.Fatalf("a newer record read: %v", err)
	}
}

// TestSQLiteFiles: the store's files are its owner's alone, and what
// Expire deletes goes back to the file system.
func TestSQLiteFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "api")
	path := filepath.Join(dir, "api.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := strings.Repeat("x", 1<<20)
	for i := range 8 {
		r, _ := submission.New(fmt.Sprint(i), "judge0", job.Job{Code: big}, nil, time.Now().Add(-time.Hour))
		if err := s.Insert(ctx, r, "n", time.Now(), 0); err != nil {
			t.Fatal(err)
		}
		r.Take(&job.Status{Status: job.StatusDone, Verdict: job.VerdictOK}, time.Now())
		if _, err := s.Update(ctx, r, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{dir, path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if p == dir {
			want = 0o700 | os.ModeDir
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
		}
	}
	before, _ := s.Size(ctx)
	if n, err := s.Expire(ctx, time.Now()); n != 8 || err != nil {
		t.Fatalf("expire: %d %v", n, err)
	}
	var pages, free int64
	if err := s.db.QueryRow(`SELECT page_count, freelist_count FROM pragma_page_count(), pragma_freelist_count()`).Scan(&pages, &free); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Size(ctx)
	if free > pages/10 || after > before/4 {
		t.Fatalf("after expiry: %d pages, %d free; %d bytes used (before %d)", pages, free, after, before)
	}
}

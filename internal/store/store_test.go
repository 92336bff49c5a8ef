package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/judge0"
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
	in := "in"
	recs := []*judge0.Record{
		{Token: "a", StatusID: judge0.InQueue, CreatedAt: t0, Sub: judge0.Submission{SourceCode: "x", LanguageID: 50, Stdin: &in, CPUTimeLimit: 5}},
		{Token: "b", StatusID: judge0.InQueue, CreatedAt: t0.Add(time.Second), Sub: judge0.Submission{SourceCode: "y", LanguageID: 71}},
	}
	for _, r := range recs {
		if err := s.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Insert(ctx, recs[0]); err == nil {
		t.Fatal("a token stored twice")
	}
	got, err := s.Get(ctx, "a")
	if err != nil || got.Sub.SourceCode != "x" || *got.Sub.Stdin != "in" || !got.CreatedAt.Equal(t0) || got.FinishedAt != nil {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, "zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	// Running, then done; a redelivered running afterwards changes nothing.
	got.Apply(&job.Status{ID: "a", Status: job.StatusRunning}, t0)
	if ok, err := s.Update(ctx, got); !ok || err != nil {
		t.Fatal(ok, err)
	}
	code := 0
	got.Apply(&job.Status{ID: "a", Status: job.StatusDone, Verdict: job.VerdictOK, Stdout: "hi", ExitCode: &code, CPUUserUS: 1500, MemUsage: 900}, t0.Add(2*time.Second))
	if ok, err := s.Update(ctx, got); !ok || err != nil {
		t.Fatal(ok, err)
	}
	late := *got
	late.Apply(&job.Status{ID: "a", Status: job.StatusRunning}, t0)
	if ok, err := s.Update(ctx, &late); ok || err != nil {
		t.Fatalf("a final result was overwritten: %v %v", ok, err)
	}
	got, _ = s.Get(ctx, "a")
	if got.StatusID != judge0.Accepted || *got.Stdout != "hi" || *got.Time != 0.002 || *got.Memory != 900 || got.FinishedAt == nil {
		t.Fatalf("after done: %+v", got)
	}
	pending, err := s.Pending(ctx, 10)
	if err != nil || len(pending) != 1 || pending[0].Token != "b" {
		t.Fatalf("pending: %v %v", pending, err)
	}
	list, total, err := s.List(ctx, 1, 1)
	if err != nil || total != 2 || len(list) != 1 || list[0].Token != "b" {
		t.Fatalf("list: %v %d %v", list, total, err)
	}
	counts, err := s.Counts(ctx)
	if err != nil || counts[judge0.Accepted] != 1 || counts[judge0.InQueue] != 1 {
		t.Fatalf("counts: %v %v", counts, err)
	}
	// Expiry takes finished submissions only.
	if n, err := s.Expire(ctx, t0.Add(time.Hour)); n != 1 || err != nil {
		t.Fatalf("expire: %d %v", n, err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b"); !errors.Is(err, ErrNotFound) {
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

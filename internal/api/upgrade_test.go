package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/piston"
	"github.com/codebench/codebench/internal/store"
	"github.com/codebench/codebench/internal/testenv"
)

// TestUpgradeFromFirstRelease opens a database the first release of the
// API wrote (codebench e91eb30: rows in Judge0's shape; testdata/upgrade-v1,
// made by its generate_test.go.txt with that release) on SQLite and on
// PostgreSQL, lets the store migrate it, and checks every submission
// answers as that release answered it: Judge0's fields=* (base64), Piston's
// result, and the job it would publish again.
func TestUpgradeFromFirstRelease(t *testing.T) {
	dir := filepath.Join("testdata", "upgrade-v1")
	var answers map[string]struct {
		Judge0, Job, Piston json.RawMessage
	}
	b, err := os.ReadFile(filepath.Join(dir, "answers.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &answers); err != nil {
		t.Fatal(err)
	}
	t.Run("sqlite", func(t *testing.T) {
		db, err := os.ReadFile(filepath.Join(dir, "sqlite.db"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "api.db")
		if err := os.WriteFile(path, db, 0o600); err != nil {
			t.Fatal(err)
		}
		checkUpgrade(t, path, answers)
	})
	t.Run("postgres", func(t *testing.T) {
		url := testenv.Postgres(t, "upgrade")
		dump, err := os.ReadFile(filepath.Join(dir, "postgres.sql"))
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, stmt := range strings.Split(string(dump), ";\n") {
			if stmt = strings.TrimSpace(stmt); stmt == "" || strings.HasPrefix(stmt, "--") && !strings.Contains(stmt, "\n") {
				continue
			}
			if _, err := db.Exec(stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		checkUpgrade(t, url, answers)
	})
}

func checkUpgrade(t *testing.T, url string, answers map[string]struct{ Judge0, Job, Piston json.RawMessage }) {
	ctx := context.Background()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	langs := Languages{Ours: lang.Builtin()} // the release's fixture named no versions
	fw := &fakeWorker{}
	srv := New(Config{ReplyQueue: "codebench.api.test"}, Deps{Store: st, Publisher: fw, Languages: langs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rts := piston.Runtimes(langs.Ours, nil)
	same := func(what, token string, got any, want json.RawMessage) {
		t.Helper()
		g, _ := json.Marshal(got)
		var a, b any
		_ = json.Unmarshal(g, &a)
		_ = json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s of %s:\n got %s\nwant %s", what, token, g, want)
		}
	}
	if len(answers) < 15 {
		t.Fatalf("only %d answers in the fixture", len(answers))
	}
	for token, want := range answers {
		rec, err := st.Get(ctx, token)
		if err != nil {
			t.Fatalf("%s: %v", token, err)
		}
		out, err := srv.judge0.Render(rec, judge0.Columns, true)
		if err != nil {
			t.Fatalf("%s: %v", token, err)
		}
		same("judge0 fields=*", token, out, want.Judge0)
		same("the job", token, rec.Job, want.Job)
		if len(want.Piston) > 0 {
			for _, rt := range rts {
				if rt.Language == pistonLanguage(want.Piston) {
					same("piston's result", token, piston.ResultOf(rec, rt), withoutRunAfterFailedCompile(want.Piston))
				}
			}
		}
	}
	// The unfinished ones are published again as the release would have.
	n, err := srv.Recover(ctx)
	if err != nil || n != 2 || len(fw.jobs) != 2 {
		t.Fatalf("recover: %d %v, %d published", n, err, len(fw.jobs))
	}
	for _, j := range fw.jobs {
		same("the job published again", j.ID, j, answers[j.ID].Job)
	}
	// Opened again: nothing left to migrate, every row still there.
	st2, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, total, err := st2.List(ctx, 1, 1); err != nil || total != len(answers) {
		t.Fatalf("after a second open: %d rows, %v", total, err)
	}
}

func pistonLanguage(raw json.RawMessage) string {
	var r struct{ Language string }
	_ = json.Unmarshal(raw, &r)
	return r.Language
}

// withoutRunAfterFailedCompile is the first release's Piston answer as
// this one gives it: a failed compile has no run stage (Piston's own
// shape; the first release repeated the compile stage as the run).
func withoutRunAfterFailedCompile(answer json.RawMessage) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(answer, &m) != nil {
		return answer
	}
	if c, ok := m["compile"].(map[string]any); ok && c["code"] != 0.0 {
		delete(m, "run")
	}
	b, _ := json.Marshal(m)
	return b
}

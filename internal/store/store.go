// Package store keeps the HTTP API's submissions, their results and their
// tokens: in an embedded SQLite file by default (a pure-Go driver, no cgo),
// or in PostgreSQL (postgres://...) so that several API nodes share them;
// with versioned migrations. One SQL dialect serves both ($n placeholders,
// TEXT, INTEGER and BIGINT columns).
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver

	"github.com/codebench/codebench/internal/judge0"
)

// ErrNotFound is a token the store does not have.
var ErrNotFound = errors.New("store: no such submission")

// Store is the submissions database.
type Store struct {
	db *sql.DB
	// results writes statuses and results: on SQLite a second pool whose
	// commits do not wait for the disk (synchronous=NORMAL; see Open); on
	// PostgreSQL db itself.
	results  *sql.DB
	postgres bool
}

// migrations are applied in order, each once; the version is its index+1.
var migrations = []string{
	`CREATE TABLE submissions (
		token       TEXT PRIMARY KEY,
		created_ms  BIGINT NOT NULL,
		status_id   INTEGER NOT NULL,
		finished_ms BIGINT,
		submission  TEXT NOT NULL,
		result      TEXT
	)`,
	`CREATE INDEX submissions_created ON submissions (created_ms)`,
	`CREATE INDEX submissions_status ON submissions (status_id)`,
}

// Open opens the store at url: postgres://... (the database must exist),
// or a SQLite file path or sqlite://path (created).
func Open(ctx context.Context, url string) (*Store, error) {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		db.SetMaxOpenConns(16)
		s := &Store{db: db, results: db, postgres: true}
		if err := s.migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return s, nil
	}
	path := strings.TrimPrefix(url, "sqlite://")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// WAL: readers do not wait for the writer; a busy writer is waited
	// for, not failed. A submission is committed to the disk (FULL) before
	// its token is given out. A status or a result is committed to the
	// log without waiting for the disk (NORMAL): a kill -9 cannot undo it
	// (the log is the OS's), only a crash of the machine can, and then the
	// submission is unfinished in the store and the API's start publishes
	// it again (Server.Recover): a job run twice, no token lost. The next
	// FULL commit makes every earlier one durable (one log, in order).
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous("
	db, err := sql.Open("sqlite", dsn+"FULL)")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(4)
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if s.results, err = sql.Open("sqlite", dsn+"NORMAL)"); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	s.results.SetMaxOpenConns(1) // one writer at a time, as SQLite has
	return s, nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error {
	if s.results != s.db {
		return errors.Join(s.results.Close(), s.db.Close())
	}
	return s.db.Close()
}

// migrate applies the migrations not yet applied, each in a transaction.
//
// On PostgreSQL, where several API nodes may start at once, the whole of it
// runs in one transaction holding an advisory lock: one node migrates, the
// others wait and find nothing left to do.
func (s *Store) migrate(ctx context.Context) error {
	if s.postgres {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7274610024)`); err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		if err := migrateIn(ctx, tx); err != nil {
			return err
		}
		return tx.Commit()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	if err := migrateIn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

// migrateIn applies, in tx, the migrations not yet applied.
func migrateIn(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("store: schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("store: the database is at schema version %d, newer than this binary's %d", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return nil
}

// result is a record's result, as stored.
type result struct {
	Stdout, Stderr, CompileOutput, Message *string
	Time, WallTime                         *float64
	Memory, ExitCode, ExitSignal           *int64
}

// Insert stores a new submission (its token must be new).
func (s *Store) Insert(ctx context.Context, r *judge0.Record) error {
	sub, err := json.Marshal(r.Sub)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO submissions (token, created_ms, status_id, submission) VALUES ($1, $2, $3, $4)`,
		r.Token, r.CreatedAt.UnixMilli(), r.StatusID, string(sub))
	if err != nil {
		return fmt.Errorf("store: insert %s: %w", r.Token, err)
	}
	return nil
}

// Update writes a record's status and result. A final result is never
// overwritten by a later, non-final one (a status redelivered out of
// order): false when nothing changed.
func (s *Store) Update(ctx context.Context, r *judge0.Record) (bool, error) {
	res, err := json.Marshal(result{r.Stdout, r.Stderr, r.CompileOutput, r.Message, r.Time, r.WallTime, r.Memory, r.ExitCode, r.ExitSignal})
	if err != nil {
		return false, err
	}
	var finished any
	if r.FinishedAt != nil {
		finished = r.FinishedAt.UnixMilli()
	}
	n, err := s.results.ExecContext(ctx, `UPDATE submissions SET status_id = $1, finished_ms = $2, result = $3 WHERE token = $4 AND finished_ms IS NULL`,
		r.StatusID, finished, string(res), r.Token)
	if err != nil {
		return false, fmt.Errorf("store: update %s: %w", r.Token, err)
	}
	k, _ := n.RowsAffected()
	return k > 0, nil
}

const columns = `token, created_ms, status_id, finished_ms, submission, result`

func scan(row interface{ Scan(...any) error }) (*judge0.Record, error) {
	var r judge0.Record
	var created int64
	var finished sql.NullInt64
	var sub string
	var res sql.NullString
	if err := row.Scan(&r.Token, &created, &r.StatusID, &finished, &sub, &res); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	r.CreatedAt = time.UnixMilli(created).UTC()
	if finished.Valid {
		t := time.UnixMilli(finished.Int64).UTC()
		r.FinishedAt = &t
	}
	if err := json.Unmarshal([]byte(sub), &r.Sub); err != nil {
		return nil, fmt.Errorf("store: %s: %w", r.Token, err)
	}
	if res.Valid {
		var x result
		if err := json.Unmarshal([]byte(res.String), &x); err != nil {
			return nil, fmt.Errorf("store: %s: %w", r.Token, err)
		}
		r.Stdout, r.Stderr, r.CompileOutput, r.Message = x.Stdout, x.Stderr, x.CompileOutput, x.Message
		r.Time, r.WallTime, r.Memory, r.ExitCode, r.ExitSignal = x.Time, x.WallTime, x.Memory, x.ExitCode, x.ExitSignal
	}
	return &r, nil
}

// Get returns the submission with token, or ErrNotFound.
func (s *Store) Get(ctx context.Context, token string) (*judge0.Record, error) {
	return scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM submissions WHERE token = $1`, token))
}

// List returns a page of submissions, newest first, and the total count.
func (s *Store) List(ctx context.Context, page, perPage int) ([]*judge0.Record, int, error) {
	var total int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM submissions`).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM submissions ORDER BY created_ms DESC, token LIMIT $1 OFFSET $2`,
		perPage, (page-1)*perPage)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []*judge0.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

// Pending returns the submissions not finished, oldest first, at most n:
// those to publish again after a crash between storing and publishing.
func (s *Store) Pending(ctx context.Context, n int) ([]*judge0.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM submissions WHERE finished_ms IS NULL ORDER BY created_ms LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*judge0.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Delete removes a submission; ErrNotFound when there is none.
func (s *Store) Delete(ctx context.Context, token string) error {
	n, err := s.db.ExecContext(ctx, `DELETE FROM submissions WHERE token = $1`, token)
	if err != nil {
		return err
	}
	if k, _ := n.RowsAffected(); k == 0 {
		return ErrNotFound
	}
	return nil
}

// Expire removes the finished submissions created before t.
func (s *Store) Expire(ctx context.Context, t time.Time) (int64, error) {
	n, err := s.db.ExecContext(ctx, `DELETE FROM submissions WHERE created_ms < $1 AND finished_ms IS NOT NULL`, t.UnixMilli())
	if err != nil {
		return 0, err
	}
	return n.RowsAffected()
}

// Counts are the submissions by status id, for /statistics.
func (s *Store) Counts(ctx context.Context) (map[int]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT status_id, COUNT(*) FROM submissions GROUP BY status_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var id, n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

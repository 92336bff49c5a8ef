// Package store keeps the HTTP API's submissions (internal/submission's
// records): in an embedded SQLite file by default (a pure-Go driver, no
// cgo), or in PostgreSQL (postgres://...) so that several API nodes share
// them; with versioned migrations. One SQL dialect serves both ($n
// placeholders, TEXT, INTEGER and BIGINT columns). It knows no front door:
// a record is stored as its own JSON, with the columns the store queries
// by (state, verdict, signal, times, owner) beside it.
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

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/submission"
)

// Store is the submissions database.
type Store struct {
	db *sql.DB
	// results writes statuses and results: on SQLite a second pool whose
	// commits do not wait for the disk (synchronous=NORMAL; see Open); on
	// PostgreSQL db itself.
	results  *sql.DB
	postgres bool
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
	if err := private(path); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// WAL: readers do not wait for the writer; a busy writer is waited
	// for, not failed. A submission is committed to the disk (FULL) before
	// its token is given out. A status or a result is committed to the
	// log without waiting for the disk (NORMAL): a kill -9 cannot undo it
	// (the log is the OS's), only a crash of the machine can, and then the
	// submission is unfinished in the store and the API's start publishes
	// it again (the API's recovery): a job run twice, no token lost. The
	// next FULL commit makes every earlier one durable (one log, in order).
	// auto_vacuum (INCREMENTAL) lets Expire give the pages of what it
	// deleted back to the file system (a database of the first release is
	// converted once, below).
	dsn := "file:" + path + "?_pragma=auto_vacuum(2)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous("
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
	var vacuum int
	if err := db.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&vacuum); err == nil && vacuum != 2 {
		if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: converting to incremental vacuum: %w", err)
		}
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

// Insert stores a new submission (its token must be new), published by
// node, overdue after deadline, costing budget of sandbox time at most.
func (s *Store) Insert(ctx context.Context, r *submission.Record, node string, deadline time.Time, budget time.Duration) error {
	sub, status, err := encode(r)
	if err != nil {
		return err
	}
	o := r.OutcomeOf()
	_, err = s.db.ExecContext(ctx, `INSERT INTO records (token, created_ms, finished_ms, state, verdict, signal, owner, schema, submission, status, node, deadline_ms, budget_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		r.Token, r.CreatedAt.UnixMilli(), millis(r.FinishedAt), o.State, o.Verdict, o.Signal, r.Owner, submission.Schema, sub, status, node,
		deadline.UnixMilli(), budget.Milliseconds())
	if err != nil {
		return fmt.Errorf("store: insert %s: %w", r.Token, err)
	}
	return nil
}

// Update writes a record's status, and when it is overdue next (a final
// record never is). A final result is never overwritten (a status
// redelivered out of order, or a second final): false when nothing
// changed.
func (s *Store) Update(ctx context.Context, r *submission.Record, deadline time.Time) (bool, error) {
	_, status, err := encode(r)
	if err != nil {
		return false, err
	}
	o := r.OutcomeOf()
	var due any
	if !r.Finished() {
		due = deadline.UnixMilli()
	}
	n, err := s.results.ExecContext(ctx, `UPDATE records SET state = $1, verdict = $2, signal = $3, finished_ms = $4, status = $5, deadline_ms = $6
		WHERE token = $7 AND finished_ms IS NULL`, o.State, o.Verdict, o.Signal, millis(r.FinishedAt), status, due, r.Token)
	if err != nil {
		return false, fmt.Errorf("store: update %s: %w", r.Token, err)
	}
	k, _ := n.RowsAffected()
	return k > 0, nil
}

// stored is the part of a record kept in the submission column: all of it
// but the status (which has a column of its own, so that a status is
// written without rewriting the job).
type stored struct {
	submission.Record
	Status     *job.Status `json:"status,omitempty"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
}

func encode(r *submission.Record) (sub string, status any, err error) {
	b, err := json.Marshal(stored{Record: *r})
	if err != nil {
		return "", nil, fmt.Errorf("store: %s: %w", r.Token, err)
	}
	if r.Status != nil {
		st, err := json.Marshal(r.Status)
		if err != nil {
			return "", nil, fmt.Errorf("store: %s: %w", r.Token, err)
		}
		status = string(st)
	}
	return string(b), status, nil
}

func millis(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

const columns = `token, created_ms, finished_ms, schema, submission, status`

func scan(row interface{ Scan(...any) error }) (*submission.Record, error) {
	var token, sub string
	var created int64
	var finished sql.NullInt64
	var schema int
	var status sql.NullString
	if err := row.Scan(&token, &created, &finished, &schema, &sub, &status); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, submission.ErrNotFound
		}
		return nil, err
	}
	if schema > submission.Schema {
		return nil, fmt.Errorf("store: %s is of record schema %d, newer than this binary's %d", token, schema, submission.Schema)
	}
	var r submission.Record
	if err := json.Unmarshal([]byte(sub), &r); err != nil {
		return nil, fmt.Errorf("store: %s: %w", token, err)
	}
	r.Token, r.Schema = token, schema
	r.CreatedAt = time.UnixMilli(created).UTC()
	r.Status, r.FinishedAt = nil, nil
	if finished.Valid {
		t := time.UnixMilli(finished.Int64).UTC()
		r.FinishedAt = &t
	}
	if status.Valid {
		r.Status = new(job.Status)
		if err := json.Unmarshal([]byte(status.String), r.Status); err != nil {
			return nil, fmt.Errorf("store: %s: %w", token, err)
		}
	}
	return &r, nil
}

// prefixed scans one more column before a record's.
type prefixed struct {
	row   interface{ Scan(...any) error }
	first any
}

func (p prefixed) Scan(dest ...any) error { return p.row.Scan(append([]any{p.first}, dest...)...) }

// Get returns the submission with token, or submission.ErrNotFound.
func (s *Store) Get(ctx context.Context, token string) (*submission.Record, error) {
	return scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM records WHERE token = $1`, token))
}

// List returns a page of submissions, newest first, and the total count.
func (s *Store) List(ctx context.Context, page, perPage int) ([]*submission.Record, int, error) {
	var total int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records`).Scan(&total); err != nil {
		return nil, 0, err
	}
	out, err := s.query(ctx, `SELECT `+columns+` FROM records ORDER BY created_ms DESC, token LIMIT $1 OFFSET $2`, perPage, (page-1)*perPage)
	return out, total, err
}

// Pending returns node's submissions not finished, oldest first, at most
// n: those it publishes again at its start (a crash between storing and
// publishing, statuses lost with a broker).
func (s *Store) Pending(ctx context.Context, node string, n int) ([]*submission.Record, error) {
	return s.query(ctx, `SELECT `+columns+` FROM records WHERE finished_ms IS NULL AND node = $1 ORDER BY created_ms LIMIT $2`, node, n)
}

// UsageOf is owner's usage, every node's submissions counted.
func (s *Store) UsageOf(ctx context.Context, owner string, since time.Time) (submission.Usage, error) {
	// Two queries, each on an index of its own: a client's finished
	// submissions (a week of them) are never read.
	var u submission.Usage
	var inflight, budget, recent sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), SUM(budget_ms) FROM records WHERE owner = $1 AND finished_ms IS NULL`,
		owner).Scan(&inflight, &budget); err != nil {
		return u, err
	}
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE owner = $1 AND created_ms >= $2`,
		owner, since.UnixMilli()).Scan(&recent); err != nil {
		return u, err
	}
	u.InFlight, u.Sandbox, u.Recent = int(inflight.Int64), time.Duration(budget.Int64)*time.Millisecond, int(recent.Int64)
	return u, nil
}

// Size is the bytes the database takes (SQLite: its pages in use;
// PostgreSQL: the records table with its indexes and TOAST).
func (s *Store) Size(ctx context.Context) (int64, error) {
	var n int64
	if s.postgres {
		err := s.db.QueryRowContext(ctx, `SELECT pg_total_relation_size('records')`).Scan(&n)
		return n, err
	}
	err := s.db.QueryRowContext(ctx, `SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()`).Scan(&n)
	return n, err
}

// Unfinished counts the submissions not finished: node's, and every
// node's.
func (s *Store) Unfinished(ctx context.Context, node string) (mine, all int, err error) {
	var m sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT SUM(CASE WHEN node = $1 THEN 1 ELSE 0 END), COUNT(*) FROM records WHERE finished_ms IS NULL`,
		node).Scan(&m, &all)
	return int(m.Int64), all, err
}

// Overdue returns the unfinished submissions whose deadline passed before
// now, at most n, oldest first.
func (s *Store) Overdue(ctx context.Context, now time.Time, n int) ([]*submission.Record, error) {
	return s.query(ctx, `SELECT `+columns+` FROM records WHERE finished_ms IS NULL AND deadline_ms < $1 ORDER BY created_ms LIMIT $2`, now.UnixMilli(), n)
}

// Heartbeat says node is alive at now.
func (s *Store) Heartbeat(ctx context.Context, node string, now time.Time) error {
	_, err := s.results.ExecContext(ctx, `INSERT INTO api_nodes (node, seen_ms) VALUES ($1, $2)
		ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms`, node, now.UnixMilli())
	return err
}

// Adopt makes node the owner of at most n unfinished submissions of nodes
// not seen alive since aliveSince (and of none: the first release's), and
// returns them: node publishes them again, with its own reply queue.
func (s *Store) Adopt(ctx context.Context, node string, aliveSince time.Time, n int) ([]*submission.Record, error) {
	tx, err := s.results.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT node, `+columns+` FROM records WHERE finished_ms IS NULL AND node <> $1
		AND node NOT IN (SELECT node FROM api_nodes WHERE seen_ms >= $2) ORDER BY created_ms LIMIT $3`, node, aliveSince.UnixMilli(), n)
	if err != nil {
		return nil, err
	}
	type found struct {
		from string
		rec  *submission.Record
	}
	var all []found
	for rows.Next() {
		var from string
		r, err := scan(prefixed{rows, &from})
		if err != nil {
			rows.Close()
			return nil, err
		}
		all = append(all, found{from, r})
	}
	if err := errorsOf(rows); err != nil {
		return nil, err
	}
	var out []*submission.Record
	for _, f := range all {
		// Another node adopting at once takes a row first, or not at all.
		res, err := tx.ExecContext(ctx, `UPDATE records SET node = $1 WHERE token = $2 AND node = $3 AND finished_ms IS NULL`, node, f.rec.Token, f.from)
		if err != nil {
			return nil, err
		}
		if k, _ := res.RowsAffected(); k == 1 {
			out = append(out, f.rec)
		}
	}
	return out, tx.Commit()
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]*submission.Record, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*submission.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Delete removes a submission; submission.ErrNotFound when there is none.
func (s *Store) Delete(ctx context.Context, token string) error {
	n, err := s.db.ExecContext(ctx, `DELETE FROM records WHERE token = $1`, token)
	if err != nil {
		return err
	}
	if k, _ := n.RowsAffected(); k == 0 {
		return submission.ErrNotFound
	}
	return nil
}

// Expire removes the finished submissions created before t; on SQLite the
// pages they took go back to the file system.
func (s *Store) Expire(ctx context.Context, t time.Time) (int64, error) {
	n, err := s.db.ExecContext(ctx, `DELETE FROM records WHERE created_ms < $1 AND finished_ms IS NOT NULL`, t.UnixMilli())
	if err != nil {
		return 0, err
	}
	k, _ := n.RowsAffected()
	if k > 0 && !s.postgres {
		if _, err := s.db.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
			return k, fmt.Errorf("store: giving back free pages: %w", err)
		}
	}
	return k, nil
}

// private makes a SQLite store's file readable by its owner alone (0600;
// its -wal and -shm files take the same mode from SQLite), in a directory
// made 0700 when it is made.
func private(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Counts are the submissions by outcome, for /statistics.
func (s *Store) Counts(ctx context.Context) (map[submission.Outcome]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, verdict, signal, COUNT(*) FROM records GROUP BY state, verdict, signal`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[submission.Outcome]int{}
	for rows.Next() {
		var o submission.Outcome
		var n int
		if err := rows.Scan(&o.State, &o.Verdict, &o.Signal, &n); err != nil {
			return nil, err
		}
		out[o] = n
	}
	return out, rows.Err()
}

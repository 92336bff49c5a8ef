package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one schema step: SQL, or a Go function for a step that
// converts rows.
type migration struct {
	sql string
	fn  func(ctx context.Context, tx *sql.Tx) error
}

// migrations are applied in order, each once; the version is its index+1.
// 1-3 are the first release's (rows in Judge0's shape); 4 moves them into
// records of internal/submission's shape (legacy.go), which no front door
// owns.
var migrations = []migration{
	{sql: `CREATE TABLE submissions (
		token       TEXT PRIMARY KEY,
		created_ms  BIGINT NOT NULL,
		status_id   INTEGER NOT NULL,
		finished_ms BIGINT,
		submission  TEXT NOT NULL,
		result      TEXT
	)`},
	{sql: `CREATE INDEX submissions_created ON submissions (created_ms)`},
	{sql: `CREATE INDEX submissions_status ON submissions (status_id)`},
	{fn: toRecords},
	// 5-8: several API nodes: the node that published a submission (and
	// receives its statuses), when it is overdue, and the nodes alive.
	{sql: `ALTER TABLE records ADD COLUMN node TEXT NOT NULL DEFAULT ''`},
	{sql: `ALTER TABLE records ADD COLUMN deadline_ms BIGINT`},
	{sql: `CREATE INDEX records_node ON records (node, finished_ms)`},
	{sql: `CREATE TABLE api_nodes (node TEXT PRIMARY KEY, seen_ms BIGINT NOT NULL)`},
	// 9-10: per-client quotas: each submission's sandbox time at its
	// limits, counted by owner.
	{sql: `ALTER TABLE records ADD COLUMN budget_ms BIGINT NOT NULL DEFAULT 0`},
	{sql: `CREATE INDEX records_owner_created ON records (owner, created_ms)`},
	{sql: `CREATE INDEX records_owner_unfinished ON records (owner, finished_ms)`},
}

// recordsTable is the table of schema 4 on.
const recordsTable = `CREATE TABLE records (
	token       TEXT PRIMARY KEY,
	created_ms  BIGINT NOT NULL,
	finished_ms BIGINT,
	state       TEXT NOT NULL,
	verdict     TEXT NOT NULL,
	signal      TEXT NOT NULL,
	owner       TEXT NOT NULL,
	schema      INTEGER NOT NULL,
	submission  TEXT NOT NULL,
	status      TEXT
)`

// toRecords is migration 4: the records table, every row of the first
// release's submissions converted into it, and the old table dropped.
func toRecords(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{recordsTable,
		`CREATE INDEX records_created ON records (created_ms)`,
		`CREATE INDEX records_unfinished ON records (finished_ms, created_ms)`,
		`CREATE INDEX records_owner ON records (owner)`} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT token, created_ms, status_id, finished_ms, submission, result FROM submissions`)
	if err != nil {
		return err
	}
	var legacy []legacyRow
	for rows.Next() {
		var l legacyRow
		if err := rows.Scan(&l.token, &l.created, &l.statusID, &l.finished, &l.sub, &l.result); err != nil {
			rows.Close()
			return err
		}
		legacy = append(legacy, l)
	}
	if err := errorsOf(rows); err != nil {
		return err
	}
	for _, l := range legacy {
		r, err := l.record()
		if err != nil {
			return fmt.Errorf("row %s: %w", l.token, err)
		}
		sub, status, err := encode(r)
		if err != nil {
			return err
		}
		o := r.OutcomeOf()
		if _, err := tx.ExecContext(ctx, `INSERT INTO records (token, created_ms, finished_ms, state, verdict, signal, owner, schema, submission, status)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			r.Token, r.CreatedAt.UnixMilli(), millis(r.FinishedAt), o.State, o.Verdict, o.Signal, r.Owner, r.Schema, sub, status); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `DROP TABLE submissions`)
	return err
}

func errorsOf(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// migrate applies the migrations not yet applied, in one transaction.
//
// On PostgreSQL, where several API nodes may start at once, it holds an
// advisory lock: one node migrates, the others wait and find nothing left
// to do.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7274610024)`); err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
	}
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
		m := migrations[v-1]
		var err error
		if m.fn != nil {
			err = m.fn(ctx, tx)
		} else {
			_, err = tx.ExecContext(ctx, m.sql)
		}
		if err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return nil
}

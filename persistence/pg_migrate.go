package persistence

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema's migrations: migrations/NNNN_name.sql, embedded in the binary, numbered from 1
// without gaps, applied in order. Each runs in one transaction (so it must not hold statements
// that refuse one, such as CREATE INDEX CONCURRENTLY), is recorded in schema_migrations with
// the SHA-256 of its text, and is never edited once released: the schema changes by adding a
// file.

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the transaction-level advisory lock (pg_advisory_xact_lock) Migrate holds
// while it reads or changes the schema, so that servers starting together apply each
// migration once. "meridian" in ASCII.
const migrateLockKey int64 = 0x6d6572696469616e

type migration struct {
	version  int
	name     string // file name
	sql      string
	checksum string // hex SHA-256 of sql
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// migrations returns the embedded migrations in order (parsed once).
var migrations = sync.OnceValues(func() ([]migration, error) { return loadMigrations(migrationFiles) })

func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, path := range names {
		name := path[len("migrations/"):]
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", name)
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: name, sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must run 1, 2, 3, … without gaps or repeats; want %04d here", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	return ms, nil
}

// Migrate brings the database's schema up to this build's: it applies the migrations that
// schema_migrations does not list, in order, each in its own transaction, and returns the
// versions it applied (none when the schema is current). It is idempotent and safe to run
// from several processes at once: each transaction holds an advisory lock and re-checks that
// its migration is still pending, so every migration is applied exactly once.
//
// It fails, applying nothing, with ErrMigrationChecksum when an applied migration's text
// differs from this build's, and with ErrSchemaTooNew when the database has migrations this
// build lacks (a newer build migrated it). On another error, the migrations listed in applied
// are committed and the failing one is rolled back.
//
// Migrations run without a statement timeout (they may rewrite big tables); ctx bounds them,
// including the wait for another process's migration.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (applied []int, err error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("persistence: embedded migrations: %w", err)
	}
	done := map[int]bool{}
	err = migrationTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			checksum   text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT version, name, checksum FROM schema_migrations ORDER BY version`)
		var v int
		var name, sum string
		_, err := pgx.ForEachRow(rows, []any{&v, &name, &sum}, func() error {
			if v < 1 || v > len(ms) {
				return fmt.Errorf("%w: the database has migration %d (%s); this build's newest is %d (%s)",
					ErrSchemaTooNew, v, name, len(ms), ms[len(ms)-1].name)
			}
			if m := ms[v-1]; sum != m.checksum {
				return fmt.Errorf("%w: migration %d was applied as %s with checksum %.12s…; this build's %s has %.12s…",
					ErrMigrationChecksum, v, name, sum, m.name, m.checksum)
			}
			done[v] = true
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("persistence: migrate: %w", err)
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		ran := false
		err := migrationTx(ctx, pool, func(tx pgx.Tx) error {
			var sum string
			switch err := tx.QueryRow(ctx, `SELECT checksum FROM schema_migrations WHERE version = $1`, m.version).Scan(&sum); {
			case err == nil: // applied by another process since we looked
				if sum != m.checksum {
					return fmt.Errorf("%w: migration %s was applied concurrently with checksum %.12s…", ErrMigrationChecksum, m.name, sum)
				}
				return nil
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
				m.version, m.name, m.checksum); err != nil {
				return err
			}
			ran = true
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("persistence: migration %s: %w", m.name, err)
		}
		if ran {
			applied = append(applied, m.version)
		}
	}
	return applied, nil
}

// migrationTx runs f in a transaction that holds the migration lock and has no statement
// timeout.
func migrationTx(ctx context.Context, pool *pgxpool.Pool, f func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
			return err
		}
		return f(tx)
	})
}

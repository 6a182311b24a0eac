package persistence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgreSQL: the authoritative store. The schema lives in migrations/ (pg_migrate.go applies
// it); this file opens the pool and holds the writes.

// Sentinel errors of the PostgreSQL side, besides ErrInvalidOptions (PGConfig.Validate) and
// ErrInvalidArgument (rows that cannot be written).
var (
	// ErrMigrationChecksum: a migration recorded as applied in the database differs from this
	// build's file of the same version (a released migration was edited). Migrate applies
	// nothing; someone must reconcile the schema by hand.
	ErrMigrationChecksum = errors.New("persistence: applied migration differs from this build's")

	// ErrSchemaTooNew: the database has migrations this build lacks (a newer build migrated
	// it). Migrate applies nothing, and OpenPG refuses to run against a schema it does not know.
	ErrSchemaTooNew = errors.New("persistence: database schema is newer than this build")
)

// PGConfig configures OpenPG. DefaultPGConfig fills every field.
type PGConfig struct {
	// MaxConns is the pool's size: [1, 1000]. Position flushes take one connection each;
	// inventory transactions one each for their duration.
	MaxConns int32
	// ConnectTimeout bounds establishing one connection (dial, TLS, authentication):
	// (0, 5m].
	ConnectTimeout time.Duration
	// StatementTimeout is the server-side statement_timeout of the pool's connections: a
	// statement running longer is cancelled by the server, whatever the caller's context
	// says. [0, 1h], in whole milliseconds; 0 means none. Migrate lifts it for migrations.
	StatementTimeout time.Duration
}

// PGConfig bounds.
const (
	minPGMaxConns         = 1
	maxPGMaxConns         = 1000
	maxPGConnectTimeout   = 5 * time.Minute
	maxPGStatementTimeout = time.Hour
)

// DefaultPGConfig returns the defaults: 8 connections, a 5 s connect timeout and a 30 s
// statement timeout.
func DefaultPGConfig() PGConfig {
	return PGConfig{MaxConns: 8, ConnectTimeout: 5 * time.Second, StatementTimeout: 30 * time.Second}
}

// Validate names the first field that is out of bounds.
func (c PGConfig) Validate() error {
	switch {
	case c.MaxConns < minPGMaxConns || c.MaxConns > maxPGMaxConns:
		return fmt.Errorf("%w: PGConfig.MaxConns %d, want [%d, %d]", ErrInvalidOptions, c.MaxConns, minPGMaxConns, maxPGMaxConns)
	case c.ConnectTimeout <= 0 || c.ConnectTimeout > maxPGConnectTimeout:
		return fmt.Errorf("%w: PGConfig.ConnectTimeout %v, want (0, %v]", ErrInvalidOptions, c.ConnectTimeout, maxPGConnectTimeout)
	case c.StatementTimeout < 0 || c.StatementTimeout > maxPGStatementTimeout:
		return fmt.Errorf("%w: PGConfig.StatementTimeout %v, want [0, %v]", ErrInvalidOptions, c.StatementTimeout, maxPGStatementTimeout)
	case c.StatementTimeout%time.Millisecond != 0:
		return fmt.Errorf("%w: PGConfig.StatementTimeout %v, want whole milliseconds", ErrInvalidOptions, c.StatementTimeout)
	}
	return nil
}

// PG is the authoritative PostgreSQL store: a connection pool to a database whose schema
// OpenPG has migrated. Its methods are safe for concurrent use; they block on the network and
// must not be called from the tick goroutine.
type PG struct {
	pool *pgxpool.Pool
}

// OpenPG connects to the database at url (a pgx connection string: postgres://… URL or
// keyword/value), checks that it answers, and brings its schema up to date with Migrate. The
// caller must Close it. ctx bounds the opening, migrations included; it is not kept.
func OpenPG(ctx context.Context, url string, cfg PGConfig) (*PG, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil { // pgx's message shows the string with its password redacted
		return nil, fmt.Errorf("%w: PostgreSQL connection string: %v", ErrInvalidOptions, err)
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pcfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "meridian"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("persistence: PostgreSQL pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("persistence: connecting to PostgreSQL: %w", err)
	}
	if _, err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &PG{pool: pool}, nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (p *PG) Close() { p.pool.Close() }

// MaxAccountLen is the longest PlayerRow.Account, in bytes.
const MaxAccountLen = 256

// PlayerRow is a player's durable state as a position flush writes it.
type PlayerRow struct {
	ID      int64   // the player's durable id (DESIGN.md §1a; not the entity id), ≥ 1
	Account string  // 1..MaxAccountLen bytes; only used when the row is created
	X, Y, Z float64 // position in metres, Y the height; finite
	Cell    uint64  // the cell the player is in, ≤ math.MaxInt64
	// Stats is a JSON object (hit points, level, ...), opaque here. Empty: {}. A write of an
	// existing player merges it into the stored object (jsonb ||, top-level keys): its keys
	// replace the stored ones, and stored keys it lacks (other keys a game keeps there) stay.
	// So a write cannot remove a key; it can set it to null.
	Stats json.RawMessage
	// Epoch is the writer's authority epoch over the player (it grows with every handoff),
	// ≤ math.MaxInt64. A row is written only if the stored epoch is not newer.
	Epoch uint64
}

// UpsertPlayers writes rows in one statement (atomically: all of them or, on error, none):
// a row whose player does not exist is inserted; one whose stored epoch is older than or
// equal to the row's overwrites the position, cell and epoch (not the account) and merges its
// stats into the stored object (players.stats || the row's: its keys win, the stored keys it
// lacks stay; see PlayerRow.Stats); one whose stored epoch is newer is not written — a server
// that lost the player to a handoff cannot overwrite what the new owner wrote. written +
// fenced = len(rows).
//
// Within one epoch the last write wins, so a writer must not run two flushes of the same
// player concurrently. Rows are sent sorted by ID, so that concurrent flushes of overlapping
// players take their row locks in the same order and cannot deadlock. A row that fails its
// checks (bounds above, a duplicate ID) fails the call with ErrInvalidArgument before anything
// is sent; an account already held by another player fails it with PostgreSQL's unique
// violation (23505).
func (p *PG) UpsertPlayers(ctx context.Context, rows []PlayerRow) (written, fenced int, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case rows[a].ID < rows[b].ID:
			return -1
		case rows[a].ID > rows[b].ID:
			return 1
		}
		return 0
	})
	n := len(rows)
	var (
		ids      = make([]int64, n)
		accounts = make([]string, n)
		xs       = make([]float64, n)
		ys       = make([]float64, n)
		zs       = make([]float64, n)
		cells    = make([]int64, n)
		stats    = make([]json.RawMessage, n)
		epochs   = make([]int64, n)
	)
	for k, i := range order {
		r := &rows[i]
		if err := r.validate(); err != nil {
			return 0, 0, err
		}
		if k > 0 && ids[k-1] == r.ID {
			return 0, 0, fmt.Errorf("%w: player %d appears twice in one UpsertPlayers call", ErrInvalidArgument, r.ID)
		}
		ids[k], accounts[k], xs[k], ys[k], zs[k] = r.ID, r.Account, r.X, r.Y, r.Z
		cells[k], epochs[k] = int64(r.Cell), int64(r.Epoch)
		stats[k] = r.Stats
		if len(bytes.TrimSpace(r.Stats)) == 0 {
			stats[k] = emptyObject
		}
	}
	// unnest keeps the arrays' (sorted) order. The WHERE of DO UPDATE is the fence: a row it
	// rejects is neither written nor counted in the command tag.
	tag, err := p.pool.Exec(ctx, `
		INSERT INTO players AS p (id, account, x, y, z, cell, stats, epoch)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::float8[],
		                     $6::bigint[], $7::jsonb[], $8::bigint[])
		ON CONFLICT (id) DO UPDATE
		SET x = excluded.x, y = excluded.y, z = excluded.z, cell = excluded.cell,
		    stats = p.stats || excluded.stats, epoch = excluded.epoch, updated_at = now()
		WHERE p.epoch <= excluded.epoch`,
		ids, accounts, xs, ys, zs, cells, stats, epochs)
	if err != nil {
		return 0, 0, fmt.Errorf("persistence: upserting %d players: %w", n, err)
	}
	written = int(tag.RowsAffected())
	return written, n - written, nil
}

var emptyObject = json.RawMessage(`{}`)

func (r *PlayerRow) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: player %d: %s", ErrInvalidArgument, r.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case r.ID < 1:
		return bad("id must be ≥ 1")
	case len(r.Account) == 0 || len(r.Account) > MaxAccountLen:
		return bad("account of %d bytes, want 1..%d", len(r.Account), MaxAccountLen)
	case !finite(r.X) || !finite(r.Y) || !finite(r.Z):
		return bad("position (%v, %v, %v) is not finite", r.X, r.Y, r.Z)
	case r.Cell > math.MaxInt64:
		return bad("cell %d over %d", r.Cell, int64(math.MaxInt64))
	case r.Epoch > math.MaxInt64:
		return bad("epoch %d over %d", r.Epoch, int64(math.MaxInt64))
	}
	if s := bytes.TrimSpace(r.Stats); len(s) > 0 && (s[0] != '{' || !json.Valid(s)) {
		return bad("stats are not a JSON object")
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

package persistence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Reading players back, and creating them on first sight (login, recovery of a cell).

// MaxLoadPlayers is the most ids one LoadPlayers call takes.
const MaxLoadPlayers = 10_000

// playerColumns are the columns of a PlayerRow, in scanPlayer's order.
const playerColumns = `id, account, x, y, z, cell, stats, epoch`

// LoadPlayers returns the stored rows of the players among ids that exist, keyed by id;
// an id with no player (never created, or < 1) is simply absent from the map. Duplicate ids
// are allowed. Empty ids returns an empty map without a query; more than MaxLoadPlayers ids
// fail with ErrInvalidArgument. One statement, so one snapshot: the rows are as of one
// moment. PostgreSQL out of reach fails with ErrUnavailable.
func (p *PG) LoadPlayers(ctx context.Context, ids []int64) (map[int64]PlayerRow, error) {
	if len(ids) > MaxLoadPlayers {
		return nil, fmt.Errorf("%w: LoadPlayers of %d ids, max %d", ErrInvalidArgument, len(ids), MaxLoadPlayers)
	}
	out := make(map[int64]PlayerRow, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, _ := p.pool.Query(ctx, `SELECT `+playerColumns+` FROM players WHERE id = ANY($1)`, ids)
	defer rows.Close()
	for rows.Next() {
		r, err := scanPlayer(rows)
		if err != nil {
			return nil, classify(ctx, fmt.Sprintf("loading %d players", len(ids)), err)
		}
		out[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, classify(ctx, fmt.Sprintf("loading %d players", len(ids)), err)
	}
	return out, nil
}

// EnsurePlayer returns the stored row of player id, creating it first if no player has that
// id: with account ("": "player-<id>"), at the origin of cell 0, stats {}, epoch 0; created
// says whether this call created it. If the player exists, account is not compared with the
// stored one (the stored row, its account included, is returned as it is): the account is
// only used for a creation.
//
// One statement (INSERT … ON CONFLICT (id) DO NOTHING RETURNING, with a read of the existing
// row), so callers racing on one id create it once: one gets created = true, the others the
// row it created. An id < 1, or an account that is not 1..MaxAccountLen bytes of UTF-8
// without NUL, fails with ErrInvalidArgument; so does an account already held by another
// player (nothing is created; the message says so). PostgreSQL out of reach fails with
// ErrUnavailable.
func (p *PG) EnsurePlayer(ctx context.Context, id int64, account string) (row PlayerRow, created bool, err error) {
	if id < 1 {
		return PlayerRow{}, false, fmt.Errorf("%w: EnsurePlayer: player id %d, want ≥ 1", ErrInvalidArgument, id)
	}
	if account == "" {
		account = fmt.Sprintf("player-%d", id)
	}
	if len(account) > MaxAccountLen || !utf8.ValidString(account) || strings.IndexByte(account, 0) >= 0 {
		return PlayerRow{}, false, fmt.Errorf("%w: EnsurePlayer: player %d: account of %d bytes, want 1..%d bytes of UTF-8 without NUL",
			ErrInvalidArgument, id, len(account), MaxAccountLen)
	}
	what := fmt.Sprintf("ensuring player %d", id)
	// The outer SELECT of players runs on the statement's snapshot, which does not see the row
	// the CTE inserts: exactly one of the two branches answers — unless another transaction
	// inserted the id after the snapshot was taken (the INSERT waits for it and does nothing,
	// and the snapshot does not see its row): then no row, and a second statement reads it.
	r := p.pool.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO players (id, account, cell, epoch) VALUES ($1, $2, 0, 0)
			ON CONFLICT (id) DO NOTHING
			RETURNING `+playerColumns+`)
		SELECT `+playerColumns+`, true FROM ins
		UNION ALL
		SELECT `+playerColumns+`, false FROM players WHERE id = $1`, id, account)
	row, err = scanPlayer(r, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		created = false
		row, err = scanPlayer(p.pool.QueryRow(ctx, `SELECT `+playerColumns+` FROM players WHERE id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) { // players are never deleted
			return PlayerRow{}, false, fmt.Errorf("persistence: %s: inserted concurrently, then not found", what)
		}
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // the id conflict is handled: the account's
			return PlayerRow{}, false, fmt.Errorf("%w: EnsurePlayer: player %d: account %q is held by another player",
				ErrInvalidArgument, id, account)
		}
		return PlayerRow{}, false, classify(ctx, what, err)
	}
	return row, created, nil
}

// scanPlayer scans the playerColumns, then extra, into a PlayerRow.
func scanPlayer(r pgx.Row, extra ...any) (PlayerRow, error) {
	var (
		row         PlayerRow
		cell, epoch int64
		stats       []byte // scanned into a fresh copy (pgx's JSON codec copies into *[]byte)
		dest        = []any{&row.ID, &row.Account, &row.X, &row.Y, &row.Z, &cell, &stats, &epoch}
	)
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return PlayerRow{}, err
	}
	if cell < 0 || epoch < 0 { // the schema's CHECKs forbid both
		return PlayerRow{}, fmt.Errorf("%w: player %d stored with cell %d, epoch %d", ErrCorrupt, row.ID, cell, epoch)
	}
	row.Cell, row.Epoch, row.Stats = uint64(cell), uint64(epoch), stats
	return row, nil
}

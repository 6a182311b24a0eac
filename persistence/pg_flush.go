package persistence

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// The bulk position flush: COPY into a temporary table, then one merge into players.

// FlushPlayers writes rows with exactly UpsertPlayers' contract — all of them or, on error,
// none; a row whose player does not exist is inserted; one whose stored epoch is older than
// or equal to the row's overwrites the position, cell and epoch (not the account) and merges
// its stats into the stored object (players.stats || the row's: its keys win, the stored keys
// it lacks stay; see PlayerRow.Stats); one whose stored epoch is newer is not written and is
// counted as fenced; written + fenced = len(rows); rows are applied in ID order; a row failing
// its checks or a duplicate ID fails the call with ErrInvalidArgument before anything is
// sent — but moves the rows with COPY
// instead of parameter arrays, which is faster for big batches and slower for small ones (a
// transaction of four statements and a temporary table instead of one statement; see
// docs/performance.md for the crossover, and FlusherConfig.CopyMinRows for how the Flusher
// chooses).
//
// In one transaction: COPY of the rows into player_flush, a temporary table of the session
// (created on a connection's first flush, emptied at every commit: ON COMMIT DELETE ROWS,
// which costs less per call than creating and dropping one, ON COMMIT DROP), then one INSERT
// … SELECT … ORDER BY id ON CONFLICT (id) DO UPDATE … WHERE players.epoch <= excluded.epoch,
// which takes the row locks in ID order (concurrent flushes of overlapping players cannot
// deadlock) and whose WHERE is the fence. A failed call rolls back: nothing written, and
// the temporary table as it was.
func (p *PG) FlushPlayers(ctx context.Context, rows []PlayerRow) (written, fenced int, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	sorted, err := sortedPlayerRows(rows, "FlushPlayers")
	if err != nil {
		return 0, 0, err
	}
	n := len(sorted)
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS player_flush (
			id bigint, account text, x float8, y float8, z float8, cell bigint, stats jsonb, epoch bigint
		) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		copied, err := tx.CopyFrom(ctx, pgx.Identifier{"player_flush"},
			[]string{"id", "account", "x", "y", "z", "cell", "stats", "epoch"},
			pgx.CopyFromSlice(n, func(i int) ([]any, error) {
				r := sorted[i]
				stats := r.Stats
				if len(bytes.TrimSpace(stats)) == 0 {
					stats = emptyObject
				}
				return []any{r.ID, r.Account, r.X, r.Y, r.Z, int64(r.Cell), stats, int64(r.Epoch)}, nil
			}))
		if err != nil {
			return err
		}
		if copied != int64(n) {
			return fmt.Errorf("COPY took %d of %d rows", copied, n)
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO players AS p (id, account, x, y, z, cell, stats, epoch)
			SELECT id, account, x, y, z, cell, stats, epoch FROM player_flush ORDER BY id
			ON CONFLICT (id) DO UPDATE
			SET x = excluded.x, y = excluded.y, z = excluded.z, cell = excluded.cell,
			    stats = p.stats || excluded.stats, epoch = excluded.epoch, updated_at = now()
			WHERE p.epoch <= excluded.epoch`)
		if err != nil {
			return err
		}
		written = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("persistence: flushing %d players: %w", n, err)
	}
	return written, n - written, nil
}

// sortedPlayerRows checks rows and returns pointers to them sorted by ID; a row failing its
// checks, or an ID appearing twice, is an ErrInvalidArgument naming op.
func sortedPlayerRows(rows []PlayerRow, op string) ([]*PlayerRow, error) {
	sorted := make([]*PlayerRow, len(rows))
	for i := range rows {
		if err := rows[i].validate(); err != nil {
			return nil, err
		}
		sorted[i] = &rows[i]
	}
	slices.SortFunc(sorted, func(a, b *PlayerRow) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	for k := 1; k < len(sorted); k++ {
		if sorted[k-1].ID == sorted[k].ID {
			return nil, fmt.Errorf("%w: player %d appears twice in one %s call", ErrInvalidArgument, sorted[k].ID, op)
		}
	}
	return sorted, nil
}

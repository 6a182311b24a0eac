package cellserver

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/meridian-mmo/meridian/internal/pgtest"
	"github.com/meridian-mmo/meridian/persistence"
)

// TestOutboxDeathsReachEventLog: a tick's deaths are in the local outbox when write returns,
// and the flusher delivers each to PostgreSQL's event log once, with its player, even if the
// same death is written again (an attack redelivered after a crash).
func TestOutboxDeathsReachEventLog(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	pg, err := persistence.OpenPG(ctx, url, persistence.DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	store, err := persistence.OpenStore(t.TempDir(), persistence.DefaultStoreOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ob, err := newOutbox(store, pg, nil)
	if err != nil {
		t.Fatal(err)
	}
	death := CriticalEvent{Key: "death:7:3", Kind: "death", Cell: 2, Epoch: 4, Payload: []byte(`{"player":42,"entity":9}`)}
	if err := ob.write([]CriticalEvent{death}); err != nil {
		t.Fatal(err)
	}
	pending, err := store.PendingEvents(0, 10)
	if err != nil || len(pending) != 1 || pending[0].Key != death.Key {
		t.Fatalf("outbox after write: %+v (%v)", pending, err)
	}
	if n, err := ob.flusher.FlushOnce(ctx); err != nil || n != 1 {
		t.Fatalf("FlushOnce = %d, %v", n, err)
	}
	if err := ob.write([]CriticalEvent{death}); err != nil { // the same death again
		t.Fatal(err)
	}
	if _, err := ob.flusher.FlushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	var player, cell, epoch int64
	if err := conn.QueryRow(ctx, `SELECT count(*), max(player), max(cell), max(epoch) FROM events WHERE kind = 'death' AND idem_key = $1`, death.Key).
		Scan(&n, &player, &cell, &epoch); err != nil {
		t.Fatal(err)
	}
	if n != 1 || player != 42 || cell != 2 || epoch != 4 {
		t.Fatalf("event log: %d rows, player %d, cell %d, epoch %d; want 1 row of player 42 in cell 2 at epoch 4", n, player, cell, epoch)
	}

	// Without a local store the events are counted and dropped, and the tick goes on.
	bare, err := newOutbox(nil, nil, nil)
	if err != nil || bare.write([]CriticalEvent{death}) != nil {
		t.Fatalf("no store: %v", err)
	}
}

package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func samePlayer(t testing.TB, got, want PlayerRow) bool {
	t.Helper()
	stats := want.Stats
	if len(stats) == 0 {
		stats = emptyObject
	}
	return got.ID == want.ID && got.Account == want.Account && got.X == want.X && got.Y == want.Y &&
		got.Z == want.Z && got.Cell == want.Cell && got.Epoch == want.Epoch && sameJSON(t, got.Stats, stats)
}

// unreachablePG is a PG whose pool points at a socket directory with no server in it.
func unreachablePG(t *testing.T) *PG {
	t.Helper()
	cfg, err := pgxpool.ParseConfig("host=" + t.TempDir() + " user=x dbname=x sslmode=disable connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg) // lazy: connects on first use
	if err != nil {
		t.Fatal(err)
	}
	pg := &PG{pool: pool}
	t.Cleanup(pg.Close)
	return pg
}

// TestLoadPlayers: the stored rows of the ids that exist, the others absent; the bound.
func TestLoadPlayers(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	rows := []PlayerRow{
		{ID: 1, Account: "one", X: 1.5, Y: -2, Z: 3.25, Cell: 7, Stats: json.RawMessage(`{"hp": 10, "lvl": {"n": 2}}`), Epoch: 4},
		{ID: 2, Account: "two", Cell: 0, Epoch: 0},
		{ID: 1 << 40, Account: "big", X: -1e6, Cell: 1 << 62, Stats: json.RawMessage(`{}`), Epoch: 1 << 50},
	}
	if _, _, err := pg.UpsertPlayers(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got, err := pg.LoadPlayers(ctx, []int64{1, 2, 1 << 40, 999, -5, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("LoadPlayers returned %d players, want %d: %+v", len(got), len(rows), got)
	}
	for _, want := range rows {
		if g, ok := got[want.ID]; !ok || !samePlayer(t, g, want) {
			t.Errorf("player %d: %+v (present %v), want %+v", want.ID, g, ok, want)
		}
	}
	if got, err := pg.LoadPlayers(ctx, []int64{999}); err != nil || got == nil || len(got) != 0 {
		t.Errorf("LoadPlayers of a missing id: %v, %v; want an empty map", got, err)
	}

	// The bound: MaxLoadPlayers ids pass, one more is refused before any query.
	ids := make([]int64, MaxLoadPlayers+1)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	if got, err := pg.LoadPlayers(ctx, ids[:MaxLoadPlayers]); err != nil || len(got) != 2 {
		t.Errorf("LoadPlayers of %d ids: %d players, %v", MaxLoadPlayers, len(got), err)
	}
	down := unreachablePG(t)
	if _, err := down.LoadPlayers(ctx, ids); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("LoadPlayers of %d ids: %v, want ErrInvalidArgument", len(ids), err)
	}
	// No ids: no query (the unreachable server is not asked).
	if got, err := down.LoadPlayers(ctx, nil); err != nil || got == nil || len(got) != 0 {
		t.Errorf("LoadPlayers(nil): %v, %v; want an empty map and no query", got, err)
	}
}

// TestEnsurePlayer: created once with the defaults, then returned as stored; the account
// defaults to player-<id>, is only used for a creation, and cannot be another player's.
func TestEnsurePlayer(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	row, created, err := pg.EnsurePlayer(ctx, 1, "")
	want := PlayerRow{ID: 1, Account: "player-1"}
	if err != nil || !created || !samePlayer(t, row, want) {
		t.Fatalf("EnsurePlayer(1, \"\") = %+v, %v, %v; want %+v created", row, created, err, want)
	}
	row, created, err = pg.EnsurePlayer(ctx, 1, "someone-else")
	if err != nil || created || !samePlayer(t, row, want) {
		t.Fatalf("EnsurePlayer of an existing player = %+v, %v, %v; want the stored %+v", row, created, err, want)
	}
	// A player moved by a flush comes back as stored.
	moved := PlayerRow{ID: 1, Account: "player-1", X: 4, Y: 5, Z: 6, Cell: 9, Stats: json.RawMessage(`{"hp": 3}`), Epoch: 2}
	if _, _, err := pg.UpsertPlayers(ctx, []PlayerRow{moved}); err != nil {
		t.Fatal(err)
	}
	if row, created, err := pg.EnsurePlayer(ctx, 1, ""); err != nil || created || !samePlayer(t, row, moved) {
		t.Errorf("EnsurePlayer after a flush = %+v, %v, %v; want %+v", row, created, err, moved)
	}
	if row, created, err := pg.EnsurePlayer(ctx, 2, "alice"); err != nil || !created || row.Account != "alice" {
		t.Errorf("EnsurePlayer(2, alice) = %+v, %v, %v", row, created, err)
	}

	// An account held by another player: refused, nothing created.
	_, _, err = pg.EnsurePlayer(ctx, 3, "player-1")
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "held by another player") {
		t.Errorf("EnsurePlayer with player 1's account: %v, want ErrInvalidArgument saying it is held", err)
	}
	if got, err := pg.LoadPlayers(ctx, []int64{3}); err != nil || len(got) != 0 {
		t.Errorf("player 3 after the refusal: %v, %v", got, err)
	}

	for _, c := range []struct {
		id      int64
		account string
	}{
		{0, "zero"},
		{-1, "neg"},
		{4, strings.Repeat("a", MaxAccountLen+1)},
		{4, "bad\xff"},
		{4, "nul\x00"},
	} {
		if _, _, err := pg.EnsurePlayer(ctx, c.id, c.account); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("EnsurePlayer(%d, %q): %v, want ErrInvalidArgument", c.id, c.account, err)
		}
	}
	if _, _, err := pg.EnsurePlayer(ctx, 4, strings.Repeat("a", MaxAccountLen)); err != nil {
		t.Errorf("EnsurePlayer with an account of MaxAccountLen bytes: %v", err)
	}

	// Callers racing on one id: created once, every caller gets the row.
	const n = 16
	var wg sync.WaitGroup
	rows := make([]PlayerRow, n)
	createds := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { rows[i], createds[i], errs[i] = pg.EnsurePlayer(ctx, 77, "") })
	}
	wg.Wait()
	creations := 0
	for i := range n {
		if errs[i] != nil || !samePlayer(t, rows[i], PlayerRow{ID: 77, Account: "player-77"}) {
			t.Errorf("racing EnsurePlayer %d: %+v, %v", i, rows[i], errs[i])
		}
		if createds[i] {
			creations++
		}
	}
	if creations != 1 {
		t.Errorf("%d racing callers reported the creation, want 1", creations)
	}
}

// TestPlayersUnavailable: with no server to reach, the reads and creations fail with
// ErrUnavailable; a cancelled call is the caller's error.
func TestPlayersUnavailable(t *testing.T) {
	ctx := context.Background()
	pg := unreachablePG(t)
	if _, err := pg.LoadPlayers(ctx, []int64{1}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("LoadPlayers: %v, want ErrUnavailable", err)
	}
	if _, _, err := pg.EnsurePlayer(ctx, 1, ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("EnsurePlayer: %v, want ErrUnavailable", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := pg.EnsurePlayer(cctx, 1, ""); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("a cancelled EnsurePlayer: %v, want context.Canceled", err)
	}
}

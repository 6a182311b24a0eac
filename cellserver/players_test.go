package cellserver

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/internal/pgtest"
	"github.com/meridian-mmo/meridian/persistence"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newTestPlayers opens a fresh PostgreSQL database with players 1 and 2 holding items 10 and
// 11, and the players link over it.
func newTestPlayers(t *testing.T) (*players, *persistence.PG) {
	t.Helper()
	ctx := context.Background()
	pg, err := persistence.OpenPG(ctx, pgtest.URL(t), persistence.DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	for _, id := range []int64{1, 2} {
		if _, _, err := pg.EnsurePlayer(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		if err := pg.CreateItem(ctx, persistence.Item{ID: 9 + id, Kind: "gem", Owner: id}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := newPlayers(pg, DefaultPlayersConfig(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.close(context.Background()) })
	return p, pg
}

// await collects n inventory results from the workers (failing, rather than hanging, shortly
// before the test binary's -timeout would).
func await(t *testing.T, p *players, n int) []InventoryDone {
	t.Helper()
	var got []InventoryDone
	for len(got) < n {
		got = p.results(got)
		stillRunning(t)
		time.Sleep(time.Millisecond)
	}
	return got
}

// stillRunning fails the test when its -timeout is near (no bound on how fast anything is).
func stillRunning(t *testing.T) {
	t.Helper()
	if d, ok := t.Deadline(); ok && time.Until(d) < 5*time.Second {
		t.Fatal("gave up waiting: the test binary's -timeout is near")
	}
}

// TestPlayersInventoryOnce: an inventory operation runs as one transaction under its key; the
// same request again (a resend to a new owner after a crash) gets the first outcome and moves
// nothing twice; a refusal names its reason.
func TestPlayersInventoryOnce(t *testing.T) {
	p, pg := newTestPlayers(t)
	trade := InventoryRequest{Key: InventoryKey(77, 3), Actor: 77, Seq: 3, Player: 1, Target: 2,
		Op: wire.InventoryOp{Op: wire.InvTrade, Items: []uint64{10}, Want: []uint64{11}}}
	p.submit([]InventoryRequest{trade})
	first := await(t, p, 1)[0]
	if first.Actor != 77 || first.Seq != 3 || first.Result.Code != wire.InvOK || first.Result.Moved != 2 || first.Result.Event == 0 {
		t.Fatalf("first run %+v", first)
	}
	p.submit([]InventoryRequest{trade})
	again := await(t, p, 1)[0]
	if again.Result != first.Result {
		t.Fatalf("the same key again: %+v, want the first outcome %+v", again.Result, first.Result)
	}
	inv, err := pg.Inventory(context.Background(), 1)
	if err != nil || len(inv) != 1 || inv[0].ID != 11 || inv[0].Version != 2 {
		t.Fatalf("player 1 holds %+v (%v): want item 11 at version 2 (moved once)", inv, err)
	}
	give := InventoryRequest{Key: InventoryKey(77, 4), Actor: 77, Seq: 4, Player: 1, Target: 2,
		Op: wire.InventoryOp{Op: wire.InvGive, Items: []uint64{10}}}
	p.submit([]InventoryRequest{give})
	if r := await(t, p, 1)[0].Result; r.Code != wire.InvNotOwner || r.Event == 0 {
		t.Fatalf("giving an item player 1 no longer holds: %+v, want not_owner (logged)", r)
	}
}

// TestPlayersJoinAndRestoreFence: a join of an authenticated player is held until its stored
// state is read (created if new), retries meanwhile are dropped, and it is then passed on with
// that state; a checkpoint's player whose stored epoch is newer than the checkpoint's is not
// restored, others are.
func TestPlayersJoinAndRestoreFence(t *testing.T) {
	p, pg := newTestPlayers(t)
	ctx := context.Background()
	if _, _, err := pg.FlushPlayers(ctx, []persistence.PlayerRow{{ID: 1, Account: "player-1", X: 30, Z: 40, Cell: 5, Epoch: 12}}); err != nil {
		t.Fatal(err)
	}
	join := func(c uint32, player wire.PlayerID) PeerIn {
		return PeerIn{From: 9, Msg: &wire.JoinMsg{Home: 9, Client: c, PlayerID: player}}
	}
	other := PeerIn{From: 9, Msg: &wire.LeaveMsg{}}
	send := func(raftmeta.ServerID, wire.PeerMessage) { t.Fatal("nothing is refused while PostgreSQL is up") }
	out := p.intercept([]PeerIn{join(1, 1), other, join(2, 0), join(3, 3)}, send)
	// A read may finish before intercept returns: its join then follows the ones passed on at
	// once (never precedes them).
	got := map[uint32]PeerIn{}
	for _, pi := range out[min(2, len(out)):] {
		if j, ok := pi.Msg.(*wire.JoinMsg); ok && pi.Player != nil && (j.Client == 1 || j.Client == 3) {
			got[j.Client] = pi
		}
	}
	if len(out) != 2+len(got) || out[0].Msg != other.Msg || out[1].Msg.(*wire.JoinMsg).Client != 2 {
		t.Fatalf("passed on at once %+v: want the other message and the join of no player (then any read joins)", out)
	}
	// Retries of client 1's join while it is read are dropped (a retry after its read is a new
	// join, which the Member ignores as a repeat).
	for len(got) < 2 {
		retry := []PeerIn{join(1, 1)}
		if _, done := got[1]; done {
			retry = nil
		}
		for _, pi := range p.intercept(retry, send) {
			got[pi.Msg.(*wire.JoinMsg).Client] = pi
		}
		stillRunning(t)
		time.Sleep(time.Millisecond)
	}
	if s := got[1].Player; s == nil || !s.Placed || s.X != 30 || s.Z != 40 || s.Epoch != 12 {
		t.Fatalf("player 1's join %+v (%+v): want its stored place and epoch", got[1], s)
	}
	if s := got[3].Player; s == nil || s.Placed || s.Epoch != 0 {
		t.Fatalf("new player 3's join %+v: want created, unplaced", s)
	}
	if rows, err := pg.LoadPlayers(ctx, []int64{3}); err != nil || len(rows) != 1 {
		t.Fatalf("player 3 not created: %v %v", rows, err)
	}
	if more := p.intercept(nil, send); len(more) != 0 {
		t.Fatalf("the retries were passed on too: %+v", more)
	}

	recs := []wire.EntityRecord{{ID: 100, PlayerID: 1, AuthEpoch: 11}, {ID: 101, PlayerID: 2, AuthEpoch: 1}, {ID: 102}}
	kept := p.fenceRestored(recs)
	if len(kept) != 2 || kept[0].ID != 101 || kept[1].ID != 102 {
		t.Fatalf("restored %+v: want player 2 and the non-player, not player 1 (stored at a newer epoch)", kept)
	}
}

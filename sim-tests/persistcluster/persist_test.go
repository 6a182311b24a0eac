package persistcluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/internal/pgtest"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
	"github.com/meridian-mmo/meridian/wire"
)

// Bounds of the position checks. A player's stored position lags its entity by at most the
// flush interval (2 s) plus the offer interval (20 ticks, 1 s); slack covers a loaded machine.
const (
	maxSpeed       = 7.0 // cellserver.DefaultConfig().MaxSpeed, m/s
	staleSeconds   = 2 + 1 + 2
	maxStaleMetres = maxSpeed * staleSeconds
)

// TestItemsConservedAcrossServersAndCrash: 30 players patrol across the border of two cell
// servers persisting to PostgreSQL, looting, dropping, giving and trading items with each
// other (give and trade often between players on different servers) while their entities are
// handed back and forth; mid-way one cell server is SIGKILLed and its players come back on
// the other. Then:
//   - no item was made or destroyed (counts per kind), and replaying the event log from the
//     start reproduces every item's holder and version (each move applied exactly once, the
//     moves of operations resent to the new owner after the crash included);
//   - every result a client got matches the logged outcome of its idempotency key, and none
//     arrived twice;
//   - at the kill, the dead server's players were stored no further than maxStaleMetres from
//     where they stood, and they came back (on the survivor) where they stood;
//   - no client was disconnected.
func TestItemsConservedAcrossServersAndCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	const nBots = 30
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url := pgtest.URL(t)
	pg, db := openPG(t, ctx, url)
	want := seed(t, ctx, pg, nBots, 4)
	c := startCluster(t, ctx, url, 2)
	seedGround(t, ctx, pg, c.mp, nBots*4+1, 200, want)
	initial, err := loadItems(ctx, db)
	if err != nil {
		t.Fatal(err)
	}

	tr := newTrader(t, nBots, 1, db)
	r, stopRun := startBots(t, ctx, c.gwAddr, nBots, "patrol", tr)
	defer stopRun()
	tradeCtx, stopTrade := context.WithCancel(ctx)
	traded := make(chan struct{})
	go func() { defer close(traded); tr.run(tradeCtx) }()
	defer func() { stopTrade(); <-traded }()

	time.Sleep(8 * time.Second)

	// Kill the server holding more players, remembering where its players stand.
	held := make([][]wire.EntityID, len(c.cells))
	for i, cell := range c.cells {
		h, err := cell.Holdings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held[i] = h.Real
	}
	victim := 0
	if len(held[1]) > len(held[0]) {
		victim = 1
	}
	onVictim := map[int]bool{}
	at := map[int][2]float64{}
	for i := range nBots {
		cl := r.Client(i)
		if cl == nil {
			t.Fatalf("bot %d did not connect", i)
		}
		if _, ok := slices.BinarySearch(held[victim], cl.Entity()); ok {
			onVictim[i] = true
			if st, ok := cl.Self(); ok {
				at[i] = [2]float64{wire.DequantisePos(st.X), wire.DequantisePos(st.Z)}
			}
		}
	}
	c.cells[victim].Kill(t)
	killed := time.Now()
	t.Logf("SIGKILLed %s holding %d of %d players", c.cells[victim].Name, len(onVictim), nBots)
	if len(onVictim) == 0 {
		t.Fatal("the victim held no player")
	}
	// Their stored positions: at most maxStaleMetres from where they stood.
	rows, err := pg.LoadPlayers(ctx, playerIDs(onVictim))
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range onVictim {
		row, ok := rows[int64(i+1)]
		if !ok {
			t.Fatalf("player %d has no row", i+1)
		}
		d := math.Hypot(row.X-at[i][0], row.Z-at[i][1])
		worst = max(worst, d)
		if d > maxStaleMetres {
			t.Errorf("player %d stored at (%.1f, %.1f), %.1f m from where it stood (%.1f, %.1f) at the kill", i+1, row.X, row.Z, d, at[i][0], at[i][1])
		}
	}
	t.Logf("stored positions of the dead server's players: at most %.1f m from where they stood (bound %.0f m)", worst, maxStaleMetres)

	// They come back on the survivor, where they stood.
	survivor := c.cells[1-victim]
	waitFor(t, 60*time.Second, "every player real on the survivor", func() (bool, string) {
		h, err := survivor.Holdings(ctx)
		if err != nil {
			return false, err.Error()
		}
		missing := 0
		for i := range nBots {
			if _, ok := slices.BinarySearch(h.Real, r.Client(i).Entity()); !ok {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d players missing", missing, nBots)
	})
	t.Logf("every player back %v after the kill", time.Since(killed).Round(time.Millisecond))
	now := positions(r, nBots)
	worst = 0
	for i := range onVictim {
		d := math.Hypot(now[i][0]-at[i][0], now[i][1]-at[i][1])
		worst = max(worst, d)
		if d > maxStaleMetres {
			t.Errorf("player %d came back at (%.1f, %.1f), %.1f m from where it stood (%.1f, %.1f) at the kill", i+1, now[i][0], now[i][1], d, at[i][0], at[i][1])
		}
	}
	t.Logf("the dead server's players came back at most %.1f m from where they stood", worst)

	time.Sleep(4 * time.Second) // trading goes on, all on one server now
	stopTrade()
	<-traded
	time.Sleep(3 * time.Second) // the last results come back
	stopRun()

	okOps := checkConservation(t, ctx, pg, db, want, initial, tr)

	// Deaths: the survivor's outbox is delivered; the dead server's, durable in its store,
	// is delivered when it restarts (with no cells: the map gave them away).
	c.cells[victim].Proc.Start(t, c.cellArgs(victim+1, url)...)
	for _, cell := range c.cells {
		waitFor(t, 30*time.Second, cell.Name+"'s outbox delivered", func() (bool, string) {
			sc, err := cell.Scrape(ctx)
			if err != nil {
				return false, err.Error()
			}
			stored, pending := sc.Sum("meridian_critical_events_total", "result", "stored"), sc.Sum("meridian_outbox_pending")
			if !slices.ContainsFunc(sc, func(s promscrape.Sample) bool { return s.Name == "meridian_outbox_pending" }) {
				return false, "no outbox gauge yet"
			}
			return pending == 0, fmt.Sprintf("%v stored since start, %v pending (the gauge reads the store)", stored, pending)
		})
	}
	nDeaths := deaths(t, ctx, db)
	tr.mu.Lock()
	t.Logf("%d attacks sent; %d deaths in the event log", tr.attacks, nDeaths)
	tr.mu.Unlock()
	if nDeaths == 0 {
		t.Error("no death reached the event log")
	}
	tr.mu.Lock()
	okBy := map[string]int{}
	for key, res := range tr.results {
		if res.Code == wire.InvOK {
			okBy[tr.sent[key].op.Op.String()]++
		}
	}
	t.Logf("%d operations sent, %d results back (by code %v), %d applied (ok in the log); ok by op %v", len(tr.sent), len(tr.results), tr.codes, okOps, okBy)
	if okBy["trade"] == 0 || okBy["give"] == 0 || okBy["loot"] == 0 || okBy["drop"] == 0 {
		t.Errorf("an operation kind never succeeded: %v", okBy)
	}
	tr.mu.Unlock()
	if okOps < 20 {
		t.Errorf("only %d operations applied: too few to mean anything", okOps)
	}
	tot := r.Totals()
	if tot.Disconnected != 0 {
		t.Errorf("%d bots disconnected (%v)", tot.Disconnected, tot.Ended)
	}
}

func playerIDs(bots map[int]bool) []int64 {
	var ids []int64
	for i := range bots {
		ids = append(ids, int64(i+1))
	}
	slices.Sort(ids)
	return ids
}

// TestPostgreSQLStoppedMidRun: with PostgreSQL stopped under a running cluster, inventory
// operations are answered "unavailable" (nothing half-done: the items stay where they were),
// players keep moving, and a new player cannot join (ReasonUnavailable) rather than start from
// nothing; once PostgreSQL is back, operations succeed again and the position flush catches up:
// every player's stored position is fresh.
func TestPostgreSQLStoppedMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 processes and a PostgreSQL")
	}
	const nBots = 12
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pgc := pgtest.NewCluster(t)
	pg, db := openPG(t, ctx, pgc.URL())
	const perPlayer = 3
	want := seed(t, ctx, pg, nBots+1, perPlayer)
	c := startCluster(t, ctx, pgc.URL(), 1)

	tr := newTrader(t, nBots, 1, db)
	r, stopRun := startBots(t, ctx, c.gwAddr, nBots, "wander", tr)
	defer stopRun()

	// Each player drops one of its items while PostgreSQL is up, one while it is down, one
	// after it came back.
	drop := func(i, k int) {
		item := uint64(i*perPlayer + k + 1) // player i+1's k-th item (seed's numbering)
		data, _ := (&wire.InventoryOp{Op: wire.InvDrop, Items: []uint64{item}}).Append(nil)
		cl := r.Client(i)
		if seq, err := cl.SendInteract(cl.Entity(), wire.InteractInventory, data); err == nil {
			tr.mu.Lock()
			tr.sent[fmt.Sprintf("ix:%d:%d", cl.Entity(), seq)] = sentOp{bot: i, actor: cl.Entity(), seq: seq}
			tr.mu.Unlock()
		}
	}
	for i := range nBots {
		drop(i, 0)
	}
	waitFor(t, 20*time.Second, "the drops answered", func() (bool, string) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.results) == nBots, fmt.Sprintf("%d of %d results (%v)", len(tr.results), nBots, tr.codes)
	})
	if tr.codes[wire.InvOK] != nBots {
		t.Fatalf("results with PostgreSQL up: %v, want %d ok", tr.codes, nBots)
	}
	time.Sleep(3 * time.Second) // a flush or two
	before, err := loadItems(ctx, db)
	if err != nil {
		t.Fatal(err)
	}

	pgc.Stop()
	stopped := time.Now()
	posAtStop := positions(r, nBots)
	tr.mu.Lock()
	clear(tr.codes)
	tr.mu.Unlock()
	for i := range nBots {
		drop(i, 1)
	}
	waitFor(t, 30*time.Second, "the drops answered with PostgreSQL down", func() (bool, string) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		n := 0
		for _, k := range tr.codes {
			n += k
		}
		return n == nBots, fmt.Sprintf("%d of %d results (%v)", n, nBots, tr.codes)
	})
	if tr.codes[wire.InvUnavailable] != nBots {
		t.Fatalf("results with PostgreSQL down: %v, want %d unavailable", tr.codes, nBots)
	}
	// A new player cannot join: refused as unavailable, before or after its welcome.
	cc := client.DefaultConfig(c.gwAddr, []byte(fmt.Sprintf("player-%d", nBots+1)))
	late, err := client.Dial(ctx, cc)
	if err == nil {
		select {
		case <-late.Done():
		case <-time.After(15 * time.Second):
		}
		err = late.Err()
		late.Close()
	}
	if !errors.Is(err, client.ErrDisconnected) || !strings.Contains(err.Error(), wire.ReasonUnavailable.String()) {
		t.Errorf("a player joining with PostgreSQL down: %v, want disconnected as %v", err, wire.ReasonUnavailable)
	}
	time.Sleep(4 * time.Second) // movement goes on
	moved := 0
	for i, p := range positions(r, nBots) {
		if math.Hypot(p[0]-posAtStop[i][0], p[1]-posAtStop[i][1]) > 0.5 {
			moved++
		}
	}
	if moved < nBots/2 {
		t.Errorf("only %d of %d players moved while PostgreSQL was down", moved, nBots)
	}

	pgc.Start()
	restarted := time.Now()
	t.Logf("PostgreSQL down for %v; %d of %d players moved meanwhile", restarted.Sub(stopped).Round(time.Millisecond), moved, nBots)
	after, err := loadItems(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !mapsEqual(before, after) {
		t.Error("items changed while PostgreSQL was down")
	}
	tr.mu.Lock()
	clear(tr.codes)
	tr.mu.Unlock()
	for i := range nBots {
		drop(i, 2)
	}
	waitFor(t, 30*time.Second, "the drops answered after PostgreSQL came back", func() (bool, string) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.codes[wire.InvOK] == nBots, fmt.Sprintf("results %v", tr.codes)
	})
	// The flush caught up: every player's stored position is near where it stands now.
	waitFor(t, 30*time.Second, "the position flush caught up", func() (bool, string) {
		var ids []int64
		for i := range nBots {
			ids = append(ids, int64(i+1))
		}
		rows, err := pg.LoadPlayers(ctx, ids)
		if err != nil {
			return false, err.Error()
		}
		now := positions(r, nBots)
		far := 0
		for i := range nBots {
			row := rows[int64(i+1)]
			if row.Cell == 0 || math.Hypot(row.X-now[i][0], row.Z-now[i][1]) > maxStaleMetres {
				far++
			}
		}
		var fresh int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM players WHERE id <= $1 AND updated_at > $2`, nBots, restarted).Scan(&fresh); err != nil {
			return false, err.Error()
		}
		return far == 0 && fresh == nBots, fmt.Sprintf("%d of %d stored positions stale, %d written since PostgreSQL came back", far, nBots, fresh)
	})
	t.Logf("flush caught up %v after PostgreSQL came back", time.Since(restarted).Round(time.Millisecond))
	stopRun()
	if got, err := pg.CountItems(ctx); err != nil || !mapsEqual(got, want) {
		t.Errorf("items per kind %v (%v), want %v", got, err, want)
	}
	if tot := r.Totals(); tot.Disconnected != 0 {
		t.Errorf("%d bots disconnected (%v)", tot.Disconnected, tot.Ended)
	}
	sc, err := c.cells[0].Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := sc.Sum("meridian_pg_flush_failures_total"); f == 0 {
		t.Error("no failed flush counted while PostgreSQL was down")
	}
	if u := sc.Sum("meridian_inventory_ops_total", "result", "unavailable"); u != nBots {
		t.Errorf("meridian_inventory_ops_total{result=unavailable} = %v, want %d", u, nBots)
	}
}

func positions(r *bots.Runner, n int) [][2]float64 {
	out := make([][2]float64, n)
	for i := range n {
		if st, ok := r.Client(i).Self(); ok {
			out[i] = [2]float64{wire.DequantisePos(st.X), wire.DequantisePos(st.Z)}
		}
	}
	return out
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meridian-mmo/meridian/internal/pgtest"
)

// invState is an item's place and version as the tests compare them.
type invState struct {
	owner   int64 // 0: on the ground
	cell    int64
	version int64
	kind    string
}

func readItems(t testing.TB, pg *PG) map[int64]invState {
	t.Helper()
	rows, _ := pg.pool.Query(context.Background(),
		`SELECT id, coalesce(owner, 0), coalesce(cell, -1), version, kind FROM items`)
	out := map[int64]invState{}
	var id int64
	var s invState
	if _, err := pgx.ForEachRow(rows, []any{&id, &s.owner, &s.cell, &s.version, &s.kind}, func() error {
		out[id] = s
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

type storedEvent struct {
	seq     int64
	key     string
	kind    string
	player  *int64
	cell    *int64
	payload invPayload
}

func readEvents(t testing.TB, pg *PG) []storedEvent {
	t.Helper()
	rows, _ := pg.pool.Query(context.Background(), `SELECT seq, idem_key, kind, player, cell, payload FROM events ORDER BY seq`)
	var out []storedEvent
	var e storedEvent
	var payload []byte
	if _, err := pgx.ForEachRow(rows, []any{&e.seq, &e.key, &e.kind, &e.player, &e.cell, &payload}, func() error {
		c := e
		c.payload = invPayload{}
		if err := json.Unmarshal(payload, &c.payload); err != nil {
			return fmt.Errorf("event %d payload %s: %v", e.seq, payload, err)
		}
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustCreatePlayers(t testing.TB, pg *PG, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		if err := pg.CreatePlayer(context.Background(), id, fmt.Sprint("acct", id)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustCreateItem(t testing.TB, pg *PG, it Item) {
	t.Helper()
	if err := pg.CreateItem(context.Background(), it); err != nil {
		t.Fatal(err)
	}
}

func movedString(ms []ItemMove) string { return fmt.Sprint(ms) }

// TestInventoryOperations: each operation's effects, refusals and argument checks.
func TestInventoryOperations(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2, 3)
	mustCreateItem(t, pg, Item{ID: 10, Kind: "sword", Owner: 1, Attributes: json.RawMessage(`{"dmg": 7}`)})
	mustCreateItem(t, pg, Item{ID: 11, Kind: "coin", Cell: 5, X: 1, Y: 0, Z: 2})
	mustCreateItem(t, pg, Item{ID: 12, Kind: "potion", Owner: 2})
	mustCreateItem(t, pg, Item{ID: 13, Kind: "gem", Owner: 2})

	step := func(name string, out InvOutcome, err error, wantErr error, wantMoved string) {
		t.Helper()
		if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", name, err, wantErr)
		}
		if out.Replayed {
			t.Errorf("%s: replayed on its first call", name)
		}
		if out.Seq == 0 {
			t.Errorf("%s: no event", name)
		}
		if got := movedString(out.Moved); got != wantMoved {
			t.Errorf("%s: moved %s, want %s", name, got, wantMoved)
		}
	}
	out, err := pg.Loot(ctx, "k1", 3, 11, nil)
	step("loot", out, err, nil, "[{11 coin 3 2}]")
	inv, err := pg.Inventory(ctx, 3)
	if err != nil || len(inv) != 1 || inv[0].ID != 11 || inv[0].Kind != "coin" || inv[0].Version != 2 || inv[0].Owner != 3 {
		t.Fatalf("inventory of 3 after the loot: %+v, %v", inv, err)
	}
	out, err = pg.Loot(ctx, "k2", 1, 11, nil)
	step("loot of a held item", out, err, ErrItemGone, "[]")
	out, err = pg.Loot(ctx, "k3", 1, 999, nil)
	step("loot of no item", out, err, ErrItemGone, "[]")

	out, err = pg.Drop(ctx, "k4", 1, 10, 7, 1.5, 2, -3)
	step("drop", out, err, nil, "[{10 sword 0 2}]")
	var x, y, z float64
	var cell int64
	var attrs string
	if err := pg.pool.QueryRow(ctx, `SELECT cell, x, y, z, attributes::text FROM items WHERE id = 10 AND owner IS NULL`).Scan(&cell, &x, &y, &z, &attrs); err != nil ||
		cell != 7 || x != 1.5 || y != 2 || z != -3 || attrs != `{"dmg": 7}` {
		t.Errorf("dropped item: cell %d at (%v, %v, %v), %s, %v", cell, x, y, z, attrs, err)
	}
	out, err = pg.Drop(ctx, "k5", 1, 10, 7, 0, 0, 0)
	step("drop of a ground item", out, err, ErrNotOwner, "[]")
	out, err = pg.Drop(ctx, "k6", 2, 11, 7, 0, 0, 0)
	step("drop of another's item", out, err, ErrNotOwner, "[]")

	out, err = pg.Give(ctx, "k7", 2, 1, 12)
	step("give", out, err, nil, "[{12 potion 1 2}]")
	out, err = pg.Give(ctx, "k8", 2, 1, 12)
	step("give of a given item", out, err, ErrNotOwner, "[]")
	out, err = pg.Give(ctx, "k8b", 2, 1, 998)
	step("give of no item", out, err, ErrItemGone, "[]")

	out, err = pg.Trade(ctx, "k9", 1, 2, []int64{12}, []int64{13})
	step("trade", out, err, nil, "[{12 potion 2 3} {13 gem 1 2}]")
	before := readItems(t, pg)
	out, err = pg.Trade(ctx, "k10", 1, 2, []int64{13}, []int64{12, 10}) // 10 lies on the ground
	step("trade of a ground item", out, err, ErrNotOwner, "[]")
	out, err = pg.Trade(ctx, "k10b", 1, 2, []int64{13, 12}, nil) // 12 is 2's
	step("trade of the other side's item", out, err, ErrNotOwner, "[]")
	if after := readItems(t, pg); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused trades changed items:\n%v\n%v", before, after)
	}
	out, err = pg.Trade(ctx, "k10c", 2, 1, nil, []int64{13}) // a gift: 1 gives 13 to 2
	step("one-sided trade", out, err, nil, "[{13 gem 2 3}]")

	// Unknown players: nothing applied, nothing recorded, the key stays free.
	if _, err := pg.Loot(ctx, "k11", 99, 10, nil); !errors.Is(err, ErrUnknownPlayer) {
		t.Errorf("loot by an unknown player: %v", err)
	}
	if _, err := pg.Give(ctx, "k12", 2, 99, 13); !errors.Is(err, ErrUnknownPlayer) {
		t.Errorf("give to an unknown player: %v", err)
	}
	if _, err := pg.Trade(ctx, "k12b", 98, 2, nil, []int64{13}); !errors.Is(err, ErrUnknownPlayer) {
		t.Errorf("trade with an unknown player: %v", err)
	}
	out, err = pg.Loot(ctx, "k11", 1, 10, nil)
	step("loot with the key of a loot by an unknown player", out, err, nil, "[{10 sword 1 3}]")
	if _, err := pg.Inventory(ctx, 99); !errors.Is(err, ErrUnknownPlayer) {
		t.Errorf("inventory of an unknown player: %v", err)
	}
	if inv, err := pg.Inventory(ctx, 3); err != nil || len(inv) != 1 {
		t.Errorf("inventory of 3: %v, %v", inv, err)
	}
	mustCreatePlayers(t, pg, 4)
	if inv, err := pg.Inventory(ctx, 4); err != nil || len(inv) != 0 {
		t.Errorf("inventory of an empty-handed player: %v, %v", inv, err)
	}

	// The log: one event per recorded key, with its kind, player, cell and outcome.
	evs := readEvents(t, pg)
	var keys []string
	for _, e := range evs {
		keys = append(keys, fmt.Sprintf("%s:%s:%s", e.key, e.kind, e.payload.Outcome))
	}
	want := []string{"k1:loot:ok", "k2:loot:item_gone", "k3:loot:item_gone", "k4:drop:ok", "k5:drop:not_owner",
		"k6:drop:not_owner", "k7:give:ok", "k8:give:not_owner", "k8b:give:item_gone", "k9:trade:ok",
		"k10:trade:not_owner", "k10b:trade:not_owner", "k10c:trade:ok", "k11:loot:ok"}
	if !slices.Equal(keys, want) {
		t.Errorf("events:\n got %v\nwant %v", keys, want)
	}
	if e := evs[0]; e.player == nil || *e.player != 3 || e.cell == nil || *e.cell != 5 {
		t.Errorf("the loot's event: player %v cell %v, want 3 and 5", e.player, e.cell)
	}
	if e := evs[3]; e.player == nil || *e.player != 1 || e.cell == nil || *e.cell != 7 || e.payload.Pos == nil || *e.payload.Pos != [3]float64{1.5, 2, -3} {
		t.Errorf("the drop's event: %+v", e)
	}
	if e := evs[10]; e.payload.Failed != 10 || !slices.Equal(e.payload.Items, []int64{13}) || !slices.Equal(e.payload.ItemsB, []int64{10, 12}) {
		t.Errorf("the refused trade's event: %+v", e.payload)
	}
	checkVersions(t, pg)

	counts, err := pg.CountItems(ctx)
	if err != nil || fmt.Sprint(counts) != "map[coin:1 gem:1 potion:1 sword:1]" {
		t.Errorf("CountItems: %v, %v", counts, err)
	}
}

// checkVersions: every item's version is 1 + the number of applied events that moved it.
func checkVersions(t testing.TB, pg *PG) {
	t.Helper()
	moves := map[int64]int64{}
	for _, e := range readEvents(t, pg) {
		for _, m := range e.payload.Moved {
			moves[m.ID]++
		}
	}
	for id, s := range readItems(t, pg) {
		if s.version != 1+moves[id] {
			t.Errorf("item %d: version %d after %d moves", id, s.version, moves[id])
		}
	}
}

func TestInventoryInvalid(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2)
	mustCreateItem(t, pg, Item{ID: 1, Kind: "k", Owner: 1})
	long := strings.Repeat("k", MaxEventKeyLen+1)
	many := make([]int64, MaxTradeItems+1)
	for i := range many {
		many[i] = int64(i + 100)
	}
	for name, call := range map[string]func() error{
		"empty key":       func() error { _, err := pg.Loot(ctx, "", 1, 1, nil); return err },
		"long key":        func() error { _, err := pg.Loot(ctx, long, 1, 1, nil); return err },
		"NUL in key":      func() error { _, err := pg.Loot(ctx, "a\x00b", 1, 1, nil); return err },
		"invalid UTF-8":   func() error { _, err := pg.Loot(ctx, "a\xffb", 1, 1, nil); return err },
		"player 0":        func() error { _, err := pg.Loot(ctx, "k", 0, 1, nil); return err },
		"item 0":          func() error { _, err := pg.Loot(ctx, "k", 1, 0, nil); return err },
		"near NaN x":      func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{X: math.NaN(), Reach: 1}); return err },
		"near Inf z":      func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{Z: math.Inf(-1), Reach: 1}); return err },
		"near huge cell":  func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{Cell: math.MaxInt64 + 1, Reach: 1}); return err },
		"reach 0":         func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{}); return err },
		"reach < 0":       func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{Reach: -2}); return err },
		"reach NaN":       func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{Reach: math.NaN()}); return err },
		"reach Inf":       func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{Reach: math.Inf(1)}); return err },
		"outcome no key":  func() error { _, _, _, err := pg.Outcome(ctx, ""); return err },
		"outcome NUL key": func() error { _, _, _, err := pg.Outcome(ctx, "a\x00"); return err },
		"drop NaN":        func() error { _, err := pg.Drop(ctx, "k", 1, 1, 1, math.NaN(), 0, 0); return err },
		"drop Inf":        func() error { _, err := pg.Drop(ctx, "k", 1, 1, 1, 0, 0, math.Inf(1)); return err },
		"drop huge cell":  func() error { _, err := pg.Drop(ctx, "k", 1, 1, math.MaxInt64+1, 0, 0, 0); return err },
		"give to self":    func() error { _, err := pg.Give(ctx, "k", 1, 1, 1); return err },
		"give to 0":       func() error { _, err := pg.Give(ctx, "k", 1, 0, 1); return err },
		"trade with self": func() error { _, err := pg.Trade(ctx, "k", 1, 1, []int64{1}, nil); return err },
		"empty trade":     func() error { _, err := pg.Trade(ctx, "k", 1, 2, nil, []int64{}); return err },
		"item twice":      func() error { _, err := pg.Trade(ctx, "k", 1, 2, []int64{1}, []int64{1}); return err },
		"item twice a":    func() error { _, err := pg.Trade(ctx, "k", 1, 2, []int64{1, 1}, nil); return err },
		"trade item 0":    func() error { _, err := pg.Trade(ctx, "k", 1, 2, []int64{1}, []int64{0}); return err },
		"big trade":       func() error { _, err := pg.Trade(ctx, "k", 1, 2, many, nil); return err },
		"item id 0":       func() error { return pg.CreateItem(ctx, Item{ID: 0, Kind: "k", Owner: 1}) },
		"item no kind":    func() error { return pg.CreateItem(ctx, Item{ID: 5, Owner: 1}) },
		"item both":       func() error { return pg.CreateItem(ctx, Item{ID: 5, Kind: "k", Owner: 1, Cell: 3}) },
		"item NaN":        func() error { return pg.CreateItem(ctx, Item{ID: 5, Kind: "k", X: math.NaN()}) },
		"item attrs": func() error {
			return pg.CreateItem(ctx, Item{ID: 5, Kind: "k", Owner: 1, Attributes: json.RawMessage(`[]`)})
		},
		"item exists":    func() error { return pg.CreateItem(ctx, Item{ID: 1, Kind: "k", Owner: 2}) },
		"player exists":  func() error { return pg.CreatePlayer(ctx, 1, "other") },
		"account exists": func() error { return pg.CreatePlayer(ctx, 3, "acct1") },
	} {
		if err := call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if err := pg.CreateItem(ctx, Item{ID: 5, Kind: "k", Owner: 77}); !errors.Is(err, ErrUnknownPlayer) {
		t.Errorf("an item of an unknown player: %v", err)
	}
	if evs := readEvents(t, pg); len(evs) != 0 {
		t.Errorf("invalid calls recorded %d events", len(evs))
	}
	if s := readItems(t, pg); len(s) != 1 || s[1].version != 1 || s[1].owner != 1 {
		t.Errorf("items after invalid calls: %v", s)
	}
}

// TestInventoryIdempotency: a key applies once; a retry returns the recorded outcome even
// after the state changed; a key reused for another request is refused.
func TestInventoryIdempotency(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2, 3)
	mustCreateItem(t, pg, Item{ID: 10, Kind: "sword", Owner: 1})
	mustCreateItem(t, pg, Item{ID: 11, Kind: "shield", Owner: 2})
	mustCreateItem(t, pg, Item{ID: 12, Kind: "coin", Cell: 1})

	first, err := pg.Give(ctx, "gA", 1, 2, 10)
	if err != nil || first.Replayed {
		t.Fatal(first, err)
	}
	if _, err := pg.Give(ctx, "gB", 2, 3, 10); err != nil { // the state moves on
		t.Fatal(err)
	}
	again, err := pg.Give(ctx, "gA", 1, 2, 10)
	if err != nil || !again.Replayed || again.Seq != first.Seq || movedString(again.Moved) != movedString(first.Moved) {
		t.Errorf("retry of gA: %+v, %v; want a replay of %+v", again, err, first)
	}
	if s := readItems(t, pg)[10]; s.owner != 3 || s.version != 3 {
		t.Errorf("item 10 after the retry: %+v, want owner 3 version 3", s)
	}

	// A refusal is replayed as a refusal, even once the operation would succeed.
	refused, err := pg.Give(ctx, "gC", 1, 2, 10)
	if !errors.Is(err, ErrNotOwner) {
		t.Fatal(err)
	}
	if _, err := pg.Give(ctx, "gD", 3, 1, 10); err != nil {
		t.Fatal(err)
	}
	again, err = pg.Give(ctx, "gC", 1, 2, 10)
	if !errors.Is(err, ErrNotOwner) || !again.Replayed || again.Seq != refused.Seq {
		t.Errorf("retry of the refused gC: %+v, %v", again, err)
	}
	if s := readItems(t, pg)[10]; s.owner != 1 {
		t.Errorf("the refused gC's retry moved item 10: %+v", s)
	}

	// Trades: the same items in another order are the same request.
	tr, err := pg.Trade(ctx, "tA", 1, 2, []int64{10}, []int64{11})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := pg.Trade(ctx, "tA", 1, 2, []int64{10}, []int64{11}); err != nil || again.Seq != tr.Seq || !again.Replayed {
		t.Errorf("trade retry: %+v, %v", again, err)
	}
	lt, err := pg.Loot(ctx, "lA", 3, 12, nil)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := pg.Drop(ctx, "dA", 3, 12, 4, 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := pg.Loot(ctx, "lA", 3, 12, nil); err != nil || again.Seq != lt.Seq || !again.Replayed {
		t.Errorf("loot retry: %+v, %v", again, err)
	}
	if again, err := pg.Drop(ctx, "dA", 3, 12, 4, 1, 2, 3); err != nil || again.Seq != dr.Seq || !again.Replayed {
		t.Errorf("drop retry: %+v, %v", again, err)
	}

	// Another event under the key, outside this file's operations.
	if _, err := pg.pool.Exec(ctx, `INSERT INTO events (idem_key, kind, payload) VALUES ('ext', 'death', '{"x": 1}')`); err != nil {
		t.Fatal(err)
	}
	before, evBefore := readItems(t, pg), len(readEvents(t, pg))
	for name, call := range map[string]func() error{
		"give to another":     func() error { _, err := pg.Give(ctx, "gA", 1, 3, 10); return err },
		"give another item":   func() error { _, err := pg.Give(ctx, "gA", 1, 2, 11); return err },
		"give from another":   func() error { _, err := pg.Give(ctx, "gA", 3, 2, 10); return err },
		"loot under a give":   func() error { _, err := pg.Loot(ctx, "gA", 1, 10, nil); return err },
		"trade other items":   func() error { _, err := pg.Trade(ctx, "tA", 1, 2, []int64{10, 12}, []int64{11}); return err },
		"trade sides swapped": func() error { _, err := pg.Trade(ctx, "tA", 2, 1, []int64{11}, []int64{10}); return err },
		"trade items swapped": func() error { _, err := pg.Trade(ctx, "tA", 1, 2, []int64{11}, []int64{10}); return err },
		"drop elsewhere":      func() error { _, err := pg.Drop(ctx, "dA", 3, 12, 5, 1, 2, 3); return err },
		"drop other position": func() error { _, err := pg.Drop(ctx, "dA", 3, 12, 4, 1, 2, 3.5); return err },
		"loot another item":   func() error { _, err := pg.Loot(ctx, "lA", 3, 10, nil); return err },
		"foreign event":       func() error { _, err := pg.Loot(ctx, "ext", 1, 12, nil); return err },
	} {
		if err := call(); !errors.Is(err, ErrDuplicateKeyMismatch) {
			t.Errorf("%s: %v, want ErrDuplicateKeyMismatch", name, err)
		}
	}
	if after := readItems(t, pg); fmt.Sprint(after) != fmt.Sprint(before) || len(readEvents(t, pg)) != evBefore {
		t.Errorf("refused key reuses changed something")
	}
	checkVersions(t, pg)
}

// TestInventorySameKeyConcurrent: many calls with one key at once apply once and all return
// the one outcome.
func TestInventorySameKeyConcurrent(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2)
	for id := int64(1); id <= 4; id++ {
		mustCreateItem(t, pg, Item{ID: id, Kind: "gem", Owner: 1 + (id-1)%2})
	}
	for round := range 5 {
		key := fmt.Sprint("same-", round)
		a, b := int64(1+round%2), int64(2-round%2)
		var ia, ib []int64
		for id, s := range readItems(t, pg) {
			if s.owner == a {
				ia = append(ia, id)
			} else {
				ib = append(ib, id)
			}
		}
		const n = 12
		outs := make([]InvOutcome, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				outs[i], errs[i] = pg.Trade(ctx, key, a, b, ia, ib)
			})
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d call %d: %v", round, i, errs[i])
			}
			if !outs[i].Replayed {
				fresh++
			}
			if outs[i].Seq != outs[0].Seq || movedString(outs[i].Moved) != movedString(outs[0].Moved) {
				t.Errorf("round %d: outcomes differ: %+v vs %+v", round, outs[i], outs[0])
			}
		}
		if fresh != 1 {
			t.Errorf("round %d: %d calls applied the trade, want 1", round, fresh)
		}
	}
	if evs := readEvents(t, pg); len(evs) != 5 {
		t.Errorf("%d events, want 5", len(evs))
	}
	for id, s := range readItems(t, pg) {
		if s.version != 6 {
			t.Errorf("item %d: version %d after 5 trades", id, s.version)
		}
	}
}

// TestInventoryUnavailable: with no server to reach, every call fails with ErrUnavailable.
func TestInventoryUnavailable(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig("host=" + t.TempDir() + " user=x dbname=x sslmode=disable connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // lazy: connects on first use
	if err != nil {
		t.Fatal(err)
	}
	pg := &PG{pool: pool}
	defer pg.Close()
	start := time.Now()
	for name, call := range map[string]func() error{
		"loot":   func() error { _, err := pg.Loot(ctx, "k", 1, 1, nil); return err },
		"drop":   func() error { _, err := pg.Drop(ctx, "k", 1, 1, 1, 0, 0, 0); return err },
		"give":   func() error { _, err := pg.Give(ctx, "k", 1, 2, 1); return err },
		"trade":  func() error { _, err := pg.Trade(ctx, "k", 1, 2, []int64{1}, nil); return err },
		"player": func() error { return pg.CreatePlayer(ctx, 1, "a") },
		"item":   func() error { return pg.CreateItem(ctx, Item{ID: 1, Kind: "k", Owner: 1}) },
		"inv":    func() error { _, err := pg.Inventory(ctx, 1); return err },
		"count":  func() error { _, err := pg.CountItems(ctx); return err },
		"outcome": func() error {
			out, refusal, found, err := pg.Outcome(ctx, "k")
			if found || refusal != nil || out.Seq != 0 {
				t.Errorf("outcome while unreachable: %+v, %v, found %v", out, refusal, found)
			}
			return err
		},
		"near": func() error { _, err := pg.Loot(ctx, "k", 1, 1, &Near{Cell: 1, Reach: 1}); return err },
		"timeout": func() error {
			c, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			_, err := pg.Loot(c, "k", 1, 1, nil)
			return err
		},
	} {
		if err := call(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		} else if name == "loot" {
			t.Logf("loot: %v", err)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the calls took %v", d)
	}
	// The caller giving up is the caller's error, not PostgreSQL's.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := pg.Loot(cctx, "k", 1, 1, nil); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("a cancelled call: %v, want context.Canceled", err)
	}
}

// setInvFault installs f as the fault hook for the test's duration.
func setInvFault(t *testing.T, f func(ctx context.Context, conn *pgx.Conn) error) {
	invFault.Store(&f)
	t.Cleanup(func() { invFault.Store(nil) })
}

// TestInventoryConnectionLost: the connection dies (the server terminates the backend) or
// the caller gives up after the writes and before COMMIT: nothing is applied or recorded,
// and the retry with the same key applies once.
func TestInventoryConnectionLost(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2)
	mustCreateItem(t, pg, Item{ID: 1, Kind: "gem", Owner: 1})
	mustCreateItem(t, pg, Item{ID: 2, Kind: "ore", Owner: 2})
	before := readItems(t, pg)

	var fired atomic.Int32
	setInvFault(t, func(ctx context.Context, conn *pgx.Conn) error {
		if fired.Add(1) > 1 {
			return nil
		}
		_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		return err
	})
	_, err := pg.Trade(ctx, "lost", 1, 2, []int64{1}, []int64{2})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("trade on a terminated connection: %v, want ErrUnavailable", err)
	}
	t.Logf("terminated: %v", err)
	if after := readItems(t, pg); fmt.Sprint(after) != fmt.Sprint(before) || len(readEvents(t, pg)) != 0 {
		t.Fatalf("a lost transaction left changes: %v", after)
	}
	out, err := pg.Trade(ctx, "lost", 1, 2, []int64{1}, []int64{2})
	if err != nil || out.Replayed {
		t.Fatalf("retry: %+v, %v", out, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	setInvFault(t, func(ctx context.Context, conn *pgx.Conn) error {
		cancel()
		_, err := conn.Exec(ctx, `SELECT 1`)
		return err
	})
	before = readItems(t, pg)
	if _, err := pg.Give(cctx, "cancelled", 1, 2, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("give cancelled before commit: %v", err)
	}
	invFault.Store(nil)
	if after := readItems(t, pg); fmt.Sprint(after) != fmt.Sprint(before) || len(readEvents(t, pg)) != 1 {
		t.Fatalf("a cancelled transaction left changes: %v", after)
	}
	if out, err := pg.Give(ctx, "cancelled", 1, 2, 2); err != nil || out.Replayed {
		t.Fatalf("retry after the cancel: %+v, %v", out, err)
	}
	if s := readItems(t, pg); s[1].owner != 2 || s[2].owner != 2 || s[1].version != 2 || s[2].version != 3 {
		t.Errorf("items: %v", s)
	}
	checkVersions(t, pg)
}

// callResult is one call's answer, as the conservation test compares them.
type callResult struct {
	seq      int64
	replayed bool
	moved    string
	err      error
}

// refusalOf names the sentinel err wraps ("" for none), failing on anything unexpected.
func refusalOf(t testing.TB, err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotOwner):
		return outcomeNotOwner
	case errors.Is(err, ErrItemGone):
		return outcomeGone
	}
	t.Errorf("unexpected error: %v", err)
	return "error"
}

// TestInventoryConservation: 8 goroutines run 2 000 random trades, gives, loots and drops
// among 20 players and 200 items, a quarter of them retried with the same key (half of those
// concurrently). Afterwards the items of each kind are as many as before, each is held or on
// the ground, the log holds one event per key, every caller of a key got the same outcome,
// and replaying the log's applied moves in order from the initial state gives exactly the
// final state (owners, cells, versions) — every move took an item from where it was.
func TestInventoryConservation(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultPGConfig()
	cfg.MaxConns = 12
	pg, err := OpenPG(ctx, pgtest.URL(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	const (
		players    = 20
		items      = 200
		workers    = 8
		ops        = 2000
		groundCell = 3
	)
	kinds := []string{"sword", "shield", "coin", "gem", "potion"}
	for p := int64(1); p <= players; p++ {
		mustCreatePlayers(t, pg, p)
	}
	initial := map[int64]invState{}
	for id := int64(1); id <= items; id++ {
		it := Item{ID: id, Kind: kinds[id%int64(len(kinds))]}
		if id%4 == 0 {
			it.Cell, it.X = groundCell, float64(id)
		} else {
			it.Owner = 1 + id%players
		}
		mustCreateItem(t, pg, it)
		initial[id] = invState{owner: it.Owner, cell: -1, version: 1, kind: it.Kind}
		if it.Owner == 0 {
			initial[id] = invState{cell: groundCell, version: 1, kind: it.Kind}
		}
	}
	wantCounts, err := pg.CountItems(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// guess: where the workers believe each item is (approximate under concurrency).
	var mu sync.Mutex
	guess := map[int64]int64{}
	for id, s := range initial {
		guess[id] = s.owner
	}
	results := map[string][]callResult{}
	record := func(key string, out InvOutcome, err error) {
		mu.Lock()
		defer mu.Unlock()
		results[key] = append(results[key], callResult{out.Seq, out.Replayed, movedString(out.Moved), err})
		for _, m := range out.Moved {
			guess[m.ID] = m.Owner
		}
	}
	pick := func(rng *rand.Rand, owner int64) int64 { // an item believed held by owner (0: on the ground)
		mu.Lock()
		defer mu.Unlock()
		for range 20 {
			id := 1 + rng.Int64N(items)
			if guess[id] == owner {
				return id
			}
		}
		return 1 + rng.Int64N(items)
	}
	var stats [4]atomic.Int64 // ok, not owner, gone, retries
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := range ops / workers {
				key := fmt.Sprintf("w%d-%d", w, i)
				a := 1 + rng.Int64N(players)
				b := 1 + (a+rng.Int64N(players-1))%players // ≠ a
				var call func() (InvOutcome, error)
				switch r := rng.IntN(100); {
				case r < 35:
					var ia, ib []int64
					for range rng.IntN(3) {
						ia = append(ia, pick(rng, a))
					}
					for range 1 + rng.IntN(2) {
						ib = append(ib, pick(rng, b))
					}
					ia, ib = dedup(ia, nil), dedup(ib, ia)
					if len(ib) == 0 {
						ib = []int64{pick(rng, b)}
						if slices.Contains(ia, ib[0]) {
							ia = nil
						}
					}
					call = func() (InvOutcome, error) { return pg.Trade(ctx, key, a, b, ia, ib) }
				case r < 60:
					id := pick(rng, a)
					call = func() (InvOutcome, error) { return pg.Give(ctx, key, a, b, id) }
				case r < 80:
					id := pick(rng, 0)
					call = func() (InvOutcome, error) { return pg.Loot(ctx, key, a, id, nil) }
				default:
					id := pick(rng, a)
					x := float64(rng.IntN(1000)) / 8
					call = func() (InvOutcome, error) { return pg.Drop(ctx, key, a, id, groundCell, x, 0, -x) }
				}
				switch r := rng.IntN(8); {
				case r == 0: // retried concurrently
					var inner sync.WaitGroup
					for range 2 {
						inner.Go(func() {
							out, err := call()
							record(key, out, err)
						})
					}
					inner.Wait()
					stats[3].Add(1)
				case r == 1: // retried after the answer
					out, err := call()
					record(key, out, err)
					out, err = call()
					record(key, out, err)
					stats[3].Add(1)
				default:
					out, err := call()
					record(key, out, err)
				}
			}
		})
	}
	wg.Wait()

	// Every caller of a key got the same answer; one of them applied it.
	outcomeOf := map[string]string{} // key → outcome
	seqOf := map[int64]string{}
	for key, rs := range results {
		fresh := 0
		for _, r := range rs {
			if !r.replayed {
				fresh++
			}
			if r.seq != rs[0].seq || r.moved != rs[0].moved || refusalOf(t, r.err) != refusalOf(t, rs[0].err) {
				t.Errorf("key %s: answers differ: %+v", key, rs)
			}
		}
		if fresh != 1 {
			t.Errorf("key %s: %d of %d calls applied it, want 1", key, fresh, len(rs))
		}
		o := refusalOf(t, rs[0].err)
		if o == "" {
			o = outcomeOK
		}
		outcomeOf[key] = o
		seqOf[rs[0].seq] = key
		switch o {
		case outcomeOK:
			stats[0].Add(1)
		case outcomeNotOwner:
			stats[1].Add(1)
		default:
			stats[2].Add(1)
		}
	}
	if len(results) != ops {
		t.Errorf("%d keys answered, want %d", len(results), ops)
	}
	t.Logf("%d operations: %d applied, %d refused not owner, %d refused gone; %d retried with their key",
		ops, stats[0].Load(), stats[1].Load(), stats[2].Load(), stats[3].Load())
	if stats[0].Load() < ops/5 {
		t.Errorf("only %d operations applied: the test exercises too little", stats[0].Load())
	}

	// Conservation.
	if got, err := pg.CountItems(ctx); err != nil || fmt.Sprint(got) != fmt.Sprint(wantCounts) {
		t.Errorf("items per kind: %v, %v; want %v", got, err, wantCounts)
	}
	var bad int
	if err := pg.pool.QueryRow(ctx, `SELECT count(*) FROM items i
		WHERE (owner IS NULL) = (cell IS NULL) OR (owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM players p WHERE p.id = i.owner))`).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("%d items without exactly one owner or ground cell, %v", bad, err)
	}

	// The log: one event per key, as answered; replayed in order, it rebuilds the state.
	evs := readEvents(t, pg)
	if len(evs) != ops {
		t.Errorf("%d events for %d keys", len(evs), ops)
	}
	state := maps.Clone(initial)
	for _, e := range evs {
		if seqOf[e.seq] != e.key || outcomeOf[e.key] != e.payload.Outcome || e.kind != e.payload.Op {
			t.Errorf("event %d (%s, %s, %s): the callers were told %q, %s", e.seq, e.key, e.kind, e.payload.Outcome, seqOf[e.seq], outcomeOf[e.key])
		}
		p := e.payload
		from := func(id int64) int64 { // where the operation takes id from
			switch {
			case p.Op == EventLoot:
				return 0
			case p.Op == EventTrade && slices.Contains(p.ItemsB, id):
				return p.To
			}
			return p.Player
		}
		if p.Outcome != outcomeOK {
			s, ok := state[p.Failed]
			if ok && s.owner == from(p.Failed) {
				t.Errorf("event %d (%s) refused item %d, which was where it had to be: %+v", e.seq, p.Outcome, p.Failed, s)
			}
			continue
		}
		for _, m := range p.Moved {
			s := state[m.ID]
			if s.owner != from(m.ID) || m.Version != s.version+1 {
				t.Errorf("event %d (%s) moved item %d from %d at version %d; it was %+v", e.seq, p.Op, m.ID, from(m.ID), m.Version, s)
			}
			s.owner, s.version, s.cell = m.Owner, m.Version, -1
			if m.Owner == 0 {
				s.cell = int64(*p.Cell)
			}
			state[m.ID] = s
		}
	}
	if final := readItems(t, pg); fmt.Sprint(final) != fmt.Sprint(state) {
		t.Errorf("the log's replay differs from the final state")
		for id, s := range final {
			if state[id] != s {
				t.Errorf("item %d: replay %+v, stored %+v", id, state[id], s)
			}
		}
	}
}

// dedup drops from ids the repeats and the ids of not.
func dedup(ids, not []int64) []int64 {
	var out []int64
	for _, id := range ids {
		if !slices.Contains(out, id) && !slices.Contains(not, id) {
			out = append(out, id)
		}
	}
	return out
}

// TestLootReach: with a Near, a loot is refused with ErrTooFar (recorded as "too_far", with
// the Near for audit) when the item lies in another cell or farther than the reach, measured
// in x/z; the reach is not part of the request, so a resend from another position replays.
func TestLootReach(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2)
	mustCreateItem(t, pg, Item{ID: 20, Kind: "coin", Cell: 5, X: 10, Y: 0, Z: 10})
	mustCreateItem(t, pg, Item{ID: 21, Kind: "coin", Cell: 5, X: 13, Y: 40, Z: 14}) // exactly 5 m away in x/z, 40 m up
	mustCreateItem(t, pg, Item{ID: 22, Kind: "gem", Cell: 6, X: 10, Y: 0, Z: 10})   // the same place, another cell
	mustCreateItem(t, pg, Item{ID: 23, Kind: "gem", Cell: 5, X: 15.001, Y: 0, Z: 10})
	mustCreateItem(t, pg, Item{ID: 25, Kind: "sword", Owner: 2})
	if _, err := pg.pool.Exec(ctx, `INSERT INTO items (id, cell, kind) VALUES (24, 5, 'relic')`); err != nil { // no position
		t.Fatal(err)
	}
	here := Near{Cell: 5, X: 10, Z: 10, Reach: 5}

	type want struct {
		err   error
		moved string
	}
	first := map[string]InvOutcome{}
	for _, c := range []struct {
		key  string
		item int64
		want want
	}{
		{"r-same-spot", 20, want{nil, "[{20 coin 1 2}]"}},
		{"r-at-reach", 21, want{nil, "[{21 coin 1 2}]"}},
		{"r-other-cell", 22, want{ErrTooFar, "[]"}},
		{"r-just-beyond", 23, want{ErrTooFar, "[]"}},
		{"r-no-position", 24, want{ErrTooFar, "[]"}},
		{"r-held", 25, want{ErrItemGone, "[]"}},    // gone is checked first
		{"r-missing", 99, want{ErrItemGone, "[]"}}, // and so is a missing item
	} {
		near := here
		out, err := pg.Loot(ctx, c.key, 1, c.item, &near)
		if !errors.Is(err, c.want.err) || (c.want.err == nil) != (err == nil) || out.Replayed || out.Seq == 0 ||
			movedString(out.Moved) != c.want.moved {
			t.Errorf("%s: %+v, %v; want moved %s, %v", c.key, out, err, c.want.moved, c.want.err)
		}
		if c.want.err == ErrTooFar && (errors.Is(err, ErrItemGone) || errors.Is(err, ErrNotOwner) || errors.Is(err, ErrUnavailable)) {
			t.Errorf("%s: %v wraps another sentinel too", c.key, err)
		}
		first[c.key] = out
	}
	s := readItems(t, pg)
	for id, owner := range map[int64]int64{20: 1, 21: 1, 22: 0, 23: 0, 24: 0, 25: 2} {
		if s[id].owner != owner {
			t.Errorf("item %d: %+v, want owner %d", id, s[id], owner)
		}
	}

	// The log: the refusals are recorded, each with where the looter stood.
	outcomes := map[string]string{}
	for _, e := range readEvents(t, pg) {
		outcomes[e.key] = e.payload.Outcome
		if e.payload.Near == nil || *e.payload.Near != here {
			t.Errorf("event %s: near %+v, want %+v", e.key, e.payload.Near, here)
		}
		if e.payload.Outcome == outcomeTooFar && (e.payload.Failed != e.payload.Items[0] || e.cell != nil || len(e.payload.Moved) != 0) {
			t.Errorf("event %s: %+v, cell %v", e.key, e.payload, e.cell)
		}
	}
	if want := "map[r-at-reach:ok r-held:item_gone r-just-beyond:too_far r-missing:item_gone r-no-position:too_far r-other-cell:too_far r-same-spot:ok]"; fmt.Sprint(outcomes) != want {
		t.Errorf("outcomes %v\nwant %v", outcomes, want)
	}

	// Resends from elsewhere (moved a little, in another cell now, or without a Near) replay
	// the first outcome: a refusal stays refused even where the item would be in reach, an
	// applied loot stays applied even from out of reach.
	evs := len(readEvents(t, pg))
	for _, c := range []struct {
		key  string
		item int64
		near *Near
	}{
		{"r-other-cell", 22, &Near{Cell: 6, X: 10, Z: 10, Reach: 5}},
		{"r-just-beyond", 23, &Near{Cell: 5, X: 14, Z: 10, Reach: 5}},
		{"r-just-beyond", 23, nil},
		{"r-same-spot", 20, &Near{Cell: 5, X: 10.4, Z: 9.7, Reach: 5}},
		{"r-same-spot", 20, &Near{Cell: 9, X: 500, Z: 500, Reach: 0.5}},
		{"r-at-reach", 21, nil},
	} {
		out, err := pg.Loot(ctx, c.key, 1, c.item, c.near)
		f := first[c.key]
		if !out.Replayed || out.Seq != f.Seq || movedString(out.Moved) != movedString(f.Moved) {
			t.Errorf("resend of %s from %+v: %+v, %v; want a replay of %+v", c.key, c.near, out, err, f)
		}
		if wantErr := outcomes[c.key] == outcomeTooFar; errors.Is(err, ErrTooFar) != wantErr || (err == nil) == wantErr {
			t.Errorf("resend of %s from %+v: %v", c.key, c.near, err)
		}
	}
	// ... but another item or looter under the key is another request.
	if _, err := pg.Loot(ctx, "r-other-cell", 1, 23, &here); !errors.Is(err, ErrDuplicateKeyMismatch) {
		t.Errorf("another item under a too_far key: %v", err)
	}
	if _, err := pg.Loot(ctx, "r-same-spot", 2, 20, &here); !errors.Is(err, ErrDuplicateKeyMismatch) {
		t.Errorf("another looter under the key: %v", err)
	}
	if n := len(readEvents(t, pg)); n != evs {
		t.Errorf("resends recorded %d events", n-evs)
	}

	// A fresh key from where the item is in reach takes it; no Near takes it from anywhere.
	if out, err := pg.Loot(ctx, "r-there", 2, 22, &Near{Cell: 6, X: 7, Z: 6, Reach: 5}); err != nil || movedString(out.Moved) != "[{22 gem 2 2}]" {
		t.Errorf("loot in reach in cell 6: %+v, %v", out, err)
	}
	if out, err := pg.Loot(ctx, "r-admin", 2, 24, nil); err != nil || movedString(out.Moved) != "[{24 relic 2 2}]" {
		t.Errorf("loot without a Near: %+v, %v", out, err)
	}
	checkVersions(t, pg)
}

// TestInventoryOutcome: Outcome reads back, by key alone, what each operation's first call
// returned — applied or refused — and nothing for an unrecorded key; a key of another kind of
// event is a mismatch. It changes nothing.
func TestInventoryOutcome(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	mustCreatePlayers(t, pg, 1, 2)
	mustCreateItem(t, pg, Item{ID: 1, Kind: "sword", Owner: 1})
	mustCreateItem(t, pg, Item{ID: 2, Kind: "shield", Owner: 2})
	mustCreateItem(t, pg, Item{ID: 3, Kind: "coin", Cell: 4, X: 1, Z: 1})
	mustCreateItem(t, pg, Item{ID: 4, Kind: "gem", Cell: 4, X: 50, Z: 50})

	type call struct {
		out InvOutcome
		err error
	}
	firsts := map[string]call{}
	run := func(key string, out InvOutcome, err error) {
		t.Helper()
		if out.Seq == 0 {
			t.Fatalf("%s: %v, not recorded", key, err)
		}
		firsts[key] = call{out, err}
	}
	out, err := pg.Loot(ctx, "o-loot", 1, 3, &Near{Cell: 4, Reach: 2})
	run("o-loot", out, err)
	out, err = pg.Give(ctx, "o-give", 1, 2, 1)
	run("o-give", out, err)
	out, err = pg.Trade(ctx, "o-trade", 2, 1, []int64{1, 2}, nil)
	run("o-trade", out, err)
	out, err = pg.Drop(ctx, "o-drop", 1, 3, 4, 2, 0, 2)
	run("o-drop", out, err)
	out, err = pg.Give(ctx, "o-not-owner", 2, 1, 2) // the trade gave 2 to 1
	run("o-not-owner", out, err)
	out, err = pg.Loot(ctx, "o-gone", 2, 1, nil)
	run("o-gone", out, err)
	out, err = pg.Loot(ctx, "o-too-far", 2, 4, &Near{Cell: 4, Reach: 2})
	run("o-too-far", out, err)
	sentinel := map[string]error{"o-loot": nil, "o-give": nil, "o-trade": nil, "o-drop": nil,
		"o-not-owner": ErrNotOwner, "o-gone": ErrItemGone, "o-too-far": ErrTooFar}
	for key, want := range sentinel {
		if got := firsts[key].err; !errors.Is(got, want) || (want == nil) != (got == nil) {
			t.Fatalf("%s: %v, want %v", key, got, want)
		}
	}
	if _, err := pg.Loot(ctx, "o-unknown-player", 77, 4, nil); !errors.Is(err, ErrUnknownPlayer) {
		t.Fatal(err)
	}
	if _, err := pg.pool.Exec(ctx, `INSERT INTO events (idem_key, kind, player, payload) VALUES
		('o-death', 'death', 1, '{"hp": 0}'), ('o-garbled', 'give', 1, '{"op": "give", "outcome": "maybe"}')`); err != nil {
		t.Fatal(err)
	}
	items, evs := readItems(t, pg), len(readEvents(t, pg))

	for key, first := range firsts {
		out, refusal, found, err := pg.Outcome(ctx, key)
		if err != nil || !found {
			t.Errorf("Outcome(%s): found %v, %v", key, found, err)
			continue
		}
		if !out.Replayed || out.Seq != first.out.Seq || movedString(out.Moved) != movedString(first.out.Moved) {
			t.Errorf("Outcome(%s): %+v, want %+v replayed", key, out, first.out)
		}
		// The refusal is wrapped as the operation's own retry returns it.
		var retryErr error
		switch key {
		case "o-not-owner":
			_, retryErr = pg.Give(ctx, key, 2, 1, 2)
		case "o-gone":
			_, retryErr = pg.Loot(ctx, key, 2, 1, nil)
		case "o-too-far":
			_, retryErr = pg.Loot(ctx, key, 2, 4, nil)
		}
		if want := sentinel[key]; !errors.Is(refusal, want) || (want == nil) != (refusal == nil) ||
			retryErr != nil && refusal.Error() != retryErr.Error() {
			t.Errorf("Outcome(%s): refusal %v; first call %v, retry %v", key, refusal, first.err, retryErr)
		}
	}
	for _, key := range []string{"o-never", "o-unknown-player"} {
		if out, refusal, found, err := pg.Outcome(ctx, key); found || refusal != nil || err != nil || out.Seq != 0 || out.Replayed || out.Moved != nil {
			t.Errorf("Outcome(%s), nothing recorded: %+v, %v, found %v, %v", key, out, refusal, found, err)
		}
	}
	for key, want := range map[string]error{"o-death": ErrDuplicateKeyMismatch, "o-garbled": ErrCorrupt} {
		if out, refusal, found, err := pg.Outcome(ctx, key); !errors.Is(err, want) || found || refusal != nil || out.Seq != 0 {
			t.Errorf("Outcome(%s): %+v, %v, found %v, %v; want %v", key, out, refusal, found, err, want)
		}
	}
	if fmt.Sprint(readItems(t, pg)) != fmt.Sprint(items) || len(readEvents(t, pg)) != evs {
		t.Error("Outcome changed items or events")
	}
	// A key left free by the unknown player can still be used, and then has an outcome.
	if _, err := pg.Loot(ctx, "o-unknown-player", 2, 4, nil); err != nil {
		t.Fatal(err)
	}
	if out, refusal, found, err := pg.Outcome(ctx, "o-unknown-player"); !found || err != nil || refusal != nil || movedString(out.Moved) != "[{4 gem 2 2}]" {
		t.Errorf("Outcome after the key was used: %+v, %v, found %v, %v", out, refusal, found, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := pg.Outcome(cctx, "o-loot"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("a cancelled Outcome: %v, want context.Canceled", err)
	}
}

// TestOutcomeServerDown: with PostgreSQL stopped, Outcome fails with ErrUnavailable (not
// "nothing recorded"); once it is back, the recorded outcome is read again.
func TestOutcomeServerDown(t *testing.T) {
	ctx := context.Background()
	cl := pgtest.NewCluster(t)
	pg, err := OpenPG(ctx, cl.URL(), DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	mustCreatePlayers(t, pg, 1)
	mustCreateItem(t, pg, Item{ID: 1, Kind: "coin", Cell: 2, X: 3, Z: 4})
	first, err := pg.Loot(ctx, "down", 1, 1, &Near{Cell: 2, Reach: 5})
	if err != nil {
		t.Fatal(err)
	}

	cl.Stop()
	for _, key := range []string{"down", "never"} {
		out, refusal, found, err := pg.Outcome(ctx, key)
		if !errors.Is(err, ErrUnavailable) || found || refusal != nil || out.Seq != 0 {
			t.Errorf("Outcome(%s) while stopped: %+v, %v, found %v, %v; want ErrUnavailable", key, out, refusal, found, err)
		}
		t.Logf("stopped: %v", err)
	}

	cl.Start()
	// The pool may still hold connections of the stopped server: each failed call drops one.
	var (
		out   InvOutcome
		found bool
	)
	for range DefaultPGConfig().MaxConns + 1 {
		out, _, found, err = pg.Outcome(ctx, "down")
		if !errors.Is(err, ErrUnavailable) {
			break
		}
	}
	if err != nil || !found || out.Seq != first.Seq || movedString(out.Moved) != movedString(first.Moved) {
		t.Errorf("Outcome after the restart: %+v, found %v, %v; want %+v", out, found, err, first)
	}
}

package persistcluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/internal/pgtest"
	"github.com/meridian-mmo/meridian/persistence"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
	"github.com/meridian-mmo/meridian/sim-tests/procs"
	"github.com/meridian-mmo/meridian/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var logDir = flag.String("persist.logs", "", "keep the processes' logs and data in this directory (default: a temporary one, removed after the test)")

const world = 200.0 // side of the square world, metres; with two servers the border is x = 100

var kinds = []string{"sword", "shield", "gem", "coin", "potion"}

// cluster is a running test cluster.
type cluster struct {
	t      *testing.T
	launch procs.Launcher
	mc     *metacluster.Cluster
	meta   *raftmeta.Client
	cells  []*procs.Process
	gw     *procs.Process
	gwAddr string
	mp     *raftmeta.Map
}

// cellArgs are the arguments cell server id was started with (to restart it).
func (c *cluster) cellArgs(id int, pgURL string) []string {
	return []string{"cell", "--id", strconv.Itoa(id), "--meta", strings.Join(c.mc.HTTPAddrs(), ","),
		"--data", filepath.Join(c.launch.Dir, fmt.Sprintf("cell%d", id)), "--peer", "127.0.0.1:0",
		"--pg-url", pgURL, "--checkpoint-every", "10", "--metrics-addr", c.cells[id-1].MetricsAddr}
}

// deaths returns the death events in the log, checking each names a player.
func deaths(t *testing.T, ctx context.Context, db *pgxpool.Pool) int {
	t.Helper()
	var n, unnamed int
	if err := db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE player IS NULL OR player < 1) FROM events WHERE kind = 'death'`).Scan(&n, &unnamed); err != nil {
		t.Fatal(err)
	}
	if unnamed != 0 {
		t.Errorf("%d death events name no player", unnamed)
	}
	return n
}

// startCluster starts 3 meta nodes, nCells cell servers persisting to pgURL (the world split at
// x = 100 between two of them) and a gateway linked to them.
func startCluster(t *testing.T, ctx context.Context, pgURL string, nCells int) *cluster {
	c := &cluster{t: t, launch: procs.Launcher{Dir: procs.TestDir(t, *logDir)}}
	c.mc = metacluster.StartArgs(t, 3, "--world", strconv.Itoa(world), "--partitioner=false")
	c.meta = raftmeta.NewClient(c.mc.HTTPAddrs(), nil)
	for i := 1; i <= nCells; i++ {
		c.cells = append(c.cells, c.launch.StartCell(t, i, c.mc.HTTPAddrs(), "--pg-url", pgURL, "--checkpoint-every", "10"))
	}
	t.Cleanup(func() {
		if t.Failed() {
			procs.LogTails(t, append([]*procs.Process{c.gw}, c.cells...)...)
		}
	})
	waitFor(t, 30*time.Second, "the cell servers registered", procs.CellsAlive(ctx, c.meta, nCells, &c.mp, func(m *raftmeta.Map) (bool, string) {
		return len(m.Cells) == 1 && m.Cells[0].Owner != 0, fmt.Sprintf("cells %+v", m.Cells)
	}))
	if nCells == 2 {
		whole := c.mp.Cells[0]
		other := raftmeta.ServerID(1)
		if whole.Owner == 1 {
			other = 2
		}
		if _, err := c.meta.Split(ctx, raftmeta.Split{Cell: whole.ID, Epoch: whole.Epoch, Axis: raftmeta.AxisX, At: world / 2, NewOwner: other}); err != nil {
			t.Fatalf("split: %v", err)
		}
		waitFor(t, 30*time.Second, "the split and move committed", func() (bool, string) {
			var err error
			if c.mp, err = c.meta.Map(ctx, raftmeta.ReadOptions{}); err != nil {
				return false, err.Error()
			}
			owners := map[raftmeta.ServerID]bool{}
			for _, cl := range c.mp.Cells {
				owners[cl.Owner] = true
			}
			return len(c.mp.Cells) == 2 && len(c.mp.Changes) == 0 && len(owners) == 2 && !owners[0],
				fmt.Sprintf("cells %+v, %d changes pending", c.mp.Cells, len(c.mp.Changes))
		})
	}
	c.gw, c.gwAddr = c.launch.StartGateway(t, c.mc.HTTPAddrs())
	waitFor(t, 30*time.Second, "the gateway linked to the cell servers", procs.GatewayLinked(ctx, c.gw, nCells, c.mp.Version))
	return c
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	procs.WaitFor(t, within, 100*time.Millisecond, what, cond)
}

// seed creates players 1..n with perPlayer items each; it returns the number of items of each
// kind.
func seed(t *testing.T, ctx context.Context, pg *persistence.PG, n, perPlayer int) map[string]int {
	t.Helper()
	want := map[string]int{}
	id := int64(0)
	for p := 1; p <= n; p++ {
		if _, _, err := pg.EnsurePlayer(ctx, int64(p), ""); err != nil {
			t.Fatal(err)
		}
		for range perPlayer {
			id++
			k := kinds[id%int64(len(kinds))]
			if err := pg.CreateItem(ctx, persistence.Item{ID: id, Kind: k, Owner: int64(p)}); err != nil {
				t.Fatal(err)
			}
			want[k]++
		}
	}
	return want
}

// seedGround drops n items with ids from first on, at random points of x in [70, 130] (around
// the border, where the patrols walk), each in the cell of the map that holds its point, and
// adds them to want.
func seedGround(t *testing.T, ctx context.Context, pg *persistence.PG, mp *raftmeta.Map, first int64, n int, want map[string]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 11))
	for id := first; id < first+int64(n); id++ {
		x, z := 70+60*rng.Float64(), world*rng.Float64()
		k := kinds[id%int64(len(kinds))]
		if err := pg.CreateItem(ctx, persistence.Item{ID: id, Kind: k, Cell: uint64(cellAt(mp, x, z)), X: x, Z: z}); err != nil {
			t.Fatal(err)
		}
		want[k]++
	}
}

// cellAt is the cell of the map holding (x, z).
func cellAt(mp *raftmeta.Map, x, z float64) raftmeta.CellID {
	for _, c := range mp.Cells {
		if b := c.Bounds; x >= b[0] && x < b[2] && z >= b[1] && z < b[3] {
			return c.ID
		}
	}
	return 0
}

// itemRow is an item's holder and version.
type itemRow struct {
	Owner   int64 // 0: on the ground
	Version int64
}

// groundItem is where an item on the ground lies.
type groundItem struct{ X, Z float64 }

func loadItems(ctx context.Context, db *pgxpool.Pool) (map[int64]itemRow, error) {
	items, _, err := loadItemsWhere(ctx, db)
	return items, err
}

func loadItemsWhere(ctx context.Context, db *pgxpool.Pool) (map[int64]itemRow, map[int64]groundItem, error) {
	rows, err := db.Query(ctx, `SELECT id, coalesce(owner, 0), version, coalesce(x, 0), coalesce(z, 0) FROM items`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out, ground := map[int64]itemRow{}, map[int64]groundItem{}
	for rows.Next() {
		var id int64
		var r itemRow
		var g groundItem
		if err := rows.Scan(&id, &r.Owner, &r.Version, &g.X, &g.Z); err != nil {
			return nil, nil, err
		}
		out[id] = r
		if r.Owner == 0 {
			ground[id] = g
		}
	}
	return out, ground, rows.Err()
}

// sentOp is an inventory operation a bot sent.
type sentOp struct {
	bot   int
	actor wire.EntityID
	seq   uint32
	op    wire.InventoryOp
}

// trader sends random inventory operations from random bots and collects their results.
type trader struct {
	t       *testing.T
	r       *bots.Runner
	n       int
	base    uint64 // bot i is player base+i
	db      *pgxpool.Pool
	rng     *rand.Rand
	mu      sync.Mutex
	sent    map[string]sentOp // by idempotency key
	results map[string]wire.InventoryResult
	dups    int
	attacks int
	codes   map[wire.InventoryCode]int
	items   map[int64]itemRow // belief, refreshed from PostgreSQL
	ground  map[int64]groundItem
	accepts []acceptance // trades offered, to accept when due
}

// acceptance is a trade bot i accepts at due, offered to it by the target's bot.
type acceptance struct {
	due    time.Time
	bot    int
	target wire.EntityID
	op     wire.InventoryOp
}

// lootReach is the cell servers' reach for loot (cellserver.DefaultPlayersConfig), a little less.
const lootReach = 7.5

func newTrader(t *testing.T, n int, base uint64, db *pgxpool.Pool) *trader {
	return &trader{t: t, n: n, base: base, db: db, rng: rand.New(rand.NewPCG(7, 7)),
		sent: map[string]sentOp{}, results: map[string]wire.InventoryResult{}, codes: map[wire.InventoryCode]int{}}
}

// onInteraction is the bots' OnInteraction hook.
func (tr *trader) onInteraction(i int, ia wire.Interaction) {
	if ia.Kind != wire.InteractInventoryResult {
		return
	}
	res, err := wire.DecodeInventoryResult(ia.Data)
	if err != nil {
		tr.t.Errorf("bot %d: undecodable inventory result: %v", i, err)
		return
	}
	key := cellserver.InventoryKey(ia.From, ia.Seq)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, dup := tr.results[key]; dup {
		tr.dups++
		return
	}
	tr.results[key] = res
	tr.codes[res.Code]++
}

// one sends one random operation: loot a ground item, drop, give or trade with another bot.
func (tr *trader) one(ctx context.Context) {
	i := tr.rng.IntN(tr.n)
	c := tr.r.Client(i)
	if c == nil || c.Entity() == 0 {
		return
	}
	me := int64(tr.base) + int64(i)
	var mine, ground []int64
	self, placed := c.Self()
	for id, it := range tr.items {
		switch it.Owner {
		case me:
			mine = append(mine, id)
		case 0:
			g := tr.ground[id]
			if placed && math.Hypot(g.X-wire.DequantisePos(self.X), g.Z-wire.DequantisePos(self.Z)) < lootReach {
				ground = append(ground, id)
			}
		}
	}
	slices.Sort(mine)
	slices.Sort(ground)
	pick := func(s []int64) uint64 { return uint64(s[tr.rng.IntN(len(s))]) }
	j := tr.rng.IntN(tr.n - 1)
	if j >= i {
		j++
	}
	other := tr.r.Client(j)
	var op wire.InventoryOp
	target := c.Entity()
	if victim := tr.r.Client(tr.rng.IntN(3)); tr.rng.IntN(5) == 0 && victim != nil && victim != c && victim.Entity() != 0 {
		// An attack on one of three victims: ten kill (cellserver.DefaultMemberConfig), a
		// death for the outbox.
		if _, err := c.SendInteract(victim.Entity(), wire.InteractAttack, nil); err == nil {
			tr.mu.Lock()
			tr.attacks++
			tr.mu.Unlock()
		}
		return
	}
	switch k := tr.rng.IntN(10); {
	case k < 3 && len(ground) > 0:
		op = wire.InventoryOp{Op: wire.InvLoot, Items: []uint64{pick(ground)}}
	case k < 4 && len(mine) > 0:
		op = wire.InventoryOp{Op: wire.InvDrop, Items: []uint64{pick(mine)}}
	case k < 7 && len(mine) > 0 && other != nil && other.Entity() != 0:
		op = wire.InventoryOp{Op: wire.InvGive, Items: []uint64{pick(mine)}}
		target = other.Entity()
	case len(mine) > 0 && other != nil && other.Entity() != 0:
		var theirs []int64
		for id, it := range tr.items {
			if it.Owner == int64(tr.base)+int64(j) {
				theirs = append(theirs, id)
			}
		}
		slices.Sort(theirs)
		if len(theirs) == 0 {
			return
		}
		// j offers one of its items for one of i's; i accepts 300 ms later.
		give, get := pick(theirs), pick(mine)
		offer, _ := (&wire.InventoryOp{Op: wire.InvTrade, Items: []uint64{give}, Want: []uint64{get}}).Append(nil)
		if _, err := other.SendInteract(c.Entity(), wire.InteractTrade, offer); err == nil {
			tr.accepts = append(tr.accepts, acceptance{due: time.Now().Add(300 * time.Millisecond), bot: i, target: other.Entity(),
				op: wire.InventoryOp{Op: wire.InvTrade, Items: []uint64{get}, Want: []uint64{give}}})
		}
		return
	default:
		return
	}
	tr.send(i, c, target, op)
}

// send sends bot i's inventory operation op aimed at target and records it.
func (tr *trader) send(i int, c *client.Client, target wire.EntityID, op wire.InventoryOp) {
	data, err := op.Append(nil)
	if err != nil {
		tr.t.Errorf("op %+v: %v", op, err)
		return
	}
	actor := c.Entity()
	seq, err := c.SendInteract(target, wire.InteractInventory, data)
	if err != nil {
		return // the session ended
	}
	tr.mu.Lock()
	tr.sent[cellserver.InventoryKey(actor, seq)] = sentOp{bot: i, actor: actor, seq: seq, op: op}
	tr.mu.Unlock()
}

// run sends an operation every 20 ms, refreshing its belief of who holds what every 300 ms,
// until ctx ends.
func (tr *trader) run(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var refreshed time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(refreshed) > 300*time.Millisecond {
			if items, ground, err := loadItemsWhere(ctx, tr.db); err == nil {
				tr.items, tr.ground, refreshed = items, ground, time.Now()
			}
		}
		for len(tr.accepts) > 0 && time.Now().After(tr.accepts[0].due) {
			a := tr.accepts[0]
			tr.accepts = tr.accepts[1:]
			if c := tr.r.Client(a.bot); c != nil {
				tr.send(a.bot, c, a.target, a.op)
			}
		}
		if tr.items != nil {
			tr.one(ctx)
		}
	}
}

// event is an inventory event as the log holds it.
type event struct {
	Seq     int64
	Key     string
	Kind    string
	Payload struct {
		Outcome string                 `json:"outcome"`
		Moved   []persistence.ItemMove `json:"moved"`
	}
}

func loadEvents(ctx context.Context, db *pgxpool.Pool) ([]event, error) {
	rows, err := db.Query(ctx, `SELECT seq, idem_key, kind, payload FROM events ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		var payload []byte
		if err := rows.Scan(&e.Seq, &e.Key, &e.Kind, &payload); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(payload, &e.Payload); err != nil {
			return nil, fmt.Errorf("event %d payload: %w", e.Seq, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// checkConservation checks the items after a run: as many of each kind as were made, and the
// event log, replayed from the start (every item at version 1 with its first holder), moves
// every item to exactly where PostgreSQL has it, each move raising the version by exactly one
// (no move applied twice or skipped). Every result a client got names the event of its key.
func checkConservation(t *testing.T, ctx context.Context, pg *persistence.PG, db *pgxpool.Pool, want map[string]int,
	initial map[int64]itemRow, tr *trader) (okOps int) {
	t.Helper()
	got, err := pg.CountItems(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d items of kind %s, want %d", got[k], k, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
	final, err := loadItems(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := loadEvents(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	state := map[int64]itemRow{}
	for id, r := range initial {
		state[id] = r
	}
	byKey := map[string]event{}
	for _, e := range evs {
		if e.Kind == "death" {
			continue // checked apart (deaths)
		}
		byKey[e.Key] = e
		if e.Payload.Outcome != "ok" {
			continue
		}
		okOps++
		for _, m := range e.Payload.Moved {
			cur, ok := state[m.ID]
			if !ok {
				t.Fatalf("event %d (%s) moves item %d that never existed", e.Seq, e.Key, m.ID)
			}
			if m.Version != cur.Version+1 {
				t.Fatalf("event %d (%s) moves item %d to version %d from %d: a move applied twice or lost", e.Seq, e.Key, m.ID, m.Version, cur.Version)
			}
			state[m.ID] = itemRow{Owner: m.Owner, Version: m.Version}
		}
	}
	for id, r := range final {
		if state[id] != r {
			t.Errorf("item %d is %+v in PostgreSQL, the event log says %+v", id, r, state[id])
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for key, res := range tr.results {
		if _, sent := tr.sent[key]; !sent {
			t.Errorf("result for %s, which no bot sent", key)
		}
		e, logged := byKey[key]
		switch res.Code {
		case wire.InvOK:
			if !logged || e.Payload.Outcome != "ok" || uint64(e.Seq) != res.Event {
				t.Errorf("%s: client got ok (event %d), the log has %+v", key, res.Event, e)
			}
		case wire.InvNotOwner, wire.InvItemGone:
			if !logged || e.Payload.Outcome == "ok" {
				t.Errorf("%s: client got %v, the log has %+v", key, res.Code, e)
			}
		}
	}
	for key := range byKey {
		if _, sent := tr.sent[key]; !sent {
			t.Errorf("event %s, which no bot sent", key)
		}
	}
	// Every operation is answered, the ones in flight when a server died included: the gateway
	// resends an inventory operation until its result comes, and the next owner answers by key.
	missing := 0
	for key := range tr.sent {
		if _, ok := tr.results[key]; !ok {
			missing++
			if missing <= 5 {
				t.Errorf("operation %s never answered (logged: %v)", key, byKey[key].Seq != 0)
			}
		}
	}
	if missing > 5 {
		t.Errorf("%d operations never answered in all", missing)
	}
	if tr.dups != 0 {
		t.Errorf("%d inventory results reached a client twice", tr.dups)
	}
	return okOps
}

// openPG opens (and migrates) the database at url, and a plain pool on it for the checks.
func openPG(t *testing.T, ctx context.Context, url string) (*persistence.PG, *pgxpool.Pool) {
	t.Helper()
	pg, err := persistence.OpenPG(ctx, url, persistence.DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	db, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return pg, db
}

// startBots connects n bots (players 1..n) with behavior through the gateway at addr and runs
// them, their interactions going to tr; stop stops them (idempotent) and waits.
func startBots(t *testing.T, ctx context.Context, addr string, n int, behavior string, tr *trader) (r *bots.Runner, stop func()) {
	t.Helper()
	cfg := bots.DefaultConfig(addr, n)
	cfg.Behavior = behavior
	cfg.PlayerBase = 1
	cfg.OnInteraction = tr.onInteraction
	r, err := bots.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("bots: %v", err)
	}
	t.Cleanup(r.Close)
	tr.r = r
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(runCtx) }()
	var once sync.Once
	return r, func() { once.Do(func() { cancel(); <-ran }) }
}

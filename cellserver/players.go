package cellserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
	"github.com/meridian-mmo/meridian/persistence"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// players is the cluster driver's link to PostgreSQL (DESIGN.md §5): it reads a joining
// player's stored state before the Member sees the join, offers the Member's player states to
// the position Flusher, and runs inventory operations on worker goroutines, handing their
// results back to the tick. The tick goroutine never waits on PostgreSQL.
//
// Goroutines: the tick goroutine calls intercept, results and submit; loads and workers run
// their own. loading is the tick goroutine's; the channels connect the rest.
type players struct {
	pg      *persistence.PG
	flusher *persistence.Flusher
	cfg     PlayersConfig
	log     *slog.Logger
	met     *playersMetrics

	loads   chan loadedJoin // finished reads of joining players
	jobs    chan InventoryRequest
	done    chan InventoryDone
	loadSem chan struct{} // bounds concurrent reads
	loading map[SessionKey]bool
	later   []InventoryDone // answered without a worker (queue full): fed to the next Step
	rows    []persistence.PlayerRow
	states  []PlayerState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// PlayersConfig tunes the link to PostgreSQL.
type PlayersConfig struct {
	// FlushEvery: ticks between two offers of the players' positions to the Flusher (which
	// writes them every FlusherConfig.FlushInterval).
	FlushEvery int
	// Workers run inventory operations; Queue operations wait for them (beyond: InvBusy).
	Workers, Queue int
	// OpTimeout bounds one inventory operation, LoadTimeout one read of a joining player.
	OpTimeout, LoadTimeout time.Duration
	// MaxLoads bounds the reads of joining players in flight (beyond, a join waits for the
	// gateway's retry).
	MaxLoads int
	// LootReach (metres): a player loots only items lying in its cell within this distance.
	LootReach float64
	Flusher   persistence.FlusherConfig
}

// DefaultPlayersConfig returns the defaults.
func DefaultPlayersConfig() PlayersConfig {
	return PlayersConfig{FlushEvery: 20, Workers: 4, Queue: 1024, OpTimeout: 5 * time.Second,
		LoadTimeout: 2 * time.Second, MaxLoads: 64, LootReach: 8, Flusher: persistence.DefaultFlusherConfig()}
}

// Validate names the first field out of bounds.
func (c PlayersConfig) Validate() error {
	switch {
	case c.FlushEvery < 1 || c.FlushEvery > 20*60:
		return configErr("PlayersConfig.FlushEvery", c.FlushEvery, "must be in [1, 1200] ticks")
	case c.Workers < 1 || c.Workers > 256:
		return configErr("PlayersConfig.Workers", c.Workers, "must be in [1, 256]")
	case c.Queue < 1 || c.Queue > 1<<20:
		return configErr("PlayersConfig.Queue", c.Queue, "must be in [1, 2^20]")
	case c.OpTimeout < 10*time.Millisecond:
		return configErr("PlayersConfig.OpTimeout", c.OpTimeout, "must be ≥ 10ms")
	case c.LoadTimeout < 10*time.Millisecond:
		return configErr("PlayersConfig.LoadTimeout", c.LoadTimeout, "must be ≥ 10ms")
	case c.MaxLoads < 1 || c.MaxLoads > 4096:
		return configErr("PlayersConfig.MaxLoads", c.MaxLoads, "must be in [1, 4096]")
	case !(c.LootReach > 0 && c.LootReach <= 1000):
		return configErr("PlayersConfig.LootReach", c.LootReach, "must be in (0, 1000] metres")
	}
	return c.Flusher.Validate()
}

// restoreTimeout bounds the one question to PostgreSQL a restore from checkpoints asks.
const restoreTimeout = time.Second

type loadedJoin struct {
	from   raftmeta.ServerID
	msg    wire.JoinMsg
	stored *StoredPlayer
	err    error
}

type playersMetrics struct {
	ops      *prometheus.CounterVec
	opTime   prometheus.Histogram
	loads    *prometheus.CounterVec
	fenced   prometheus.Counter
	queueLen prometheus.GaugeFunc
}

func newPlayers(pg *persistence.PG, cfg PlayersConfig, reg prometheus.Registerer, log *slog.Logger) (*players, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fl, err := persistence.NewFlusher(pg, cfg.Flusher, reg)
	if err != nil {
		return nil, err
	}
	p := &players{pg: pg, flusher: fl, cfg: cfg, log: log,
		loads:   make(chan loadedJoin, cfg.MaxLoads),
		jobs:    make(chan InventoryRequest, cfg.Queue),
		done:    make(chan InventoryDone, cfg.Queue+cfg.Workers),
		loadSem: make(chan struct{}, cfg.MaxLoads),
		loading: map[SessionKey]bool{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.met = &playersMetrics{
		ops: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_inventory_ops_total", Help: "Inventory operations by kind and result (a result other than ok is a failed or refused transaction)."},
			[]string{"op", "result"})),
		opTime: promutil.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_inventory_op_seconds", Help: "Time from an inventory operation's hand-off to its worker until PostgreSQL answered.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})),
		loads: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_player_loads_total", Help: "Reads of joining players' stored state, by result."}, []string{"result"})),
		fenced: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_checkpoint_players_fenced_total", Help: "Players not restored from a local checkpoint because PostgreSQL holds newer state (or could not be asked)."})),
	}
	p.met.queueLen = promutil.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_inventory_queue_depth", Help: "Inventory operations waiting for a worker."},
		func() float64 { return float64(len(p.jobs)) }))
	p.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go func() { defer p.wg.Done(); p.work() }()
	}
	return p, nil
}

// close stops the workers and the reads (operations still queued are not run: their keys
// were never committed, and the gateway resends an inventory operation until its result
// reaches it, so the next owner runs them) and writes the positions held.
func (p *players) close(ctx context.Context) error {
	p.cancel()
	p.wg.Wait()
	return p.flusher.Close(ctx)
}

// intercept takes the JoinMsgs of authenticated players out of in and starts reading their
// stored state; it appends the joins whose state has been read (or, for a resume, could not
// be) with it. A new join whose player cannot be read is refused with ReasonUnavailable: a
// player must not start from nothing while PostgreSQL holds its progress.
func (p *players) intercept(in []PeerIn, send func(raftmeta.ServerID, wire.PeerMessage)) []PeerIn {
	kept := in[:0]
	for _, pi := range in {
		j, ok := pi.Msg.(*wire.JoinMsg)
		if !ok || j.PlayerID == 0 || pi.Player != nil {
			kept = append(kept, pi)
			continue
		}
		key := SessionKey{Home: pi.From, Client: ClientID(j.Client)}
		if p.loading[key] {
			continue // a retry of a join being read: the read answers it
		}
		select {
		case p.loadSem <- struct{}{}:
		default:
			p.met.loads.WithLabelValues("deferred").Inc()
			continue // too many reads in flight: the gateway retries the join
		}
		p.loading[key] = true
		msg, from := *j, pi.From
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.load(from, msg) }()
	}
	for {
		select {
		case l := <-p.loads:
			delete(p.loading, SessionKey{Home: l.from, Client: ClientID(l.msg.Client)})
			switch {
			case l.err == nil:
				p.met.loads.WithLabelValues("ok").Inc()
				msg := l.msg
				kept = append(kept, PeerIn{From: l.from, Msg: &msg, Player: l.stored})
			case l.msg.Resume != 0:
				// Movement is available while PostgreSQL is not: the entity resumes from the
				// gateway's state (its flushes are fenced if PostgreSQL holds newer).
				p.met.loads.WithLabelValues("failed_resumed").Inc()
				p.log.Warn("player state unreadable: resuming without it", "player", l.msg.PlayerID, "err", l.err)
				msg := l.msg
				kept = append(kept, PeerIn{From: l.from, Msg: &msg})
			default:
				p.met.loads.WithLabelValues("failed_refused").Inc()
				p.log.Warn("player state unreadable: join refused", "player", l.msg.PlayerID, "err", l.err)
				send(l.from, &wire.RefuseMsg{Client: l.msg.Client, Reason: wire.ReasonUnavailable})
			}
		default:
			return kept
		}
	}
}

func (p *players) load(from raftmeta.ServerID, msg wire.JoinMsg) {
	defer func() { <-p.loadSem }()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.LoadTimeout)
	defer cancel()
	row, _, err := p.pg.EnsurePlayer(ctx, int64(msg.PlayerID), "")
	l := loadedJoin{from: from, msg: msg, err: err}
	if err == nil {
		l.stored = &StoredPlayer{Placed: row.Cell != 0, X: row.X, Y: row.Y, Z: row.Z, Epoch: row.Epoch, HP: statsHP(row.Stats)}
	}
	select {
	case p.loads <- l:
	case <-p.ctx.Done():
	}
}

// results appends the inventory results ready for the tick.
func (p *players) results(dst []InventoryDone) []InventoryDone {
	dst = append(dst, p.later...)
	p.later = p.later[:0]
	for {
		select {
		case d := <-p.done:
			dst = append(dst, d)
		default:
			return dst
		}
	}
}

// submit queues the tick's inventory operations for the workers; one that does not fit is
// answered InvBusy (nothing was done; the player may try again).
func (p *players) submit(ops []InventoryRequest) {
	for _, op := range ops {
		op.Op.Items, op.Op.Want = append([]uint64(nil), op.Op.Items...), append([]uint64(nil), op.Op.Want...)
		select {
		case p.jobs <- op:
		default:
			p.met.ops.WithLabelValues(op.Op.Op.String(), wire.InvBusy.String()).Inc()
			p.later = append(p.later, InventoryDone{Actor: op.Actor, Seq: op.Seq,
				Result: wire.InventoryResult{Op: op.Op.Op, Code: wire.InvBusy}})
		}
	}
}

// offer hands the players' states to the Flusher (which never blocks the tick).
func (p *players) offer(m *Member) {
	p.states = m.PlayerStates(p.states[:0])
	p.rows = p.rows[:0]
	for _, s := range p.states {
		p.rows = append(p.rows, persistence.PlayerRow{
			ID: int64(s.Player), Account: fmt.Sprintf("player-%d", s.Player),
			X: wire.DequantisePos(s.X), Y: wire.DequantisePos(s.Y), Z: wire.DequantisePos(s.Z),
			Cell: uint64(s.Cell), Epoch: s.Epoch, Stats: statsJSON(s.HP),
		})
	}
	if len(p.rows) == 0 {
		return
	}
	if _, err := p.flusher.Offer(p.rows); err != nil && !errors.Is(err, persistence.ErrClosed) {
		p.log.Warn("position flush: rows not kept", "err", err)
	}
}

// fenceRestored drops, from a checkpoint about to be restored, the players PostgreSQL holds a
// newer epoch for (another server owned them after the checkpoint): a restarted server must
// not resurrect state older than PostgreSQL's. If PostgreSQL cannot be asked, no player is
// restored (their gateways resume them from their own state); entities of no player are.
func (p *players) fenceRestored(recs []wire.EntityRecord) []wire.EntityRecord {
	var ids []int64
	for _, r := range recs {
		if r.PlayerID != 0 {
			ids = append(ids, int64(r.PlayerID))
		}
	}
	if len(ids) == 0 {
		return recs
	}
	// Restore runs before the first tick and the first lease renewal after registering: a
	// slow PostgreSQL must not cost the lease (3 s by default).
	ctx, cancel := context.WithTimeout(p.ctx, min(p.cfg.LoadTimeout, restoreTimeout))
	defer cancel()
	stored, err := p.pg.LoadPlayers(ctx, ids)
	if err != nil {
		p.log.Warn("checkpoint restore: PostgreSQL unreadable, players not restored", "players", len(ids), "err", err)
	}
	kept := recs[:0:0]
	for _, r := range recs {
		if r.PlayerID != 0 {
			row, ok := stored[int64(r.PlayerID)]
			if err != nil || (ok && row.Epoch > r.AuthEpoch) {
				p.met.fenced.Inc()
				continue
			}
		}
		kept = append(kept, r)
	}
	return kept
}

// work runs inventory operations until the players link closes.
func (p *players) work() {
	for {
		select {
		case <-p.ctx.Done():
			return
		case op := <-p.jobs:
			start := time.Now()
			res := p.run(op)
			p.met.opTime.Observe(time.Since(start).Seconds())
			p.met.ops.WithLabelValues(op.Op.Op.String(), res.Code.String()).Inc()
			select {
			case p.done <- InventoryDone{Actor: op.Actor, Seq: op.Seq, Result: res}:
			case <-p.ctx.Done():
				return
			}
		}
	}
}

// run answers one operation: a replay with the outcome PostgreSQL recorded under its key if
// there is one; otherwise it runs it as one PostgreSQL transaction under its key.
func (p *players) run(op InventoryRequest) wire.InventoryResult {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.OpTimeout)
	defer cancel()
	if op.Replay {
		if res, found := p.recorded(ctx, op); found {
			return res
		}
		if op.Fallback != 0 {
			return wire.InventoryResult{Op: op.Op.Op, Code: op.Fallback}
		}
	}
	ids := func(s []uint64) []int64 {
		out := make([]int64, len(s))
		for i, v := range s {
			out[i] = int64(v)
		}
		return out
	}
	var (
		out persistence.InvOutcome
		err error
	)
	a, b := int64(op.Player), int64(op.Target)
	switch op.Op.Op {
	case wire.InvLoot:
		out, err = p.pg.Loot(ctx, op.Key, a, int64(op.Op.Items[0]), &persistence.Near{Cell: uint64(op.Cell),
			X: wire.DequantisePos(op.X), Z: wire.DequantisePos(op.Z), Reach: p.cfg.LootReach})
	case wire.InvDrop:
		out, err = p.pg.Drop(ctx, op.Key, a, int64(op.Op.Items[0]), uint64(op.Cell),
			wire.DequantisePos(op.X), wire.DequantisePos(op.Y), wire.DequantisePos(op.Z))
	case wire.InvGive:
		out, err = p.pg.Give(ctx, op.Key, a, b, int64(op.Op.Items[0]))
	case wire.InvTrade:
		out, err = p.pg.Trade(ctx, op.Key, a, b, ids(op.Op.Items), ids(op.Op.Want))
	default:
		err = persistence.ErrInvalidArgument
	}
	if err != nil && inventoryCode(err) == wire.InvUnavailable {
		// The connection may have died during COMMIT: if the operation committed, say so.
		rctx, rcancel := context.WithTimeout(p.ctx, p.cfg.OpTimeout)
		res, found := p.recorded(rctx, op)
		rcancel()
		if found {
			return res
		}
	}
	res := wire.InventoryResult{Op: op.Op.Op, Code: inventoryCode(err), Moved: uint8(min(len(out.Moved), 255))}
	if out.Seq > 0 {
		res.Event = uint64(out.Seq)
	}
	if res.Code == wire.InvInvalid {
		p.log.Warn("inventory operation invalid", "key", op.Key, "op", op.Op.Op, "err", err)
	}
	return res
}

// recorded is the outcome PostgreSQL recorded under op's key, if it can say.
func (p *players) recorded(ctx context.Context, op InventoryRequest) (wire.InventoryResult, bool) {
	out, refusal, found, err := p.pg.Outcome(ctx, op.Key)
	if err != nil || !found {
		return wire.InventoryResult{}, false
	}
	return wire.InventoryResult{Op: op.Op.Op, Code: inventoryCode(refusal), Event: uint64(max(out.Seq, 0)),
		Moved: uint8(min(len(out.Moved), 255))}, true
}

// inventoryCode maps an inventory transaction's error to the code its client gets.
func inventoryCode(err error) wire.InventoryCode {
	switch {
	case err == nil:
		return wire.InvOK
	case errors.Is(err, persistence.ErrNotOwner):
		return wire.InvNotOwner
	case errors.Is(err, persistence.ErrItemGone):
		return wire.InvItemGone
	case errors.Is(err, persistence.ErrTooFar):
		return wire.InvTooFar
	case errors.Is(err, persistence.ErrUnknownPlayer):
		return wire.InvUnknownPlayer
	case errors.Is(err, persistence.ErrContention):
		return wire.InvContention
	case errors.Is(err, persistence.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return wire.InvUnavailable
	default:
		return wire.InvInvalid
	}
}

// playerStats is what a player's stats JSON object holds that the cell server reads and writes
// (a flush merges it into the stored object: keys a game keeps there stay).
type playerStats struct {
	HP *uint16 `json:"hp"`
}

// statsJSON is the stats object of a player with hp hit points.
func statsJSON(hp uint16) json.RawMessage { return fmt.Appendf(nil, `{"hp":%d}`, hp) }

// statsHP reads the hit points from a stats object (0: none stored, or unreadable).
func statsHP(stats json.RawMessage) uint16 {
	var s playerStats
	if json.Unmarshal(stats, &s) != nil || s.HP == nil {
		return 0
	}
	return *s.HP
}

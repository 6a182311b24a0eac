package cellserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cockroachdb/pebble/v2/vfs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/internal/promutil"
	"github.com/meridian-mmo/meridian/persistence"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Cluster is a cell server in cluster mode (`meridian cell --meta`): the I/O around a Member.
// It registers with the metadata service, renews its lease with a load report every
// HeartbeatInterval, follows the partition map with blocking queries, proposes Staged for
// migrations it receives, carries peer messages over TCP (peerlink.go) and serves the clients
// that connect to its edge. The tick loop is a Driver stepping the Cluster, which steps the
// Member.
//
// Self-fencing (DESIGN.md §2): the lease runs from the moment a renewal was sent (never later
// than the leader stamps it). When now reaches lease end − FenceMargin without a newer
// successful renewal, the Member is stepped Fenced: nothing is simulated or handed off until a
// renewal succeeds. The leader declares the server dead only DeadMargin after the lease ends,
// so a fenced server has stopped well before its cells go elsewhere. If it is declared dead
// anyway, the Member drops everything and the Cluster registers again.
type Cluster struct {
	cfg      ClusterConfig
	log      *slog.Logger
	member   *Member
	driver   atomic.Pointer[Driver] // set by Run once the map gives the world epoch
	Listener *gateway.Listener
	Metrics  *Metrics
	meta     *raftmeta.Client
	peers    *peerNet
	cm       *clusterMetrics

	latest  atomic.Pointer[raftmeta.Map] // newest map from the watch
	applied uint64                       // version given to the Member (tick goroutine)
	// leaseEnd is when the lease ends, as nanoseconds on the monotonic clock since clock0 (a
	// wall-clock step must not stretch it); 0: never renewed.
	leaseEnd atomic.Int64
	clock0   time.Time
	fenced   bool // tick goroutine
	load     atomic.Pointer[raftmeta.Load]
	staged   chan raftmeta.Staged
	lastStat MemberStats // tick goroutine
	holdReq  chan chan Holdings
	dropReq  chan chan struct{} // the heartbeat goroutine learnt this server was declared dead

	ckpt     *checkpointer // nil: no checkpoints
	pl       *players      // nil: no PostgreSQL
	ob       *outbox
	noStore  []InventoryDone       // inventory operations answered InvNoStore (no PostgreSQL)
	fatal    chan error            // the store failed
	fatalErr atomic.Pointer[error] // what Run returns after a store failure
	mi       MemberInput
	idle     StepOutput
	enc      []byte

	mu  sync.Mutex // guards rng
	rng *rand.Rand
}

// ClusterConfig configures a cell server in cluster mode.
type ClusterConfig struct {
	Member MemberConfig
	// Meta lists the metadata nodes' HTTP addresses (host:port).
	Meta []string
	// PeerListen is where other cell servers connect (TCP); PeerAdvertise is the address
	// registered for them (default: the bound address).
	PeerListen, PeerAdvertise string
	// Edge is the client edge (KCP); its bound address is registered as the client address.
	Edge gateway.Config
	// Capacity is the entities this server is sized for (the partitioner weighs load by it).
	Capacity int
	// LeaseTTL is the lease each renewal asks for; HeartbeatInterval how often it renews
	// (with the load report); FenceMargin how long before the lease ends it stops simulating.
	LeaseTTL, HeartbeatInterval, FenceMargin time.Duration
	// TickHz and MaxCatchUp as in DriverConfig; the epoch comes from the map.
	MaxCatchUp int
	// Seed seeds spawn points.
	Seed uint64
	// CheckpointDir (empty: none) is the local Pebble store: the server checkpoints its cells
	// there every CheckpointEvery ticks (0: never), restores them from it when it restarts
	// while the map still gives it those cells, and keeps its outbox of critical events there.
	// OnFatal is called if the store fails to sync: the process must stop (nil: Run returns
	// the error).
	CheckpointDir   string
	CheckpointEvery int
	OnFatal         func(error)
	// CheckpointFS is the filesystem of CheckpointDir (nil: the operating system's; tests pass
	// Pebble's in-memory or fault-injecting ones).
	CheckpointFS vfs.FS
	// PG (nil: none; Pebble alone serves) is the authoritative store, opened and migrated by
	// the caller, who closes it after Run returns. With it a joining player starts from its
	// stored state, positions are flushed to it, inventory operations run as its
	// transactions, and a restore from a checkpoint skips players it holds newer state of.
	PG      *persistence.PG
	Players PlayersConfig
}

// DefaultClusterConfig returns a configuration for server id, incarnation inc.
func DefaultClusterConfig(id raftmeta.ServerID, inc uint64) ClusterConfig {
	return ClusterConfig{
		Member:            DefaultMemberConfig(id, inc),
		Meta:              []string{"127.0.0.1:8300"},
		PeerListen:        "127.0.0.1:0",
		Edge:              gateway.DefaultConfig(),
		Capacity:          5000,
		LeaseTTL:          3 * time.Second,
		HeartbeatInterval: time.Second,
		FenceMargin:       500 * time.Millisecond,
		MaxCatchUp:        3,
		Seed:              uint64(id),
		CheckpointEvery:   20,
		Players:           DefaultPlayersConfig(),
	}
}

// Validate names the first field out of bounds.
func (c ClusterConfig) Validate() error {
	switch {
	case len(c.Meta) == 0:
		return configErr("ClusterConfig.Meta", "[]", "must name at least one metadata node")
	case c.PeerListen == "":
		return configErr("ClusterConfig.PeerListen", `""`, "must be set")
	case c.Capacity < 1:
		return configErr("ClusterConfig.Capacity", c.Capacity, "must be ≥ 1")
	case c.HeartbeatInterval < 10*time.Millisecond:
		return configErr("ClusterConfig.HeartbeatInterval", c.HeartbeatInterval, "must be ≥ 10ms")
	case c.LeaseTTL < 2*c.HeartbeatInterval:
		return configErr("ClusterConfig.LeaseTTL", c.LeaseTTL, "must be ≥ 2 × HeartbeatInterval (%v)", 2*c.HeartbeatInterval)
	case c.FenceMargin <= 0 || c.FenceMargin >= c.LeaseTTL-c.HeartbeatInterval:
		return configErr("ClusterConfig.FenceMargin", c.FenceMargin, "must be in (0, LeaseTTL − HeartbeatInterval = %v)", c.LeaseTTL-c.HeartbeatInterval)
	case c.MaxCatchUp < 1:
		return configErr("ClusterConfig.MaxCatchUp", c.MaxCatchUp, "must be ≥ 1")
	case c.CheckpointDir != "" && (c.CheckpointEvery < 0 || c.CheckpointEvery > 20*60):
		return configErr("ClusterConfig.CheckpointEvery", c.CheckpointEvery, "must be in [0, 1200] ticks")
	case c.PG != nil && c.Edge.Listen != "":
		return configErr("ClusterConfig.Edge.Listen", c.Edge.Listen, "must be empty with PG: sessions of the embedded edge are not authenticated players; clients come through a gateway")
	}
	if c.Edge.Listen != "" {
		if err := c.Edge.Validate(); err != nil {
			return err
		}
	}
	if c.PG != nil {
		if err := c.Players.Validate(); err != nil {
			return err
		}
	}
	return c.Member.Validate()
}

type clusterMetrics struct {
	fenced      prometheus.Gauge
	fenceEvents prometheus.Counter
	handoffs    *prometheus.CounterVec   // direction
	migrated    *prometheus.CounterVec   // direction
	frozen      *prometheus.HistogramVec // kind
	unroutable  prometheus.Counter
	mapVersion  prometheus.Gauge
	heartbeats  *prometheus.CounterVec // result
	staged      *prometheus.CounterVec // result
	lost        prometheus.Counter
	events      *prometheus.CounterVec // event
}

func newClusterMetrics(reg prometheus.Registerer) *clusterMetrics {
	return &clusterMetrics{
		fenced: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_cell_fenced", Help: "1 while the server has stopped simulating because its lease could not be renewed."})),
		fenceEvents: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_cell_fence_events_total", Help: "Times the server self-fenced."})),
		handoffs: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_handoffs_total", Help: "Entity handoffs, by direction (out, in, rejected, retried)."}, []string{"direction"})),
		migrated: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_migrated_entities_total", Help: "Entities moved by cell migrations, by direction (out, in)."}, []string{"direction"})),
		frozen: promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meridian_transfer_frozen_ticks", Help: "Ticks an entity was not simulated while moving between servers, by kind (handoff, migration).",
			Buckets: []float64{0, 1, 2, 3, 5, 10, 20}}, []string{"kind"})),
		unroutable: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_peer_unroutable_total", Help: "Peer inputs/leaves for entities no one here knows (dropped)."})),
		mapVersion: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_cell_map_version", Help: "Version of the partition map applied."})),
		heartbeats: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_cell_heartbeats_total", Help: "Lease renewals, by result."}, []string{"result"})),
		staged: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_cell_staged_proposals_total", Help: "Staged proposals for incoming migrations, by result."}, []string{"result"})),
		lost: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_sessions_lost_total", Help: "Sessions disconnected because their entity's server died."})),
		events: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_member_events_total",
			Help: "Cluster member events: forwarded, held, stale_frames, orphan_leaves, import_errors, migrations_aborted, entities_dropped."}, []string{"event"})),
	}
}

// NewCluster binds the peer and client listeners; Run registers, builds the Member for the
// map's world and serves.
func NewCluster(ctx context.Context, cfg ClusterConfig, reg prometheus.Registerer, log *slog.Logger) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	c := &Cluster{
		cfg: cfg, log: log, Metrics: NewMetrics(reg), cm: newClusterMetrics(reg),
		holdReq: make(chan chan Holdings, 16),
		dropReq: make(chan chan struct{}, 1),
		meta:    raftmeta.NewClient(cfg.Meta, nil),
		staged:  make(chan raftmeta.Staged, 1024),
		rng:     rand.New(rand.NewPCG(cfg.Seed, 2)),
		clock0:  time.Now(),
		fatal:   make(chan error, 1),
	}
	if cfg.CheckpointDir != "" {
		onFatal := func(err error) {
			log.Error("local store failed: the server must stop", "err", err)
			if cfg.OnFatal != nil {
				cfg.OnFatal(err)
			}
			select {
			case c.fatal <- err:
			default:
			}
		}
		if c.ckpt, err = openCheckpointer(cfg.CheckpointDir, cfg.CheckpointFS, reg, log, onFatal); err != nil {
			return nil, err
		}
	}
	if cfg.PG != nil {
		if c.pl, err = newPlayers(cfg.PG, cfg.Players, reg, log); err != nil {
			return nil, err
		}
	}
	var store *persistence.Store
	if c.ckpt != nil {
		store = c.ckpt.store
	}
	if c.ob, err = newOutbox(store, cfg.PG, reg); err != nil {
		return nil, err
	}
	if c.peers, err = listenPeers(ctx, cfg.PeerListen, cfg.Member.Server, cfg.Member.Incarnation, reg, log); err != nil {
		return nil, err
	}
	// A migration's entities are staged by the next tick; proposing Staged as soon as they
	// arrive lets the change commit before that tick, so they are simulated there without a
	// frozen tick. (Member.Step stages a tick's migrations before it applies a newer map.)
	c.peers.early = func(from raftmeta.ServerID, msg wire.PeerMessage) {
		if mg, ok := msg.(*wire.MigrateMsg); ok {
			select {
			case c.staged <- raftmeta.Staged{Change: raftmeta.ChangeID(mg.Change), Transfer: int(mg.Transfer), Server: cfg.Member.Server}:
			default:
			}
		}
	}
	if cfg.Edge.Listen == "" {
		// No client edge: clients come through gateways (the usual cluster deployment).
	} else if c.Listener, err = gateway.Listen(cfg.Edge, c, reg, log); err != nil {
		c.peers.close()
		return nil, err
	}
	return c, nil
}

// Holdings is what a server holds at a tick (for tests and operators: GET /debug/entities).
type Holdings struct {
	Tick       wire.Tick       `json:"tick"`
	WorldTick  wire.Tick       `json:"world_tick"` // the last tick simulated (behind Tick while fenced)
	MapVersion uint64          `json:"map_version"`
	Fenced     bool            `json:"fenced"`
	Real       []wire.EntityID `json:"real"`
	InFlight   []wire.EntityID `json:"in_flight"`
}

// HoldingsHandler serves GET /debug/entities: the Holdings after the next tick, as JSON.
func (c *Cluster) HoldingsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		h, err := c.Holdings(ctx)
		if err != nil {
			http.Error(w, "no tick ran: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	})
}

// Holdings asks the tick goroutine for the entities held after the next tick.
func (c *Cluster) Holdings(ctx context.Context) (Holdings, error) {
	ch := make(chan Holdings, 1)
	select {
	case c.holdReq <- ch:
	case <-ctx.Done():
		return Holdings{}, ctx.Err()
	}
	select {
	case h := <-ch:
		return h, nil
	case <-ctx.Done():
		return Holdings{}, ctx.Err()
	}
}

// PeerAddr is the bound peer address.
func (c *Cluster) PeerAddr() string { return c.peers.Addr() }

// Config implements Stepper (valid once Run has the map).
func (c *Cluster) Config() Config { return c.member.World().Config() }

// Run registers, waits for the first map, then ticks until ctx ends. On return the server has
// deregistered (best effort) and closed its listeners.
func (c *Cluster) Run(ctx context.Context) error {
	defer c.peers.close()
	if c.Listener != nil {
		defer c.Listener.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	if err := c.register(ctx); err != nil {
		return err
	}
	mp, err := c.meta.Map(ctx, raftmeta.ReadOptions{})
	if err != nil {
		return fmt.Errorf("cellserver: first map: %w", err)
	}
	c.latest.Store(mp)
	c.peers.setAddrs(mp.Servers)
	if mp.World.Epoch == 0 {
		return errors.New("cellserver: the map has no world epoch")
	}
	mcfg := c.cfg.Member
	mcfg.World.WorldMin, mcfg.World.WorldMax = mp.World.Min, mp.World.Max
	if c.member, err = NewMember(mcfg); err != nil {
		return fmt.Errorf("cellserver: the map's world: %w", err)
	}
	if c.ckpt != nil {
		defer func() { cancel(); wg.Wait(); c.ckpt.close() }() // the store outlives its writers
		t0 := wire.Tick(time.Since(time.Unix(0, mp.World.Epoch)) / (time.Second / time.Duration(c.cfg.Member.World.TickHz)))
		var fence func([]wire.EntityRecord) []wire.EntityRecord
		if c.pl != nil {
			fence = c.pl.fenceRestored
		}
		if n := c.ckpt.restore(c.member, mp, c.cfg.Member.Server, t0, fence); n > 0 {
			c.log.Info("restored entities from the local checkpoints", "entities", n)
		}
		wg.Add(2)
		go func() { defer wg.Done(); c.ckpt.run(ctx) }()
		go func() {
			defer wg.Done()
			if err := c.ob.run(ctx); err != nil {
				c.log.Error("outbox flusher stopped", "err", err)
			}
		}()
		go func() {
			select {
			case <-ctx.Done():
			case err := <-c.fatal:
				c.fatalErr.Store(&err)
				cancel()
			}
		}()
	}
	dcfg := DriverConfig{Epoch: time.Unix(0, mp.World.Epoch), TickHz: c.cfg.Member.World.TickHz, MaxCatchUp: c.cfg.MaxCatchUp}
	drv, err := NewDriver(c, dcfg, nil, c.Metrics)
	if err != nil {
		return err
	}
	c.driver.Store(drv)
	errc := make(chan error, 1)
	edge := "none (clients come through gateways)"
	if c.Listener != nil {
		edge = c.Listener.Addr().String()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Listener.Serve(ctx)
			cancel()
			errc <- err
		}()
	} else {
		errc <- nil
	}
	c.log.Info("cell server registered", "id", c.cfg.Member.Server, "incarnation", c.cfg.Member.Incarnation,
		"peer", c.advertise(), "kcp", edge, "map_version", mp.Version)

	wg.Add(3)
	go func() { defer wg.Done(); c.watch(ctx, mp.Version) }()
	go func() { defer wg.Done(); c.heartbeats(ctx) }()
	go func() { defer wg.Done(); c.proposeStaged(ctx) }()
	err = drv.Run(ctx)
	cancel()
	if c.pl != nil {
		fctx, fcancel := context.WithTimeout(context.Background(), 3*time.Second)
		if ferr := c.pl.close(fctx); ferr != nil {
			c.log.Warn("position flush at shutdown incomplete", "err", ferr)
		}
		fcancel()
	}
	if fe := c.fatalErr.Load(); fe != nil && err == nil {
		err = *fe
	}
	if lerr := <-errc; err == nil {
		err = lerr
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer dcancel()
	if _, derr := c.meta.Deregister(dctx, c.cfg.Member.Server); derr != nil {
		c.log.Warn("deregister failed", "err", derr)
	}
	return err
}

func (c *Cluster) advertise() string {
	if c.cfg.PeerAdvertise != "" {
		return c.cfg.PeerAdvertise
	}
	return c.peers.Addr()
}

// leaseLeft is how long the lease still runs (negative: lapsed), on the monotonic clock.
func (c *Cluster) leaseLeft() time.Duration {
	return time.Duration(c.leaseEnd.Load()) - time.Since(c.clock0)
}

// register (re)registers until it succeeds or ctx ends; the lease runs from the send time.
func (c *Cluster) register(ctx context.Context) error {
	clientAddr := ""
	if c.Listener != nil {
		clientAddr = c.Listener.Addr().String()
	}
	for {
		sent := time.Now()
		_, err := c.meta.Register(ctx, raftmeta.RegisterRequest{
			ID: c.cfg.Member.Server, Addr: c.advertise(), ClientAddr: clientAddr,
			Capacity: c.cfg.Capacity, LeaseTTL: raftmeta.Duration(c.cfg.LeaseTTL),
		})
		if err == nil {
			c.leaseEnd.Store(int64(sent.Add(c.cfg.LeaseTTL).Sub(c.clock0)))
			return nil
		}
		c.log.Warn("register failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// watch follows the map with blocking queries.
func (c *Cluster) watch(ctx context.Context, index uint64) {
	for ctx.Err() == nil {
		mp, err := c.meta.Map(ctx, raftmeta.ReadOptions{Stale: true, Index: index, Wait: 10 * time.Second})
		if err != nil {
			if ctx.Err() == nil {
				c.log.Debug("map watch failed", "err", err)
				sleepCtx(ctx, 200*time.Millisecond)
			}
			continue
		}
		if mp.Version > index {
			index = mp.Version
			c.latest.Store(mp)
			c.peers.setAddrs(mp.Servers)
		}
	}
}

// heartbeats renews the lease with the load report every HeartbeatInterval.
func (c *Cluster) heartbeats(ctx context.Context) {
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w := c.driver.Load().TakeWindow()
		var l raftmeta.Load
		if p := c.load.Load(); p != nil {
			l = *p
		}
		secs := c.cfg.HeartbeatInterval.Seconds()
		l.TickP99Micros = w.Quantile(0.99).Microseconds()
		l.BytesOut = int64(float64(w.BytesOut) / secs)
		for i := range l.Cells {
			l.Cells[i].TickP99Micros = l.TickP99Micros // one tick simulates all of a server's cells
		}
		sent := time.Now()
		hctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL-c.cfg.FenceMargin)
		_, err := c.meta.Heartbeat(hctx, c.cfg.Member.Server, raftmeta.HeartbeatRequest{Load: l, LeaseTTL: raftmeta.Duration(c.cfg.LeaseTTL)})
		cancel()
		switch {
		case err == nil:
			c.leaseEnd.Store(int64(sent.Add(c.cfg.LeaseTTL).Sub(c.clock0)))
			c.cm.heartbeats.WithLabelValues("ok").Inc()
		case errors.Is(err, raftmeta.ErrServerDead), errors.Is(err, raftmeta.ErrUnknownServer):
			c.cm.heartbeats.WithLabelValues("dead").Inc()
			c.log.Error("the metadata service declared this server dead: its cells were reassigned; dropping its entities and registering again", "err", err)
			// The Member must drop what it holds before the server comes back: a newer map
			// (after the registration) would never show it dead.
			done := make(chan struct{})
			select {
			case c.dropReq <- done:
			case <-ctx.Done():
				return
			}
			select {
			case <-done:
			case <-ctx.Done():
				return
			}
			if c.register(ctx) != nil {
				return
			}
		default:
			c.cm.heartbeats.WithLabelValues("error").Inc()
			if ctx.Err() == nil {
				c.log.Warn("lease renewal failed", "err", err, "lease_left", c.leaseLeft().Round(time.Millisecond))
			}
		}
	}
}

// proposeStaged sends the Member's Staged proposals.
func (c *Cluster) proposeStaged(ctx context.Context) {
	for {
		var s raftmeta.Staged
		select {
		case <-ctx.Done():
			return
		case s = <-c.staged:
		}
		_, err := c.meta.Staged(ctx, s.Change, s.Transfer, s.Server)
		switch {
		case err == nil:
			c.cm.staged.WithLabelValues("ok").Inc()
		case errors.Is(err, raftmeta.ErrUnknownChange):
			c.cm.staged.WithLabelValues("resolved").Inc()
		default:
			c.cm.staged.WithLabelValues("error").Inc()
			c.log.Debug("staged proposal failed (the member retries)", "change", s.Change, "err", err)
		}
	}
}

// Step implements Stepper: it runs the Member for one tick and performs its output.
func (c *Cluster) Step(in *StepInput) *StepOutput {
	mi := &c.mi
	*mi = MemberInput{Tick: in.Tick, Peer: mi.Peer[:0], Opens: mi.Opens[:0], Closes: in.Leaves, Inputs: mi.Inputs[:0], Interacts: mi.Interacts[:0], Acks: in.Acks}
	for _, ci := range in.Inputs {
		if ci.Interact != nil {
			mi.Interacts = append(mi.Interacts, ClientInteract{Client: ci.Client, Interact: *ci.Interact})
		} else {
			mi.Inputs = append(mi.Inputs, ci)
		}
	}
	if mp := c.latest.Load(); mp != nil && mp.Version > c.applied {
		mi.Map, c.applied = mp, mp.Version
		c.cm.mapVersion.Set(float64(mp.Version))
	}
	fenced := c.leaseLeft() <= c.cfg.FenceMargin
	if fenced != c.fenced {
		c.fenced = fenced
		if fenced {
			c.cm.fenceEvents.Inc()
			c.cm.fenced.Set(1)
			c.log.Error("self-fenced: the lease could not be renewed in time; simulation stopped",
				"lease_left", c.leaseLeft().Round(time.Millisecond), "fence_margin", c.cfg.FenceMargin)
		} else {
			c.cm.fenced.Set(0)
			c.log.Warn("lease renewed: simulation resumed")
		}
	}
	mi.Fenced = fenced
	var dropped chan struct{}
	select {
	case dropped = <-c.dropReq:
		mi.DeclaredDead = true
	default:
	}
	mi.Peer = c.peers.take(mi.Peer)
	mi.InventoryDone = append(mi.InventoryDone[:0], c.noStore...)
	c.noStore = c.noStore[:0]
	if c.pl != nil {
		mi.Peer = c.pl.intercept(mi.Peer, func(to raftmeta.ServerID, msg wire.PeerMessage) {
			if b, err := msg.AppendFrame(nil); err == nil {
				c.peers.send(to, b)
			}
		})
		mi.InventoryDone = c.pl.results(mi.InventoryDone)
	}
	for _, j := range in.Joins {
		mi.Opens = append(mi.Opens, SessionOpen(j))
	}

	out := c.member.Step(mi)
	if dropped != nil {
		close(dropped)
	}
	if err := c.ob.write(out.Events); err != nil {
		// The store failed (its OnFatal stops the process): nothing of this tick may leave,
		// as its deaths are not durable.
		c.log.Error("critical events not stored: the tick's output is withheld", "err", err)
		return c.finish(in, mi, out)
	}
	if c.pl != nil {
		c.pl.submit(out.InventoryOps)
		if !fenced && in.Tick%wire.Tick(c.cfg.Players.FlushEvery) == 0 {
			c.pl.offer(c.member)
		}
	} else {
		for _, op := range out.InventoryOps {
			c.noStore = append(c.noStore, InventoryDone{Actor: op.Actor, Seq: op.Seq,
				Result: wire.InventoryResult{Op: op.Op.Op, Code: wire.InvNoStore}})
		}
	}

	for _, s := range out.Send {
		var err error
		if c.enc, err = s.Msg.AppendFrame(c.enc[:0]); err != nil {
			c.log.Error("peer message not sent", "to", s.To, "err", err)
			continue
		}
		c.peers.send(s.To, append([]byte(nil), c.enc...))
	}
	for _, s := range out.Staged {
		select {
		case c.staged <- s:
		default:
		}
	}
	if c.Listener != nil {
		c.toEdge(out)
	}
	c.countStats()
	if c.ckpt != nil && c.cfg.CheckpointEvery > 0 && !fenced && in.Tick%wire.Tick(c.cfg.CheckpointEvery) == 0 {
		c.ckpt.offer(c.member.Checkpoints(in.Tick))
	}
	for len(c.holdReq) > 0 {
		ch := <-c.holdReq
		h := Holdings{Tick: in.Tick, WorldTick: c.member.World().Tick(), Fenced: fenced, MapVersion: c.applied}
		h.Real, h.InFlight = c.member.Holdings()
		ch <- h
	}
	return c.finish(in, mi, out)
}

// toEdge delivers what the Member produced for the sessions of the embedded edge.
func (c *Cluster) toEdge(out *MemberOutput) {
	for _, r := range out.Refused {
		c.Listener.Disconnect(gateway.SessionID(r.Client), r.Reason, "join refused")
	}
	for _, j := range out.Welcomes {
		c.Listener.SendControl(gateway.SessionID(j.Client), j.Welcome.AppendFrame(nil))
	}
	for _, f := range out.Frames {
		if f.Control {
			c.Listener.SendControl(gateway.SessionID(f.Client), f.Frame)
		} else {
			c.Listener.SendSnapshot(gateway.SessionID(f.Client), f.Frame)
		}
	}
	for _, l := range out.Lost {
		c.cm.lost.Inc()
		c.Listener.Disconnect(gateway.SessionID(l), wire.ReasonShutdown, "entity lost: its cell server died")
	}
}

// finish records the load and returns the World's output for the driver.
func (c *Cluster) finish(in *StepInput, mi *MemberInput, out *MemberOutput) *StepOutput {
	if in.Tick%10 == 0 || mi.Map != nil {
		l := c.member.Load()
		c.load.Store(&l)
	}
	if out.World == nil {
		c.idle = StepOutput{Entities: len(c.member.World().st.alive) - c.member.World().ghosts, Clients: len(c.member.World().clients)}
		return &c.idle
	}
	return out.World
}

// countStats turns the Member's cumulative counters into metric increments.
func (c *Cluster) countStats() {
	s, p := c.member.Stats(), c.lastStat
	c.lastStat = s
	add := func(v *prometheus.CounterVec, label string, now, before int) {
		if now > before {
			v.WithLabelValues(label).Add(float64(now - before))
		}
	}
	add(c.cm.handoffs, "out", s.HandoffsOut, p.HandoffsOut)
	add(c.cm.handoffs, "in", s.HandoffsIn, p.HandoffsIn)
	add(c.cm.handoffs, "rejected", s.HandoffsRejected, p.HandoffsRejected)
	add(c.cm.handoffs, "retried", s.HandoffRetries, p.HandoffRetries)
	add(c.cm.migrated, "out", s.MigratedOut, p.MigratedOut)
	add(c.cm.migrated, "in", s.MigratedIn, p.MigratedIn)
	for k := range s.FrozenHandoff {
		for range s.FrozenHandoff[k] - p.FrozenHandoff[k] {
			c.cm.frozen.WithLabelValues("handoff").Observe(float64(k))
		}
		for range s.FrozenMigration[k] - p.FrozenMigration[k] {
			c.cm.frozen.WithLabelValues("migration").Observe(float64(k))
		}
	}
	if s.Unroutable > p.Unroutable {
		c.cm.unroutable.Add(float64(s.Unroutable - p.Unroutable))
	}
	add(c.cm.events, "forwarded", s.Forwarded, p.Forwarded)
	add(c.cm.events, "held", s.Held, p.Held)
	add(c.cm.events, "stale_frames", s.StaleFrames, p.StaleFrames)
	add(c.cm.events, "orphan_leaves", s.OrphanLeaves, p.OrphanLeaves)
	add(c.cm.events, "import_errors", s.ImportErrors, p.ImportErrors)
	add(c.cm.events, "migrations_aborted", s.MigrationsAborted, p.MigrationsAborted)
	add(c.cm.events, "entities_dropped", s.EntitiesDropped, p.EntitiesDropped)
	add(c.cm.events, "gateway_joins", s.GatewayJoins, p.GatewayJoins)
	add(c.cm.events, "resumed", s.Resumed, p.Resumed)
	add(c.cm.events, "sessions_idled", s.SessionsIdled, p.SessionsIdled)
	add(c.cm.events, "stale_copies_dropped", s.StaleCopiesDropped, p.StaleCopiesDropped)
	add(c.cm.events, "interacts_applied", s.InteractsApplied, p.InteractsApplied)
	add(c.cm.events, "interacts_delivered", s.InteractsDelivered, p.InteractsDelivered)
	add(c.cm.events, "interacts_duplicate", s.InteractsDuplicate, p.InteractsDuplicate)
	add(c.cm.events, "interacts_expired", s.InteractsExpired, p.InteractsExpired)
	add(c.cm.events, "interacts_unsupported", s.InteractsUnsupported, p.InteractsUnsupported)
}

// Open implements gateway.Backend: a new session joins at a random point of the world.
func (c *Cluster) Open(id gateway.SessionID, player wire.PlayerID) {
	w := c.member.World().Config() // the map's world (Open runs once Run has the map)
	c.mu.Lock()
	spawn := [2]float64{
		w.WorldMin[0] + c.rng.Float64()*(w.WorldMax[0]-w.WorldMin[0]),
		w.WorldMin[1] + c.rng.Float64()*(w.WorldMax[1]-w.WorldMin[1]),
	}
	c.mu.Unlock()
	d := c.driver.Load()
	if d == nil {
		c.Listener.Disconnect(id, wire.ReasonServerFull, "not ready")
		return
	}
	d.Join(Join{Client: ClientID(id), Spawn: spawn, Player: player})
}

// Input implements gateway.Backend.
func (c *Cluster) Input(id gateway.SessionID, in wire.Input) {
	if d := c.driver.Load(); d != nil {
		d.Input(ClientInput{Client: ClientID(id), Input: in})
	}
}

// Interact implements gateway.Backend: an interaction, in the client's input sequence.
func (c *Cluster) Interact(id gateway.SessionID, in wire.Interact) {
	if d := c.driver.Load(); d != nil {
		d.Input(ClientInput{Client: ClientID(id), Input: wire.Input{Seq: in.Seq}, Interact: &in})
	}
}

// Ack implements gateway.Backend.
func (c *Cluster) Ack(id gateway.SessionID, t wire.Tick) {
	if d := c.driver.Load(); d != nil {
		d.Ack(ClientAck{Client: ClientID(id), Tick: t})
	}
}

// Close implements gateway.Backend.
func (c *Cluster) Close(id gateway.SessionID) {
	if d := c.driver.Load(); d != nil {
		d.Leave(ClientID(id))
	}
}

// Tick implements gateway.Backend.
func (c *Cluster) Tick() wire.Tick {
	if d := c.driver.Load(); d != nil {
		return d.Tick()
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

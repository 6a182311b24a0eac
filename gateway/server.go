package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// TickPeriod is the cluster's tick grid (DESIGN.md §1a): tick n starts at the map's world
// epoch + n × TickPeriod.
const TickPeriod = 50 * time.Millisecond

// ServerConfig configures the gateway process (`meridian gateway`).
type ServerConfig struct {
	// ID is the gateway's id, ≥ 1; on the peer link it is Home = wire.GatewayIDBase + ID.
	ID uint64
	// Incarnation changes every time the process starts (sent in the peer hello). Unless
	// Edge.FirstSessionID is set, the first session id is derived from it
	// (FirstSessionIDFor): cell servers may still send frames for the sessions of the
	// gateway's previous process (same ID), and a new session must not take one of their ids.
	Incarnation uint64
	// Meta lists the metadata nodes' HTTP addresses (host:port).
	Meta []string
	// Edge is the client edge: KCP on Edge.Listen, limits, timeouts.
	Edge Config
	// WSListen, if set, also serves WebSocket clients there (TCP).
	WSListen string
	// Router tunes the routing core; its Home is set from ID.
	Router RouterConfig
	// Seed seeds the spawn points of new sessions.
	Seed uint64
}

// DefaultServerConfig returns a configuration for gateway 1 on a local machine.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		ID:     1,
		Meta:   []string{"127.0.0.1:8300"},
		Edge:   DefaultConfig(),
		Router: DefaultRouterConfig(wire.GatewayIDBase + 1),
		Seed:   1,
	}
}

// Home is the gateway's peer-link id.
func (c ServerConfig) Home() uint64 { return wire.GatewayIDBase + c.ID }

// Validate names the first field out of bounds and the bound.
func (c ServerConfig) Validate() error {
	switch {
	case c.ID < 1 || c.ID >= ^uint64(0)-wire.GatewayIDBase:
		return fmt.Errorf("gateway: ServerConfig.ID (%d) must be in [1, 2^64 − 1 − wire.GatewayIDBase)", c.ID)
	case len(c.Meta) == 0:
		return fmt.Errorf("gateway: ServerConfig.Meta must name at least one metadata node")
	}
	for i, m := range c.Meta {
		if _, _, err := net.SplitHostPort(m); err != nil {
			return fmt.Errorf("gateway: ServerConfig.Meta[%d] (%q) must be host:port: %v", i, m, err)
		}
	}
	if err := c.Edge.Validate(); err != nil {
		return err
	}
	r := c.Router
	r.Home = c.Home()
	return r.Validate()
}

// Server is the gateway process: the client edge (KCP, WebSocket) in front of the Router,
// which sends each session's messages to the cell server owning its entity over peer links,
// following the partition map.
//
// Every event (a session's Open/Input/Interact/Ack/Close from its reader goroutine, a peer
// message from a link's reader, a broken link, the 50 ms tick) runs under mu: it calls the
// Router and performs its whole output before unlocking: peer messages are encoded into the
// links' queues, client frames copied into the sessions' queues, disconnects queued. So a
// frame is forwarded the moment it arrives, not on the next tick; nothing under mu blocks on
// the network. Session events never wait for mu: one that finds it held is queued and run by
// the holder before it unlocks (post, unlock).
//
// One session per player: the edge kicks the older of two sessions of one player (≠ 0) as
// the newer one signs in (Listener.claim), and the Server follows it at once: when a session
// opens as a player another session still holds here, that one is closed on the Router first
// (its Leave goes out before the new session's join) and kicked if the edge has not done it;
// a session opening after a newer one of its player signed in is not opened at all (it is
// being kicked). Player 0 sessions are never kicked. This is per gateway: two gateways may
// each hold a session of one player (the cell servers' PostgreSQL fencing is what remains
// between their entities).
type Server struct {
	cfg   ServerConfig
	home  uint64
	log   *slog.Logger
	meta  *raftmeta.Client
	edge  *Listener
	links *peerLinks
	met   *serverMetrics

	epoch atomic.Int64  // the map's world epoch, Unix ns; 0: no map with one yet
	ready chan struct{} // closed when the first map with a world arrived

	// qmu guards queue: session events waiting for mu (see post). Taken alone or under mu.
	qmu   sync.Mutex
	queue []sessionEvent

	mu      sync.Mutex     // guards the fields below; taken before qmu, Listener and Session locks, and the links' queues; released by unlock
	spare   []sessionEvent // the queue's other buffer
	router  *Router
	mp      *raftmeta.Map
	rng     *rand.Rand
	early   map[SessionID]wire.PlayerID // sessions opened before a map with a world: opened on the router when it comes
	last    RouterStats
	started bool
	// players and playerOf: the session opened (on the router or in early) for each player ≠ 0,
	// and the reverse; nil until the first.
	players  map[wire.PlayerID]SessionID
	playerOf map[SessionID]wire.PlayerID
}

// NewServer binds the client listeners (KCP, and WebSocket if cfg.WSListen is set); Run
// follows the map, links to the cell servers and serves. The peer links get ctx's values but
// not its cancellation: they end when Run returns, after delivering what is queued (the
// sessions' Leaves), even if ctx is the one that stops Run.
func NewServer(ctx context.Context, cfg ServerConfig, reg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	cfg.Router.Home = cfg.Home()
	if cfg.Edge.FirstSessionID == 0 {
		cfg.Edge.FirstSessionID = FirstSessionIDFor(cfg.Incarnation)
	}
	router, err := NewRouter(cfg.Router)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, home: cfg.Home(), log: log,
		meta:   raftmeta.NewClient(cfg.Meta, nil),
		ready:  make(chan struct{}),
		router: router,
		rng:    rand.New(rand.NewPCG(cfg.Seed, 0x6761746577617921)), // "gateway!"
		early:  map[SessionID]wire.PlayerID{},
	}
	if s.edge, err = Listen(cfg.Edge, s, reg, log); err != nil {
		return nil, err
	}
	s.met = newServerMetrics(reg)
	if cfg.WSListen != "" {
		if _, err := s.edge.ListenWebSocket(cfg.WSListen); err != nil {
			s.edge.Close()
			return nil, err
		}
	}
	s.links = newPeerLinks(context.WithoutCancel(ctx), s.home, cfg.Incarnation, s.met, log)
	s.links.onMessage = s.peer
	s.links.onReset = s.linkReset
	return s, nil
}

// Addr is the bound KCP (UDP) address.
func (s *Server) Addr() net.Addr { return s.edge.Addr() }

// WSAddr is the bound WebSocket (TCP) address, nil without ServerConfig.WSListen.
func (s *Server) WSAddr() net.Addr { return s.edge.WSAddr() }

// Home is the gateway's peer-link id (wire.GatewayIDBase + ServerConfig.ID).
func (s *Server) Home() uint64 { return s.home }

// Listener is the client edge.
func (s *Server) Listener() *Listener { return s.edge }

// Stats returns the Router's counters.
func (s *Server) Stats() RouterStats {
	s.mu.Lock()
	defer s.unlock()
	return s.router.Stats()
}

// LinksUp is the number of cell servers the gateway is linked to now.
func (s *Server) LinksUp() int { return s.links.up() }

// Run follows the partition map, keeps the peer links and serves clients until ctx ends;
// then it closes the client edge (every session's Leave is queued for its cell server), the
// links (after a brief flush) and waits for its goroutines. It may be called once.
//
// The Leaves at shutdown are best effort: the links get linkFlushOnClose to deliver their
// queues, a link that is down at the time included (it tries to connect at once); what is
// not delivered by then is lost (the cell servers end the entities when the gateway's link
// closes or the entities go stale).
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.unlock()
		return errors.New("gateway: Server.Run called twice")
	}
	s.started = true
	s.unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(3)
	go func() {
		defer wg.Done()
		err := s.edge.Serve(ctx)
		cancel()
		serveErr <- err
	}()
	go func() { defer wg.Done(); s.watch(ctx) }()
	go func() { defer wg.Done(); s.ticker(ctx) }()
	s.log.Info("gateway serving", "id", s.cfg.ID, "home", s.home, "kcp", s.Addr().String(), "websocket", addrString(s.WSAddr()), "meta", s.cfg.Meta)

	<-ctx.Done()
	err := s.edge.Close() // sessions end: each posts its Close (Backend), so its Leave is due
	wg.Wait()
	s.closeLinks()
	if serr := <-serveErr; err == nil {
		err = serr
	}
	return err
}

// closeLinks ends the peer links once every session event posted so far has run (the edge is
// closed: its sessions' Close events, with their Leaves, are all posted). A Close may still
// wait in the session-event queue, or its Leave be made by the goroutine that holds mu (a link
// reader, which runs the queue as it unlocks): taking mu waits for that holder and runs what
// is queued, so every Leave is in a link queue before the links flush them (until empty or
// linkFlushOnClose, best effort: see peerLinks.close).
func (s *Server) closeLinks() {
	s.lock()
	s.unlock()
	s.links.close()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// watch follows the map with blocking queries (as cellserver's Cluster does).
func (s *Server) watch(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		mp, err := s.meta.Map(ctx, raftmeta.ReadOptions{Stale: true, Index: index, Wait: 10 * time.Second})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("gateway: map watch failed", "err", err)
				sleepCtx(ctx, 200*time.Millisecond)
			}
			continue
		}
		switch {
		case mp.Version > index:
			index = mp.Version
			s.setMap(mp)
		case index == 0:
			sleepCtx(ctx, 200*time.Millisecond) // no map yet: ?index=0 does not block
		}
	}
}

// worldReady: the map has a world to spawn in and a tick grid.
func worldReady(m *raftmeta.Map) bool {
	return m.World.Epoch != 0 && m.World.Max[0] > m.World.Min[0] && m.World.Max[1] > m.World.Min[1]
}

// setMap gives the Router a newer map and makes the links follow it.
func (s *Server) setMap(mp *raftmeta.Map) {
	s.links.setServers(mp.Servers)
	s.lock()
	defer s.unlock()
	if s.mp != nil && mp.Version <= s.mp.Version {
		return
	}
	s.mp = mp
	s.met.mapVersion.Set(float64(mp.Version))
	if worldReady(mp) && s.epoch.Load() == 0 {
		s.epoch.Store(mp.World.Epoch)
		close(s.ready)
	}
	t := s.tickAt(time.Now())
	s.router.SetMap(mp, t)
	s.drain(nil, time.Time{}, time.Time{})
	if worldReady(mp) && len(s.early) > 0 {
		for _, id := range slices.Sorted(maps.Keys(s.early)) {
			s.router.Open(id, s.early[id], s.spawn(), t)
			s.drain(nil, time.Time{}, time.Time{})
		}
		clear(s.early)
	}
}

// ticker calls Router.Tick on the map's 50 ms grid.
func (s *Server) ticker(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-s.ready:
	}
	epoch := time.Unix(0, s.epoch.Load())
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last wire.Tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		t := s.tickAt(now)
		if t != last {
			last = t
			s.lock()
			s.router.Tick(t)
			s.drain(nil, time.Time{}, time.Time{})
			s.countStats()
			s.unlock()
		}
		timer.Reset(time.Until(epoch.Add(time.Duration(t+1) * TickPeriod)))
	}
}

// tickAt is the grid tick containing now (0 before the map gives the epoch).
func (s *Server) tickAt(now time.Time) wire.Tick {
	e := s.epoch.Load()
	if e == 0 {
		return 0
	}
	d := now.Sub(time.Unix(0, e))
	if d < 0 {
		return 0
	}
	return wire.Tick(d / TickPeriod)
}

// spawn draws a spawn point uniformly in the map's world (mu held, worldReady(s.mp)).
func (s *Server) spawn() [2]float64 {
	w := s.mp.World
	return [2]float64{
		w.Min[0] + s.rng.Float64()*(w.Max[0]-w.Min[0]),
		w.Min[1] + s.rng.Float64()*(w.Max[1]-w.Min[1]),
	}
}

// drain performs the Router's output (mu held). f, if not nil, measures the latency it adds in
// its direction: at is when the message that caused it was read, locked when mu was acquired
// for it; it is observed if the output goes that way.
func (s *Server) drain(f *forwardMetrics, at, locked time.Time) (done time.Time) {
	out := s.router.Output()
	sent := 0
	for _, p := range out.Send {
		ok, err := s.links.sendMsg(p.To, p.Msg)
		if err != nil {
			s.met.linkInvalid.Inc()
			s.log.Error("gateway: peer message not sent", "to", p.To, "type", p.Msg.Type(), "err", err)
			continue
		}
		if ok {
			sent++
		}
	}
	if sent > 0 {
		s.met.toServer.Add(float64(sent))
	}
	for _, fr := range out.Frames {
		if fr.Control {
			s.edge.SendControl(fr.Session, fr.Frame)
		} else {
			s.edge.SendSnapshot(fr.Session, fr.Frame)
		}
	}
	if len(out.Frames) > 0 {
		s.met.toClient.Add(float64(len(out.Frames)))
	}
	for _, d := range out.Disconnect {
		s.edge.Disconnect(d.Session, d.Reason, d.Reason.String())
	}
	if f != nil {
		done = time.Now()
		if f.toServer && len(out.Send) > 0 || !f.toServer && len(out.Frames) > 0 {
			f.observe(at, locked, done)
		}
	}
	return done
}

const (
	dirToServer = "to_server"
	dirToClient = "to_client"
)

// --- Backend (session reader goroutines) ---
//
// Session events do not wait for mu. A session reader queues its event and takes mu only if
// it is free (TryLock); whoever holds mu runs every queued event, in order, before it lets go
// (unlock). So when 200 sessions ack the same tick's snapshots at once they do not park on mu
// one behind the other, each waiting to be woken and scheduled (milliseconds on a busy
// machine): the holder forwards their events within microseconds. A session's events keep
// their order (one reader goroutine queues them, the queue is FIFO), and the Router still sees
// one call at a time.

// sessionEvent is a Backend call waiting in Server.queue.
type sessionEvent struct {
	kind   sessionEventKind
	id     SessionID
	player wire.PlayerID // evOpen
	tick   wire.Tick     // evAck
	input  wire.Input
	ia     wire.Interact // Data is the caller's copy (Backend.Interact)
	at     time.Time     // when it was read (inputs, interactions, acks)
}

type sessionEventKind uint8

const (
	evOpen sessionEventKind = iota
	evInput
	evInteract
	evAck
	evClose
)

// lock takes mu (waiting for it) and runs what was queued before.
func (s *Server) lock() {
	s.mu.Lock()
	s.runQueued()
}

// post queues a session event and runs the queue if mu is free.
func (s *Server) post(ev sessionEvent) {
	s.qmu.Lock()
	s.queue = append(s.queue, ev)
	s.qmu.Unlock()
	if s.mu.TryLock() {
		s.unlock()
	}
}

// unlock runs the queued session events and releases mu; it takes mu again (if free) for
// events queued meanwhile by sessions that found it held. Every holder of mu releases it
// here, so no event is left behind: a session whose TryLock failed queued its event before
// the holder looked at the queue after unlocking.
func (s *Server) unlock() {
	for {
		s.runQueued()
		s.mu.Unlock()
		s.qmu.Lock()
		n := len(s.queue)
		s.qmu.Unlock()
		if n == 0 || !s.mu.TryLock() {
			return
		}
	}
}

// runQueued runs the session events queued now, in order (mu held).
func (s *Server) runQueued() {
	s.qmu.Lock()
	batch := s.queue
	s.queue = s.spare[:0]
	s.qmu.Unlock()
	if len(batch) == 0 {
		s.spare = batch
		return
	}
	var locked time.Time // the event's work starts when the previous one's ended
	for i := range batch {
		locked = s.run(&batch[i], locked)
	}
	clear(batch) // drop interaction data
	s.spare = batch[:0]
}

// run performs one session event (mu held); locked is when its work started (zero: now). It
// returns when it ended (zero if not measured).
func (s *Server) run(ev *sessionEvent, locked time.Time) time.Time {
	if ev.at.IsZero() {
		s.runUnmeasured(ev)
		return time.Time{}
	}
	if locked.IsZero() {
		locked = time.Now()
	}
	switch ev.kind {
	case evInput:
		s.router.Input(ev.id, ev.input, s.tickAt(ev.at))
	case evInteract:
		s.router.Interact(ev.id, ev.ia, s.tickAt(ev.at))
	case evAck:
		s.router.Ack(ev.id, ev.tick)
	}
	return s.drain(&s.met.fwdToServer, ev.at, locked)
}

func (s *Server) runUnmeasured(ev *sessionEvent) {
	switch ev.kind {
	case evOpen:
		if !s.claimPlayer(ev.id, ev.player) {
			return
		}
		if s.mp == nil || !worldReady(s.mp) {
			s.early[ev.id] = ev.player
			break // drain: the Leave of a session it replaced (claimPlayer)
		}
		s.router.Open(ev.id, ev.player, s.spawn(), s.tickAt(time.Now()))
	case evClose:
		if p, ok := s.playerOf[ev.id]; ok {
			delete(s.playerOf, ev.id)
			if s.players[p] == ev.id {
				delete(s.players, p)
			}
		}
		if _, ok := s.early[ev.id]; ok {
			delete(s.early, ev.id)
			return
		}
		s.router.Close(ev.id, s.tickAt(time.Now()))
	}
	s.drain(nil, time.Time{}, time.Time{})
}

// claimPlayer makes session id, opening, its player's session here (mu held), closing on the
// router the one it replaces; false: a newer session of the player signed in on the edge
// already, so this one is being kicked and must not be opened.
func (s *Server) claimPlayer(id SessionID, player wire.PlayerID) bool {
	if player == 0 {
		return true
	}
	if h := s.edge.Holder(player); h != 0 && h != id {
		return false
	}
	if s.players == nil {
		s.players, s.playerOf = map[wire.PlayerID]SessionID{}, map[SessionID]wire.PlayerID{}
	}
	if old, ok := s.players[player]; ok && old != id {
		delete(s.playerOf, old)
		if _, ok := s.early[old]; ok {
			delete(s.early, old)
		} else {
			s.router.Close(old, s.tickAt(time.Now())) // its Leave before the new session's join
		}
		s.edge.kick(old) // a no-op if the edge kicked it (or it ended)
	}
	s.players[player], s.playerOf[id] = id, player
	return true
}

// Open implements Backend: the session is routed to the owner of a random spawn point (once
// the map has a world).
func (s *Server) Open(id SessionID, player wire.PlayerID) {
	s.post(sessionEvent{kind: evOpen, id: id, player: player})
}

// Input implements Backend.
func (s *Server) Input(id SessionID, in wire.Input) {
	s.post(sessionEvent{kind: evInput, id: id, input: in, at: time.Now()})
}

// Interact implements Backend.
func (s *Server) Interact(id SessionID, in wire.Interact) {
	s.post(sessionEvent{kind: evInteract, id: id, ia: in, at: time.Now()})
}

// Ack implements Backend.
func (s *Server) Ack(id SessionID, t wire.Tick) {
	s.post(sessionEvent{kind: evAck, id: id, tick: t, at: time.Now()})
}

// Close implements Backend.
func (s *Server) Close(id SessionID) { s.post(sessionEvent{kind: evClose, id: id}) }

// Tick implements Backend: the current tick of the map's grid (0 before the first map).
func (s *Server) Tick() wire.Tick { return s.tickAt(time.Now()) }

// --- peer links (link goroutines) ---

// peer takes a message from a link's reader: it waits for mu. (Queuing peer frames like
// session events was measured worse: the to_client p99 went from ~25 µs to ~1.5 ms, as frames
// then waited behind the session events' bursts instead of in the socket.)
func (s *Server) peer(from raftmeta.ServerID, msg wire.PeerMessage, at time.Time) {
	s.lock()
	defer s.unlock()
	locked := time.Now()
	s.router.Peer(from, msg, s.tickAt(at))
	s.drain(&s.met.fwdToClient, at, locked)
}

func (s *Server) linkReset(server raftmeta.ServerID) {
	s.lock()
	defer s.unlock()
	s.router.LinkReset(server, s.tickAt(time.Now()))
	s.drain(nil, time.Time{}, time.Time{})
}

// countStats mirrors the Router's cumulative counters into the metrics (mu held).
func (s *Server) countStats() {
	now, prev := s.router.Stats(), s.last
	s.last = now
	s.met.routerSessions.Set(float64(s.router.Sessions() + len(s.early)))
	add := func(c prometheus.Counter, a, b int) {
		if a > b {
			c.Add(float64(a - b))
		}
	}
	m := s.met
	add(m.routeSwitches, now.RouteSwitches, prev.RouteSwitches)
	add(m.inputsResent, now.InputsResent, prev.InputsResent)
	add(m.resumes, now.Resumes, prev.Resumes)
	add(m.entitiesLost, now.EntitiesLost, prev.EntitiesLost)
	add(m.staleFrames, now.StaleFrames, prev.StaleFrames)
	add(m.orphanLeaves, now.OrphanLeaves, prev.OrphanLeaves)
	for i, get := range routerEvents {
		add(m.eventCounters[i], get.count(&now), get.count(&prev))
	}
}

// routerEvents are the labels of meridian_gateway_router_events_total and their counters:
// every RouterStats field but the six with a metric of their own (countStats; a test checks
// that each field is exported once).
var routerEvents = [...]struct {
	label string
	count func(*RouterStats) int
}{
	{"join", func(s *RouterStats) int { return s.Joins }},
	{"join_retry", func(s *RouterStats) int { return s.JoinRetries }},
	{"join_lost", func(s *RouterStats) int { return s.JoinsLost }},
	{"early_frame", func(s *RouterStats) int { return s.EarlyFrames }},
	{"bad_frame", func(s *RouterStats) int { return s.BadFrames }},
	{"dup_interaction", func(s *RouterStats) int { return s.DupInteractions }},
	{"pending_overflow", func(s *RouterStats) int { return s.PendingOverflow }},
	{"replayed_input", func(s *RouterStats) int { return s.ReplayedInputs }},
	{"rejected", func(s *RouterStats) int { return s.Rejected }},
	{"refused", func(s *RouterStats) int { return s.Refused }},
	{"unrouted", func(s *RouterStats) int { return s.Unrouted }},
	{"ignored", func(s *RouterStats) int { return s.Ignored }},
	{"drop_sent", func(s *RouterStats) int { return s.DropsSent }},
	{"epoch_conflict", func(s *RouterStats) int { return s.EpochConflicts }},
	{"late_snapshot", func(s *RouterStats) int { return s.LateSnapshots }},
	{"synth_welcome", func(s *RouterStats) int { return s.SynthWelcomes }},
	{"orphan_interaction", func(s *RouterStats) int { return s.OrphanInteractions }},
	{"inventory_resent", func(s *RouterStats) int { return s.InventoryResent }},
	{"inventory_overflow", func(s *RouterStats) int { return s.InventoryOverflow }},
}

// routerEventLabels lists the routerEvents labels, comma-separated.
func routerEventLabels() string {
	labels := make([]string, len(routerEvents))
	for i, e := range routerEvents {
		labels[i] = e.label
	}
	return strings.Join(labels, ", ")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// --- metrics ---

type serverMetrics struct {
	routerSessions prometheus.Gauge
	linksUp        prometheus.Gauge
	mapVersion     prometheus.Gauge
	toClient       prometheus.Counter
	toServer       prometheus.Counter
	linkDropped    *prometheus.CounterVec // reason
	linkInvalid    prometheus.Counter     // linkDropped{reason="invalid"}
	linkErrors     *prometheus.CounterVec // reason
	linkSent       prometheus.Counter

	// The forwarding latency by direction, resolved once (no label lookup per message).
	fwdToServer, fwdToClient forwardMetrics

	routeSwitches, inputsResent, resumes, entitiesLost, staleFrames, orphanLeaves prometheus.Counter
	events                                                                        *prometheus.CounterVec                // event
	eventCounters                                                                 [len(routerEvents)]prometheus.Counter // events by routerEvents, resolved once
}

// forwardMetrics observe the latency the gateway adds in one direction: in all
// (meridian_gateway_forward_seconds), and split into waiting for Server.mu
// (meridian_gateway_forward_lock_wait_seconds) and the work under it
// (meridian_gateway_forward_work_seconds).
type forwardMetrics struct {
	toServer         bool
	total, wait, run prometheus.Observer
}

func (f *forwardMetrics) observe(at, locked, done time.Time) {
	f.total.Observe(done.Sub(at).Seconds())
	f.wait.Observe(locked.Sub(at).Seconds())
	f.run.Observe(done.Sub(locked).Seconds())
}

// ForwardBuckets are the buckets of meridian_gateway_forward_seconds: 5 µs to 50 ms.
var ForwardBuckets = []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2}

// newServerMetrics creates the gateway process's collectors. meridian_gateway_sessions is the
// edge's (Metrics.Sessions).
func newServerMetrics(reg prometheus.Registerer) *serverMetrics {
	counter := func(name, help string) prometheus.Counter {
		return promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	gauge := func(name, help string) prometheus.Gauge {
		return promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
	}
	forward := promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meridian_gateway_forward_seconds",
		Help:    "Latency the gateway adds to a message, from reading it (session or peer link) to queuing what it caused on the other side, by direction.",
		Buckets: ForwardBuckets}, []string{"direction"}))
	wait := promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meridian_gateway_forward_lock_wait_seconds",
		Help:    "The part of meridian_gateway_forward_seconds spent waiting for the gateway's routing lock (contention and scheduling), by direction.",
		Buckets: ForwardBuckets}, []string{"direction"}))
	work := promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meridian_gateway_forward_work_seconds",
		Help:    "The part of meridian_gateway_forward_seconds spent under the gateway's routing lock (routing, encoding, queuing), by direction.",
		Buckets: ForwardBuckets}, []string{"direction"}))
	fwd := func(dir string) forwardMetrics {
		return forwardMetrics{toServer: dir == dirToServer,
			total: forward.WithLabelValues(dir), wait: wait.WithLabelValues(dir), run: work.WithLabelValues(dir)}
	}
	dropped := promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_gateway_link_frames_dropped_total",
		Help: "Peer messages for cell servers not queued, by reason (queue_full, no_link, invalid), or discarded from a link's queue because the server restarted while the link was down (server_restarted); the router resends inputs and joins."}, []string{"reason"}))
	events := promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_gateway_router_events_total",
		Help: "Other router events, by event (" + routerEventLabels() + "); see gateway.RouterStats."}, []string{"event"}))
	var eventCounters [len(routerEvents)]prometheus.Counter
	for i, e := range routerEvents {
		eventCounters[i] = events.WithLabelValues(e.label)
	}
	frames := promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_gateway_frames_forwarded_total",
		Help: "Messages forwarded by the gateway, by direction: to_client (client frames from cell servers) or to_server (peer messages queued for cell servers)."},
		[]string{"direction"}))
	return &serverMetrics{
		routerSessions: gauge("meridian_gateway_routed_sessions", "Sessions the router holds (opened, not yet closed), sampled every tick."),
		linksUp:        gauge("meridian_gateway_links_up", "Peer links to cell servers that are connected and past their hello."),
		mapVersion:     gauge("meridian_gateway_map_version", "Version of the partition map the gateway routes by."),
		toClient:       frames.WithLabelValues(dirToClient),
		toServer:       frames.WithLabelValues(dirToServer),
		fwdToServer:    fwd(dirToServer),
		fwdToClient:    fwd(dirToClient),
		linkDropped:    dropped,
		linkInvalid:    dropped.WithLabelValues("invalid"),
		linkErrors: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_gateway_link_errors_total",
			Help: "Peer link connections refused or closed for a protocol error, by reason (hello, bad_hello, version, wrong_server, bad_frame)."}, []string{"reason"})),
		linkSent:      counter("meridian_gateway_link_frames_sent_total", "Peer frames written to cell servers."),
		routeSwitches: counter("meridian_gateway_route_switches_total", "Sessions whose frames started coming from another cell server (handoff or resume)."),
		inputsResent:  counter("meridian_gateway_inputs_resent_total", "Pending inputs and interactions sent again (route switch, broken link, no progress)."),
		resumes:       counter("meridian_gateway_resumes_total", "Entities re-created on another cell server after their owner died."),
		entitiesLost:  counter("meridian_gateway_entities_lost_total", "Sessions disconnected because no frame of their entity came for too long (a join never answered counts as router event join_lost)."),
		staleFrames:   counter("meridian_gateway_stale_frames_total", "Frames dropped because they carried an older authority epoch than the session's newest."),
		orphanLeaves:  counter("meridian_gateway_orphan_leaves_total", "Leaves sent for frames of sessions that had ended (or of another entity)."),
		events:        events,
		eventCounters: eventCounters,
	}
}

package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Router is the gateway's routing core (DESIGN.md §1, §4): between the client sessions the
// Listener holds and the peer links to the cell servers, it decides where each session's
// messages go. It is a deterministic state machine in etcd-io/raft's shape: every event
// method takes the current logical tick and appends what is to be done to an output the
// driver drains (Output) after every call, so a frame is forwarded the moment it arrives;
// Tick runs the timeouts. It does no I/O, reads no clock, starts no goroutine and draws no
// random number; the same calls give the same outputs. It is not safe for concurrent use.
//
// # Sessions
//
// A session opened here (Open) is joined to the cell server owning the cell that contains its
// spawn point: a wire.JoinMsg, resent every RetryTicks to that same server (which ignores a
// join it already took; another server would create a second entity) until the session's first
// frame arrives, or to the spawn cell's current owner once that server is no longer alive in
// the map. The entity's owner sends the session's client frames (wire.FrameMsg: a Welcome
// first, then snapshots and interactions) with the entity's authority epoch, its last applied
// input sequence and its position; the router routes the session's inputs, interactions and
// acks to the server that sent the newest frames. An entity handed to another server shows up
// as frames with a higher authority epoch from that server: a route switch.
//
// Inputs and interactions share one sequence (wire.Interact.Seq is numbered with
// wire.Input.Seq). Each is kept, in sequence order, until a frame's LastSeq covers it, and sent
// again after a route switch, a broken link to the owner (LinkReset) or RetryTicks without
// progress; the owner applies a sequence in order and drops replays, so a resend is harmless.
//
// An inventory interaction (wire.InteractInventory) must get its result to the client exactly
// once, even if its owner dies between applying it and the result reaching the gateway (or
// before PostgreSQL committed it). So once a frame's LastSeq covers it, it is not forgotten
// but kept in a second per-session list until an Interaction of kind
// wire.InteractInventoryResult with From = the session's entity and Seq = its seq passes
// through the Router for the session. Whenever the route switches (frames from another
// server, or at a higher authority epoch: a handoff, a takeBack, a resume) it is sent again
// to the new owner, before the unapplied entries; that owner takes a resend at or below its
// LastSeq as a replay: it runs the operation again by its key "ix:<actor>:<seq>" (PostgreSQL
// answers with the first outcome, or applies it if it never committed) and sends the result.
// It is not resent on the no-progress timer or a broken link while the owner is unchanged: the
// owner is still working on it (and resends its result frame until the gateway acks it). The
// list is bounded by MaxPendingInputs too (RouterStats.InventoryOverflow) and goes with the
// session.
//
// If the owner is declared dead in the map and no frame came for ResumeAfterTicks, the entity
// is re-created on the owner of the cell at its last known position (a JoinMsg with Resume =
// the entity, its newest authority epoch and LastSeq); the first frame with a higher authority
// epoch ends the resume. A session that got no frame for LostAfterTicks (or whose join was
// never answered) is disconnected with wire.ReasonEntityLost.
//
// Frames the router cannot place (an unknown session, another entity than the session's) are
// answered with a wire.LeaveMsg, so an entity whose session is gone does not stay for good.
type Router struct {
	cfg RouterConfig
	now wire.Tick // the newest tick seen: ticks passed in never go back

	mapv   *raftmeta.Map
	alive  map[raftmeta.ServerID]bool
	diedAt map[raftmeta.ServerID]wire.Tick // servers seen going from alive to dead, and when
	lookup routerLookup

	sessions map[SessionID]*routedSession
	order    []SessionID // the sessions in ascending id order, once compacted
	unsorted bool        // order may be out of order or hold duplicates
	removed  int         // sessions forgotten but still in order

	out     RouterOutput
	drained bool // Output was called: the next call starts a new output
	inputs  routerArena[wire.InputMsg]
	acks    routerArena[wire.AckMsg]
	leaves  routerArena[wire.LeaveMsg]
	joins   routerArena[wire.JoinMsg]
	interax routerArena[wire.InteractMsg]
	iacks   routerArena[wire.InteractAckMsg]
	drops   routerArena[wire.DropMsg]

	stats RouterStats
}

// RouterConfig configures a Router. Durations are in ticks (50 ms).
type RouterConfig struct {
	// Home is the gateway's peer-link id (wire.GatewayIDBase + its id), the Home of every
	// session here.
	Home uint64
	// RetryTicks: an unanswered JoinMsg is sent again, and unapplied inputs are sent again when
	// the owner's LastSeq made no progress for this long.
	RetryTicks int
	// ResumeAfterTicks: the owner is not alive in the map and no frame came for this long → the
	// entity is re-created on the owner of the cell at its last position.
	ResumeAfterTicks int
	// StaleRouteTicks: no frame came for this long although the owner is alive → the entity is
	// re-created the same way (it was handed to a server that died before its first frame).
	// Longer than any transfer or migration may take (a change aborts after its timeout).
	StaleRouteTicks int
	// LostAfterTicks: no frame at all for this long (after the first; from Open for a join never
	// answered) → the session is disconnected with wire.ReasonEntityLost.
	LostAfterTicks int
	// MaxPendingInputs bounds the inputs and interactions kept per session until the owner
	// applies them; beyond it the oldest is dropped (RouterStats.PendingOverflow). It bounds
	// apart the applied inventory interactions kept per session until their result passes
	// (RouterStats.InventoryOverflow).
	MaxPendingInputs int
	// DedupTicks: how long an interaction (From, Seq) delivered to a session is remembered, to
	// drop a copy a server resends. A cell server resends an interaction frame until the
	// gateway acks it, for its MemberConfig.RememberTicks (1 200 by default): this must be longer.
	DedupTicks int
	// EntityKind is the kind of the entities joined for sessions.
	EntityKind uint8
}

// DefaultRouterConfig returns the defaults for a gateway whose peer-link id is home
// (wire.GatewayIDBase + the gateway's id).
func DefaultRouterConfig(home uint64) RouterConfig {
	return RouterConfig{
		Home:             home,
		RetryTicks:       5,
		ResumeAfterTicks: 20,
		StaleRouteTicks:  200,
		LostAfterTicks:   400,
		MaxPendingInputs: 128,
		DedupTicks:       1400,
	}
}

// ErrBadRouterConfig is wrapped by the error RouterConfig.Validate returns.
var ErrBadRouterConfig = errors.New("gateway: invalid router config")

// maxRouterPending bounds RouterConfig.MaxPendingInputs.
const maxRouterPending = 1 << 16

// Validate names the first field out of bounds and the bound.
func (c RouterConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: RouterConfig."+format, append([]any{ErrBadRouterConfig}, args...)...)
	}
	switch {
	case !wire.IsGatewayID(c.Home):
		return bad("Home (%d) must be ≥ wire.GatewayIDBase (%d)", c.Home, wire.GatewayIDBase)
	case c.RetryTicks < 1:
		return bad("RetryTicks (%d) must be ≥ 1", c.RetryTicks)
	case c.ResumeAfterTicks < 1:
		return bad("ResumeAfterTicks (%d) must be ≥ 1", c.ResumeAfterTicks)
	case c.LostAfterTicks <= c.ResumeAfterTicks:
		return bad("LostAfterTicks (%d) must be > ResumeAfterTicks (%d)", c.LostAfterTicks, c.ResumeAfterTicks)
	case c.StaleRouteTicks <= c.ResumeAfterTicks || c.StaleRouteTicks >= c.LostAfterTicks:
		return bad("StaleRouteTicks (%d) must be in (ResumeAfterTicks %d, LostAfterTicks %d)", c.StaleRouteTicks, c.ResumeAfterTicks, c.LostAfterTicks)
	case c.MaxPendingInputs < 1 || c.MaxPendingInputs > maxRouterPending:
		return bad("MaxPendingInputs (%d) must be in [1, %d]", c.MaxPendingInputs, maxRouterPending)
	case c.DedupTicks < 1:
		return bad("DedupTicks (%d) must be ≥ 1", c.DedupTicks)
	}
	return nil
}

// PeerOut is a message for a cell server. Msg (and the byte slices in it) alias the Router's
// buffers and the peer messages passed to it: encode it before the next call.
type PeerOut struct {
	To  raftmeta.ServerID
	Msg wire.PeerMessage
}

// SessionFrame is a client frame for a session, to write as it is. Control frames (a welcome,
// an interaction) must never be superseded; the others (snapshots) may be, by a newer one.
// Frame may alias a peer message passed to the Router: copy it before the next call.
type SessionFrame struct {
	Session SessionID
	Frame   []byte
	Control bool
}

// SessionClose is a session to disconnect. The Router has already forgotten it (and sent a
// Leave where one was due); closing it later with Router.Close is a no-op.
type SessionClose struct {
	Session SessionID
	Reason  wire.DisconnectReason
}

// RouterOutput is what the calls since the last Output produced, in order.
type RouterOutput struct {
	Send       []PeerOut
	Frames     []SessionFrame
	Disconnect []SessionClose
}

// Empty reports whether there is nothing to do.
func (o *RouterOutput) Empty() bool {
	return len(o.Send) == 0 && len(o.Frames) == 0 && len(o.Disconnect) == 0
}

// RouterStats are cumulative counters.
type RouterStats struct {
	Joins          int // joins sent for new sessions (first send)
	JoinRetries    int // joins and resume joins sent again (retry, LinkReset, target died)
	Resumes        int // entities re-created elsewhere after their owner died
	RouteSwitches  int // a session's frames came from another server (a handoff or a resume)
	InputsResent   int // pending inputs and interactions sent again
	StaleFrames    int // frames with an authority epoch below the session's newest
	DropsSent      int // DropMsgs sent for stale frames from a server other than the owner
	EpochConflicts int // frames from a second server at the owner's authority epoch (a second copy)
	EarlyFrames    int // frames other than snapshots and interactions before the session's welcome, and held interactions beyond the bound
	LateSnapshots  int // snapshots not newer than one already delivered (reordered across two servers' links)
	SynthWelcomes  int // welcomes the gateway wrote itself because a snapshot came before the server's welcome
	BadFrames      int // forwarded frames without a whole client frame, or with an undecodable interaction
	OrphanLeaves   int // leaves sent for frames of unknown sessions or of another entity
	// DupInteractions: interactions dropped because the same (From, Seq) was delivered to the
	// session within DedupTicks.
	DupInteractions    int
	OrphanInteractions int // interactions for sessions gone here (answered undelivered)
	PendingOverflow    int // pending inputs and interactions dropped because MaxPendingInputs was reached
	ReplayedInputs     int // inputs and interactions whose Seq was 0, already applied or already pending
	Rejected           int // inputs and interactions a cell server would reject (wire validation)
	EntitiesLost       int // sessions disconnected because no frame came for LostAfterTicks
	JoinsLost          int // sessions disconnected because their join was not answered within LostAfterTicks
	Refused            int // sessions disconnected because their join was refused
	Unrouted           int // inputs, interactions and acks for unknown sessions
	Ignored            int // peer messages a gateway does not take, refusals from a server the join did not go to
	// InventoryResent: applied inventory interactions without a result sent again to a new
	// owner after a route switch (handoff, takeBack, resume), for it to replay by key.
	InventoryResent int
	// InventoryOverflow: applied inventory interactions awaiting their result forgotten
	// because MaxPendingInputs of them were kept (the oldest goes; it is not resent).
	InventoryOverflow int
}

// routedSession is a session's routing state.
type routedSession struct {
	id     SessionID
	player wire.PlayerID // the authenticated player; carried in every join
	opened wire.Tick

	entity    wire.EntityID     // 0 until the first frame
	owner     raftmeta.ServerID // the server that sent the newest frames; 0 until the first
	auth      uint64            // the newest authority epoch a frame came with
	lastSeq   uint32            // the newest LastSeq a frame came with
	x, z      int32             // last known position (the spawn until the first frame), units
	lastFrame wire.Tick         // the tick the last accepted frame came at
	welcomed  bool
	snapTick  wire.Tick // the newest snapshot tick delivered: older ones are dropped

	// The join (or resume) in progress: entity == 0 or resuming.
	resuming    bool
	joinTo      raftmeta.ServerID // 0: not sent yet (no map, no live owner)
	joinSent    wire.Tick
	attemptSent bool // the join (or this resume) was sent at least once

	pending    []routerPending // unapplied inputs and interactions, by seq
	progressAt wire.Tick       // the last LastSeq advance or resend (or first pending entry)
	// inventory: inventory interactions applied (seq ≤ lastSeq) whose result has not passed
	// yet, by seq; resent on a route switch (inventoryDue: not yet, the owner was not routable).
	inventory    []routerPending
	inventoryDue bool

	early []routerEarly // interactions that came before the welcome (copies)
	dedup routerDedup
}

// routerPending is an input or an interaction kept until the owner applies it.
type routerPending struct {
	seq      uint32
	interact bool
	resulted bool // an inventory interaction whose result passed before LastSeq covered it
	input    wire.Input
	ia       wire.Interact // Data is the router's copy
}

// awaitsResult: an inventory interaction whose result has not passed yet.
func (p *routerPending) awaitsResult() bool {
	return p.interact && p.ia.Kind == wire.InteractInventory && !p.resulted
}

type routerEarly struct {
	frame []byte
}

// maxEarlyControls bounds the interactions held for a session before its welcome.
const maxEarlyControls = 16

// NewRouter returns a Router with no map and no session.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Router{
		cfg:      cfg,
		alive:    map[raftmeta.ServerID]bool{},
		diedAt:   map[raftmeta.ServerID]wire.Tick{},
		sessions: map[SessionID]*routedSession{},
	}, nil
}

// Config returns the Router's configuration.
func (r *Router) Config() RouterConfig { return r.cfg }

// Output returns what the calls since the last Output produced. It is valid until the next
// call of any method of the Router.
func (r *Router) Output() *RouterOutput {
	r.drained = true
	return &r.out
}

// Stats returns the cumulative counters.
func (r *Router) Stats() RouterStats { return r.stats }

// Sessions is the number of sessions the Router knows.
func (r *Router) Sessions() int { return len(r.sessions) }

// Route returns a session's entity and the server its inputs go to; ok is false for an unknown
// session or one whose entity is not known yet.
func (r *Router) Route(s SessionID) (entity wire.EntityID, owner raftmeta.ServerID, ok bool) {
	rs := r.sessions[s]
	if rs == nil || rs.entity == 0 {
		return 0, 0, false
	}
	return rs.entity, rs.owner, true
}

// Map returns the map the Router applied last (nil before the first).
func (r *Router) Map() *raftmeta.Map { return r.mapv }

// begin starts a call: a new output if the last one was drained, and the tick (which never
// goes back: a stale tick is taken as the newest seen).
func (r *Router) begin(t wire.Tick) wire.Tick {
	if r.drained {
		r.drained = false
		clear(r.out.Send)
		clear(r.out.Frames)
		r.out.Send, r.out.Frames, r.out.Disconnect = r.out.Send[:0], r.out.Frames[:0], r.out.Disconnect[:0]
		r.inputs.reset()
		r.acks.reset()
		r.leaves.reset()
		r.joins.reset()
		r.interax.reset()
		r.iacks.reset()
		r.drops.reset()
	}
	if t > r.now {
		r.now = t
	}
	return r.now
}

// SetMap applies a partition map newer than (or as new as) the last; an older one is ignored.
// The Router keeps m: the caller must not modify it afterwards. Joins waiting for a map are
// sent, joins to servers no longer alive are redirected and resumes start, as on Tick.
func (r *Router) SetMap(m *raftmeta.Map, t wire.Tick) {
	t = r.begin(t)
	if m == nil || (r.mapv != nil && m.Version < r.mapv.Version) {
		return
	}
	r.mapv = m
	was := maps.Clone(r.alive)
	clear(r.alive)
	for i := range m.Servers {
		if m.Servers[i].Alive {
			r.alive[m.Servers[i].ID] = true
		}
	}
	for id := range was {
		if !r.alive[id] {
			r.diedAt[id] = t // seen dead from now
		}
	}
	for id := range r.diedAt {
		if r.alive[id] {
			delete(r.diedAt, id) // re-registered
		}
	}
	r.lookup.build(m)
	r.sweep(t)
}

// Open starts routing a new session of player (0: none) whose entity spawns at spawn (x, z
// metres); every join it sends carries the player. The join is sent at once if the map has a
// live owner for the spawn cell, else when a map allows. Opening a session the Router knows is
// a no-op.
func (r *Router) Open(s SessionID, player wire.PlayerID, spawn [2]float64, t wire.Tick) {
	t = r.begin(t)
	if _, dup := r.sessions[s]; dup || s == 0 {
		return
	}
	rs := &routedSession{
		id:     s,
		player: player,
		opened: t,
		x:      wire.QuantisePos(spawn[0]),
		z:      wire.QuantisePos(spawn[1]),
	}
	r.sessions[s] = rs
	if n := len(r.order); n > 0 && r.order[n-1] >= s {
		r.unsorted = true
	}
	r.order = append(r.order, s)
	r.dispatchJoin(rs, t)
}

// Input routes a client input: kept until the owner applies it, and sent to the owner now if
// it is known and alive.
func (r *Router) Input(s SessionID, in wire.Input, t wire.Tick) {
	t = r.begin(t)
	rs := r.sessions[s]
	if rs == nil {
		r.stats.Unrouted++
		return
	}
	if err := in.Validate(); err != nil {
		r.stats.Rejected++
		return
	}
	r.keep(rs, routerPending{seq: in.Seq, input: in}, t)
}

// Interact routes a client interaction like an input (they share one sequence): to the owner
// of the session's entity, which recognises a wire.InteractMsg whose Origin is the session's
// home as the client's. in.Data is copied.
func (r *Router) Interact(s SessionID, in wire.Interact, t wire.Tick) {
	t = r.begin(t)
	rs := r.sessions[s]
	if rs == nil {
		r.stats.Unrouted++
		return
	}
	probe := wire.InteractMsg{Origin: r.cfg.Home, Actor: 1, Seq: in.Seq, Target: in.Target, Kind: in.Kind, Data: in.Data}
	if in.Seq != 0 {
		if err := probe.Validate(); err != nil {
			r.stats.Rejected++
			return
		}
	}
	in.Data = slices.Clone(in.Data)
	r.keep(rs, routerPending{seq: in.Seq, interact: true, ia: in}, t)
}

// keep adds an input or interaction to a session's pending list and sends it if it can.
func (r *Router) keep(rs *routedSession, p routerPending, t wire.Tick) {
	if p.seq == 0 || p.seq <= rs.lastSeq {
		r.stats.ReplayedInputs++
		return
	}
	i, found := findPending(rs.pending, p.seq)
	if found {
		r.stats.ReplayedInputs++
		return
	}
	rs.pending = slices.Insert(rs.pending, i, p)
	if len(rs.pending) == 1 {
		rs.progressAt = t
	}
	if len(rs.pending) > r.cfg.MaxPendingInputs {
		r.stats.PendingOverflow++
		rs.pending[0] = routerPending{}
		rs.pending = slices.Delete(rs.pending, 0, 1)
		if i == 0 {
			return // the new one was the oldest
		}
		i--
	}
	if r.routable(rs) {
		r.sendPending(rs, &rs.pending[i])
	}
}

// Ack forwards a client's snapshot ack to the owner (not kept, not resent).
func (r *Router) Ack(s SessionID, tick wire.Tick) {
	r.begin(0)
	rs := r.sessions[s]
	if rs == nil {
		r.stats.Unrouted++
		return
	}
	if tick == 0 || !r.routable(rs) {
		return
	}
	m := r.acks.put(wire.AckMsg{Home: r.cfg.Home, Client: uint32(s), Entity: rs.entity, Tick: tick})
	r.send(rs.owner, m)
}

// Close forgets a session. If its entity is known, the owner (and the target of a resume in
// progress) is sent a Leave; if not, a frame arriving later is answered with one.
func (r *Router) Close(s SessionID, t wire.Tick) {
	r.begin(t)
	rs := r.sessions[s]
	if rs == nil {
		return
	}
	r.leave(rs)
	r.forget(rs)
}

// leave sends the Leaves due when a session with a known entity ends.
func (r *Router) leave(rs *routedSession) {
	if rs.entity == 0 {
		return
	}
	if rs.owner != 0 {
		r.send(rs.owner, r.leaves.put(wire.LeaveMsg{Home: r.cfg.Home, Client: uint32(rs.id), Entity: rs.entity}))
	}
	if rs.resuming && rs.joinTo != 0 && rs.joinTo != rs.owner {
		r.send(rs.joinTo, r.leaves.put(wire.LeaveMsg{Home: r.cfg.Home, Client: uint32(rs.id), Entity: rs.entity}))
	}
}

func (r *Router) forget(rs *routedSession) {
	delete(r.sessions, rs.id)
	r.removed++
}

// Peer takes a message from cell server from: a FrameMsg for a session, or a RefuseMsg of a
// join. Anything else is counted (Ignored) and dropped.
func (r *Router) Peer(from raftmeta.ServerID, msg wire.PeerMessage, t wire.Tick) {
	t = r.begin(t)
	switch m := msg.(type) {
	case *wire.FrameMsg:
		r.onFrame(from, m, t)
	case *wire.RefuseMsg:
		r.onRefuse(from, m)
	default:
		r.stats.Ignored++
	}
}

func (r *Router) onFrame(from raftmeta.ServerID, m *wire.FrameMsg, t wire.Tick) {
	rs := r.sessions[SessionID(m.Client)]
	typ, payload, _, err := wire.SplitFrame(m.Frame)
	if err == nil && typ == wire.MsgInteraction {
		r.onInteraction(from, rs, m, payload, t)
		return
	}
	if rs == nil || (rs.entity != 0 && rs.entity != m.Entity) {
		// The session ended (or took another entity) and the owner missed its Leave (lost on a
		// broken link, sent before the entity existed, or the join went to two servers): say
		// it, or the entity would stay for good.
		r.stats.OrphanLeaves++
		r.send(from, r.leaves.put(wire.LeaveMsg{Home: r.cfg.Home, Client: m.Client, Entity: m.Entity}))
		return
	}
	if m.AuthEpoch < rs.auth {
		// A welcome can arrive after frames of a newer owner (the entity was handed off at once,
		// on another link): deliver it all the same, or the client never starts.
		if err == nil && typ == wire.MsgWelcome && !rs.welcomed {
			r.welcome(rs, m.Frame)
			return
		}
		r.stats.StaleFrames++
		if from != rs.owner && rs.entity == m.Entity {
			// Another server still holds an older copy (a resume raced a takeBack, say): it
			// must go. Harmless if it left already: a Drop is never forwarded.
			r.drop(from, m)
		}
		return
	}
	if m.AuthEpoch == rs.auth && rs.owner != 0 && from != rs.owner && rs.entity == m.Entity {
		// Every move of an entity raises its epoch: a second server with the same epoch holds a
		// second copy (a resume and a takeBack after a death, both one above the dead copy).
		// The first one heard keeps the route; the other is told to drop its copy.
		r.stats.StaleFrames++
		r.stats.EpochConflicts++
		r.drop(from, m)
		return
	}

	first := rs.entity == 0
	// A resume ends with a frame from a newer copy, or from a live server holding the one the
	// Router knew (the owner was alive all along and only its frames were late).
	resumed := rs.resuming && (m.AuthEpoch > rs.auth || (m.AuthEpoch == rs.auth && r.alive[from]))
	// The authority moved (another server, or the same one after a round trip): what it has
	// not applied goes to it now.
	switched := !first && (from != rs.owner || m.AuthEpoch > rs.auth)
	moved := !first && from != rs.owner
	if first {
		rs.entity, rs.joinTo = m.Entity, 0
	}
	if resumed {
		rs.resuming, rs.joinTo = false, 0
	}
	rs.auth, rs.owner = m.AuthEpoch, from
	rs.x, rs.z = m.X, m.Z
	rs.lastFrame = t
	if m.LastSeq > rs.lastSeq {
		rs.lastSeq = m.LastSeq
		rs.progressAt = t
		k := 0
		for k < len(rs.pending) && rs.pending[k].seq <= m.LastSeq {
			if rs.pending[k].awaitsResult() {
				r.awaitResult(rs, rs.pending[k])
			}
			k++
		}
		if k > 0 {
			n := copy(rs.pending, rs.pending[k:])
			clear(rs.pending[n:])
			rs.pending = rs.pending[:n]
		}
	}
	switch {
	case first:
		r.sendAllPending(rs, t, false)
	case switched || resumed:
		if moved {
			r.stats.RouteSwitches++
		}
		if switched {
			rs.inventoryDue = true
			r.resendInventory(rs)
		}
		r.sendAllPending(rs, t, true)
	}

	if err != nil {
		r.stats.BadFrames++
		return
	}
	switch typ {
	case wire.MsgWelcome:
		if !rs.welcomed {
			r.welcome(rs, m.Frame)
		}
		// Otherwise a welcome after a resume: the client has its entity, whose id is unchanged.
	case wire.MsgSnapshot:
		h, err := wire.PeekSnapshotHeader(payload)
		if err != nil {
			r.stats.BadFrames++
			return
		}
		if h.ServerTick <= rs.snapTick {
			// Reordered on the way (two servers' frames around a handoff): the client must see
			// snapshot ticks only go forward; the next one is a delta against what it acked.
			r.stats.LateSnapshots++
			return
		}
		if !rs.welcomed {
			// The server's welcome was lost or is late: the gateway knows all it says.
			r.welcome(rs, r.synthWelcome(m.Entity, h.ServerTick))
		}
		rs.snapTick = h.ServerTick
		r.out.Frames = append(r.out.Frames, SessionFrame{Session: rs.id, Frame: m.Frame})
	default:
		if !rs.welcomed {
			r.stats.EarlyFrames++
			return
		}
		r.out.Frames = append(r.out.Frames, SessionFrame{Session: rs.id, Frame: m.Frame, Control: true})
	}
}

// onInteraction delivers an interaction aimed at a session's entity, once, and acknowledges it to
// the server that sent it (which resends it until then). It is not routing: whichever server
// delivered it, with whatever authority epoch (the target may have moved on since).
func (r *Router) onInteraction(from raftmeta.ServerID, rs *routedSession, m *wire.FrameMsg, payload []byte, t wire.Tick) {
	ia, err := wire.DecodeInteraction(payload)
	if err != nil {
		r.stats.BadFrames++
		return
	}
	delivered := rs != nil && (rs.entity == 0 || rs.entity == m.Entity)
	r.send(from, r.iacks.put(wire.InteractAckMsg{Actor: ia.From, Seq: ia.Seq, Delivered: delivered}))
	if !delivered {
		r.stats.OrphanInteractions++ // its session is gone: the sender stops resending
		return
	}
	if !rs.dedup.add(routerDedupKey{ia.From, ia.Seq}, t, r.cfg.DedupTicks) {
		r.stats.DupInteractions++
		return
	}
	if !rs.welcomed {
		if len(rs.early) >= maxEarlyControls {
			r.stats.EarlyFrames++
			return
		}
		rs.early = append(rs.early, routerEarly{frame: slices.Clone(m.Frame)})
		r.resulted(rs, &ia)
		return
	}
	r.resulted(rs, &ia)
	r.out.Frames = append(r.out.Frames, SessionFrame{Session: rs.id, Frame: m.Frame, Control: true})
}

// resulted ends the wait for an inventory interaction's result: ia is the session's, delivered
// (or held for its welcome).
func (r *Router) resulted(rs *routedSession, ia *wire.Interaction) {
	if ia.Kind != wire.InteractInventoryResult || rs.entity == 0 || ia.From != rs.entity {
		return
	}
	if i, ok := findPending(rs.inventory, ia.Seq); ok {
		rs.inventory[i] = routerPending{}
		rs.inventory = slices.Delete(rs.inventory, i, i+1)
		return
	}
	// The result overtook the frame whose LastSeq covers the interaction.
	if i, ok := findPending(rs.pending, ia.Seq); ok && rs.pending[i].interact && rs.pending[i].ia.Kind == wire.InteractInventory {
		rs.pending[i].resulted = true
	}
}

// awaitResult keeps an applied inventory interaction until its result passes (the oldest goes
// beyond MaxPendingInputs).
func (r *Router) awaitResult(rs *routedSession, p routerPending) {
	i, found := findPending(rs.inventory, p.seq)
	if found {
		return
	}
	rs.inventory = slices.Insert(rs.inventory, i, p)
	if len(rs.inventory) > r.cfg.MaxPendingInputs {
		r.stats.InventoryOverflow++
		rs.inventory[0] = routerPending{}
		rs.inventory = slices.Delete(rs.inventory, 0, 1)
	}
}

// resendInventory sends the applied inventory interactions still without a result to the
// session's (new) owner, for it to replay by key, if a route switch made it due and the owner
// is routable (else the sweep does once it is).
func (r *Router) resendInventory(rs *routedSession) {
	if !rs.inventoryDue || !r.routable(rs) {
		return
	}
	rs.inventoryDue = false
	for i := range rs.inventory {
		r.sendPending(rs, &rs.inventory[i])
	}
	r.stats.InventoryResent += len(rs.inventory)
}

// findPending finds seq in a list sorted by seq: its index, or where it would go.
func findPending(list []routerPending, seq uint32) (int, bool) {
	return slices.BinarySearchFunc(list, seq, func(e routerPending, seq uint32) int {
		return cmp.Compare(e.seq, seq)
	})
}

// drop tells a server that sent a frame of an older (or conflicting) copy of a session's entity
// to drop that copy, if it still has it with an epoch no newer than the frame's.
func (r *Router) drop(from raftmeta.ServerID, m *wire.FrameMsg) {
	r.stats.DropsSent++
	r.send(from, r.drops.put(wire.DropMsg{Home: r.cfg.Home, Client: m.Client, Entity: m.Entity, AuthEpoch: m.AuthEpoch}))
}

// clusterTickHz is the cluster's tick rate: every server ticks on the 50 ms grid (DESIGN.md §1a).
const clusterTickHz = 20

// synthWelcome builds the Welcome a cell server would have sent: the entity, the tick, the
// world's bounds from the map.
func (r *Router) synthWelcome(e wire.EntityID, t wire.Tick) []byte {
	w := wire.Welcome{Version: wire.ProtocolVersion, Entity: e, ServerTick: t, TickHz: clusterTickHz}
	if r.mapv != nil {
		w.WorldMin = [2]int32{wire.QuantisePos(r.mapv.World.Min[0]), wire.QuantisePos(r.mapv.World.Min[1])}
		w.WorldMax = [2]int32{wire.QuantisePos(r.mapv.World.Max[0]), wire.QuantisePos(r.mapv.World.Max[1])}
	}
	r.stats.SynthWelcomes++
	return w.AppendFrame(nil)
}

// welcome delivers a session's welcome and the interactions held for it.
func (r *Router) welcome(rs *routedSession, frame []byte) {
	rs.welcomed = true
	r.out.Frames = append(r.out.Frames, SessionFrame{Session: rs.id, Frame: frame, Control: true})
	for _, e := range rs.early {
		r.out.Frames = append(r.out.Frames, SessionFrame{Session: rs.id, Frame: e.frame, Control: true})
	}
	rs.early = nil
}

func (r *Router) onRefuse(from raftmeta.ServerID, m *wire.RefuseMsg) {
	rs := r.sessions[SessionID(m.Client)]
	if rs == nil || !(rs.entity == 0 || rs.resuming) || rs.joinTo != from {
		r.stats.Ignored++
		return
	}
	r.stats.Refused++
	r.out.Disconnect = append(r.out.Disconnect, SessionClose{Session: rs.id, Reason: m.Reason})
	r.forget(rs)
}

// LinkReset says the link to server broke, so what was sent on it may be lost: the sessions it
// owns get their pending inputs again, and joins to it are sent again. Call it when the link
// is back (or at the break, if the driver queues what is sent until then); the Tick retries
// cover anything else.
func (r *Router) LinkReset(server raftmeta.ServerID, t wire.Tick) {
	t = r.begin(t)
	r.compact()
	for _, id := range r.order {
		rs := r.sessions[id]
		if (rs.entity == 0 || rs.resuming) && rs.joinTo == server && r.alive[server] {
			r.sendJoin(rs, server, t)
			r.stats.JoinRetries++
		}
		if rs.owner == server && len(rs.pending) > 0 && r.routable(rs) {
			r.sendAllPending(rs, t, true)
		}
	}
}

// Tick runs the timeouts: join retries, resends of pending inputs without progress, resumes of
// entities whose owner died, and disconnects of sessions whose entity is lost. The driver calls
// it every tick.
func (r *Router) Tick(t wire.Tick) {
	t = r.begin(t)
	r.sweep(t)
}

// sweep checks every session, in id order.
func (r *Router) sweep(t wire.Tick) {
	r.compact()
	retry := wire.Tick(r.cfg.RetryTicks)
	for _, id := range r.order {
		rs := r.sessions[id]
		if rs == nil {
			continue // forgotten by this sweep (a disconnect)
		}
		rs.dedup.expire(t, r.cfg.DedupTicks)
		if rs.entity == 0 {
			if t-rs.opened >= wire.Tick(r.cfg.LostAfterTicks) {
				r.stats.JoinsLost++
				r.lost(rs)
				continue
			}
			r.dispatchJoin(rs, t)
			continue
		}
		if t-rs.lastFrame >= wire.Tick(r.cfg.LostAfterTicks) {
			r.stats.EntitiesLost++
			r.lost(rs)
			continue
		}
		silent := t - rs.lastFrame
		switch {
		case rs.resuming:
		case !r.alive[rs.owner] && silent >= wire.Tick(r.cfg.ResumeAfterTicks) && r.deadFor(rs.owner, t) >= wire.Tick(r.cfg.ResumeAfterTicks),
			silent >= wire.Tick(r.cfg.StaleRouteTicks):
			// Its owner died; or its owner lives but no frame came for StaleRouteTicks, longer
			// than any transfer takes: the entity went on to a server that died before it sent
			// a frame, and the live owner only forwards to the dead one.
			rs.resuming, rs.joinTo, rs.attemptSent = true, 0, false
			r.stats.Resumes++
		}
		if rs.resuming {
			r.dispatchJoin(rs, t)
			continue
		}
		r.resendInventory(rs) // if a route switch left it due
		if len(rs.pending) > 0 && r.routable(rs) && t-rs.progressAt >= retry {
			r.sendAllPending(rs, t, true)
		}
	}
}

// deadFor is how long a server has been seen dead (one never seen alive: counted from tick 0,
// so at once). A resume waits ResumeAfterTicks after its owner's death is seen: the server
// that handed the entity to it may take it back (when the handoff was not acknowledged), with an
// authority epoch above the dead one's, and its frames must win the race, or there would be two
// copies.
func (r *Router) deadFor(s raftmeta.ServerID, t wire.Tick) wire.Tick {
	if at, ok := r.diedAt[s]; ok {
		return t - at
	}
	return t
}

// lost disconnects a session whose entity is gone (or never came).
func (r *Router) lost(rs *routedSession) {
	if r.alive[rs.owner] {
		r.leave(rs)
	}
	r.out.Disconnect = append(r.out.Disconnect, SessionClose{Session: rs.id, Reason: wire.ReasonEntityLost})
	r.forget(rs)
}

// dispatchJoin sends a session's join (or resume) if it is due: again to the server it went to
// while that one is alive, every RetryTicks; else to the live owner of the cell at the
// session's position, if there is one.
func (r *Router) dispatchJoin(rs *routedSession, t wire.Tick) {
	if rs.joinTo != 0 && r.alive[rs.joinTo] {
		if t-rs.joinSent >= wire.Tick(r.cfg.RetryTicks) {
			r.stats.JoinRetries++
			r.sendJoin(rs, rs.joinTo, t)
		}
		return
	}
	rs.joinTo = 0
	to := r.ownerAt(rs.x, rs.z)
	if to == 0 {
		return // wait for a map with a live owner there
	}
	switch {
	case rs.attemptSent:
		r.stats.JoinRetries++ // redirected: the server it went to is no longer alive
	case !rs.resuming:
		r.stats.Joins++
	}
	r.sendJoin(rs, to, t)
}

func (r *Router) sendJoin(rs *routedSession, to raftmeta.ServerID, t wire.Tick) {
	m := r.joins.put(wire.JoinMsg{
		Home: r.cfg.Home, Client: uint32(rs.id), Kind: r.cfg.EntityKind, X: rs.x, Z: rs.z,
		PlayerID: rs.player,
	})
	if rs.resuming {
		m.Resume, m.AuthEpoch, m.LastSeq = rs.entity, rs.auth, rs.lastSeq
	}
	rs.joinTo, rs.joinSent, rs.attemptSent = to, t, true
	r.send(to, m)
}

// routable reports whether a session's inputs can go to its owner now.
func (r *Router) routable(rs *routedSession) bool {
	return rs.entity != 0 && !rs.resuming && r.alive[rs.owner]
}

// sendAllPending sends every pending entry to the owner, in order, if it can.
func (r *Router) sendAllPending(rs *routedSession, t wire.Tick, resend bool) {
	if !r.routable(rs) {
		return
	}
	rs.progressAt = t
	for i := range rs.pending {
		r.sendPending(rs, &rs.pending[i])
	}
	if resend {
		r.stats.InputsResent += len(rs.pending)
	}
}

func (r *Router) sendPending(rs *routedSession, p *routerPending) {
	if p.interact {
		r.send(rs.owner, r.interax.put(wire.InteractMsg{
			Origin: r.cfg.Home, Actor: rs.entity, Seq: p.seq,
			Target: p.ia.Target, Kind: p.ia.Kind, Data: p.ia.Data,
		}))
		return
	}
	r.send(rs.owner, r.inputs.put(wire.InputMsg{Home: r.cfg.Home, Client: uint32(rs.id), Entity: rs.entity, Input: p.input}))
}

func (r *Router) send(to raftmeta.ServerID, m wire.PeerMessage) {
	r.out.Send = append(r.out.Send, PeerOut{To: to, Msg: m})
}

// compact drops forgotten sessions from order and sorts it if needed.
func (r *Router) compact() {
	if r.removed == 0 && !r.unsorted {
		return
	}
	r.order = slices.DeleteFunc(r.order, func(id SessionID) bool { return r.sessions[id] == nil })
	if r.unsorted {
		slices.Sort(r.order)
		r.order = slices.Compact(r.order)
	}
	r.removed, r.unsorted = 0, false
}

// ownerAt returns the live owner of the cell containing (x, z) (position units), or 0.
func (r *Router) ownerAt(x, z int32) raftmeta.ServerID {
	c := r.lookup.at(x, z)
	if c == nil || !r.alive[c.Owner] {
		return 0
	}
	return c.Owner
}

// ---- the cell lookup ----

// routerLookup finds the cell containing a position the way the cell servers do: by walking
// the map's k-d tree (a position outside the world lands in the nearest leaf along the walk).
// A map without a tree is searched cell by cell (half-open bounds; a position outside every
// cell is clamped onto the world first).
type routerLookup struct {
	nodes []routerNode
	cells []raftmeta.Cell
	world raftmeta.World
}

type routerNode struct {
	axis      int8 // 0: x, 1: z, -1: leaf
	at        float64
	low, high int32
	cell      *raftmeta.Cell
}

func (l *routerLookup) build(m *raftmeta.Map) {
	l.nodes, l.cells, l.world = l.nodes[:0], m.Cells, m.World
	if m.Tree == nil {
		return
	}
	byID := make(map[raftmeta.CellID]*raftmeta.Cell, len(m.Cells))
	for i := range m.Cells {
		byID[m.Cells[i].ID] = &m.Cells[i]
	}
	l.add(m.Tree, byID)
}

func (l *routerLookup) add(n *raftmeta.TreeNode, byID map[raftmeta.CellID]*raftmeta.Cell) int32 {
	i := int32(len(l.nodes))
	l.nodes = append(l.nodes, routerNode{axis: -1})
	if n.Low == nil || n.High == nil {
		l.nodes[i].cell = byID[n.Cell]
		return i
	}
	ax := int8(0)
	if n.Axis == raftmeta.AxisZ {
		ax = 1
	}
	lo := l.add(n.Low, byID)
	hi := l.add(n.High, byID)
	l.nodes[i] = routerNode{axis: ax, at: n.At * wire.PosUnitsPerMetre, low: lo, high: hi}
	return i
}

// at returns the cell containing (x, z) in position units, or nil.
func (l *routerLookup) at(x, z int32) *raftmeta.Cell {
	fx, fz := float64(x), float64(z)
	if len(l.nodes) > 0 {
		i := int32(0)
		for {
			n := &l.nodes[i]
			v := fx
			if n.axis == 1 {
				v = fz
			}
			switch {
			case n.axis == -1:
				return n.cell
			case v < n.at:
				i = n.low
			default:
				i = n.high
			}
		}
	}
	w := l.world
	const u = wire.PosUnitsPerMetre
	if w.Max[0] > w.Min[0] && w.Max[1] > w.Min[1] {
		fx = min(max(fx, w.Min[0]*u), w.Max[0]*u)
		fz = min(max(fz, w.Min[1]*u), w.Max[1]*u)
	}
	for i := range l.cells {
		c := &l.cells[i]
		b := c.Bounds
		inX := fx >= b[0]*u && (fx < b[2]*u || (fx == b[2]*u && b[2] >= w.Max[0]))
		inZ := fz >= b[1]*u && (fz < b[3]*u || (fz == b[3]*u && b[3] >= w.Max[1]))
		if inX && inZ {
			return c
		}
	}
	return nil
}

// ---- small containers ----

// routerArena hands out pointers to values that stay valid until reset; it reuses its
// storage after reset, so the output's messages cost no allocation once warm.
type routerArena[T any] struct{ buf []T }

func (a *routerArena[T]) put(v T) *T {
	a.buf = append(a.buf, v)
	return &a.buf[len(a.buf)-1]
}

func (a *routerArena[T]) reset() {
	clear(a.buf)
	a.buf = a.buf[:0]
}

type routerDedupKey struct {
	from wire.EntityID
	seq  uint32
}

// routerDedup remembers the interactions delivered to a session, for DedupTicks.
type routerDedup struct {
	at   map[routerDedupKey]wire.Tick
	fifo []routerDedupEntry // in delivery order (ticks never go back)
}

type routerDedupEntry struct {
	key routerDedupKey
	at  wire.Tick
}

// add records key at t and reports true, or reports false if it was delivered within ticks.
func (d *routerDedup) add(key routerDedupKey, t wire.Tick, ticks int) bool {
	d.expire(t, ticks)
	if _, dup := d.at[key]; dup {
		return false
	}
	if d.at == nil {
		d.at = map[routerDedupKey]wire.Tick{}
	}
	d.at[key] = t
	d.fifo = append(d.fifo, routerDedupEntry{key, t})
	return true
}

// expire forgets what was delivered more than ticks ago.
func (d *routerDedup) expire(t wire.Tick, ticks int) {
	k := 0
	for k < len(d.fifo) && t-d.fifo[k].at > wire.Tick(ticks) {
		delete(d.at, d.fifo[k].key)
		k++
	}
	if k == 0 {
		return
	}
	n := copy(d.fifo, d.fifo[k:])
	d.fifo = d.fifo[:n]
	if n == 0 {
		d.fifo, d.at = nil, nil
	}
}

package cellserver

import (
	"cmp"
	"errors"
	"math"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Member is one cell server's part of the cluster (DESIGN.md §2–3) as a deterministic state
// machine, in etcd-io/raft's shape: Step takes everything that happened since the last tick
// (a newer partition map, messages from peers, the sessions homed here) and returns everything
// to do (peer messages to send, Staged proposals for raftmeta, frames for local sessions). It
// does no I/O, reads no clock, starts no goroutine; the cluster driver (cluster.go) and the
// deterministic cluster simulation (sim-tests/cluster) are its two drivers.
//
// # Ownership
//
// A real entity lives in exactly one server's World. The server that owns the cell containing
// an entity's position (per the map this server has applied) should hold it; after every tick
// a Member hands each entity it holds but does not own to the cell's owner:
//
//   - Handoff (one entity; an entity walked across a border, or a map change was applied at
//     once): the entity leaves the World, frozen, and is sent with a transfer id; the owner
//     imports it and acknowledges (a retried transfer id is acknowledged again, never imported
//     twice); on acceptance the sender forgets it, on rejection (the receiver's map disagrees)
//     it comes back. Until an answer arrives, the sender holds it, and retries to the same
//     server; only if the map declares that server dead does the sender take it back.
//   - Migration (a region; a two-phase map change, raftmeta.Change): when the map shows a
//     pending change with a transfer from this server, the entities inside the region are
//     frozen at the tick boundary and shipped (wire.MigrateMsg, zstd) with the new epoch; the
//     target stages them and proposes raftmeta.Staged; the FSM applies the change when every
//     transfer is staged. A committed change: the target imports, the source forgets; an
//     aborted one: the source takes them back. The source stays authoritative until then.
//
// Inputs, acks and leaves for an entity that is in flight are held and delivered (or forwarded)
// when its transfer resolves; for an entity that left, they are forwarded to where it went
// (remembered for RememberTicks). Nothing is dropped on the way except acks (harmless) and
// messages for entities no one knows.
//
// # Sessions
//
// A client session is homed on the server whose edge it connected to (SessionKey); its entity
// may live elsewhere. The owner sends the session's snapshot frames to the home (FrameMsg,
// carrying the entity's authority epoch, which grows with every handoff); the home routes the
// session's inputs to the server that sent the newest frames. Local sessions' World client ids
// are the edge's session ids (below 1<<31); clients of sessions homed elsewhere get ids from
// 1<<31 up.
type Member struct {
	cfg   MemberConfig
	world *World
	self  raftmeta.ServerID

	mapv   *raftmeta.Map
	lookup cellLookup
	alive  map[raftmeta.ServerID]bool
	dead   bool // the map says this server is dead: everything was dropped

	sessions map[ClientID]*session        // homed here
	ents     map[wire.EntityID]entityMeta // entities in the World
	remote   map[SessionKey]ClientID      // World client id of a session homed elsewhere
	remoteOf map[ClientID]SessionKey
	nextCID  ClientID

	handoffs   map[uint64]*outHandoff // by transfer id
	inFlight   map[wire.EntityID]uint64
	migrations map[migKey]*outMigration
	frozen     map[wire.EntityID]migKey
	staged     map[migKey]*stagedIn
	held       map[wire.EntityID][]heldMsg
	seen       map[transferKey]decision // every handoff answered, to answer a retry the same way
	incoming   map[wire.EntityID]migKey // entities staged here for a migration in
	forward    map[wire.EntityID]forwardTo
	backoff    map[wire.EntityID]wire.Tick
	nextXfer   uint64
	toFreeze   []pendingFreeze
	fenced     bool             // this tick's MemberInput.Fenced
	measure    bool             // this tick measures the load (loadEvery, or a newer map)
	frameBytes map[ClientID]int // this tick's snapshot size per World client (0: none)

	ghostTo    map[wire.EntityID][]raftmeta.ServerID // real entities: the servers they are ghosted to
	ghostOf    map[wire.EntityID]ghostMeta           // ghosts held here
	ghostBatch map[raftmeta.ServerID][]wire.EntityRecord
	ghostGone  map[raftmeta.ServerID][]wire.GhostRef

	gateways map[raftmeta.ServerID]uint64 // each gateway's incarnation, from its hello
	views    map[wire.EntityID]viewSeed   // clients' views sent ahead of their entity's handoff here
	resumes  map[wire.EntityID]wire.Tick  // gateway resumes taken, until when a repeat is ignored
	// pendingJoins: the player and first authority epoch of gateway joins the World has not
	// run yet.
	pendingJoins map[ClientID]pendingJoin
	// offers: trade offers delivered to entities real here (wire.InteractTrade), by the entity
	// offered to, until an acceptance consumes them or OfferTicks pass.
	offers     map[wire.EntityID][]tradeOffer
	joins      map[SessionKey]wire.Tick     // gateway joins taken, until when a repeat is ignored
	heard      map[ClientID]wire.Tick       // gateway sessions' World clients: last tick their gateway sent anything
	interacts  map[interactKey]*outInteract // applied here, not yet delivered
	delivered  map[interactKey]wire.Tick    // delivered here, until when a repeat is not delivered again
	homeFrames map[interactKey]*homeFrame   // delivered here to a gateway's client, not yet acknowledged by it

	stepIn StepInput
	out    MemberOutput
	stats  MemberStats
	load   raftmeta.Load
	scratch
}

type scratch struct {
	pos []EntityPos
	ids []wire.EntityID
	exp []Exported
}

// MemberConfig configures a Member.
type MemberConfig struct {
	// Server is this cell server's id; Incarnation distinguishes its runs (raise it at every
	// start: transfer ids and entity ids are unique per incarnation).
	Server      raftmeta.ServerID
	Incarnation uint64
	// World configures the simulation. Its EntityIDBase is replaced by one unique to Server and
	// Incarnation (EntityIDBaseFor).
	World Config
	// RetryTicks: an unanswered handoff or migration is sent again, and a Staged proposal
	// made again, every RetryTicks ticks.
	RetryTicks int
	// RememberTicks: how long transfer ids (to answer retries) and where departed entities went
	// (to forward their inputs) are remembered.
	RememberTicks int
	// RejectBackoffTicks: an entity whose handoff was rejected stays here at least this long
	// before it is offered again.
	RejectBackoffTicks int
	// GhostDistance (metres; 0: no ghosts) is how near a cell of another server a real entity
	// must come to be ghosted there; at least the AOI's enter radius, so a client near the
	// border sees everything within it. GhostHysteresis (metres) is how much further it must
	// go to be un-ghosted. GhostExpireTicks: a ghost no update refreshed for this long is
	// dropped.
	GhostDistance, GhostHysteresis float64
	GhostExpireTicks               int
	// HandoffHysteresis (metres): an entity is handed to the owner of the cell it walked into
	// only once it is this far from every cell of this server, so one walking along a border
	// is not handed back and forth (0: at once).
	HandoffHysteresis float64
	// SessionIdleTicks: the entity of a session homed at a gateway that has sent nothing
	// (inputs, acks) for this long leaves the world. 0: never.
	SessionIdleTicks int
	// OfferTicks: how long a trade offer delivered to an entity waits for its acceptance.
	OfferTicks int
	// PlayerHP is the hit points a client's entity starts with (and respawns with after a
	// death); AttackDamage what one InteractAttack delivered to it takes off (0: attacks do no
	// harm). An entity brought to 0 dies: a "death" critical event (MemberOutput.Events).
	PlayerHP, AttackDamage uint16
}

// DefaultMemberConfig returns a configuration for server id, incarnation inc.
func DefaultMemberConfig(id raftmeta.ServerID, inc uint64) MemberConfig {
	return MemberConfig{
		Server: id, Incarnation: inc, World: DefaultConfig(),
		RetryTicks: 4, RememberTicks: 20 * 60, RejectBackoffTicks: 10,
		GhostDistance: 60, GhostHysteresis: 10, GhostExpireTicks: 40,
		SessionIdleTicks: 20 * 30, HandoffHysteresis: 4,
		PlayerHP: 100, AttackDamage: 10, OfferTicks: 20 * 60,
	}
}

// Validate names the first field out of bounds.
func (c MemberConfig) Validate() error {
	switch {
	case c.Server == 0 || c.Server >= 1<<23:
		return configErr("MemberConfig.Server", c.Server, "must be in [1, %d)", 1<<23)
	case c.Incarnation >= 1<<16:
		return configErr("MemberConfig.Incarnation", c.Incarnation, "must be < %d", 1<<16)
	case c.RetryTicks < 1:
		return configErr("MemberConfig.RetryTicks", c.RetryTicks, "must be ≥ 1")
	case c.RememberTicks < c.RetryTicks*4:
		return configErr("MemberConfig.RememberTicks", c.RememberTicks, "must be ≥ 4 × RetryTicks (%d)", c.RetryTicks*4)
	case c.RejectBackoffTicks < 1:
		return configErr("MemberConfig.RejectBackoffTicks", c.RejectBackoffTicks, "must be ≥ 1")
	case c.GhostDistance != 0 && !(c.GhostDistance >= c.World.AOIEnterRadius && c.GhostDistance <= MaxAOIRadius):
		return configErr("MemberConfig.GhostDistance", c.GhostDistance, "must be 0 (off) or in [World.AOIEnterRadius (%v), %d]", c.World.AOIEnterRadius, MaxAOIRadius)
	case !(c.GhostHysteresis >= 0 && c.GhostHysteresis <= MaxAOIRadius):
		return configErr("MemberConfig.GhostHysteresis", c.GhostHysteresis, "must be in [0, %d]", MaxAOIRadius)
	case c.GhostExpireTicks < 2:
		return configErr("MemberConfig.GhostExpireTicks", c.GhostExpireTicks, "must be ≥ 2")
	case !(c.HandoffHysteresis >= 0 && (c.HandoffHysteresis <= c.GhostDistance || c.GhostDistance == 0)):
		return configErr("MemberConfig.HandoffHysteresis", c.HandoffHysteresis, "must be in [0, GhostDistance (%v)]: the new owner must hold a ghost of an entity before it is handed over", c.GhostDistance)
	case c.SessionIdleTicks < 0:
		return configErr("MemberConfig.SessionIdleTicks", c.SessionIdleTicks, "must be ≥ 0")
	case c.OfferTicks < 1:
		return configErr("MemberConfig.OfferTicks", c.OfferTicks, "must be ≥ 1")
	case c.PlayerHP < 1:
		return configErr("MemberConfig.PlayerHP", c.PlayerHP, "must be ≥ 1")
	case c.AttackDamage > c.PlayerHP:
		return configErr("MemberConfig.AttackDamage", c.AttackDamage, "must be in [0, PlayerHP (%d)]", c.PlayerHP)
	}
	return c.World.Validate()
}

// EntityIDBaseFor returns the entity id base of a server's incarnation: ids are
// server<<40 | incarnation<<24 | n, so entityIDsPerIncarnation per incarnation, never reused
// (joins are refused once they run out).
func EntityIDBaseFor(server raftmeta.ServerID, inc uint64) wire.EntityID {
	return wire.EntityID(uint64(server)<<40 | inc<<24)
}

const entityIDsPerIncarnation = 1 << 24

// remoteClientBase is the first World client id given to sessions homed elsewhere.
const remoteClientBase ClientID = 1 << 31

// SessionKey names a client session cluster-wide: its home server and its id there.
type SessionKey struct {
	Home   raftmeta.ServerID
	Client ClientID
}

// session is a client session homed here.
type session struct {
	player wire.PlayerID // the authenticated player; 0: none
	entity wire.EntityID // 0 until its join is done
	owner  raftmeta.ServerID
	auth   uint64 // the newest authority epoch a frame came with
}

// entityMeta is what a Member knows of an entity in its World beyond the World's state.
type entityMeta struct {
	auth   uint64        // authority epoch: grows with every handoff or migration
	home   SessionKey    // zero for an NPC
	player wire.PlayerID // the durable player it embodies; 0: none
	hp     uint16        // hit points; 0: it has none (cannot be hurt)
}

type migKey struct {
	change   raftmeta.ChangeID
	transfer int
}

type pendingFreeze struct {
	key migKey
	tr  raftmeta.Transfer
}

// decision is how a handoff was answered, and when.
type decision struct {
	at     wire.Tick
	result uint8 // wire.HandoffAccepted (or Duplicate) or wire.HandoffRejected
}

type transferKey struct {
	from raftmeta.ServerID
	id   uint64
}

type outHandoff struct {
	to   raftmeta.ServerID
	msg  wire.HandoffMsg
	sent wire.Tick
}

type outMigration struct {
	to   raftmeta.ServerID
	msg  wire.MigrateMsg
	sent wire.Tick
}

type stagedIn struct {
	from     raftmeta.ServerID
	msg      wire.MigrateMsg
	proposed wire.Tick
}

type forwardTo struct {
	to    raftmeta.ServerID
	until wire.Tick
}

// heldMsg is an input, leave or interaction for an entity in flight: one field is set.
type heldMsg struct {
	input    *wire.InputMsg
	leave    *wire.LeaveMsg
	interact *wire.InteractMsg // from the actor's session (in its input sequence)
	routed   *wire.InteractMsg // applied by the actor's owner, on its way to its target
}

// PeerIn is a message received from a peer, decoded.
type PeerIn struct {
	From raftmeta.ServerID
	Msg  wire.PeerMessage
	// Player is the player's stored state the driver read before passing on a JoinMsg with a
	// PlayerID (nil: none was read: no PostgreSQL, or a resume it could not read for).
	Player *StoredPlayer
}

// PeerOut is a message to send to a peer. It and the byte slices inside it alias the Member's
// state and buffers: encode it before the next Step.
type PeerOut struct {
	To  raftmeta.ServerID
	Msg wire.PeerMessage
}

// SessionOpen is a client session that connected to this server's edge.
type SessionOpen struct {
	Client ClientID // the edge's session id; < 1<<31
	Spawn  [2]float64
	Kind   uint8
	Player wire.PlayerID // the authenticated player; 0: none
}

// MemberInput is everything that happened since the last Step.
type MemberInput struct {
	Tick wire.Tick
	// Map is a newer partition map, or nil.
	Map *raftmeta.Map
	// Fenced: the server's lease may have lapsed. A fenced Member simulates nothing, hands
	// nothing off and accepts no handoff until unfenced; it still answers peers and stages
	// migrations (the driver may already have proposed Staged for them; if this server is
	// declared dead, the FSM aborts its pending changes).
	Fenced bool
	// DeclaredDead: the metadata service says this server is dead (its cells went elsewhere):
	// drop everything before registering again, even if no map showing it dead arrives.
	DeclaredDead bool
	Peer         []PeerIn
	// The sessions homed here.
	Opens     []SessionOpen
	Closes    []ClientID
	Inputs    []ClientInput
	Interacts []ClientInteract
	Acks      []ClientAck
	// InventoryDone are results of the InventoryOps of earlier Steps (in any order): each
	// goes back to its actor's client.
	InventoryDone []InventoryDone
}

// MemberOutput is what one Step produced; it is reused by the next Step.
type MemberOutput struct {
	Send   []PeerOut
	Staged []raftmeta.Staged // to propose (idempotent; repeated every RetryTicks until resolved)
	// For the sessions homed here:
	Welcomes []Joined
	Refused  []Refused
	Frames   []ClientSnapshot
	Lost     []ClientID // sessions whose entity is gone (its server died): disconnect them
	// InventoryOps are inventory operations applied this tick, for the driver to run (off the
	// tick) and answer with an InventoryDone in a later Step.
	InventoryOps []InventoryRequest
	// Events are critical events of this tick (deaths): the driver must make them durable
	// (the local outbox, one synced batch) before it sends anything this Step produced.
	Events []CriticalEvent
	// World is the World's output for this tick; nil if it did not step (no map yet, fenced).
	World *StepOutput
}

// MemberStats are cumulative counters.
type MemberStats struct {
	HandoffsOut, HandoffsIn, HandoffsRejected, HandoffRetries int
	MigratedOut, MigratedIn, MigrationsAborted                int
	// FrozenHandoff and FrozenMigration count entities by how many ticks they were not
	// simulated while moving between servers (index k < len-1: exactly k ticks; the last: more),
	// by handoff and by migration (an aborted migration's entities count too).
	FrozenHandoff, FrozenMigration [8]int
	FrozenMax                      int
	// Forwarded: inputs/leaves passed on to where an entity went; Held: delivered after its
	// transfer resolved; Unroutable: messages for entities no one here knows (dropped).
	Forwarded, Held, Unroutable int
	StaleFrames                 int // frames from an owner older than the newest seen
	OrphanLeaves                int // leaves re-sent because an owner sent frames for a session gone here
	// Ghost updates sent (records), ghosts dropped for want of updates, and updates ignored
	// because they came from an older owner than the ghost's.
	GhostUpdatesOut, GhostsExpired, StaleGhosts int
	ImportErrors                                int
	// Gateway sessions: joins taken, entities resumed after their server died, entities
	// dropped because their gateway went silent.
	GatewayJoins, Resumed, SessionsIdled int
	// StaleCopiesDropped: copies a gateway found stale (a newer copy sends it frames) dropped.
	StaleCopiesDropped int
	// Restored: entities brought back from this server's own checkpoints after a restart.
	Restored int
	// Interactions applied here (from the actor's client), delivered here (to their target),
	// duplicates not delivered again, given up (undelivered after RememberTicks), and
	// interactions of sessions homed here whose entity is elsewhere (need a gateway).
	InteractsApplied, InteractsDelivered, InteractsDuplicate, InteractsExpired, InteractsUnsupported int
	// Inventory operations handed to the driver, and refused here without reaching it (no
	// target in view, no player).
	InventoryOps, InventoryRefused int
	InventoryReplays               int // inventory interactions sent again after they were applied
	TradeOffers                    int // trade offers remembered for their target
	Deaths                         int // entities brought to 0 hit points here
	EntitiesDropped                int // entities dropped because this server was declared dead or a session's home died
	SessionsLost                   int
}

// NewMember returns a Member with an empty World.
func NewMember(cfg MemberConfig) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.World.EntityIDBase = EntityIDBaseFor(cfg.Server, cfg.Incarnation)
	w, err := NewWorld(cfg.World, nil)
	if err != nil {
		return nil, err
	}
	return &Member{
		cfg: cfg, world: w, self: cfg.Server,
		alive:        map[raftmeta.ServerID]bool{},
		sessions:     map[ClientID]*session{},
		ents:         map[wire.EntityID]entityMeta{},
		remote:       map[SessionKey]ClientID{},
		remoteOf:     map[ClientID]SessionKey{},
		nextCID:      remoteClientBase,
		handoffs:     map[uint64]*outHandoff{},
		inFlight:     map[wire.EntityID]uint64{},
		migrations:   map[migKey]*outMigration{},
		frozen:       map[wire.EntityID]migKey{},
		staged:       map[migKey]*stagedIn{},
		held:         map[wire.EntityID][]heldMsg{},
		seen:         map[transferKey]decision{},
		incoming:     map[wire.EntityID]migKey{},
		forward:      map[wire.EntityID]forwardTo{},
		backoff:      map[wire.EntityID]wire.Tick{},
		frameBytes:   map[ClientID]int{},
		ghostTo:      map[wire.EntityID][]raftmeta.ServerID{},
		ghostOf:      map[wire.EntityID]ghostMeta{},
		ghostBatch:   map[raftmeta.ServerID][]wire.EntityRecord{},
		ghostGone:    map[raftmeta.ServerID][]wire.GhostRef{},
		joins:        map[SessionKey]wire.Tick{},
		resumes:      map[wire.EntityID]wire.Tick{},
		pendingJoins: map[ClientID]pendingJoin{},
		offers:       map[wire.EntityID][]tradeOffer{},
		gateways:     map[raftmeta.ServerID]uint64{},
		views:        map[wire.EntityID]viewSeed{},
		heard:        map[ClientID]wire.Tick{},
		interacts:    map[interactKey]*outInteract{},
		delivered:    map[interactKey]wire.Tick{},
		homeFrames:   map[interactKey]*homeFrame{},
		nextXfer:     cfg.Incarnation << 32,
	}, nil
}

// World returns the Member's World (read it only between Steps).
func (m *Member) World() *World { return m.world }

// Map returns the partition map the Member applied last (nil before the first).
func (m *Member) Map() *raftmeta.Map { return m.mapv }

// Stats returns the cumulative counters.
func (m *Member) Stats() MemberStats { return m.stats }

// Load returns the load last measured (every loadEvery ticks and on every newer map): per
// owned cell, its entities, their
// histograms and the snapshot bytes per second its clients are sent (the last tick's × the tick
// rate); the driver adds the server's tick time and bytes.
func (m *Member) Load() raftmeta.Load {
	l := m.load
	l.Cells = slices.Clone(l.Cells)
	for i := range l.Cells {
		l.Cells[i].HistX = slices.Clone(l.Cells[i].HistX)
		l.Cells[i].HistZ = slices.Clone(l.Cells[i].HistZ)
	}
	return l
}

// Holdings lists the entities the Member holds: real (in its World), and frozen in flight:
// handed off or migrating out and not yet resolved, or staged here for a migration in (once its
// change commits, the staged copy is the entity until this server sees the commit and imports
// it; the source may have seen it first and forgotten its own). Sorted; an entity may be in
// both lists at once only as the source's and the target's copy of one migration.
func (m *Member) Holdings() (real, inFlight []wire.EntityID) {
	real = m.world.EntityIDs()
	for _, h := range m.handoffs {
		inFlight = append(inFlight, h.msg.Entity.ID)
	}
	for _, mg := range m.migrations {
		for _, r := range mg.msg.Entities {
			inFlight = append(inFlight, r.ID)
		}
	}
	for _, st := range m.staged {
		for _, r := range st.msg.Entities {
			inFlight = append(inFlight, r.ID)
		}
	}
	slices.Sort(inFlight)
	inFlight = slices.Compact(inFlight)
	return real, inFlight
}

// SessionEntity returns the entity of a session homed here and the server it is on.
func (m *Member) SessionEntity(c ClientID) (wire.EntityID, raftmeta.ServerID, bool) {
	s, ok := m.sessions[c]
	if !ok {
		return 0, 0, false
	}
	return s.entity, s.owner, true
}

func (m *Member) send(to raftmeta.ServerID, msg wire.PeerMessage) {
	m.out.Send = append(m.out.Send, PeerOut{To: to, Msg: msg})
}

// Step runs one tick: apply a newer map, handle peer messages and local sessions, simulate the
// World (unless fenced or without a map), then hand off misplaced entities and retry what is
// unanswered.
func (m *Member) Step(in *MemberInput) *MemberOutput {
	t := in.Tick
	m.fenced = in.Fenced
	m.measure = t%loadEvery == 0 || in.Map != nil
	o := &m.out
	o.Send, o.Staged = o.Send[:0], o.Staged[:0]
	o.Welcomes, o.Refused, o.Frames, o.Lost = o.Welcomes[:0], o.Refused[:0], o.Frames[:0], o.Lost[:0]
	o.InventoryOps, o.Events = o.InventoryOps[:0], o.Events[:0]
	o.World = nil

	if in.DeclaredDead {
		m.dropEverything()
	}
	// Migrations first: a change that committed since the last tick commits on what this
	// server staged, including what arrived just now (the driver may have proposed Staged as
	// soon as the message arrived, so the map may already show the commit).
	for i := range in.Peer {
		if mg, ok := in.Peer[i].Msg.(*wire.MigrateMsg); ok && !m.dead {
			m.onMigrate(in.Peer[i].From, *mg, t)
		}
	}
	if in.Map != nil && (m.mapv == nil || in.Map.Version >= m.mapv.Version) {
		m.applyMap(in.Map, t)
	}
	for i := range in.Peer {
		m.receive(in.Peer[i], t)
	}
	m.localSessions(in)
	for _, d := range in.InventoryDone {
		m.inventoryDone(d, t)
	}

	if m.mapv != nil && !m.dead && !in.Fenced {
		m.stepIn.Tick = t
		wo := m.world.Step(&m.stepIn)
		o.World = wo
		m.stepIn = StepInput{Joins: m.stepIn.Joins[:0], Leaves: m.stepIn.Leaves[:0], Inputs: m.stepIn.Inputs[:0], Acks: m.stepIn.Acks[:0]}
		m.deliver(wo)
		m.applied(wo, t)
		m.rehome(t)
		for _, f := range m.toFreeze {
			m.freeze(f.key, f.tr, t)
		}
		m.toFreeze = m.toFreeze[:0]
		m.ghost(t)
	} else {
		// Nothing is simulated: inputs and acks are void; joins and leaves wait.
		m.stepIn.Inputs, m.stepIn.Acks = m.stepIn.Inputs[:0], m.stepIn.Acks[:0]
	}
	m.retry(t)
	return o
}

// ---- the map ----

// cellLookup finds the cell containing a position by walking a flattened k-d tree.
type cellLookup struct {
	nodes []flatNode
	cells map[raftmeta.CellID]*raftmeta.Cell
}

type flatNode struct {
	axis      int8 // 0: x, 1: z, -1: leaf
	at        float64
	low, high int32
	cell      *raftmeta.Cell
}

func (l *cellLookup) build(mp *raftmeta.Map) {
	l.nodes = l.nodes[:0]
	l.cells = make(map[raftmeta.CellID]*raftmeta.Cell, len(mp.Cells))
	for i := range mp.Cells {
		l.cells[mp.Cells[i].ID] = &mp.Cells[i]
	}
	if mp.Tree != nil {
		l.add(mp.Tree)
	}
}

func (l *cellLookup) add(n *raftmeta.TreeNode) int32 {
	i := int32(len(l.nodes))
	l.nodes = append(l.nodes, flatNode{axis: -1})
	if n.Low == nil || n.High == nil {
		l.nodes[i].cell = l.cells[n.Cell]
		return i
	}
	ax := int8(0)
	if n.Axis == raftmeta.AxisZ {
		ax = 1
	}
	lo := l.add(n.Low)
	hi := l.add(n.High)
	l.nodes[i] = flatNode{axis: ax, at: n.At * wire.PosUnitsPerMetre, low: lo, high: hi}
	return i
}

// at returns the cell containing position (x, z) in position units, or nil without a map.
func (l *cellLookup) at(x, z int32) *raftmeta.Cell {
	if len(l.nodes) == 0 {
		return nil
	}
	i := int32(0)
	for {
		n := &l.nodes[i]
		switch n.axis {
		case -1:
			return n.cell
		case 0:
			if float64(x) < n.at {
				i = n.low
			} else {
				i = n.high
			}
		default:
			if float64(z) < n.at {
				i = n.low
			} else {
				i = n.high
			}
		}
	}
}

// inRegion reports whether a position lies in r (half-open; a region reaching the world's
// high edge includes it, since positions are clamped onto it).
func (m *Member) inRegion(r raftmeta.Rect, x, z int32) bool {
	fx, fz := float64(x), float64(z)
	x0, z0 := r[0]*wire.PosUnitsPerMetre, r[1]*wire.PosUnitsPerMetre
	x1, z1 := r[2]*wire.PosUnitsPerMetre, r[3]*wire.PosUnitsPerMetre
	wx, wz := m.mapv.World.Max[0]*wire.PosUnitsPerMetre, m.mapv.World.Max[1]*wire.PosUnitsPerMetre
	inX := fx >= x0 && (fx < x1 || (x1 >= wx && fx <= x1))
	inZ := fz >= z0 && (fz < z1 || (z1 >= wz && fz <= z1))
	return inX && inZ
}

func (m *Member) applyMap(mp *raftmeta.Map, t wire.Tick) {
	m.mapv = mp
	m.lookup.build(mp)
	clear(m.alive)
	selfAlive := false
	for _, s := range mp.Servers {
		if s.Alive {
			m.alive[s.ID] = true
			if s.ID == m.self {
				selfAlive = true
			}
		}
	}
	if !selfAlive {
		m.dropEverything()
		return
	}
	m.dead = false

	// Resolutions first: they free entities a new change may include.
	m.resolve(mp, t)

	// New changes: what leaves this server is frozen and shipped at the end of this tick.
	m.toFreeze = m.toFreeze[:0]
	for _, ch := range mp.Changes {
		for i, tr := range ch.Transfers {
			k := migKey{ch.ID, i}
			if tr.From != m.self {
				continue
			}
			if _, done := m.migrations[k]; done {
				continue
			}
			m.toFreeze = append(m.toFreeze, pendingFreeze{k, tr})
		}
	}

	// Transfers to servers that died come back.
	for _, id := range sortedKeys(m.handoffs) {
		if !m.alive[m.handoffs[id].to] {
			m.takeBack(id, t, true)
		}
	}
	// Sessions homed here whose entity's server died lost their entity (persistence restores
	// it in a later issue); entities whose session's home died leave the world.
	for _, c := range sortedKeys(m.sessions) {
		s := m.sessions[c]
		if s.entity != 0 && s.owner != m.self && !m.alive[s.owner] {
			if _, moving := m.inFlight[s.entity]; moving {
				continue
			}
			delete(m.sessions, c)
			m.out.Lost = append(m.out.Lost, c)
			m.stats.SessionsLost++
		}
	}
	for _, wc := range sortedKeys(m.remoteOf) {
		if key := m.remoteOf[wc]; !m.alive[key.Home] && !wire.IsGatewayID(uint64(key.Home)) {
			if e, ok := m.world.ClientEntity(wc); ok {
				m.exp = m.world.Export(m.exp[:0], e)
				m.forget(m.exp)
				m.stats.EntitiesDropped++
			}
		}
	}
}

// resolve settles the migrations this server is part of whose change is no longer pending.
func (m *Member) resolve(mp *raftmeta.Map, t wire.Tick) {
	pending := map[raftmeta.ChangeID]bool{}
	for _, ch := range mp.Changes {
		pending[ch.ID] = true
	}
	outcome := func(id raftmeta.ChangeID, tr func() bool) (settled, committed bool) {
		if pending[id] || uint64(id) > mp.Version {
			return false, false // pending, or the map predates the change
		}
		for _, r := range mp.Resolved {
			if r.ID == id {
				return true, r.Committed
			}
		}
		// Older than the map remembers: judge by who owns the region now.
		return true, tr()
	}
	for _, k := range sortedMigKeys(m.migrations) {
		mg := m.migrations[k]
		settled, ok := outcome(k.change, func() bool { return m.regionOwner(mg.msg) == mg.to })
		if !settled {
			continue
		}
		delete(m.migrations, k)
		for _, r := range mg.msg.Entities {
			delete(m.frozen, r.ID)
		}
		if ok {
			m.stats.MigratedOut += len(mg.msg.Entities)
			for _, r := range mg.msg.Entities {
				m.departed(r.ID, mg.to, t)
			}
			continue
		}
		m.stats.MigrationsAborted++
		for _, r := range mg.msg.Entities {
			m.importRecord(r, t, false, mg.msg.Tick, &m.stats.FrozenMigration)
			m.release(r.ID, t)
		}
	}
	for _, k := range sortedMigKeys(m.staged) {
		st := m.staged[k]
		settled, ok := outcome(k.change, func() bool { return m.regionOwner(st.msg) == m.self })
		if !settled {
			continue
		}
		delete(m.staged, k)
		for _, r := range st.msg.Entities {
			delete(m.incoming, r.ID)
		}
		for _, r := range st.msg.Entities {
			if ok {
				m.importRecord(r, t, true, st.msg.Tick, &m.stats.FrozenMigration)
				m.stats.MigratedIn++
			} else {
				// Aborted: the entity stays with its source; what was held here goes there.
				m.forward[r.ID] = forwardTo{to: st.from, until: t + wire.Tick(m.cfg.RememberTicks)}
				m.release(r.ID, t)
			}
		}
	}
}

// regionOwner is the owner of the cell a migration names, in the current map.
func (m *Member) regionOwner(msg wire.MigrateMsg) raftmeta.ServerID {
	if c, ok := m.lookup.cells[raftmeta.CellID(msg.Cell)]; ok && c.Epoch >= raftmeta.Epoch(msg.Epoch) {
		return c.Owner
	}
	return 0
}

// freeze exports this server's entities inside a transfer's region, as simulated at tick t,
// and ships them: the target can simulate them from tick t+1.
func (m *Member) freeze(k migKey, tr raftmeta.Transfer, t wire.Tick) {
	m.pos = m.world.Positions(m.pos[:0])
	m.ids = m.ids[:0]
	for _, p := range m.pos {
		if !p.Ghost && m.inRegion(tr.Region, p.X, p.Z) {
			m.ids = append(m.ids, p.ID)
		}
	}
	slices.Sort(m.ids)
	m.exp = m.depart(m.exp[:0], t, m.ids)
	msg := wire.MigrateMsg{
		Change: uint64(k.change), Transfer: uint32(k.transfer), Cell: uint64(tr.Cell), Epoch: uint64(tr.Epoch),
		Tick: t, Entities: make([]wire.EntityRecord, 0, len(m.exp)),
	}
	for _, e := range m.exp {
		msg.Entities = append(msg.Entities, m.record(e))
		m.frozen[e.ID] = k
	}
	m.migrations[k] = &outMigration{to: tr.To, msg: msg, sent: t}
	m.send(tr.To, &m.migrations[k].msg)
}

// depart takes entities out of the World to hand them to another server: an entity near one of
// this server's cells stays as a ghost (World.Demote: its row and view slots stay, and the new
// owner's ghost updates take it over); any other leaves (World.Export).
func (m *Member) depart(dst []Exported, t wire.Tick, ids []wire.EntityID) []Exported {
	_, leave2 := m.ghostDistance2()
	for _, id := range ids {
		st, ok := m.world.Entity(id)
		if !ok {
			continue
		}
		near := false
		if m.cfg.GhostDistance > 0 {
			for i := range m.mapv.Cells {
				c := &m.mapv.Cells[i]
				if c.Owner == m.self && rectDist2(c.Bounds, st.X, st.Z) <= leave2 {
					near = true
					break
				}
			}
		}
		if !near {
			dst = m.world.Export(dst, id)
			continue
		}
		var ok2 bool
		if dst, ok2 = m.world.Demote(dst, id); ok2 {
			m.ghostOf[id] = ghostMeta{owner: 0, auth: m.ents[id].auth, seen: t, player: m.ents[id].player}
		}
	}
	return dst
}

// record turns an exported entity into the wire record, forgetting its local client mapping.
func (m *Member) record(e Exported) wire.EntityRecord {
	meta := m.ents[e.ID]
	m.unghost(e.ID, meta.auth, false)
	delete(m.ents, e.ID)
	if e.Client != 0 {
		if key, ok := m.remoteOf[e.Client]; ok {
			delete(m.remoteOf, e.Client)
			delete(m.remote, key)
			delete(m.heard, e.Client)
		}
	}
	s := e.State
	return wire.EntityRecord{
		ID: e.ID, X: s.X, Y: s.Y, Z: s.Z, VX: s.VX, VZ: s.VZ, Yaw: s.Yaw, Kind: s.Kind, Action: s.Action,
		AuthEpoch: meta.auth, Home: uint64(meta.home.Home), Client: uint32(meta.home.Client), LastSeq: e.LastSeq,
		PlayerID: meta.player, HP: meta.hp,
	}
}

// forget drops exported entities for good (this server was declared dead, or their session's
// home is gone).
func (m *Member) forget(es []Exported) {
	for _, e := range es {
		m.unghost(e.ID, m.ents[e.ID].auth, true)
		m.record(e)
	}
}

// importRecord brings an entity into the World. bump raises its authority epoch (it changed
// server); last is the last tick it was simulated, counted in frozen (a Stats histogram).
func (m *Member) importRecord(r wire.EntityRecord, t wire.Tick, bump bool, last wire.Tick, frozen *[8]int) error {
	home := SessionKey{Home: raftmeta.ServerID(r.Home), Client: ClientID(r.Client)}
	if home.Home == m.self {
		if s, ok := m.sessions[home.Client]; !ok || s.entity != r.ID {
			// Its session, homed here, has closed (its Leave chased the entity and may have been
			// lost on the way): the entity comes home to an empty seat and leaves the world.
			m.stats.OrphanLeaves++
			if _, ghost := m.ghostOf[r.ID]; ghost {
				m.dropGhost(r.ID)
			}
			if x, ok := m.inFlight[r.ID]; ok {
				delete(m.handoffs, x)
				delete(m.inFlight, r.ID)
			}
			delete(m.held, r.ID)
			return nil
		}
	}
	var wc ClientID
	if home.Home != 0 {
		if home.Home == m.self {
			wc = home.Client
		} else {
			wc = m.nextCID
		}
	}
	e := Exported{
		ID:      r.ID,
		State:   wire.EntityState{X: r.X, Y: r.Y, Z: r.Z, VX: r.VX, VZ: r.VZ, Yaw: r.Yaw, Kind: r.Kind, Action: r.Action},
		Client:  wc,
		LastSeq: r.LastSeq,
		// Without the view it had (a migration, a resume, a lost ViewMsg), the client's first
		// snapshot from here is of the next tick: what else it sees may still be on its way
		// (ghosts from a third server, entities in another transfer). The simulation does not
		// wait.
		LastTick: max(last, t),
	}
	if v, ok := m.views[r.ID]; ok && wc != 0 {
		e.View = v.ids // its view came ahead of it: its first snapshot is of this tick
		e.LastTick = last
	}
	delete(m.views, r.ID)
	if err := m.world.Promote(e); err != nil { // a ghost here becomes the real entity in place
		m.stats.ImportErrors++
		return err
	}
	if x, ok := m.inFlight[r.ID]; ok {
		// It came back before the answer to its handoff: that handoff was accepted.
		delete(m.handoffs, x)
		delete(m.inFlight, r.ID)
	}
	delete(m.ghostOf, r.ID)
	auth := r.AuthEpoch
	if bump {
		auth++
	}
	m.ents[r.ID] = entityMeta{auth: auth, home: home, player: r.PlayerID, hp: r.HP}
	if home.Home != 0 && home.Home != m.self {
		m.nextCID++
		m.remote[home] = wc
		m.remoteOf[wc] = home
		if wire.IsGatewayID(uint64(home.Home)) {
			m.heard[wc] = t
		}
	}
	if s, ok := m.sessions[home.Client]; ok && home.Home == m.self && s.entity == r.ID {
		s.owner, s.auth = m.self, auth
	}
	delete(m.forward, r.ID)
	m.release(r.ID, t)
	if t > last {
		f := int(t - last - 1)
		frozen[min(f, len(frozen)-1)]++
		m.stats.FrozenMax = max(m.stats.FrozenMax, f)
	}
	return nil
}

// dropEverything empties the server: the map says it is dead, so its cells were given to
// others and its entities restarted there.
func (m *Member) dropEverything() {
	if m.dead {
		return
	}
	m.dead = true
	m.exp = m.world.Export(m.exp[:0], m.world.EntityIDs()...)
	m.stats.EntitiesDropped += len(m.exp)
	m.forget(m.exp)
	for _, h := range m.handoffs {
		m.stats.EntitiesDropped++
		delete(m.inFlight, h.msg.Entity.ID)
	}
	for _, mg := range m.migrations {
		m.stats.EntitiesDropped += len(mg.msg.Entities)
	}
	clear(m.handoffs)
	clear(m.pendingJoins)
	clear(m.offers)
	clear(m.migrations)
	clear(m.frozen)
	clear(m.staged)
	clear(m.incoming)
	for _, id := range m.world.GhostIDs() {
		m.world.RemoveGhost(id)
	}
	clear(m.ghostOf)
	clear(m.ghostTo)
	clear(m.ghostGone)
	m.toFreeze = m.toFreeze[:0]
	clear(m.held)
	clear(m.forward)
	clear(m.backoff)
	clear(m.joins)
	clear(m.resumes)
	clear(m.views)
	clear(m.heard)
	clear(m.interacts)
	clear(m.delivered)
	clear(m.homeFrames)
	for _, c := range sortedKeys(m.sessions) {
		m.out.Lost = append(m.out.Lost, c)
		m.stats.SessionsLost++
	}
	clear(m.sessions)
	m.stepIn = StepInput{}
}

// ---- handoffs ----

// loadEvery is how often (ticks) the load of the owned cells is measured, besides every tick
// a newer map arrives: a heartbeat carries it about once a second.
const loadEvery = 10

// rehome hands off every entity whose cell another live server owns and, on measuring ticks,
// measures the load of the cells this server owns.
func (m *Member) rehome(t wire.Tick) {
	m.pos = m.world.Positions(m.pos[:0])
	m.ids = m.ids[:0]
	var perCell map[raftmeta.CellID]*raftmeta.CellLoad
	if m.measure {
		perCell = map[raftmeta.CellID]*raftmeta.CellLoad{}
	}
	for _, p := range m.pos {
		c := m.lookup.at(p.X, p.Z)
		if c == nil || p.Ghost {
			continue
		}
		if c.Owner == m.self {
			if !m.measure {
				continue
			}
			cl := perCell[c.ID]
			if cl == nil {
				cl = &raftmeta.CellLoad{Cell: c.ID, Epoch: c.Epoch,
					HistX: make([]int32, raftmeta.LoadBins), HistZ: make([]int32, raftmeta.LoadBins)}
				perCell[c.ID] = cl
			}
			cl.Entities++
			cl.BytesOut += int64(m.frameBytes[p.Client] * m.cfg.World.TickHz)
			cl.HistX[bin(c.Bounds[0], c.Bounds[2], p.X)]++
			cl.HistZ[bin(c.Bounds[1], c.Bounds[3], p.Z)]++
			continue
		}
		if !m.alive[c.Owner] {
			continue // an unowned or dead server's cell: keep simulating it here
		}
		if until, ok := m.backoff[p.ID]; ok && t < until {
			continue
		}
		if m.nearOwn(p.X, p.Z) {
			continue // within HandoffHysteresis of its old cell: no thrashing along a border
		}
		m.ids = append(m.ids, p.ID)
	}
	slices.Sort(m.ids)
	m.preghost(t)
	m.sendViews()
	m.exp = m.depart(m.exp[:0], t, m.ids)
	for _, e := range m.exp {
		c := m.lookup.at(e.State.X, e.State.Z)
		m.nextXfer++
		msg := wire.HandoffMsg{Transfer: m.nextXfer, Cell: uint64(c.ID), Epoch: uint64(c.Epoch), Tick: t, Entity: m.record(e)}
		m.handoffs[msg.Transfer] = &outHandoff{to: c.Owner, msg: msg, sent: t}
		m.inFlight[e.ID] = msg.Transfer
		m.send(c.Owner, &m.handoffs[msg.Transfer].msg)
		m.stats.HandoffsOut++
	}

	if !m.measure {
		return
	}
	// The load report: every owned cell, even an empty one.
	m.load = raftmeta.Load{Entities: len(m.world.st.alive) - m.world.ghosts} // real entities only
	for _, c := range m.mapv.Cells {
		if c.Owner != m.self {
			continue
		}
		cl := perCell[c.ID]
		if cl == nil {
			cl = &raftmeta.CellLoad{Cell: c.ID, Epoch: c.Epoch}
		}
		m.load.Cells = append(m.load.Cells, *cl)
	}
}

// nearOwn reports whether a point lies within HandoffHysteresis of a cell this server owns: an
// entity that just stepped over a border stays until it is that far in.
func (m *Member) nearOwn(x, z int32) bool {
	h := m.cfg.HandoffHysteresis * wire.PosUnitsPerMetre
	if h <= 0 {
		return false
	}
	for i := range m.mapv.Cells {
		c := &m.mapv.Cells[i]
		if c.Owner == m.self && rectDist2(c.Bounds, x, z) <= h*h {
			return true
		}
	}
	return false
}

// bin is the histogram bin of position p (units) in [lo, hi) metres.
func bin(lo, hi float64, p int32) int {
	w := (hi - lo) / raftmeta.LoadBins
	if w <= 0 {
		return 0
	}
	b := int(math.Floor((float64(p)/wire.PosUnitsPerMetre - lo) / w))
	return min(max(b, 0), raftmeta.LoadBins-1)
}

// takeBack re-imports a handed-off entity whose transfer failed.
// If its target died (it may have imported the entity, bumping its authority epoch, and sent
// frames to the session's home), the epoch taken back is above the target's: the home follows
// this copy, not the dead one, and does not re-create it elsewhere.
func (m *Member) takeBack(id uint64, t wire.Tick, targetDied bool) {
	h := m.handoffs[id]
	delete(m.handoffs, id)
	delete(m.inFlight, h.msg.Entity.ID)
	r := h.msg.Entity
	if targetDied {
		r.AuthEpoch++ // + the bump of importRecord: 2 above the epoch handed off
	}
	m.importRecord(r, t, targetDied, h.msg.Tick, &m.stats.FrozenHandoff)
	m.backoff[h.msg.Entity.ID] = t + wire.Tick(m.cfg.RejectBackoffTicks)
	m.release(h.msg.Entity.ID, t)
}

// departed records that an entity now lives on server to.
func (m *Member) departed(e wire.EntityID, to raftmeta.ServerID, t wire.Tick) {
	m.forward[e] = forwardTo{to: to, until: t + wire.Tick(m.cfg.RememberTicks)}
	delete(m.backoff, e)
	m.release(e, t)
}

// release delivers the messages held for an entity whose transfer resolved: into the World if
// it is here, else forwarded to where it went.
func (m *Member) release(e wire.EntityID, t wire.Tick) {
	hs := m.held[e]
	if len(hs) == 0 {
		return
	}
	delete(m.held, e)
	for _, h := range hs {
		m.stats.Held++
		switch {
		case h.input != nil:
			m.routeInput(*h.input, t)
		case h.leave != nil:
			m.routeLeave(*h.leave, t)
		case h.interact != nil:
			m.sessionInteract(*h.interact, t)
		default:
			m.routeInteract(h.routed, t)
		}
	}
}

// ---- peer messages ----

func (m *Member) receive(p PeerIn, t wire.Tick) {
	if m.dead {
		return
	}
	switch msg := p.Msg.(type) {
	case *wire.HandoffMsg:
		m.onHandoff(p.From, *msg, t)
	case *wire.HandoffAckMsg:
		m.onHandoffAck(p.From, *msg, t)
	case *wire.MigrateMsg:
		// Handled before the map (Step).
	case *wire.InputMsg:
		m.routeInput(*msg, t)
	case *wire.AckMsg:
		m.routeAck(*msg, t)
	case *wire.LeaveMsg:
		m.routeLeave(*msg, t)
	case *wire.FrameMsg:
		m.onFrame(p.From, *msg)
	case *wire.GhostsMsg:
		m.onGhosts(p.From, *msg, t)
	case *wire.GhostGoneMsg:
		m.onGhostGone(*msg)
	case *wire.PeerHelloMsg:
		m.onGatewayHello(p.From, *msg)
	case *wire.DropMsg:
		m.onDrop(p.From, *msg)
	case *wire.ViewMsg:
		m.views[msg.Entity] = viewSeed{ids: msg.IDs, at: t}
	case *wire.JoinMsg:
		m.onJoin(p.From, *msg, p.Player, t)
	case *wire.InteractMsg:
		if wire.IsGatewayID(msg.Origin) {
			m.sessionInteract(*msg, t)
		} else {
			c := *msg
			m.routeInteract(&c, t)
		}
	case *wire.InteractAckMsg:
		m.onInteractAck(*msg)
	}
}

func (m *Member) onHandoff(from raftmeta.ServerID, msg wire.HandoffMsg, t wire.Tick) {
	k := transferKey{from, msg.Transfer}
	if d, ok := m.seen[k]; ok {
		// A retry: the same answer as before, whatever the map says now (a rejection and a
		// retry may cross; accepting the retry would leave the entity on both servers).
		res := d.result
		if res == wire.HandoffAccepted {
			res = wire.HandoffDuplicate
		}
		m.send(from, &wire.HandoffAckMsg{Transfer: msg.Transfer, Result: res})
		return
	}
	res := wire.HandoffRejected
	if c := m.lookup.at(msg.Entity.X, msg.Entity.Z); c != nil && c.Owner == m.self && !m.fenced {
		err := m.importRecord(msg.Entity, t, true, msg.Tick, &m.stats.FrozenHandoff)
		switch {
		case err == nil:
			res = wire.HandoffAccepted
			m.stats.HandoffsIn++
		case errors.Is(err, ErrDuplicateEntity):
			res = wire.HandoffDuplicate
		}
	}
	m.seen[k] = decision{at: t, result: res}
	m.send(from, &wire.HandoffAckMsg{Transfer: msg.Transfer, Result: res})
}

func (m *Member) onHandoffAck(from raftmeta.ServerID, msg wire.HandoffAckMsg, t wire.Tick) {
	h, ok := m.handoffs[msg.Transfer]
	if !ok || h.to != from {
		return
	}
	switch msg.Result {
	case wire.HandoffAccepted, wire.HandoffDuplicate:
		delete(m.handoffs, msg.Transfer)
		delete(m.inFlight, h.msg.Entity.ID)
		if home := raftmeta.ServerID(h.msg.Entity.Home); home == m.self && !m.world.hasClient(ClientID(h.msg.Entity.Client)) {
			if s, ok := m.sessions[ClientID(h.msg.Entity.Client)]; ok {
				s.owner = from
			}
		}
		m.departed(h.msg.Entity.ID, from, t)
	default:
		m.stats.HandoffsRejected++
		m.takeBack(msg.Transfer, t, false)
	}
}

func (m *Member) onMigrate(from raftmeta.ServerID, msg wire.MigrateMsg, t wire.Tick) {
	k := migKey{raftmeta.ChangeID(msg.Change), int(msg.Transfer)}
	if m.mapv != nil {
		for _, r := range m.mapv.Resolved {
			if r.ID == k.change {
				return // too late: already settled
			}
		}
	}
	if m.mapv != nil && m.mapv.Version >= uint64(k.change) {
		if tr, ok := m.transfer(k); !ok || tr.To != m.self {
			return // not ours to stage (a stray or forged message)
		}
	}
	if _, ok := m.staged[k]; !ok {
		m.staged[k] = &stagedIn{from: from, msg: msg, proposed: t}
		for _, r := range msg.Entities {
			m.incoming[r.ID] = k
		}
	}
	m.out.Staged = append(m.out.Staged, raftmeta.Staged{Change: k.change, Transfer: k.transfer, Server: m.self})
}

// worldClient returns the World client id of a session's entity, if it is here.
func (m *Member) worldClient(home raftmeta.ServerID, c ClientID) (ClientID, bool) {
	if home == m.self {
		return c, m.world.hasClient(c)
	}
	wc, ok := m.remote[SessionKey{home, c}]
	return wc, ok
}

// routeInput applies, holds or forwards an input for an entity.
func (m *Member) routeInput(msg wire.InputMsg, t wire.Tick) {
	if wc, ok := m.worldClient(raftmeta.ServerID(msg.Home), ClientID(msg.Client)); ok {
		m.stepIn.Inputs = append(m.stepIn.Inputs, ClientInput{Client: wc, Input: msg.Input})
		if _, remote := m.heard[wc]; remote {
			m.heard[wc] = t
		}
		return
	}
	m.holdOrForward(msg.Entity, heldMsg{input: &msg}, &msg)
}

// holdOrForward deals with a message for an entity not in the World: held while the entity
// is in flight from here, forwarded to where it went, or dropped (and counted).
func (m *Member) holdOrForward(e wire.EntityID, h heldMsg, msg wire.PeerMessage) {
	if m.moving(e) {
		m.held[e] = append(m.held[e], h)
		return
	}
	if f, ok := m.forward[e]; ok {
		m.stats.Forwarded++
		m.send(f.to, msg)
		return
	}
	m.stats.Unroutable++
}

func (m *Member) routeAck(msg wire.AckMsg, t wire.Tick) {
	if wc, ok := m.worldClient(raftmeta.ServerID(msg.Home), ClientID(msg.Client)); ok {
		m.stepIn.Acks = append(m.stepIn.Acks, ClientAck{Client: wc, Tick: msg.Tick})
		if _, remote := m.heard[wc]; remote {
			m.heard[wc] = t
		}
		return
	}
	if f, ok := m.forward[msg.Entity]; ok {
		m.send(f.to, &msg)
	}
	// In flight or unknown: an ack is only an optimisation; the new owner sends full state.
}

func (m *Member) routeLeave(msg wire.LeaveMsg, t wire.Tick) {
	home := raftmeta.ServerID(msg.Home)
	if wc, ok := m.worldClient(home, ClientID(msg.Client)); ok {
		if e, ok := m.world.ClientEntity(wc); ok && e == msg.Entity {
			m.exp = m.world.Export(m.exp[:0], e)
			m.forget(m.exp)
			return
		}
	}
	m.holdOrForward(msg.Entity, heldMsg{leave: &msg}, &msg)
}

// moving reports whether an entity is in flight from here.
func (m *Member) moving(e wire.EntityID) bool {
	if _, ok := m.inFlight[e]; ok {
		return true
	}
	if _, ok := m.incoming[e]; ok {
		return true
	}
	_, ok := m.frozen[e]
	return ok
}

// transfer returns a pending change's transfer from the current map.
func (m *Member) transfer(k migKey) (raftmeta.Transfer, bool) {
	for _, ch := range m.mapv.Changes {
		if ch.ID == k.change && k.transfer < len(ch.Transfers) {
			return ch.Transfers[k.transfer], true
		}
	}
	return raftmeta.Transfer{}, false
}

func (m *Member) onFrame(from raftmeta.ServerID, msg wire.FrameMsg) {
	s, ok := m.sessions[ClientID(msg.Client)]
	if !ok || s.entity != msg.Entity {
		// The session ended and the owner missed its Leave (lost on a broken link, or sent
		// before the entity reached it): say it again, or the entity would stay for good.
		m.stats.OrphanLeaves++
		m.send(from, &wire.LeaveMsg{Home: uint64(m.self), Client: msg.Client, Entity: msg.Entity})
		return
	}
	if msg.AuthEpoch < s.auth {
		m.stats.StaleFrames++
		return
	}
	s.auth, s.owner = msg.AuthEpoch, from
	m.out.Frames = append(m.out.Frames, ClientSnapshot{Client: ClientID(msg.Client), Frame: msg.Frame})
}

// ---- local sessions ----

func (m *Member) localSessions(in *MemberInput) {
	for _, o := range in.Opens {
		if o.Client == 0 || o.Client >= remoteClientBase || m.dead || m.mapv == nil {
			m.out.Refused = append(m.out.Refused, Refused{Client: o.Client, Reason: wire.ReasonServerFull})
			continue
		}
		if _, dup := m.sessions[o.Client]; dup {
			continue
		}
		if m.world.nextID-m.cfg.World.EntityIDBase >= entityIDsPerIncarnation-1 {
			// This incarnation's entity ids are used up: restart the server for a new range.
			m.out.Refused = append(m.out.Refused, Refused{Client: o.Client, Reason: wire.ReasonServerFull})
			continue
		}
		m.sessions[o.Client] = &session{owner: m.self, player: o.Player}
		m.stepIn.Joins = append(m.stepIn.Joins, Join(o))
	}
	for _, c := range in.Closes {
		s, ok := m.sessions[c]
		if !ok {
			continue
		}
		delete(m.sessions, c)
		if s.entity == 0 { // its join has not run yet
			m.stepIn.Joins = slices.DeleteFunc(m.stepIn.Joins, func(j Join) bool { return j.Client == c })
			continue
		}
		msg := wire.LeaveMsg{Home: uint64(m.self), Client: uint32(c), Entity: s.entity}
		if s.owner == m.self || m.moving(s.entity) {
			m.routeLeave(msg, in.Tick)
		} else {
			m.send(s.owner, &msg)
		}
	}
	for _, ci := range in.Inputs {
		s, ok := m.sessions[ci.Client]
		if !ok || s.entity == 0 {
			continue
		}
		msg := wire.InputMsg{Home: uint64(m.self), Client: uint32(ci.Client), Entity: s.entity, Input: ci.Input}
		if s.owner == m.self || m.moving(s.entity) {
			m.routeInput(msg, in.Tick)
		} else {
			m.send(s.owner, &msg)
		}
	}
	for _, ci := range in.Interacts {
		s, ok := m.sessions[ci.Client]
		if !ok || s.entity == 0 {
			continue
		}
		if s.owner != m.self && !m.moving(s.entity) {
			m.stats.InteractsUnsupported++
			continue
		}
		msg := wire.InteractMsg{Origin: uint64(m.self), Actor: s.entity, Seq: ci.Interact.Seq,
			Target: ci.Interact.Target, Kind: ci.Interact.Kind, Data: ci.Interact.Data}
		m.sessionInteract(msg, in.Tick)
	}
	for _, a := range in.Acks {
		s, ok := m.sessions[a.Client]
		if !ok || s.entity == 0 {
			continue
		}
		msg := wire.AckMsg{Home: uint64(m.self), Client: uint32(a.Client), Entity: s.entity, Tick: a.Tick}
		if s.owner == m.self {
			m.routeAck(msg, in.Tick)
		} else {
			m.send(s.owner, &msg)
		}
	}
}

// deliver routes the World's output: welcomes and refusals to local sessions, each snapshot to
// its session's home.
func (m *Member) deliver(wo *StepOutput) {
	for _, j := range wo.Joined {
		if m.remoteJoined(j) {
			continue
		}
		if s, ok := m.sessions[j.Client]; ok {
			s.entity, s.owner, s.auth = j.Entity, m.self, 1
			m.ents[j.Entity] = entityMeta{auth: 1, home: SessionKey{m.self, j.Client}, player: s.player, hp: m.cfg.PlayerHP}
			m.out.Welcomes = append(m.out.Welcomes, j)
		} else {
			// Closed before its join ran (the close raced the join): take it out again.
			m.exp = m.world.Export(m.exp[:0], j.Entity)
			m.forget(m.exp)
		}
	}
	for _, r := range wo.Refused {
		if m.remoteRefused(r) {
			continue
		}
		delete(m.sessions, r.Client)
		m.out.Refused = append(m.out.Refused, r)
	}
	if m.measure {
		clear(m.frameBytes)
	}
	for _, snap := range wo.Snapshots {
		if m.measure {
			m.frameBytes[snap.Client] = len(snap.Frame)
		}
		if snap.Client < remoteClientBase {
			m.out.Frames = append(m.out.Frames, snap)
			continue
		}
		key, ok := m.remoteOf[snap.Client]
		if !ok {
			continue
		}
		m.sendFrame(snap.Client, key, snap.Frame)
	}
}

// ---- retries and expiry ----

func (m *Member) retry(t wire.Tick) {
	every := wire.Tick(m.cfg.RetryTicks)
	if t%every == 0 {
		m.expireOffers(t)
	}
	for _, h := range sortedKeys(m.handoffs) {
		o := m.handoffs[h]
		if t-o.sent >= every {
			o.sent = t
			m.stats.HandoffRetries++
			m.send(o.to, &o.msg)
		}
	}
	for _, k := range sortedMigKeys(m.migrations) {
		o := m.migrations[k]
		if t-o.sent >= every {
			o.sent = t
			m.send(o.to, &o.msg)
		}
	}
	for _, k := range sortedMigKeys(m.staged) {
		s := m.staged[k]
		if t-s.proposed >= every {
			s.proposed = t
			m.out.Staged = append(m.out.Staged, raftmeta.Staged{Change: k.change, Transfer: k.transfer, Server: m.self})
		}
	}
	m.retryInteracts(t)
	if t%every != 0 {
		return
	}
	m.expireSessions(t)
	remember := wire.Tick(m.cfg.RememberTicks)
	for k, d := range m.seen {
		if t-d.at > remember {
			delete(m.seen, k)
		}
	}
	for e, f := range m.forward {
		if t > f.until {
			delete(m.forward, e)
		}
	}
	for e, until := range m.backoff {
		if t >= until {
			delete(m.backoff, e)
		}
	}
}

func sortedKeys[K cmp.Ordered, V any](mp map[K]V) []K {
	ks := make([]K, 0, len(mp))
	for k := range mp {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortedMigKeys[V any](mp map[migKey]V) []migKey {
	ks := make([]migKey, 0, len(mp))
	for k := range mp {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b migKey) int {
		if a.change != b.change {
			return cmp.Compare(a.change, b.change)
		}
		return cmp.Compare(a.transfer, b.transfer)
	})
	return ks
}

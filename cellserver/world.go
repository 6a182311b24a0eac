package cellserver

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/meridian-mmo/meridian/wire"
)

// ClientID names a client session on this server (assigned by the gateway or edge).
type ClientID uint32

// Join asks for a client to enter the world with a new entity.
type Join struct {
	Client ClientID
	Spawn  [2]float64 // metres, x and z; clamped into the world bounds
	Kind   uint8
	Player wire.PlayerID // the session's authenticated player (the World does not use it)
}

// ClientInput is one input a client sent: a movement input, or (Interact ≠ nil) an
// interaction, numbered in the same sequence (Input.Seq = Interact.Seq; the rest of Input is
// ignored).
type ClientInput struct {
	Client   ClientID
	Input    wire.Input
	Interact *wire.Interact
}

// AppliedInput names one applied input or interaction (Config.RecordInputs: for tests).
type AppliedInput struct {
	Entity wire.EntityID
	Seq    uint32
}

// AppliedInteract is an interaction a client's entity performed this tick, in sequence order
// with its inputs; the Member routes it to its target.
type AppliedInteract struct {
	Client   ClientID
	Entity   wire.EntityID
	Interact wire.Interact
}

// ClientAck is a client's acknowledgement of the snapshot of Tick.
type ClientAck struct {
	Client ClientID
	Tick   wire.Tick
}

// StepInput is everything that happens to the world in one tick.
type StepInput struct {
	// Tick is the logical tick being simulated. It must be greater than the previous Step's
	// (the first may be any tick ≥ 1); the driver may skip ticks after an overrun. Movement
	// integrates one tick per Step; snapshots are stamped with Tick.
	Tick   wire.Tick
	Joins  []Join
	Leaves []ClientID
	Inputs []ClientInput
	Acks   []ClientAck
}

// Joined reports a client that entered the world this tick.
type Joined struct {
	Client  ClientID
	Entity  wire.EntityID
	Welcome wire.Welcome
}

// Refused is a join the World turned down, with the reason to give the client.
type Refused struct {
	Client ClientID
	Reason wire.DisconnectReason
}

// ClientSnapshot is one client's snapshot frame (length prefix, type, payload). Frame aliases
// the World's buffer and is valid until the next Step.
type ClientSnapshot struct {
	Client ClientID
	Frame  []byte
	// Control: a frame that must reach the client (an interaction), never superseded by a
	// newer snapshot in the edge's queue. The World's snapshots are not.
	Control bool
}

// RejectCounts counts, by reason, what a Step rejected. Every rejected item is otherwise
// ignored: rejections never stop the tick.
type RejectCounts struct {
	UnknownClient int // an input, ack or leave for a client not in the world
	ReplayedInput int // an input whose Seq is not above the last applied one (replay, reorder, or Seq 0)
	TooManyInputs int // a client's oldest inputs beyond MaxInputsPerTick in one tick
	BadYaw        int // an input with Yaw ≥ wire.YawSteps
	BadAck        int // an ack of a tick never sent to that client (future, or not sent)
	StaleAck      int // an ack too old to serve as a baseline (beyond HistoryTicks)
	DuplicateJoin int // a join for a client already in the world
	ServerFull    int // a join beyond MaxClients
	BadSpawn      int // a join with a non-finite spawn position
}

// each calls f for every reason with a non-zero count; reasons are snake_case metric labels.
func (r *RejectCounts) each(f func(reason string, n int)) {
	for _, x := range [...]struct {
		reason string
		n      int
	}{
		{"unknown_client", r.UnknownClient},
		{"replayed_input", r.ReplayedInput},
		{"too_many_inputs", r.TooManyInputs},
		{"bad_yaw", r.BadYaw},
		{"bad_ack", r.BadAck},
		{"stale_ack", r.StaleAck},
		{"duplicate_join", r.DuplicateJoin},
		{"server_full", r.ServerFull},
		{"bad_spawn", r.BadSpawn},
	} {
		if x.n != 0 {
			f(x.reason, x.n)
		}
	}
}

// Total is the sum of all counts.
func (r *RejectCounts) Total() int {
	n := 0
	r.each(func(_ string, k int) { n += k })
	return n
}

// StepOutput is what one Step produced. It and everything it references are reused by the
// next Step.
type StepOutput struct {
	Joined    []Joined
	Refused   []Refused        // joins refused this tick: the edge must tell those clients and close them
	Snapshots []ClientSnapshot // one per client, in the World's client order
	Interacts []AppliedInteract
	// Applied lists every input and interaction applied this tick, if Config.RecordInputs.
	Applied  []AppliedInput
	Rejected RejectCounts
	// SkippedSeqs counts input sequence numbers given up on: a later input waited
	// InputGapTicks for them (lost on the way, or dropped by the edge's rate limit).
	SkippedSeqs int
	// Entities and Clients are the counts after the tick.
	Entities, Clients int
	// BytesOut is the total size of Snapshots' frames.
	BytesOut int
	// ViewEntities is the number of entities in all clients' views together (so
	// ViewEntities/Clients is the mean area-of-interest population).
	ViewEntities int
	// EncodeErrors counts clients whose snapshot could not be encoded (a bug if ever
	// non-zero); they get no snapshot this tick.
	EncodeErrors int
}

// client is one connected client's state.
type client struct {
	id       ClientID
	row      int32 // its entity's row
	entity   wire.EntityID
	lastSeq  uint32    // last input applied; 0: none
	ackTick  wire.Tick // newest acknowledged tick still usable; 0: none
	lastSent wire.Tick // tick of the last snapshot sent
	// quietUntil: no snapshot for ticks up to this one (an imported client's previous server
	// sent them).
	quietUntil wire.Tick
	wide       bool            // the next view update admits newcomers within the leave radius
	seed       []wire.EntityID // the next view update starts from these (its view on its last server)
	log        viewLog         // its view and the views it was sent

	pendOff, pendN int32 // this tick's inputs in World.grouped
	// wait holds inputs that arrived ahead of a gap in the sequence, oldest arrival first
	// in waitSince: applied when the gap fills, or regardless after InputGapTicks.
	wait      []ClientInput
	waitSince wire.Tick
}

// World is the deterministic simulation of one cell server's entities. It is driven by Step
// and is not safe for concurrent use.
type World struct {
	cfg      Config
	rng      *rand.Rand
	tick     wire.Tick // the current (during Step) or last Step's tick
	prevTick wire.Tick // the Step before tick's
	nextID   wire.EntityID

	minX, minZ, maxX, maxZ int32   // world bounds, in position units
	speed                  float64 // MaxSpeed in position units per tick
	speed2                 int64   // ⌊speed²⌋: the bound on a player velocity's squared length

	st   store
	grid grid
	aoi  aoi

	ghosts   int // rows that are ghosts (ghost.go)
	clients  []client
	byClient map[ClientID]int32 // → index in clients
	spare    []viewLog          // departed clients' logs, to reuse their buffers

	// input grouping scratch
	inClient []int32
	touched  []int32
	grouped  []ClientInput
	waiting  int // clients with inputs waiting (client.wait)

	frames []frame // ring of HistoryTicks per-tick states
	enc    wire.SnapshotEncoder
	buf    []byte
	ends   []int
	out    StepOutput
}

// NewWorld returns an empty world. rng, seeded by the caller, is the only source of
// randomness a rule of the simulation may use (none does yet); nil is allowed.
func NewWorld(cfg Config, rng *rand.Rand) (*World, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &World{
		cfg:      cfg,
		rng:      rng,
		nextID:   cfg.EntityIDBase,
		minX:     wire.QuantisePos(cfg.WorldMin[0]),
		minZ:     wire.QuantisePos(cfg.WorldMin[1]),
		maxX:     wire.QuantisePos(cfg.WorldMax[0]),
		maxZ:     wire.QuantisePos(cfg.WorldMax[1]),
		st:       newStore(),
		byClient: make(map[ClientID]int32),
		frames:   make([]frame, cfg.HistoryTicks),
	}
	w.speed = float64(cfg.MaxSpeed*wire.PosUnitsPerMetre) / float64(cfg.TickHz)
	w.speed2 = int64(math.Floor(w.speed * w.speed))
	w.grid = newGrid(w.minX, w.minZ, w.maxX, w.maxZ, cfg.cellUnits())
	enterU := cfg.AOIEnterRadius * wire.PosUnitsPerMetre
	leaveU := cfg.AOILeaveRadius * wire.PosUnitsPerMetre
	w.aoi = aoi{
		enter2:     int64(math.Floor(enterU * enterU)),
		leave2:     int64(math.Floor(leaveU * leaveU)),
		reach:      int32(math.Ceil(enterU)),
		reachLeave: int32(math.Ceil(leaveU)),
		maxSlots:   cfg.MaxViewSlots,
	}
	w.aoi.keptScale = float64(w.aoi.enter2) / float64(w.aoi.leave2)
	return w, nil
}

// Config returns the World's configuration.
func (w *World) Config() Config { return w.cfg }

// Tick returns the tick of the last Step (0 before the first).
func (w *World) Tick() wire.Tick { return w.tick }

// Step simulates tick in.Tick: it removes leaving clients, adds joining ones, applies acks
// and inputs, moves every entity, updates every client's view and builds its snapshot. The
// output is a function of the World's state and in alone, byte for byte; it is reused by the
// next Step. Step panics if in.Tick is not greater than the previous Step's tick: the driver
// must never run time backwards.
func (w *World) Step(in *StepInput) *StepOutput {
	t := in.Tick
	if t <= w.tick {
		panic(fmt.Sprintf("cellserver: Step(tick %d) after tick %d: ticks must increase", t, w.tick))
	}
	w.prevTick, w.tick = w.tick, t
	out := &w.out
	out.Joined = out.Joined[:0]
	out.Refused = out.Refused[:0]
	out.Snapshots = out.Snapshots[:0]
	out.Interacts = out.Interacts[:0]
	out.Applied = out.Applied[:0]
	out.SkippedSeqs = 0
	out.Rejected = RejectCounts{}
	out.BytesOut, out.EncodeErrors, out.ViewEntities = 0, 0, 0

	for _, id := range in.Leaves {
		w.leave(id)
	}
	for i := range in.Joins {
		w.join(&in.Joins[i], t)
	}
	for _, a := range in.Acks {
		w.ack(a, t)
	}
	w.applyInputs(in.Inputs)
	w.drainInputs()
	w.move()
	w.captureFrame(t)

	w.buf = w.buf[:0]
	w.ends = w.ends[:0]
	for i := range w.clients {
		c := &w.clients[i]
		w.updateView(c, t)
		out.ViewEntities += c.log.n
		if t <= c.quietUntil {
			// Its previous server already sent it a snapshot of this tick (ticks overlap
			// at a handoff when this server's clock runs behind): two frames of one tick,
			// from two views, would corrupt the client's baselines.
			c.log.unsend(t)
			continue
		}
		if w.snapshot(c, t) {
			out.Snapshots = append(out.Snapshots, ClientSnapshot{Client: c.id})
			w.ends = append(w.ends, len(w.buf))
		} else {
			out.EncodeErrors++
		}
	}
	start := 0
	for i, end := range w.ends {
		out.Snapshots[i].Frame = w.buf[start:end:end]
		start = end
	}
	out.BytesOut = len(w.buf)
	out.Entities = len(w.st.alive) - w.ghosts
	out.Clients = len(w.clients)
	if invariantsEnabled {
		w.checkInvariants()
	}
	return out
}

// clampPos converts metres to a position inside the world bounds.
func (w *World) clampPos(p [2]float64) (x, z int32) {
	x = min(max(wire.QuantisePos(p[0]), w.minX), w.maxX)
	z = min(max(wire.QuantisePos(p[1]), w.minZ), w.maxZ)
	return x, z
}

// spawn creates an entity at p (metres) and returns its row.
func (w *World) spawn(p [2]float64, kind uint8) int32 {
	w.nextID++
	r := w.st.add(w.nextID)
	w.st.x[r], w.st.z[r] = w.clampPos(p)
	w.st.kind[r] = kind
	w.grid.insert(&w.st, r)
	return r
}

// removeRow removes an entity as of tick t.
func (w *World) removeRow(r int32, t wire.Tick) {
	w.grid.remove(&w.st, r)
	w.st.remove(r, t)
}

func (w *World) join(j *Join, t wire.Tick) {
	rej := &w.out.Rejected
	switch {
	case w.hasClient(j.Client):
		rej.DuplicateJoin++
		return // the client is in the world: nothing to tell it
	case len(w.clients) >= w.cfg.MaxClients:
		rej.ServerFull++
		w.out.Refused = append(w.out.Refused, Refused{Client: j.Client, Reason: wire.ReasonServerFull})
		return
	case !finite(j.Spawn[0]) || !finite(j.Spawn[1]):
		rej.BadSpawn++
		w.out.Refused = append(w.out.Refused, Refused{Client: j.Client, Reason: wire.ReasonProtocolError})
		return
	}
	r := w.spawn(j.Spawn, j.Kind)
	w.addClient(j.Client, r, 0, 0, nil)
	e := w.st.ids[r]
	w.out.Joined = append(w.out.Joined, Joined{Client: j.Client, Entity: e, Welcome: wire.Welcome{
		Version:    wire.ProtocolVersion,
		Entity:     e,
		ServerTick: t,
		TickHz:     uint8(w.cfg.TickHz),
		WorldMin:   [2]int32{w.minX, w.minZ},
		WorldMax:   [2]int32{w.maxX, w.maxZ},
	}})
}

// addClient makes client id control the entity in row r, its inputs numbered after lastSeq.
func (w *World) addClient(id ClientID, r int32, lastSeq uint32, quietUntil wire.Tick, seed []wire.EntityID) {
	// A client that comes from another server (quietUntil ≠ 0) had a view there, with the
	// hysteresis band in it: its first view here admits everything within the leave radius,
	// or entities 50–60 m away would leave its view and come back.
	c := client{id: id, row: r, entity: w.st.ids[r], lastSeq: lastSeq, quietUntil: quietUntil, wide: quietUntil != 0 && seed == nil, seed: seed}
	if n := len(w.spare); n > 0 {
		c.log = w.spare[n-1]
		w.spare = w.spare[:n-1]
	} else {
		c.log = newViewLog(w.cfg.HistoryTicks)
	}
	i := int32(len(w.clients))
	w.st.owner[r] = i
	w.byClient[id] = i
	w.clients = append(w.clients, c)
}

func (w *World) hasClient(id ClientID) bool {
	_, ok := w.byClient[id]
	return ok
}

func (w *World) leave(id ClientID) {
	i, ok := w.byClient[id]
	if !ok {
		w.out.Rejected.UnknownClient++
		return
	}
	row := w.clients[i].row
	w.dropClient(i)
	w.removeRow(row, w.tick)
}

func (w *World) ack(a ClientAck, t wire.Tick) {
	i, ok := w.byClient[a.Client]
	if !ok {
		w.out.Rejected.UnknownClient++
		return
	}
	c := &w.clients[i]
	switch {
	case a.Tick <= c.ackTick:
		// A duplicate or reordered ack: nothing newer to use.
	case a.Tick > c.lastSent:
		w.out.Rejected.BadAck++
	case int(t-a.Tick) >= len(w.frames):
		w.out.Rejected.StaleAck++
	default:
		if _, sent := c.log.get(a.Tick); !sent {
			w.out.Rejected.BadAck++
			return
		}
		c.ackTick = a.Tick
		c.log.release(a.Tick)
	}
}

// applyInputs groups the tick's inputs by client (a counting sort, so arrival order is kept
// within a client), then applies each client's in sequence order.
func (w *World) applyInputs(ins []ClientInput) {
	if len(ins) == 0 {
		return
	}
	rej := &w.out.Rejected
	idx := w.inClient[:0]
	touched := w.touched[:0]
	for k := range ins {
		i, ok := w.byClient[ins[k].Client]
		if !ok {
			rej.UnknownClient++
			i = -1
		} else if c := &w.clients[i]; c.pendN == 0 {
			touched = append(touched, i)
			c.pendN = 1
		} else {
			c.pendN++
		}
		idx = append(idx, i)
	}
	off := int32(0)
	for _, i := range touched {
		c := &w.clients[i]
		c.pendOff = off
		off += c.pendN
		c.pendN = 0
	}
	grouped := slices.Grow(w.grouped[:0], int(off))[:off]
	for k, i := range idx {
		if i < 0 {
			continue
		}
		c := &w.clients[i]
		grouped[c.pendOff+c.pendN] = ins[k]
		c.pendN++
	}
	for _, i := range touched {
		c := &w.clients[i]
		g := grouped[c.pendOff : c.pendOff+c.pendN]
		c.pendN = 0
		was := len(c.wait)
		for k := range g {
			seq := g[k].Input.Seq
			at, dup := slices.BinarySearchFunc(c.wait, seq, func(a ClientInput, s uint32) int { return cmp.Compare(a.Input.Seq, s) })
			if seq <= c.lastSeq || dup {
				rej.ReplayedInput++ // a replay, or a resend of one already here
				continue
			}
			c.wait = slices.Insert(c.wait, at, g[k])
		}
		if excess := len(c.wait) - maxWaitingInputs; excess > 0 {
			rej.TooManyInputs += excess // the newest: a gateway resends what was not applied
			clear(c.wait[maxWaitingInputs:])
			c.wait = c.wait[:maxWaitingInputs]
		}
		if was == 0 && len(c.wait) > 0 {
			w.waiting++
			c.waitSince = w.tick
		}
	}
	w.inClient, w.touched, w.grouped = idx, touched, grouped
}

// drainInputs applies, for every client with inputs waiting (sorted by sequence, distinct,
// above its last applied), those that continue its sequence, at most MaxInputsPerTick a tick
// (the rest apply on the next ticks); an input beyond a gap waits until the gap fills or
// InputGapTicks pass, then the gap is skipped and counted.
func (w *World) drainInputs() {
	if w.waiting == 0 {
		return
	}
	maxIn := w.cfg.MaxInputsPerTick
	for i := range w.clients {
		c := &w.clients[i]
		g := c.wait
		if len(g) == 0 {
			continue
		}
		expired := w.tick-c.waitSince >= wire.Tick(w.cfg.InputGapTicks)
		k := 0
		for k < len(g) && k < maxIn {
			in := &g[k]
			if in.Input.Seq != c.lastSeq+1 {
				if !expired {
					break
				}
				w.out.SkippedSeqs += int(in.Input.Seq - c.lastSeq - 1)
				expired = false // a later gap waits its own turn
			}
			w.applyInput(c, in)
			k++
		}
		rest := copy(g, g[k:])
		clear(g[rest:])
		c.wait = g[:rest]
		switch {
		case rest == 0:
			c.waitSince = 0
			w.waiting--
		case k > 0:
			c.waitSince = w.tick
		}
	}
}

// maxWaitingInputs bounds a client's inputs waiting to be applied: the newest beyond it are
// rejected (TooManyInputs).
const maxWaitingInputs = 64

// applyInput applies one input in sequence (in.Input.Seq > c.lastSeq).
func (w *World) applyInput(c *client, in *ClientInput) {
	if w.cfg.RecordInputs && in.Input.Yaw < wire.YawSteps {
		w.out.Applied = append(w.out.Applied, AppliedInput{Entity: c.entity, Seq: in.Input.Seq})
	}
	if in.Interact != nil {
		c.lastSeq = in.Input.Seq
		w.out.Interacts = append(w.out.Interacts, AppliedInteract{Client: c.id, Entity: c.entity, Interact: *in.Interact})
		return
	}
	if in.Input.Yaw >= wire.YawSteps {
		w.out.Rejected.BadYaw++ // not applied; its sequence number is used up
		c.lastSeq = in.Input.Seq
		return
	}
	r := c.row
	w.st.vx[r], w.st.vz[r] = w.velocity(in.Input.MoveX, in.Input.MoveZ)
	w.st.yaw[r] = in.Input.Yaw
	w.st.action[r] = in.Input.Action
	c.lastSeq = in.Input.Seq
}

// velocity turns a move intent into a velocity in whole position units per tick: an intent of
// length 127 is MaxSpeed; a longer one (a diagonal, or anything hacked) is scaled down to
// MaxSpeed; components are rounded, then the one rounding lengthened most is shortened by a
// unit until the vector is within MaxSpeed again (so each is within a unit of the ideal).
// Only correctly rounded IEEE operations are used, so every machine computes the same.
func (w *World) velocity(mx, mz int8) (int32, int32) {
	if mx == 0 && mz == 0 {
		return 0, 0
	}
	fx, fz := float64(max(mx, -127)), float64(max(mz, -127))
	d := max(127, math.Sqrt(fx*fx+fz*fz)) // fx², fz² and their sum are exact
	ix, iz := float64(fx*w.speed)/d, float64(fz*w.speed)/d
	vx, vz := int64(math.Round(ix)), int64(math.Round(iz))
	for vx*vx+vz*vz > w.speed2 {
		// Shorten the component that rounding lengthened most.
		if float64(abs64(vx))-math.Abs(ix) >= float64(abs64(vz))-math.Abs(iz) {
			vx -= sign64(vx)
		} else {
			vz -= sign64(vz)
		}
	}
	return int32(vx), int32(vz)
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func sign64(v int64) int64 {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// move integrates every entity one tick: pos += vel, clamped to the world bounds; an axis
// stopped by a bound loses its velocity, so the state stays exactly extrapolable.
func (w *World) move() {
	st := &w.st
	for _, r := range st.alive {
		vx, vz := st.vx[r], st.vz[r]
		if vx == 0 && vz == 0 {
			continue
		}
		x, z := st.x[r]+vx, st.z[r]+vz
		if x < w.minX {
			x, st.vx[r] = w.minX, 0
		} else if x > w.maxX {
			x, st.vx[r] = w.maxX, 0
		}
		if z < w.minZ {
			z, st.vz[r] = w.minZ, 0
		} else if z > w.maxZ {
			z, st.vz[r] = w.maxZ, 0
		}
		st.x[r], st.z[r] = x, z
		w.grid.moved(st, r)
	}
}

// Entity returns an entity's current state.
func (w *World) Entity(id wire.EntityID) (wire.EntityState, bool) {
	r, ok := w.st.lookup(id)
	if !ok {
		return wire.EntityState{}, false
	}
	return w.st.state(r), true
}

// EntityIDs returns the ids of the real entities (not ghosts), ascending, in a new slice.
func (w *World) EntityIDs() []wire.EntityID {
	ids := make([]wire.EntityID, 0, len(w.st.alive)-w.ghosts)
	for _, r := range w.st.alive {
		if !w.st.ghost[r] {
			ids = append(ids, w.st.ids[r])
		}
	}
	slices.Sort(ids)
	return ids
}

// ClientEntity returns the entity of a connected client.
func (w *World) ClientEntity(id ClientID) (wire.EntityID, bool) {
	i, ok := w.byClient[id]
	if !ok {
		return 0, false
	}
	return w.clients[i].entity, true
}

// AddNPC adds an entity no client controls at pos (metres, clamped into the world) moving at
// vel (position units per tick, each component clamped to ±65536), and returns its id. Call it
// between Steps.
func (w *World) AddNPC(pos [2]float64, vel [2]int32, kind uint8) wire.EntityID {
	r := w.spawn(pos, kind)
	w.st.vx[r] = min(max(vel[0], -maxVelUnits), maxVelUnits)
	w.st.vz[r] = min(max(vel[1], -maxVelUnits), maxVelUnits)
	return w.st.ids[r]
}

// SetNPCVelocity sets an NPC's velocity (position units per tick, clamped as in AddNPC). It
// reports false for an unknown id or a client's entity.
func (w *World) SetNPCVelocity(id wire.EntityID, vel [2]int32) bool {
	r, ok := w.st.lookup(id)
	if !ok || w.st.owner[r] != noRow || w.st.ghost[r] {
		return false
	}
	w.st.vx[r] = min(max(vel[0], -maxVelUnits), maxVelUnits)
	w.st.vz[r] = min(max(vel[1], -maxVelUnits), maxVelUnits)
	return true
}

// RemoveNPC removes an NPC. It reports false for an unknown id or a client's entity.
func (w *World) RemoveNPC(id wire.EntityID) bool {
	r, ok := w.st.lookup(id)
	if !ok || w.st.owner[r] != noRow || w.st.ghost[r] {
		return false
	}
	w.removeRow(r, w.tick+1) // as of the next Step
	return true
}

// clientInfo returns a connected client's entity, the last input sequence applied for it and
// its entity's position (units).
func (w *World) clientInfo(id ClientID) (e wire.EntityID, lastSeq uint32, x, z int32, ok bool) {
	i, ok := w.byClient[id]
	if !ok {
		return 0, 0, 0, 0, false
	}
	c := &w.clients[i]
	return c.entity, c.lastSeq, w.st.x[c.row], w.st.z[c.row], true
}

// entityClient returns the client controlling a real entity here (0: none, or not here).
func (w *World) entityClient(id wire.EntityID) (ClientID, bool) {
	r, ok := w.st.lookup(id)
	if !ok || w.st.ghost[r] {
		return 0, false
	}
	if i := w.st.owner[r]; i != noRow {
		return w.clients[i].id, true
	}
	return 0, true
}

// clientView appends the ids of the entities in a client's current view (itself excluded).
func (w *World) clientView(dst []wire.EntityID, id ClientID) []wire.EntityID {
	i, ok := w.byClient[id]
	if !ok {
		return dst
	}
	c := &w.clients[i]
	for _, r := range c.log.view() {
		if r != noRow && r != c.row {
			dst = append(dst, w.st.ids[r])
		}
	}
	return dst
}

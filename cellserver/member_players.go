package cellserver

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Players: what the Member knows of durable players (DESIGN.md §5). The Member does no I/O:
// the driver reads a joining player's stored state before it passes the JoinMsg on
// (PeerIn.Player), flushes PlayerStates to PostgreSQL, and runs the InventoryRequests of
// MemberOutput off the tick, answering each with an InventoryDone in a later Step.

// StoredPlayer is a player's durable state as the driver read it.
type StoredPlayer struct {
	// Placed: the player has been stored in a cell, so X, Y, Z is where it was (a player
	// created but never flushed has no place yet).
	Placed  bool
	X, Y, Z float64 // metres
	// Epoch is the stored authority epoch: an entity of the player must write with a newer one.
	Epoch uint64
	// HP is the stored hit points (0: none stored: the entity starts with PlayerHP).
	HP uint16
}

// pendingJoin is what a gateway join brings that the World does not keep.
type pendingJoin struct {
	player wire.PlayerID
	auth   uint64 // the entity's first authority epoch
	hp     uint16
}

// PlayerState is a real player entity's state, as a flush writes it.
type PlayerState struct {
	Player  wire.PlayerID
	Entity  wire.EntityID
	X, Y, Z int32 // position units (1/wire.PosUnitsPerMetre m)
	Cell    raftmeta.CellID
	Epoch   uint64 // the entity's authority epoch: PostgreSQL keeps the newest writer's
	HP      uint16
}

// PlayerStates appends the state of every player entity real here and not in flight (an
// entity in flight gets a new epoch where it lands), in entity id order.
func (m *Member) PlayerStates(dst []PlayerState) []PlayerState {
	if m.mapv == nil || m.dead {
		return dst
	}
	n := len(dst)
	for id, meta := range m.ents {
		if meta.player == 0 || m.moving(id) {
			continue
		}
		st, ok := m.world.Entity(id)
		if !ok {
			continue
		}
		ps := PlayerState{Player: meta.player, Entity: id, X: st.X, Y: st.Y, Z: st.Z, Epoch: meta.auth, HP: meta.hp}
		if c := m.lookup.at(st.X, st.Z); c != nil {
			ps.Cell = c.ID
		}
		dst = append(dst, ps)
	}
	slices.SortFunc(dst[n:], func(a, b PlayerState) int { return cmp.Compare(a.Entity, b.Entity) })
	return dst
}

// InventoryRequest is an inventory operation a client's entity applied this tick, for the
// driver to run as one PostgreSQL transaction keyed by Key.
type InventoryRequest struct {
	// Key is the operation's idempotency key, InventoryKey(Actor, Seq): the same on whichever
	// server applies that interaction (a resend after a handoff, a resume after a crash), so
	// that PostgreSQL applies it once and every retry gets the first outcome.
	Key    string
	Actor  wire.EntityID
	Seq    uint32
	Player wire.PlayerID // the actor's player
	Target wire.PlayerID // give, trade: the other player; 0 otherwise
	Op     wire.InventoryOp
	// Where the actor stands (a drop puts the item there; a loot reaches from there).
	Cell    raftmeta.CellID
	X, Y, Z int32
	// Replay: the session sent the interaction again after it was applied; the driver answers
	// with the outcome PostgreSQL recorded under Key if there is one. Otherwise it runs the
	// request, unless Fallback ≠ 0: then Fallback is the answer (what this server could not
	// check: a target out of view, an offer it never saw).
	Replay   bool
	Fallback wire.InventoryCode
}

// InventoryDone is the result of an InventoryRequest.
type InventoryDone struct {
	Actor  wire.EntityID
	Seq    uint32
	Result wire.InventoryResult
}

// InventoryKey is the idempotency key of the inventory operation of interaction (actor, seq):
// entity ids are never reused, and a session numbers its interactions once.
func InventoryKey(actor wire.EntityID, seq uint32) string {
	return fmt.Sprintf("ix:%d:%d", actor, seq)
}

// inventory turns an applied InteractInventory into an InventoryRequest, or answers it at once
// when it cannot run.
func (m *Member) inventory(a AppliedInteract, t wire.Tick) {
	req, code := m.inventoryRequest(a.Entity, a.Interact.Seq, a.Interact.Target, a.Interact.Data, true)
	if code != 0 {
		m.stats.InventoryRefused++
		m.inventoryDone(InventoryDone{Actor: a.Entity, Seq: a.Interact.Seq,
			Result: wire.InventoryResult{Op: req.Op.Op, Code: code}}, t)
		return
	}
	m.stats.InventoryOps++
	m.out.InventoryOps = append(m.out.InventoryOps, req)
}

// inventoryReplay handles an inventory interaction the actor's session sent again after it
// was applied (here, or by a server that died): the driver answers it with the outcome
// PostgreSQL recorded under its key, or runs it if none was recorded (the first run never
// committed). What this server cannot check (a target out of view, an offer it never saw)
// becomes the answer only if PostgreSQL recorded nothing.
func (m *Member) inventoryReplay(msg wire.InteractMsg, t wire.Tick) {
	req, code := m.inventoryRequest(msg.Actor, msg.Seq, msg.Target, msg.Data, false)
	if req.Player == 0 {
		m.stats.InventoryRefused++
		m.inventoryDone(InventoryDone{Actor: msg.Actor, Seq: msg.Seq,
			Result: wire.InventoryResult{Op: req.Op.Op, Code: wire.InvInvalid}}, t)
		return
	}
	req.Replay, req.Fallback = true, code
	m.stats.InventoryReplays++
	m.out.InventoryOps = append(m.out.InventoryOps, req)
}

// inventoryRequest builds the request of inventory interaction (actor, seq), or says why it
// cannot run (code ≠ 0). consume: an accepted trade uses up its offer.
func (m *Member) inventoryRequest(actor wire.EntityID, seq uint32, target wire.EntityID, data []byte, consume bool) (InventoryRequest, wire.InventoryCode) {
	op, err := wire.DecodeInventoryOp(data)
	if err != nil { // the edge validated it: only a buggy peer gets here
		return InventoryRequest{Op: wire.InventoryOp{Op: wire.InvLoot}}, wire.InvInvalid
	}
	req := InventoryRequest{Key: InventoryKey(actor, seq), Actor: actor, Seq: seq, Op: op}
	meta := m.ents[actor]
	st, ok := m.world.Entity(actor)
	if meta.player == 0 || !ok {
		return req, wire.InvInvalid
	}
	req.Player, req.X, req.Y, req.Z = meta.player, st.X, st.Y, st.Z
	if c := m.lookup.at(st.X, st.Z); c != nil {
		req.Cell = c.ID
	}
	if op.Op == wire.InvGive || op.Op == wire.InvTrade {
		req.Target = m.playerOf(target)
		if req.Target == 0 || req.Target == meta.player {
			return req, wire.InvNoTarget
		}
	}
	if op.Op == wire.InvTrade && !m.acceptOffer(actor, target, op, consume) {
		return req, wire.InvNoOffer
	}
	return req, 0
}

// tradeOffer is a trade offered to an entity real here: from offers Items for Want.
type tradeOffer struct {
	from        wire.EntityID
	items, want []uint64 // sorted
	until       wire.Tick
}

// maxOffersPerEntity bounds the offers remembered for one entity (the oldest go first).
const maxOffersPerEntity = 8

// offer remembers a trade offer delivered to its target (real here). Data that is not an
// InvTrade InventoryOp is a trade request of the game's own: nothing to remember.
func (m *Member) offer(msg *wire.InteractMsg, t wire.Tick) {
	op, err := wire.DecodeInventoryOp(msg.Data)
	if err != nil || op.Op != wire.InvTrade {
		return
	}
	o := tradeOffer{from: msg.Actor, items: slices.Sorted(slices.Values(op.Items)), want: slices.Sorted(slices.Values(op.Want)),
		until: t + wire.Tick(m.cfg.OfferTicks)}
	l := m.offers[msg.Target]
	if len(l) >= maxOffersPerEntity {
		l = slices.Delete(l, 0, 1)
	}
	m.offers[msg.Target] = append(l, o)
	m.stats.TradeOffers++
}

// acceptOffer reports whether target offered actor the mirror of op (target gives op.Want for
// op.Items), and with consume uses the offer up.
func (m *Member) acceptOffer(actor, target wire.EntityID, op wire.InventoryOp, consume bool) bool {
	items, want := slices.Sorted(slices.Values(op.Items)), slices.Sorted(slices.Values(op.Want))
	l := m.offers[actor]
	for i := len(l) - 1; i >= 0; i-- {
		if o := l[i]; o.from == target && slices.Equal(o.items, want) && slices.Equal(o.want, items) {
			if consume {
				m.offers[actor] = slices.Delete(l, i, i+1)
			}
			return true
		}
	}
	return false
}

// expireOffers forgets offers past their time, and those of entities no longer here.
func (m *Member) expireOffers(t wire.Tick) {
	for e, l := range m.offers {
		if _, here := m.ents[e]; !here {
			delete(m.offers, e)
			continue
		}
		l = slices.DeleteFunc(l, func(o tradeOffer) bool { return t >= o.until })
		if len(l) == 0 {
			delete(m.offers, e)
		} else {
			m.offers[e] = l
		}
	}
}

// playerOf is the player of an entity real or ghosted here (0: unknown, or not a player).
func (m *Member) playerOf(e wire.EntityID) wire.PlayerID {
	if meta, ok := m.ents[e]; ok {
		return meta.player
	}
	if g, ok := m.ghostOf[e]; ok {
		return g.player
	}
	return 0
}

// inventoryDone sends a result to its actor's client, routed like an interaction aimed at the
// actor (which may have moved to another server since): (From, Seq) is the request's, so the
// gateway delivers it once.
func (m *Member) inventoryDone(d InventoryDone, t wire.Tick) {
	data, err := d.Result.Append(nil)
	if err != nil {
		m.stats.ImportErrors++
		return
	}
	k := interactKey{d.Actor, d.Seq}
	if _, dup := m.interacts[k]; dup {
		return
	}
	o := &outInteract{
		msg: wire.InteractMsg{Origin: uint64(m.self), Actor: d.Actor, Seq: d.Seq,
			Target: d.Actor, Kind: wire.InteractInventoryResult, Data: data},
		sent: t, until: t + wire.Tick(m.cfg.RememberTicks),
	}
	m.interacts[k] = o
	m.routeInteract(&o.msg, t)
}

// CriticalEvent is an event the game must not lose (a death): the driver writes it to the
// local outbox, durably, before anything of the Step that produced it leaves the process, and
// the outbox flusher delivers it to PostgreSQL's event log, once per Key.
type CriticalEvent struct {
	// Key is the event's idempotency key: the same if the event happens again after a crash
	// (the attack that caused a death is redelivered to the target's new owner).
	Key     string
	Kind    string // "death"
	Cell    raftmeta.CellID
	Epoch   raftmeta.Epoch // the cell's epoch
	Payload []byte         // a JSON object; "player" names the player it concerns
}

// hurt applies an attack delivered to its target, real here. One that takes the last hit
// point is a death: the target respawns where it fell with full hit points, and the death
// becomes a critical event keyed by the attack (actor, seq), delivered once per attack.
func (m *Member) hurt(msg *wire.InteractMsg, t wire.Tick) {
	meta, ok := m.ents[msg.Target]
	if !ok || meta.hp == 0 || m.cfg.AttackDamage == 0 {
		return
	}
	if meta.hp > m.cfg.AttackDamage {
		meta.hp -= m.cfg.AttackDamage
		m.ents[msg.Target] = meta
		return
	}
	meta.hp = m.cfg.PlayerHP
	m.ents[msg.Target] = meta
	m.stats.Deaths++
	st, _ := m.world.Entity(msg.Target)
	ev := CriticalEvent{Key: fmt.Sprintf("death:%d:%d", msg.Actor, msg.Seq), Kind: "death"}
	if c := m.lookup.at(st.X, st.Z); c != nil {
		ev.Cell, ev.Epoch = c.ID, c.Epoch
	}
	ev.Payload = fmt.Appendf(nil, `{"player":%d,"entity":%d,"killer_entity":%d,"killer_player":%d,"tick":%d,"x":%g,"z":%g}`,
		meta.player, msg.Target, msg.Actor, m.playerOf(msg.Actor), t, wire.DequantisePos(st.X), wire.DequantisePos(st.Z))
	m.out.Events = append(m.out.Events, ev)
}

package cellserver

import (
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
	slices.SortFunc(dst[n:], func(a, b PlayerState) int { return compareIDs(a.Entity, b.Entity) })
	return dst
}

func compareIDs(a, b wire.EntityID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
	// Where the actor stands (a drop puts the item there).
	Cell    raftmeta.CellID
	X, Y, Z int32
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
	done := func(code wire.InventoryCode, op wire.InventoryOpKind) {
		m.stats.InventoryRefused++
		m.inventoryDone(InventoryDone{Actor: a.Entity, Seq: a.Interact.Seq,
			Result: wire.InventoryResult{Op: op, Code: code}}, t)
	}
	op, err := wire.DecodeInventoryOp(a.Interact.Data)
	if err != nil { // the edge validated it: only a buggy peer gets here
		done(wire.InvInvalid, wire.InvLoot)
		return
	}
	meta := m.ents[a.Entity]
	st, ok := m.world.Entity(a.Entity)
	if meta.player == 0 || !ok {
		done(wire.InvInvalid, op.Op)
		return
	}
	req := InventoryRequest{Key: InventoryKey(a.Entity, a.Interact.Seq), Actor: a.Entity, Seq: a.Interact.Seq,
		Player: meta.player, Op: op, X: st.X, Y: st.Y, Z: st.Z}
	if c := m.lookup.at(st.X, st.Z); c != nil {
		req.Cell = c.ID
	}
	if op.Op == wire.InvGive || op.Op == wire.InvTrade {
		req.Target = m.playerOf(a.Interact.Target)
		if req.Target == 0 || req.Target == meta.player {
			done(wire.InvNoTarget, op.Op)
			return
		}
	}
	m.stats.InventoryOps++
	m.out.InventoryOps = append(m.out.InventoryOps, req)
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

package cellserver

import (
	"cmp"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Sessions homed at a gateway (DESIGN.md §4) and interactions between entities.
//
// A gateway (peer id ≥ wire.GatewayIDBase) homes client sessions: it sends a JoinMsg to the
// owner of the spawn cell, which creates the entity with a World client for the session (a
// remote client, as for a session homed on another cell server) and from then on sends the
// session's frames — the first a Welcome — to the gateway as FrameMsg, each carrying the
// entity's authority epoch, the last input sequence applied and its position, wherever the
// entity goes. The gateway sends inputs, acks, interactions and the leave to the server that sent
// the newest frames; the Member's hold-and-forward (member.go) covers the switch. A repeated
// JoinMsg for a session joined within RememberTicks is ignored (the gateway retries a join to
// the same server until a frame comes). A gateway that re-creates the entity of a dead server
// sends JoinMsg.Resume: the entity comes back with the same id, position and input sequence.
// An entity whose gateway session has sent nothing for SessionIdleTicks leaves the world (the
// gateway died, or forgot the session and its Leave was lost).
//
// Interactions (wire.Interact: an attack, a chat message, a trade request) come from the
// client in the sequence of its inputs (InteractMsg with Origin = the gateway) and are applied
// by the actor's owner in that order, exactly once. The owner then routes each toward its
// target's real entity: delivered here if the target is real here; else sent to the owner of
// the target's ghost here, held while the target is in flight from here, or forwarded to where
// it went. The owner keeps it and re-routes it every RetryTicks until the deliverer acks it
// (InteractAckMsg), for RememberTicks at most. Each server delivers an interaction (Actor, Seq)
// at most once while it remembers it, and the gateway drops a duplicate a retry may cause on a
// second server; so each is delivered to the target's client exactly once.

// ClientInteract is an interaction sent by the client of a session homed here (the embedded
// edge). Only one whose entity is here or in flight from here can be applied: an
// InteractMsg from a cell server is routing, not a session's input; interactions of entities
// elsewhere need a gateway (counted in MemberStats.InteractsUnsupported).
type ClientInteract struct {
	Client   ClientID
	Interact wire.Interact
}

type interactKey struct {
	actor wire.EntityID
	seq   uint32
}

func compareInteractKeys(a, b interactKey) int {
	if a.actor != b.actor {
		return cmp.Compare(a.actor, b.actor)
	}
	return cmp.Compare(a.seq, b.seq)
}

// homeFrame is an interaction delivered here to a client homed at a gateway: its frame is sent
// again every RetryTicks until the gateway acknowledges it (InteractAckMsg), as the last hop
// may lose it like any other.
type homeFrame struct {
	to    raftmeta.ServerID
	msg   wire.FrameMsg
	sent  wire.Tick
	until wire.Tick
}

// outInteract is an interaction applied here, routed until delivered.
type outInteract struct {
	msg   wire.InteractMsg
	sent  wire.Tick
	until wire.Tick
}

// onJoin opens (or resumes) the entity of a session homed at a gateway.
//
// stored is the player's durable state the driver read (nil: none). A new entity starts where
// it was stored (if it has been stored in a cell) with an authority epoch above the stored one,
// so that its writes are not fenced; a resume keeps the gateway's position (fresher than any
// flush) and raises its epoch above the stored one too.
func (m *Member) onJoin(from raftmeta.ServerID, msg wire.JoinMsg, stored *StoredPlayer, t wire.Tick) {
	if uint64(from) != msg.Home || !wire.IsGatewayID(msg.Home) {
		m.stats.Unroutable++ // a join comes from its session's gateway, over its own link
		return
	}
	key := SessionKey{Home: from, Client: ClientID(msg.Client)}
	if msg.Resume != 0 {
		// A resume is remembered by entity (the session's first join may have come here too).
		if _, ok := m.resumes[msg.Resume]; ok {
			return // a retry: the frames of wherever the entity went answer it
		}
		if _, here := m.ents[msg.Resume]; here || m.moving(msg.Resume) {
			return
		}
		if _, ok := m.remote[key]; ok {
			return // the session has an entity here already
		}
		m.resumes[msg.Resume] = t + wire.Tick(m.cfg.RememberTicks)
		r := wire.EntityRecord{ID: msg.Resume, X: msg.X, Z: msg.Z, Kind: msg.Kind,
			AuthEpoch: msg.AuthEpoch, Home: msg.Home, Client: msg.Client, LastSeq: msg.LastSeq,
			PlayerID: msg.PlayerID, HP: m.cfg.PlayerHP}
		if stored != nil && stored.HP > 0 {
			r.HP = min(stored.HP, m.cfg.PlayerHP)
		}
		if stored != nil && stored.Epoch > r.AuthEpoch {
			// A writer the gateway never saw frames from (a zombie's last flush, say) stored a
			// newer epoch: the resumed entity must be newer still, or its writes are fenced.
			r.AuthEpoch = stored.Epoch
		}
		if err := m.importRecord(r, t, true, t, &m.stats.FrozenHandoff); err != nil {
			m.send(from, &wire.RefuseMsg{Client: msg.Client, Reason: wire.ReasonEntityLost})
			return
		}
		m.stats.Resumed++
		return
	}
	if _, ok := m.joins[key]; ok {
		return // a retry: the frames of wherever the entity went answer it
	}
	if _, ok := m.remote[key]; ok {
		return
	}
	m.joins[key] = t + wire.Tick(m.cfg.RememberTicks)
	if m.world.nextID-m.cfg.World.EntityIDBase >= entityIDsPerIncarnation-1 {
		// This incarnation's entity ids are used up: restart the server for a new range.
		m.send(from, &wire.RefuseMsg{Client: msg.Client, Reason: wire.ReasonServerFull})
		return
	}
	wc := m.nextCID
	m.nextCID++
	m.remote[key], m.remoteOf[wc] = wc, key
	m.heard[wc] = t
	j := Join{Client: wc, Kind: msg.Kind, Player: msg.PlayerID,
		Spawn: [2]float64{float64(msg.X) / wire.PosUnitsPerMetre, float64(msg.Z) / wire.PosUnitsPerMetre}}
	pj := pendingJoin{player: msg.PlayerID, auth: 1, hp: m.cfg.PlayerHP}
	if stored != nil {
		pj.auth = max(1, stored.Epoch+1)
		if stored.HP > 0 {
			pj.hp = min(stored.HP, m.cfg.PlayerHP)
		}
		if stored.Placed {
			// Where it was last stored; if that is another server's cell, the first tick hands
			// it over.
			j.Spawn = [2]float64{stored.X, stored.Z}
		}
	}
	m.pendingJoins[wc] = pj
	m.stepIn.Joins = append(m.stepIn.Joins, j)
	m.stats.GatewayJoins++
}

// onGatewayHello: a gateway (re)connected. If it restarted (a new incarnation), its sessions
// from before are gone and their ids will be used again: their entities leave the world.
func (m *Member) onGatewayHello(from raftmeta.ServerID, msg wire.PeerHelloMsg) {
	if !wire.IsGatewayID(uint64(from)) {
		return
	}
	old, known := m.gateways[from]
	m.gateways[from] = msg.Incarnation
	if !known || old == msg.Incarnation {
		return
	}
	for _, wc := range sortedKeys(m.remoteOf) {
		if m.remoteOf[wc].Home != from {
			continue
		}
		if e, ok := m.world.ClientEntity(wc); ok {
			m.exp = m.world.Export(m.exp[:0], e)
			m.forget(m.exp)
			m.stats.SessionsIdled++
		}
	}
	for k := range m.joins {
		if k.Home == from {
			delete(m.joins, k)
		}
	}
	for k, hf := range m.homeFrames {
		if hf.to == from {
			delete(m.homeFrames, k) // for sessions of the old process
		}
	}
}

// onDrop: the session's gateway gets frames of this entity from a newer copy elsewhere (a
// resume raced a takeBack after a handoff's target died): this copy, if it is still here and
// no newer than the gateway says, leaves the world. Never forwarded.
func (m *Member) onDrop(from raftmeta.ServerID, msg wire.DropMsg) {
	if uint64(from) != msg.Home || !wire.IsGatewayID(msg.Home) {
		return
	}
	meta, ok := m.ents[msg.Entity]
	if !ok || meta.home != (SessionKey{Home: from, Client: ClientID(msg.Client)}) || meta.auth > msg.AuthEpoch {
		return
	}
	if m.world.IsGhost(msg.Entity) || m.moving(msg.Entity) {
		return
	}
	m.exp = m.world.Export(m.exp[:0], msg.Entity)
	m.forget(m.exp)
	m.stats.StaleCopiesDropped++
}

// remoteJoined sends the welcome of a gateway session's new entity.
func (m *Member) remoteJoined(j Joined) bool {
	key, ok := m.remoteOf[j.Client]
	if !ok {
		return false
	}
	pj := m.pendingJoins[j.Client]
	delete(m.pendingJoins, j.Client)
	m.ents[j.Entity] = entityMeta{auth: max(1, pj.auth), home: key, player: pj.player, hp: pj.hp}
	m.sendFrame(j.Client, key, j.Welcome.AppendFrame(nil))
	return true
}

// remoteRefused tells a gateway that the World turned its session's join down.
func (m *Member) remoteRefused(r Refused) bool {
	key, ok := m.remoteOf[r.Client]
	if !ok {
		return false
	}
	delete(m.remoteOf, r.Client)
	delete(m.pendingJoins, r.Client)
	delete(m.remote, key)
	delete(m.heard, r.Client)
	m.send(key.Home, &wire.RefuseMsg{Client: uint32(key.Client), Reason: r.Reason})
	return true
}

// sendFrame sends a client frame to the home of a remote World client, with what the home
// routes by.
func (m *Member) sendFrame(wc ClientID, key SessionKey, frame []byte) {
	e, seq, x, z, ok := m.world.clientInfo(wc)
	if !ok {
		return
	}
	m.send(key.Home, &wire.FrameMsg{Client: uint32(key.Client), Entity: e, AuthEpoch: m.ents[e].auth,
		LastSeq: seq, X: x, Z: z, Frame: frame})
}

// expireSessions drops the entities of gateway sessions silent for SessionIdleTicks, and
// forgets old joins and deliveries.
func (m *Member) expireSessions(t wire.Tick) {
	if idle := wire.Tick(m.cfg.SessionIdleTicks); idle > 0 {
		for _, wc := range sortedKeys(m.heard) {
			if t-m.heard[wc] <= idle {
				continue
			}
			if e, ok := m.world.ClientEntity(wc); ok {
				m.exp = m.world.Export(m.exp[:0], e)
				m.forget(m.exp)
				m.stats.SessionsIdled++
			}
			delete(m.heard, wc)
		}
	}
	for k, until := range m.joins {
		if t >= until {
			delete(m.joins, k)
		}
	}
	for k, until := range m.delivered {
		if t >= until {
			delete(m.delivered, k)
		}
	}
	for e, until := range m.resumes {
		if t >= until {
			delete(m.resumes, e)
		}
	}
	for e, v := range m.views {
		if t-v.at > wire.Tick(m.cfg.RememberTicks) {
			delete(m.views, e) // its handoff never came (rejected elsewhere, or lost)
		}
	}
}

// ---- interactions ----

// sessionInteract puts an interaction from the actor's client into the World, in sequence with
// its inputs; if the actor is not here it is held or forwarded like an input.
func (m *Member) sessionInteract(msg wire.InteractMsg, t wire.Tick) {
	home := raftmeta.ServerID(msg.Origin)
	if meta, ok := m.ents[msg.Actor]; ok && meta.home.Home == home {
		if wc, ok := m.worldClient(home, meta.home.Client); ok {
			if _, remote := m.heard[wc]; remote {
				m.heard[wc] = t
			}
			if msg.Kind == wire.InteractInventory {
				if _, last, _, _, ok := m.world.clientInfo(wc); ok && msg.Seq <= last {
					// Applied before (by this server or the one the entity came from): the
					// gateway resends an inventory operation until its result reaches it.
					m.inventoryReplay(msg, t)
					return
				}
			}
			in := wire.Interact{Seq: msg.Seq, Target: msg.Target, Kind: msg.Kind, Data: msg.Data}
			m.stepIn.Inputs = append(m.stepIn.Inputs, ClientInput{Client: wc, Input: wire.Input{Seq: msg.Seq}, Interact: &in})
			return
		}
	}
	m.holdOrForward(msg.Actor, heldMsg{interact: &msg}, &msg)
}

// applied takes the interactions the World applied this tick and routes them.
func (m *Member) applied(wo *StepOutput, t wire.Tick) {
	for _, a := range wo.Interacts {
		if a.Interact.Kind == wire.InteractInventory {
			m.stats.InteractsApplied++
			m.inventory(a, t)
			continue
		}
		k := interactKey{a.Entity, a.Interact.Seq}
		o := &outInteract{
			msg: wire.InteractMsg{Origin: uint64(m.self), Actor: a.Entity, Seq: a.Interact.Seq,
				Target: a.Interact.Target, Kind: a.Interact.Kind, Data: slices.Clone(a.Interact.Data)},
			sent: t, until: t + wire.Tick(m.cfg.RememberTicks),
		}
		m.interacts[k] = o
		m.stats.InteractsApplied++
		m.routeInteract(&o.msg, t)
	}
}

// routeInteract moves an interaction one step toward its target's real entity.
func (m *Member) routeInteract(msg *wire.InteractMsg, t wire.Tick) {
	tgt := msg.Target
	if _, real := m.world.entityClient(tgt); real {
		m.deliverInteract(msg, t)
		return
	}
	if g, ok := m.ghostOf[tgt]; ok {
		m.send(g.owner, msg)
		return
	}
	if m.moving(tgt) {
		c := *msg
		m.held[tgt] = append(m.held[tgt], heldMsg{routed: &c})
		return
	}
	if f, ok := m.forward[tgt]; ok {
		m.stats.Forwarded++
		m.send(f.to, msg)
		return
	}
	// Unknown here. The origin re-routes it every RetryTicks (the target may come into view
	// as a ghost, or be handed here) until RememberTicks pass.
	if raftmeta.ServerID(msg.Origin) != m.self {
		m.stats.Unroutable++
	}
}

// deliverInteract hands an interaction to its target (real here) and acknowledges it.
func (m *Member) deliverInteract(msg *wire.InteractMsg, t wire.Tick) {
	k := interactKey{msg.Actor, msg.Seq}
	if _, dup := m.delivered[k]; dup {
		m.stats.InteractsDuplicate++
	} else {
		m.delivered[k] = t + wire.Tick(m.cfg.RememberTicks)
		m.stats.InteractsDelivered++
		switch msg.Kind {
		case wire.InteractAttack:
			m.hurt(msg, t)
		case wire.InteractTrade:
			m.offer(msg, t)
		}
		if wc, _ := m.world.entityClient(msg.Target); wc != 0 {
			ia := wire.Interaction{From: msg.Actor, Seq: msg.Seq, Tick: t, Kind: msg.Kind, Data: msg.Data}
			frame := ia.AppendFrame(nil)
			if key, remote := m.remoteOf[wc]; remote {
				if e, seq, x, z, ok := m.world.clientInfo(wc); ok {
					hf := &homeFrame{to: key.Home, sent: t, until: t + wire.Tick(m.cfg.RememberTicks),
						msg: wire.FrameMsg{Client: uint32(key.Client), Entity: e, AuthEpoch: m.ents[e].auth, LastSeq: seq, X: x, Z: z, Frame: frame}}
					m.homeFrames[k] = hf
					m.send(hf.to, &hf.msg)
				}
			} else {
				m.out.Frames = append(m.out.Frames, ClientSnapshot{Client: wc, Frame: frame, Control: true})
			}
		}
	}
	if origin := raftmeta.ServerID(msg.Origin); origin == m.self {
		delete(m.interacts, k)
	} else {
		m.send(origin, &wire.InteractAckMsg{Actor: msg.Actor, Seq: msg.Seq, Delivered: true})
	}
}

// onInteractAck: the deliverer (or, for the last hop, the target's gateway) has it.
func (m *Member) onInteractAck(msg wire.InteractAckMsg) {
	k := interactKey{msg.Actor, msg.Seq}
	delete(m.homeFrames, k)
	if _, ok := m.interacts[k]; !ok {
		return
	}
	delete(m.interacts, k)
	if !msg.Delivered {
		m.stats.InteractsExpired++
	}
}

// retryInteracts re-routes the interactions applied here and not yet delivered.
func (m *Member) retryInteracts(t wire.Tick) {
	every := wire.Tick(m.cfg.RetryTicks)
	if len(m.homeFrames) > 0 {
		ks := make([]interactKey, 0, len(m.homeFrames))
		for k := range m.homeFrames {
			ks = append(ks, k)
		}
		slices.SortFunc(ks, compareInteractKeys)
		for _, k := range ks {
			hf := m.homeFrames[k]
			switch {
			case t >= hf.until:
				delete(m.homeFrames, k)
				m.stats.InteractsExpired++
			case t-hf.sent >= every:
				hf.sent = t
				m.send(hf.to, &hf.msg)
			}
		}
	}
	if len(m.interacts) == 0 {
		return
	}
	ks := make([]interactKey, 0, len(m.interacts))
	for k := range m.interacts {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, compareInteractKeys)
	for _, k := range ks {
		o, ok := m.interacts[k]
		if !ok {
			continue
		}
		switch {
		case t >= o.until:
			delete(m.interacts, k)
			m.stats.InteractsExpired++
		case t-o.sent >= every:
			o.sent = t
			m.routeInteract(&o.msg, t)
		}
	}
}

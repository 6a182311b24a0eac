package cellserver

import (
	"iter"
	"math"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Ghosting (DESIGN.md §3). After every tick the Member sends each neighbouring server the state
// of its real entities within GhostDistance of a cell that server owns (one wire.GhostsMsg per
// server per tick); an entity stays ghosted there until it is GhostDistance + GhostHysteresis
// away. The receiver keeps read-only ghosts (World.UpsertGhost), each remembered with the
// owner's authority epoch: an update from an older owner than the ghost's is ignored, and a
// ghost nobody updated for GhostExpireTicks is dropped. At a handoff the receiver promotes its
// ghost in place (World.Promote), and the sender demotes its real entity to a ghost in place
// (World.Demote) — the new owner's updates take it over — so clients near the border keep seeing
// the entity in the same view slot throughout. An entity that leaves the world is un-ghosted
// with a GhostGoneMsg.

// ghostMeta is what this server knows of one of its ghosts.
type ghostMeta struct {
	owner raftmeta.ServerID // who sent the newest update
	auth  uint64            // the owner's authority epoch of the entity
	seen  wire.Tick         // tick of the newest update (or of the demotion)
	// player is the durable player the entity embodies (from the owner's records); 0: none
	player wire.PlayerID
}

// GhostInfo describes a ghost held here (for tests and invariant checks).
type GhostInfo struct {
	ID    wire.EntityID
	Owner raftmeta.ServerID
	Auth  uint64
	Seen  wire.Tick
}

// Ghosts lists the ghosts held here, by id.
func (m *Member) Ghosts() []GhostInfo {
	out := make([]GhostInfo, 0, len(m.ghostOf))
	for _, id := range sortedKeys(m.ghostOf) {
		g := m.ghostOf[id]
		out = append(out, GhostInfo{ID: id, Owner: g.owner, Auth: g.auth, Seen: g.seen})
	}
	return out
}

// AuthOf returns the authority epoch of a real entity held here.
func (m *Member) AuthOf(e wire.EntityID) (uint64, bool) {
	meta, ok := m.ents[e]
	if !ok || m.world.IsGhost(e) {
		return 0, false
	}
	return meta.auth, true
}

// ghostDistance2 returns the squared ghost distance and the squared distance at which a ghost
// is dropped, in position units.
func (m *Member) ghostDistance2() (float64, float64) {
	d := m.cfg.GhostDistance * wire.PosUnitsPerMetre
	h := (m.cfg.GhostDistance + m.cfg.GhostHysteresis) * wire.PosUnitsPerMetre
	return d * d, h * h
}

// rectDist2 is the squared distance (position units) from a point to a rectangle in metres.
func rectDist2(r raftmeta.Rect, x, z int32) float64 {
	fx, fz := float64(x), float64(z)
	dx := math.Max(math.Max(r[0]*wire.PosUnitsPerMetre-fx, fx-r[2]*wire.PosUnitsPerMetre), 0)
	dz := math.Max(math.Max(r[1]*wire.PosUnitsPerMetre-fz, fz-r[3]*wire.PosUnitsPerMetre), 0)
	return dx*dx + dz*dz
}

// insideBy reports whether a point is deeper than d (position units) inside rectangle r.
func insideBy(r raftmeta.Rect, x, z int32, d float64) bool {
	fx, fz := float64(x), float64(z)
	return fx-r[0]*wire.PosUnitsPerMetre > d && r[2]*wire.PosUnitsPerMetre-fx > d &&
		fz-r[1]*wire.PosUnitsPerMetre > d && r[3]*wire.PosUnitsPerMetre-fz > d
}

// ghost sends this tick's ghost updates: for every real entity, the servers owning a cell
// within the ghost distance (with hysteresis); and drops ghosts nobody updated.
func (m *Member) ghost(t wire.Tick) {
	if m.cfg.GhostDistance <= 0 {
		return
	}
	enter2, leave2 := m.ghostDistance2()
	keep := math.Sqrt(leave2)
	clear(m.ghostBatch)
	for _, p := range m.pos { // rehome's scan, after the handoffs: skip what left
		if p.Ghost {
			continue
		}
		if _, ok := m.ents[p.ID]; !ok {
			continue // exported this tick
		}
		prev := m.ghostTo[p.ID]
		var targets []raftmeta.ServerID
		if c := m.lookup.at(p.X, p.Z); c == nil || !insideBy(c.Bounds, p.X, p.Z, keep) {
			for i := range m.mapv.Cells {
				c2 := &m.mapv.Cells[i]
				if c2.Owner == m.self || c2.Owner == 0 || !m.alive[c2.Owner] || slices.Contains(targets, c2.Owner) {
					continue
				}
				d2 := rectDist2(c2.Bounds, p.X, p.Z)
				if d2 <= enter2 || (d2 <= leave2 && slices.Contains(prev, c2.Owner)) {
					targets = append(targets, c2.Owner)
				}
			}
		}
		// A region a pending change hands to another server is that server's for ghosting
		// (whoever hands it over): the entities near it are ghosted there before the change
		// commits, so the clients that migrate see them in their first snapshot from the new
		// owner.
		for _, ch := range m.mapv.Changes {
			for _, tr := range ch.Transfers {
				if tr.To == m.self || !m.alive[tr.To] || slices.Contains(targets, tr.To) {
					continue
				}
				if m.inRegion(tr.Region, p.X, p.Z) {
					continue // it migrates itself
				}
				d2 := rectDist2(tr.Region, p.X, p.Z)
				if d2 <= enter2 || (d2 <= leave2 && slices.Contains(prev, tr.To)) {
					targets = append(targets, tr.To)
				}
			}
		}
		slices.Sort(targets)
		for _, s := range prev {
			if !slices.Contains(targets, s) {
				m.ghostGone[s] = append(m.ghostGone[s], wire.GhostRef{ID: p.ID, AuthEpoch: m.ents[p.ID].auth})
			}
		}
		if len(targets) == 0 {
			delete(m.ghostTo, p.ID)
			continue
		}
		m.ghostTo[p.ID] = targets
		rec := m.ghostRecord(p.ID)
		for _, s := range targets {
			m.ghostBatch[s] = append(m.ghostBatch[s], rec)
		}
	}
	m.flushGhostBatch(t)
	m.flushGhostGone()
	// Ghosts nobody updated (their owner moved them away, or its updates are lost).
	expire := wire.Tick(m.cfg.GhostExpireTicks)
	for _, id := range sortedKeys(m.ghostOf) {
		if t-m.ghostOf[id].seen > expire {
			m.dropGhost(id)
			m.stats.GhostsExpired++
		}
	}
}

// unghost forgets where an entity that left this World was ghosted; if it left the world
// altogether (gone), its ghosts are dropped now rather than left to expire.
func (m *Member) unghost(e wire.EntityID, auth uint64, gone bool) {
	targets, ok := m.ghostTo[e]
	if !ok {
		return
	}
	delete(m.ghostTo, e)
	if gone {
		for _, s := range targets {
			m.ghostGone[s] = append(m.ghostGone[s], wire.GhostRef{ID: e, AuthEpoch: auth})
		}
	}
}

// flushGhostGone sends the queued GhostGone messages.
func (m *Member) flushGhostGone() {
	for _, s := range sortedKeys(m.ghostGone) {
		refs := m.ghostGone[s]
		for len(refs) > 0 {
			n := min(len(refs), wire.MaxGhosts)
			m.send(s, &wire.GhostGoneMsg{Entities: slices.Clone(refs[:n])})
			refs = refs[n:]
		}
		delete(m.ghostGone, s)
	}
}

func (m *Member) dropGhost(id wire.EntityID) {
	delete(m.ghostOf, id)
	m.world.RemoveGhost(id)
}

// onGhosts applies a neighbour's ghost updates.
func (m *Member) onGhosts(from raftmeta.ServerID, msg wire.GhostsMsg, t wire.Tick) {
	for _, r := range msg.Entities {
		if _, real := m.ents[r.ID]; real && !m.world.IsGhost(r.ID) {
			continue // real here: the update is older than the handoff that brought it
		}
		if m.moving(r.ID) {
			continue // in flight from here or staged here: not a ghost's business
		}
		if g, ok := m.ghostOf[r.ID]; ok && r.AuthEpoch < g.auth {
			m.stats.StaleGhosts++
			continue
		}
		st := wire.EntityState{X: r.X, Y: r.Y, Z: r.Z, VX: r.VX, VZ: r.VZ, Yaw: r.Yaw, Kind: r.Kind, Action: r.Action}
		// The state is of the owner's tick msg.Tick; this tick's move() adds one more tick.
		// Place it where the owner's own extrapolation has it at t-1, so that however late or
		// early the update came (ticks share one grid; delivery takes 0, 1 or more ticks and
		// varies), the ghost is at the owner's state of tick t: a client's delta against a
		// prediction then sees no jump back or ahead at every change of latency.
		st = m.world.extrapolate(st, ghostLead(t, msg.Tick, m.cfg.GhostExpireTicks))
		if err := m.world.UpsertGhost(Ghost{ID: r.ID, State: st}); err != nil {
			m.stats.ImportErrors++
			continue
		}
		m.ghostOf[r.ID] = ghostMeta{owner: from, auth: r.AuthEpoch, seen: t, player: r.PlayerID}
	}
}

// ghostLead is how many ticks a ghost update of the owner's tick of is extrapolated when it is
// applied before the Step of tick t: t-1-of, bounded by ±expire (ticks name one instant on
// every server, but a wild clock must not fling ghosts far).
func ghostLead(t, of wire.Tick, expire int) int {
	d := int64(t) - 1 - int64(of)
	return int(min(max(d, -int64(expire)), int64(expire)))
}

// onGhostGone drops ghosts their owner no longer sends, unless a newer owner's update came.
func (m *Member) onGhostGone(msg wire.GhostGoneMsg) {
	for _, ref := range msg.Entities {
		if g, ok := m.ghostOf[ref.ID]; ok && ref.AuthEpoch >= g.auth {
			m.dropGhost(ref.ID)
		}
	}
}

// viewSeed is the view of a client whose entity is being handed here (ViewMsg).
type viewSeed struct {
	ids []wire.EntityID
	at  wire.Tick
}

// sendViews tells the server each departing client's entity goes to what the client sees here
// (wire.ViewMsg, on the same link just before the handoff), so its first view there keeps the
// same entities and nothing blinks out and back at the border.
func (m *Member) sendViews() {
	for p, to := range m.departingClients() {
		ids := m.world.clientView(nil, p.Client)
		if len(ids) > wire.MaxViewIDs {
			ids = ids[:wire.MaxViewIDs]
		}
		m.send(to, &wire.ViewMsg{Entity: p.ID, IDs: ids})
	}
}

// departingClients yields the entities with a client that this tick's handoffs (m.ids,
// positions in m.pos) take away, with the server each goes to.
func (m *Member) departingClients() iter.Seq2[EntityPos, raftmeta.ServerID] {
	return func(yield func(EntityPos, raftmeta.ServerID) bool) {
		for _, p := range m.pos {
			if p.Ghost || p.Client == 0 {
				continue
			}
			if _, leaving := slices.BinarySearch(m.ids, p.ID); !leaving {
				continue
			}
			if c := m.lookup.at(p.X, p.Z); c != nil && !yield(p, c.Owner) {
				return
			}
		}
	}
}

// preghost sends, ahead of this tick's handoffs (m.ids, positions in m.pos), ghosts of what each
// departing client sees here to the server it goes to: on the same link, before the handoff, so
// the client's first snapshot from its new owner already shows everything around it (a map
// change draws new borders everywhere at once, and ghosting across them starts this tick too).
// ghost() goes on updating them while they stay within the ghost distance (with hysteresis).
func (m *Member) preghost(t wire.Tick) {
	if m.cfg.GhostDistance <= 0 || len(m.ids) == 0 {
		return
	}
	r := m.cfg.World.AOILeaveRadius * wire.PosUnitsPerMetre
	r2 := r * r
	var sent map[raftmeta.ServerID]map[wire.EntityID]bool
	for p, to := range m.departingClients() {
		for _, q := range m.pos {
			if q.Ghost || q.ID == p.ID {
				continue
			}
			dx, dz := float64(q.X-p.X), float64(q.Z-p.Z)
			if dx*dx+dz*dz > r2 {
				continue
			}
			if sent == nil {
				sent = map[raftmeta.ServerID]map[wire.EntityID]bool{}
			}
			if sent[to] == nil {
				sent[to] = map[wire.EntityID]bool{}
			}
			if sent[to][q.ID] || slices.Contains(m.ghostTo[q.ID], to) {
				continue // sent already, or a ghost there already (this tick's update follows)
			}
			sent[to][q.ID] = true
			m.ghostBatch[to] = append(m.ghostBatch[to], m.ghostRecord(q.ID))
			m.ghostTo[q.ID] = append(m.ghostTo[q.ID], to)
			slices.Sort(m.ghostTo[q.ID])
		}
	}
	m.flushGhostBatch(t)
}

// ghostRecord is a real entity's state as its ghosts get it.
func (m *Member) ghostRecord(id wire.EntityID) wire.EntityRecord {
	st, _ := m.world.Entity(id)
	return wire.EntityRecord{ID: id, X: st.X, Y: st.Y, Z: st.Z, VX: st.VX, VZ: st.VZ, Yaw: st.Yaw,
		Kind: st.Kind, Action: st.Action, AuthEpoch: m.ents[id].auth, PlayerID: m.ents[id].player, HP: m.ents[id].hp}
}

// flushGhostBatch sends the ghost updates batched for each server and empties the batch.
func (m *Member) flushGhostBatch(t wire.Tick) {
	for _, s := range sortedKeys(m.ghostBatch) {
		recs := m.ghostBatch[s]
		for len(recs) > 0 {
			n := min(len(recs), wire.MaxGhosts)
			m.send(s, &wire.GhostsMsg{Tick: t, Entities: slices.Clone(recs[:n])})
			m.stats.GhostUpdatesOut += n
			recs = recs[n:]
		}
	}
	clear(m.ghostBatch)
}

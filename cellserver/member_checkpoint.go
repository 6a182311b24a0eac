package cellserver

import (
	"math"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Checkpoints (DESIGN.md §5): the Member says what each cell it owns holds; its driver writes
// that to the local Pebble store (persistence.Store) off the tick goroutine, and gives it back
// to Restore when the server restarts and the map still gives it those cells.

// CellCheckpoint is the state of one cell this server owns: its real entities (with their
// sessions, authority epochs and input sequences) at a tick, tagged with the cell's epoch.
type CellCheckpoint struct {
	Cell     raftmeta.CellID
	Epoch    raftmeta.Epoch
	Tick     wire.Tick
	Entities []wire.EntityRecord // fresh slices: the driver may keep them
}

// Checkpoints returns one CellCheckpoint for every cell this server owns in its map, each with
// the real entities inside it (an entity of this server's standing in another server's cell,
// within the handoff hysteresis, counts for the nearest cell this server owns). Ghosts and
// entities in flight are not included: a ghost belongs to its owner's checkpoint, an entity in
// flight to its receiver's. Call it between Steps; nil before the first map or while dead.
func (m *Member) Checkpoints(t wire.Tick) []CellCheckpoint {
	if m.mapv == nil || m.dead {
		return nil
	}
	var out []CellCheckpoint
	index := map[raftmeta.CellID]int{}
	for _, c := range m.mapv.Cells {
		if c.Owner == m.self {
			index[c.ID] = len(out)
			out = append(out, CellCheckpoint{Cell: c.ID, Epoch: c.Epoch, Tick: t})
		}
	}
	if len(out) == 0 {
		return nil
	}
	for _, p := range m.world.Positions(nil) {
		if p.Ghost {
			continue
		}
		meta, ok := m.ents[p.ID]
		if !ok {
			continue
		}
		i, ok := m.ownedCellFor(p.X, p.Z, index)
		if !ok {
			continue
		}
		st, _ := m.world.Entity(p.ID)
		r := wire.EntityRecord{ID: p.ID, X: st.X, Y: st.Y, Z: st.Z, VX: st.VX, VZ: st.VZ, Yaw: st.Yaw,
			Kind: st.Kind, Action: st.Action, AuthEpoch: meta.auth, PlayerID: meta.player, HP: meta.hp}
		if meta.home.Home != 0 {
			r.Home, r.Client = uint64(meta.home.Home), uint32(meta.home.Client)
			if wc, ok := m.world.entityClient(p.ID); ok && wc != 0 {
				_, r.LastSeq, _, _, _ = m.world.clientInfo(wc)
			}
		}
		out[i].Entities = append(out[i].Entities, r)
	}
	return out
}

// ownedCellFor is the index in index of the owned cell containing a point, or of the nearest
// owned cell if another server's (or no one's) cell contains it.
func (m *Member) ownedCellFor(x, z int32, index map[raftmeta.CellID]int) (int, bool) {
	if c := m.lookup.at(x, z); c != nil {
		if i, ok := index[c.ID]; ok {
			return i, true
		}
	}
	best, bestD := -1, math.Inf(1)
	var bestID raftmeta.CellID
	for _, c := range m.mapv.Cells {
		i, ok := index[c.ID]
		if !ok {
			continue
		}
		if d := rectDist2(c.Bounds, x, z); d < bestD || (d == bestD && c.ID < bestID) {
			best, bestD, bestID = i, d, c.ID
		}
	}
	return best, best >= 0
}

// Restore brings back the entities of a cell checkpoint this server wrote before it restarted
// (its driver loads it when the map still gives the cell to this server at the checkpoint's
// epoch). Each entity comes back with its authority epoch raised (its session's home follows
// this copy) and its input sequence; an entity already here, or in flight, is skipped. It
// returns how many were restored. Call it between Steps, after the first map.
func (m *Member) Restore(cp CellCheckpoint, t wire.Tick) int {
	n := 0
	var frozen [8]int // a restart's pause is not a transfer's: not counted in the Stats
	for _, r := range cp.Entities {
		if _, here := m.ents[r.ID]; here || m.moving(r.ID) {
			continue
		}
		if m.importRecord(r, t, true, t, &frozen) == nil {
			if _, here := m.ents[r.ID]; here {
				n++ // (an entity of a session homed here, which is gone, is not brought back)
			}
		}
	}
	m.stats.Restored += n
	return n
}

package cellserver

import "github.com/meridian-mmo/meridian/wire"

// noRow marks an empty row reference (an empty view slot, an entity without a client).
const noRow int32 = -1

// store is the entity store: every component is a dense column indexed by a row. A row is
// stable for an entity's lifetime and recycled (LIFO, so deterministically) after it is
// removed; ids[row] tells which entity holds a row now (0: free), so anything that remembers a
// row can detect recycling by remembering the id too. alive is the dense list of occupied rows
// the systems iterate; byID serves lookups from outside only.
type store struct {
	ids    []wire.EntityID
	x, y   []int32 // position, in position units
	z      []int32
	vx, vz []int32 // velocity, in position units per tick
	yaw    []uint16
	kind   []uint8
	action []uint8
	owner  []int32 // index of the owning client in World.clients; noRow for none
	ghost  []bool  // a read-only copy of an entity another server owns (ghost.go)
	cell   []int32 // AOI grid cell
	cellAt []int32 // index within the grid cell's entry list
	// changedAt is the last tick at which the row's state was not the exact extrapolation of
	// its state at the previous tick (or the row changed entity): a snapshot slot whose row is
	// unchanged since the client's baseline costs one bit without reading either state.
	changedAt []wire.Tick
	// freedAt is the tick of the Step during (or before) which the row was last freed: a view
	// updated at the previous tick that still references it must drop it.
	freedAt []wire.Tick

	alive    []int32 // occupied rows, dense, unordered
	alivePos []int32 // row → index in alive
	free     []int32 // recycled rows, used LIFO
	byID     map[wire.EntityID]int32
}

func newStore() store {
	return store{byID: make(map[wire.EntityID]int32)}
}

// rows is the number of rows ever allocated (the length of every column).
func (s *store) rows() int { return len(s.ids) }

// add gives id a row with zeroed components and returns it.
func (s *store) add(id wire.EntityID) int32 {
	var r int32
	if n := len(s.free); n > 0 {
		r = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		r = int32(len(s.ids))
		s.ids = append(s.ids, 0)
		s.x = append(s.x, 0)
		s.y = append(s.y, 0)
		s.z = append(s.z, 0)
		s.vx = append(s.vx, 0)
		s.vz = append(s.vz, 0)
		s.yaw = append(s.yaw, 0)
		s.kind = append(s.kind, 0)
		s.action = append(s.action, 0)
		s.owner = append(s.owner, noRow)
		s.ghost = append(s.ghost, false)
		s.cell = append(s.cell, noRow)
		s.cellAt = append(s.cellAt, noRow)
		s.alivePos = append(s.alivePos, noRow)
		s.changedAt = append(s.changedAt, 0)
		s.freedAt = append(s.freedAt, 0)
	}
	s.ids[r] = id
	s.x[r], s.y[r], s.z[r] = 0, 0, 0
	s.vx[r], s.vz[r] = 0, 0
	s.yaw[r], s.kind[r], s.action[r] = 0, 0, 0
	s.owner[r], s.cell[r], s.cellAt[r] = noRow, noRow, noRow
	s.ghost[r] = false
	s.alivePos[r] = int32(len(s.alive))
	s.alive = append(s.alive, r)
	s.byID[id] = r
	return r
}

// remove frees row r as of tick t. The caller has already taken it out of the AOI grid.
func (s *store) remove(r int32, t wire.Tick) {
	delete(s.byID, s.ids[r])
	i := s.alivePos[r]
	last := s.alive[len(s.alive)-1]
	s.alive[i] = last
	s.alivePos[last] = i
	s.alive = s.alive[:len(s.alive)-1]
	s.alivePos[r] = noRow
	s.ids[r] = 0
	s.owner[r] = noRow
	s.ghost[r] = false
	s.freedAt[r] = t
	s.free = append(s.free, r)
}

// lookup returns id's row.
func (s *store) lookup(id wire.EntityID) (int32, bool) {
	r, ok := s.byID[id]
	return r, ok
}

// state returns row r's components as the wire carries them.
func (s *store) state(r int32) wire.EntityState {
	return wire.EntityState{
		X: s.x[r], Y: s.y[r], Z: s.z[r],
		VX: s.vx[r], VZ: s.vz[r],
		Yaw: s.yaw[r], Kind: s.kind[r], Action: s.action[r],
	}
}

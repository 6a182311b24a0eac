package cellserver

import "fmt"

// checkInvariants verifies the World's internal consistency after a Step: the entity store's
// indexes, the AOI grid's buckets, the clients' entities and every view. It costs O(entities +
// view slots) and runs only in builds with the invariants tag; a violation is a bug in this
// package, so it panics with what broke.
func (w *World) checkInvariants() {
	if err := w.invariantError(); err != nil {
		panic(fmt.Sprintf("cellserver: invariant violated after tick %d: %v", w.tick, err))
	}
}

func (w *World) invariantError() error {
	st, g := &w.st, &w.grid
	if len(st.byID) != len(st.alive) {
		return fmt.Errorf("store: %d ids indexed, %d rows alive", len(st.byID), len(st.alive))
	}
	if len(st.alive)+len(st.free) != st.rows() {
		return fmt.Errorf("store: %d alive + %d free rows ≠ %d rows", len(st.alive), len(st.free), st.rows())
	}
	for i, r := range st.alive {
		id := st.ids[r]
		switch {
		case id == 0:
			return fmt.Errorf("store: alive row %d has no entity", r)
		case st.alivePos[r] != int32(i):
			return fmt.Errorf("store: row %d at alive[%d] but alivePos says %d", r, i, st.alivePos[r])
		case st.byID[id] != r:
			return fmt.Errorf("store: entity %d in row %d but indexed at row %d", id, r, st.byID[id])
		case st.x[r] < w.minX || st.x[r] > w.maxX || st.z[r] < w.minZ || st.z[r] > w.maxZ:
			return fmt.Errorf("entity %d at (%d, %d) is outside the world", id, st.x[r], st.z[r])
		}
		c, at := st.cell[r], st.cellAt[r]
		if c != g.cellOf(st.x[r], st.z[r]) || at < 0 || int(at) >= len(g.cells[c]) {
			return fmt.Errorf("grid: entity %d filed in cell %d[%d], belongs in cell %d", id, c, at, g.cellOf(st.x[r], st.z[r]))
		}
		if e := g.cells[c][at]; e.row != r || e.x != st.x[r] || e.z != st.z[r] {
			return fmt.Errorf("grid: cell %d[%d] holds %+v, not entity %d's row %d", c, at, e, id, r)
		}
	}
	filed := 0
	for _, list := range g.cells {
		filed += len(list)
	}
	if filed != len(st.alive) {
		return fmt.Errorf("grid: %d entries for %d entities", filed, len(st.alive))
	}
	ghosts := 0
	for _, r := range st.alive {
		if st.ghost[r] {
			ghosts++
			if st.owner[r] != noRow {
				return fmt.Errorf("ghost %d is controlled by client index %d", st.ids[r], st.owner[r])
			}
		}
	}
	if ghosts != w.ghosts {
		return fmt.Errorf("%d ghost rows, %d counted", ghosts, w.ghosts)
	}
	if len(w.byClient) != len(w.clients) {
		return fmt.Errorf("clients: %d indexed, %d present", len(w.byClient), len(w.clients))
	}
	seen := make(map[int32]bool)
	for i := range w.clients {
		c := &w.clients[i]
		if w.byClient[c.id] != int32(i) {
			return fmt.Errorf("client %d at index %d but indexed at %d", c.id, i, w.byClient[c.id])
		}
		if st.ids[c.row] != c.entity || st.owner[c.row] != int32(i) {
			return fmt.Errorf("client %d: row %d holds entity %d owned by %d, want entity %d owned by %d",
				c.id, c.row, st.ids[c.row], st.owner[c.row], c.entity, i)
		}
		if v2 := int64(st.vx[c.row])*int64(st.vx[c.row]) + int64(st.vz[c.row])*int64(st.vz[c.row]); v2 > w.speed2 {
			return fmt.Errorf("client %d: speed² %d exceeds the clamp %d", c.id, v2, w.speed2)
		}
		view := c.log.view()
		if len(view) > w.cfg.MaxViewSlots {
			return fmt.Errorf("client %d: %d view slots > MaxViewSlots %d", c.id, len(view), w.cfg.MaxViewSlots)
		}
		clear(seen)
		occupied, self := 0, false
		for s, r := range view {
			if r == noRow {
				continue
			}
			occupied++
			if seen[r] {
				return fmt.Errorf("client %d: row %d in two slots", c.id, r)
			}
			seen[r] = true
			if st.ids[r] == 0 {
				return fmt.Errorf("client %d: slot %d holds a free row", c.id, s)
			}
			dx, dz := int64(st.x[r]-st.x[c.row]), int64(st.z[r]-st.z[c.row])
			if dx*dx+dz*dz > w.aoi.leave2 {
				return fmt.Errorf("client %d: entity %d in view beyond the leave radius", c.id, st.ids[r])
			}
			self = self || r == c.row
		}
		if occupied != c.log.n {
			return fmt.Errorf("client %d: %d occupied slots, log counts %d", c.id, occupied, c.log.n)
		}
		if !self {
			return fmt.Errorf("client %d does not see its own entity %d", c.id, c.entity)
		}
	}
	return nil
}

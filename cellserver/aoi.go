package cellserver

import (
	"math"
	"math/bits"
	"slices"

	"github.com/meridian-mmo/meridian/wire"
)

// Area of interest.
//
// Entities live in a uniform grid whose cells are AOILeaveRadius wide; an entity is moved to
// another cell only when it crosses a cell border (incrementally, no per-tick rebuild). Each
// grid entry carries a copy of the entity's position so a scan reads one contiguous array
// instead of gathering from the position columns.
//
// A client's interest has hysteresis: an entity enters its view when it comes within
// AOIEnterRadius and stays until it is beyond AOILeaveRadius; the client's own entity is always
// in view. Every tick, per client: the entities already in view are re-checked against the leave
// radius (and against removal: their row may hold another entity now), then the grid cells
// overlapping the enter circle's bounding square are scanned for newcomers, membership being
// tested with a generation stamp per row (one array shared by all clients, not a set per
// client). Newcomers take the lowest free slots, nearest first (ties: smaller id; the client's
// own entity first, so it is in slot 0 from its first snapshot), so the view is a stable slot
// array (an entity keeps its slot while in view) that snapshots delta-encode slot by slot. The
// view lives in the client's view log (snapshot.go) as its newest record.
//
// When more than MaxViewSlots entities qualify, the best ranked are kept: by squared distance,
// entities already in view counting as nearer by the factor enter²/leave² (the same hysteresis,
// so a crowd's views do not churn every tick), ties to the smaller id, the own entity first.
// A full view gathers only newcomers that could outrank an entity in it, and the selection is
// a linear-time quickselect, so a crowd where hundreds qualify stays linear per client.

// gridEntry is one entity in a grid cell, with a copy of its position.
type gridEntry struct {
	x, z int32
	row  int32
}

// grid buckets entities by cell. Cells are cs units square, row-major from (minX, minZ).
type grid struct {
	minX, minZ int32
	cs         int32
	w, h       int32
	cells      [][]gridEntry
}

func newGrid(minX, minZ, maxX, maxZ, cs int32) grid {
	w := (maxX-minX)/cs + 1
	h := (maxZ-minZ)/cs + 1
	return grid{minX: minX, minZ: minZ, cs: cs, w: w, h: h, cells: make([][]gridEntry, int(w)*int(h))}
}

// cellOf returns the cell of a position inside the world bounds.
func (g *grid) cellOf(x, z int32) int32 {
	return ((z-g.minZ)/g.cs)*g.w + (x-g.minX)/g.cs
}

// insert puts row r into the cell of its position.
func (g *grid) insert(s *store, r int32) {
	c := g.cellOf(s.x[r], s.z[r])
	s.cell[r] = c
	s.cellAt[r] = int32(len(g.cells[c]))
	g.cells[c] = append(g.cells[c], gridEntry{x: s.x[r], z: s.z[r], row: r})
}

// remove takes row r out of its cell.
func (g *grid) remove(s *store, r int32) {
	c, i := s.cell[r], s.cellAt[r]
	list := g.cells[c]
	last := list[len(list)-1]
	list[i] = last
	s.cellAt[last.row] = i
	g.cells[c] = list[:len(list)-1]
	s.cell[r], s.cellAt[r] = noRow, noRow
}

// moved updates row r's entry after its position changed.
func (g *grid) moved(s *store, r int32) {
	x, z := s.x[r], s.z[r]
	if c := g.cellOf(x, z); c == s.cell[r] {
		e := &g.cells[c][s.cellAt[r]]
		e.x, e.z = x, z
		return
	}
	g.remove(s, r)
	g.insert(s, r)
}

// candidate is an entity that qualifies for a view, with its rank key.
type candidate struct {
	key  int64 // squared distance in units²; -1 for the client's own entity
	id   wire.EntityID
	row  int32
	slot int32 // its slot if already in view, else -1
}

func cmpCandidate(a, b candidate) int {
	switch {
	case a.key < b.key:
		return -1
	case a.key > b.key:
		return 1
	case a.id < b.id:
		return -1
	case a.id > b.id:
		return 1
	}
	return 0
}

// rankedCandidate orders candidates on the over-capacity path, where entities in view rank by
// a scaled distance.
type rankedCandidate struct {
	key float64
	candidate
}

// sortCandidates sorts by (key, id); lists are usually a handful long.
func sortCandidates(c []candidate) {
	if len(c) > 12 {
		slices.SortFunc(c, cmpCandidate)
		return
	}
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && cmpCandidate(c[j], c[j-1]) < 0; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// aoi holds the interest parameters and the scratch space shared by all clients' updates.
type aoi struct {
	enter2, leave2 int64   // squared radii in units² (d² ≤ enter2 enters, d² > leave2 leaves)
	reach          int32   // ⌈enter radius⌉ in units: the half-width of the scanned square
	reachLeave     int32   // ⌈leave radius⌉ in units: the same for a client's first view after an import
	keptScale      float64 // enter2 / leave2: how much nearer a kept entity ranks at capacity
	maxSlots       int

	mark  []uint32 // generation stamp per row: mark[r] == stamp ⇔ r in the current view
	stamp uint32
	near  []int32 // scan scratch, one entry per row (+1)
	cands []candidate
	rank  []rankedCandidate
}

// nextStamp returns a fresh generation stamp for a client's update over rows rows.
func (a *aoi) nextStamp(rows int) uint32 {
	if len(a.mark) < rows {
		a.mark = append(a.mark, make([]uint32, rows-len(a.mark))...)
	}
	if len(a.near) < rows+1 {
		a.near = make([]int32, rows+1+rows/4)
	}
	a.stamp++
	if a.stamp == 0 { // wrapped: old stamps could collide
		clear(a.mark)
		a.stamp = 1
	}
	return a.stamp
}

// updateView computes client c's view at tick t from the current positions: the view of the
// previous tick, copied into a new record of the client's view log, then updated.
func (w *World) updateView(c *client, t wire.Tick) {
	st, g, a, l := &w.st, &w.grid, &w.aoi, &c.log
	stamp := a.nextStamp(st.rows())
	self := c.row
	sx, sz := st.x[self], st.z[self]
	l.begin(t)
	if c.seed != nil {
		// Imported with the view it had on its last server: the same entities stay in view
		// (those beyond the leave radius go below), in the same order.
		for _, id := range c.seed {
			if r, ok := st.lookup(id); ok && r != self && a.mark[r] != stamp && l.n < a.maxSlots {
				a.mark[r] = stamp
				l.put(r)
			}
		}
		c.seed = nil
	}

	// Entities in view stay while within the leave radius and not removed since the last
	// update (a removed entity's row may already hold another one).
	prev := w.prevTick
	kept := 0
	worst := int64(-1) // largest squared distance in view, self excluded
	rows := l.view()
	for s, r := range rows {
		if r == noRow {
			continue
		}
		if st.freedAt[r] > prev {
			l.vacate(s)
			continue
		}
		if r != self {
			dx, dz := int64(st.x[r]-sx), int64(st.z[r]-sz)
			d2 := dx*dx + dz*dz
			if d2 > a.leave2 {
				l.vacate(s)
				continue
			}
			worst = max(worst, d2)
		}
		a.mark[r] = stamp
		kept++
	}
	// A full view admits a newcomer only in place of an entity it outranks: newcomers ranking
	// below the worst entity in view cannot, and are not even gathered (this keeps a crowd,
	// where hundreds qualify, linear).
	cutoff := int64(math.MaxInt64)
	if kept >= a.maxSlots {
		cutoff = -1
		if worst >= 0 {
			cutoff = int64(math.Floor(float64(worst) * a.keptScale))
		}
	}

	// Newcomers: entities within the enter radius, from the cells the enter circle overlaps.
	reach, enter2 := a.reach, a.enter2
	if c.wide {
		reach, enter2 = a.reachLeave, a.leave2
		c.wide = false
	}
	cx0 := (max(sx-reach, g.minX) - g.minX) / g.cs
	cz0 := (max(sz-reach, g.minZ) - g.minZ) / g.cs
	cx1 := min((sx+reach-g.minX)/g.cs, g.w-1)
	cz1 := min((sz+reach-g.minZ)/g.cs, g.h-1)
	// First pass, branch-free: collect the rows within the enter radius (most scanned entries
	// are not, unpredictably). Second pass: drop those already in view.
	near := a.near
	n := 0
	for cz := cz0; cz <= cz1; cz++ {
		base := cz * g.w
		for _, cell := range g.cells[base+cx0 : base+cx1+1] {
			for _, e := range cell {
				dx, dz := int64(e.x-sx), int64(e.z-sz)
				near[n] = e.row
				if dx*dx+dz*dz <= enter2 {
					n++
				}
			}
		}
	}
	cands := a.cands[:0]
	mark := a.mark
	for _, r := range near[:n] {
		if mark[r] == stamp {
			continue
		}
		dx, dz := int64(st.x[r]-sx), int64(st.z[r]-sz)
		d2 := dx*dx + dz*dz
		if r == self {
			d2 = -1
		} else if d2 > cutoff {
			continue
		}
		cands = append(cands, candidate{key: d2, id: st.ids[r], row: r, slot: -1})
	}
	a.cands = cands

	if len(cands) > 0 {
		if kept+len(cands) <= a.maxSlots {
			sortCandidates(cands)
			for _, cd := range cands {
				l.put(cd.row)
			}
		} else {
			w.capView(c, cands)
		}
	}
	l.end()
}

// capView handles the case of more qualifying entities than slots: it keeps the maxSlots
// best ranked of the view and the newcomers, and gives the admitted newcomers the lowest free
// slots in (distance, id) order like any newcomer.
func (w *World) capView(c *client, newcomers []candidate) {
	st, a, l := &w.st, &w.aoi, &c.log
	sx, sz := st.x[c.row], st.z[c.row]
	rank := a.rank[:0]
	for s, r := range l.view() {
		if r == noRow {
			continue
		}
		key := -1.0
		if r != c.row {
			dx, dz := int64(st.x[r]-sx), int64(st.z[r]-sz)
			key = float64(dx*dx+dz*dz) * a.keptScale
		}
		rank = append(rank, rankedCandidate{key, candidate{id: st.ids[r], row: r, slot: int32(s)}})
	}
	for _, cd := range newcomers {
		rank = append(rank, rankedCandidate{float64(cd.key), cd})
	}
	selectBest(rank, a.maxSlots)
	for _, rc := range rank[a.maxSlots:] {
		if rc.slot >= 0 {
			l.vacate(int(rc.slot))
		}
	}
	admitted := a.cands[:0] // newcomers is a.cands: compact the admitted ones into it
	for _, rc := range rank[:a.maxSlots] {
		if rc.slot < 0 {
			admitted = append(admitted, rc.candidate)
		}
	}
	sortCandidates(admitted)
	for _, cd := range admitted {
		l.put(cd.row)
	}
	a.cands = admitted
	a.rank = rank
}

// lessRanked orders by rank key, then entity id: a strict total order.
func lessRanked(x, y *rankedCandidate) bool {
	return x.key < y.key || (x.key == y.key && x.id < y.id)
}

// selectBest reorders r so that r[:k] holds its k best ranked elements (in no particular
// order), in expected linear time: a deterministic quickselect (median-of-three pivots) that
// falls back to sorting if it recurses too deep, so adversarial positions cost O(n log n).
func selectBest(r []rankedCandidate, k int) {
	if k <= 0 || k >= len(r) {
		return
	}
	lo, hi := 0, len(r) // the k-th element's final place is in r[lo:hi]
	for budget := 2 * bits.Len(uint(len(r))); hi-lo > 16; budget-- {
		if budget == 0 {
			slices.SortFunc(r[lo:hi], func(x, y rankedCandidate) int {
				if lessRanked(&x, &y) {
					return -1
				}
				if lessRanked(&y, &x) {
					return 1
				}
				return 0
			})
			return
		}
		// Median of three to r[lo], then Hoare-style partition around it.
		m := lo + (hi-lo)/2
		if lessRanked(&r[m], &r[lo]) {
			r[m], r[lo] = r[lo], r[m]
		}
		if lessRanked(&r[hi-1], &r[lo]) {
			r[hi-1], r[lo] = r[lo], r[hi-1]
		}
		if lessRanked(&r[hi-1], &r[m]) {
			r[hi-1], r[m] = r[m], r[hi-1]
		}
		r[lo], r[m] = r[m], r[lo]
		p := r[lo]
		i, j := lo+1, hi-1
		for {
			for i <= j && lessRanked(&r[i], &p) {
				i++
			}
			for i <= j && lessRanked(&p, &r[j]) {
				j--
			}
			if i >= j {
				break
			}
			r[i], r[j] = r[j], r[i]
			i++
			j--
		}
		r[lo], r[j] = r[j], r[lo] // the pivot is in its final place j
		switch {
		case j == k || j == k-1:
			return
		case j > k:
			hi = j
		default:
			lo = j + 1
		}
	}
	for i := lo + 1; i < hi; i++ { // insertion sort of the small remainder
		for j := i; j > lo && lessRanked(&r[j], &r[j-1]); j-- {
			r[j], r[j-1] = r[j-1], r[j]
		}
	}
}

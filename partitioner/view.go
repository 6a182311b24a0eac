package partitioner

import (
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// view is one round's reading of the map: cells with their known loads, servers with their
// effective capacities and (estimated, updated as operations are chosen) loads, and the tree's
// leaf pairs. It is built fresh every round and never aliases the caller's map.
type view struct {
	minSize float64
	cells   []*cellView // sorted by ID
	byID    map[raftmeta.CellID]*cellView
	servers []*serverView // sorted by ID
	byS     map[raftmeta.ServerID]*serverView
	pairs   []*leafPair // nodes whose two children are leaves, by node ID
	// total is the load the measured targets (live, non-draining servers whose every cell has a
	// current report) carry plus the known load of the cells to be moved off dead or draining
	// servers; capSum is the sum of the measured targets' effective capacities, nTargets
	// their number. A target with an unreported cell is left out of all three: its load is
	// not known, so the mean is taken over the servers that are.
	total    float64
	capSum   float64
	nTargets int
	// shareTotal is how many entities the world holds as far as the reports tell: the larger of
	// the known cell loads' sum and the servers' own totals (Load.Entities, of the servers
	// that own cells), which stay meaningful while a changed cell awaits its first report.
	// allTargets counts every live, non-draining server.
	shareTotal float64
	allTargets int
}

type cellView struct {
	raftmeta.Cell
	load   float64 // entities; valid when known
	known  bool    // the owner reported this cell at its current epoch
	hx, hz []int32 // the report's histograms (may be empty)
	locked bool    // migrating, or listed in a pending change
	parent *leafPair
}

type serverView struct {
	raftmeta.Server
	target    bool    // alive and not draining: may be given cells
	cap       float64 // effective capacity (entities)
	load      float64 // known load of its cells, updated as operations are chosen
	uncertain bool    // one of its cells has no current report
}

// leafPair is an internal tree node whose children are both leaves.
type leafPair struct {
	node      raftmeta.NodeID
	axis      raftmeta.Axis
	at        float64
	low, high *cellView
}

func (s *serverView) util() float64 { return s.load / s.cap }

// mean is the fair load per capacity: all known load (including that of cells still on dead or
// draining servers, which the targets will have to carry) over the targets' capacity.
func (v *view) mean() float64 {
	if v.capSum <= 0 {
		return 0
	}
	return v.total / v.capSum
}

// share is the mean number of entities per live, non-draining server.
func (v *view) share() float64 {
	if v.allTargets == 0 {
		return 0
	}
	return v.shareTotal / float64(v.allTargets)
}

func newView(m *raftmeta.Map) *view {
	v := &view{
		minSize: m.MinCellSize,
		byID:    map[raftmeta.CellID]*cellView{},
		byS:     map[raftmeta.ServerID]*serverView{},
	}
	for _, s := range m.Servers {
		if _, dup := v.byS[s.ID]; dup || s.ID == 0 {
			continue
		}
		sv := &serverView{Server: s, target: s.Alive && !s.Draining}
		v.servers = append(v.servers, sv)
		v.byS[s.ID] = sv
	}
	slices.SortFunc(v.servers, func(a, b *serverView) int { return cmpID(a.ID, b.ID) })

	// Effective capacity: the declared one; a server that declares none is taken to be as big
	// as the targets that do on average; if none does, every server weighs 1.
	var declared float64
	nDeclared := 0
	for _, s := range v.servers {
		if s.target && s.Capacity > 0 {
			declared += float64(s.Capacity)
			nDeclared++
		}
	}
	fallback := 1.0
	if nDeclared > 0 {
		fallback = declared / float64(nDeclared)
	}
	for _, s := range v.servers {
		s.cap = fallback
		if nDeclared > 0 && s.Capacity > 0 {
			s.cap = float64(s.Capacity)
		}
	}

	locked := map[raftmeta.CellID]bool{}
	for _, ch := range m.Changes {
		for _, id := range ch.Cells {
			locked[id] = true
		}
	}
	for _, c := range m.Cells {
		if _, dup := v.byID[c.ID]; dup || c.ID == 0 {
			continue
		}
		cv := &cellView{Cell: c, locked: c.State != raftmeta.CellActive || locked[c.ID]}
		if s, ok := v.byS[c.Owner]; ok {
			for _, r := range s.Load.Cells {
				if r.Cell == c.ID {
					if r.Epoch == c.Epoch && r.Entities >= 0 {
						cv.known, cv.load, cv.hx, cv.hz = true, float64(r.Entities), r.HistX, r.HistZ
					}
					break
				}
			}
			if cv.known {
				s.load += cv.load
			} else {
				s.uncertain = true
			}
		}
		v.cells = append(v.cells, cv)
		v.byID[c.ID] = cv
	}
	slices.SortFunc(v.cells, func(a, b *cellView) int { return cmpID(a.ID, b.ID) })
	for _, s := range v.servers {
		if s.target && !s.uncertain {
			v.total += s.load
			v.capSum += s.cap
			v.nTargets++
		}
	}
	var known, reported float64
	owning := map[raftmeta.ServerID]bool{}
	for _, c := range v.cells {
		if s, ok := v.byS[c.Owner]; c.known && ok && !s.target {
			v.total += c.load
		}
		if c.known {
			known += c.load
		}
		owning[c.Owner] = true
	}
	for _, s := range v.servers {
		if owning[s.ID] && s.Load.Entities > 0 {
			reported += float64(s.Load.Entities)
		}
		if s.target {
			v.allTargets++
		}
	}
	v.shareTotal = max(known, reported)

	var walk func(n *raftmeta.TreeNode)
	walk = func(n *raftmeta.TreeNode) {
		if n == nil || n.Low == nil || n.High == nil {
			return
		}
		if isLeaf(n.Low) && isLeaf(n.High) {
			lo, hi := v.byID[n.Low.Cell], v.byID[n.High.Cell]
			if lo != nil && hi != nil && lo != hi && (n.Axis == raftmeta.AxisX || n.Axis == raftmeta.AxisZ) {
				p := &leafPair{node: n.ID, axis: n.Axis, at: n.At, low: lo, high: hi}
				lo.parent, hi.parent = p, p
				v.pairs = append(v.pairs, p)
			}
			return
		}
		walk(n.Low)
		walk(n.High)
	}
	walk(m.Tree)
	slices.SortFunc(v.pairs, func(a, b *leafPair) int { return cmpID(a.node, b.node) })
	return v
}

func isLeaf(n *raftmeta.TreeNode) bool {
	return n != nil && n.Low == nil && n.High == nil && n.Cell != 0
}

func cmpID[T ~uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// axisRange returns r's extent on axis a.
func axisRange(r raftmeta.Rect, a raftmeta.Axis) (lo, hi float64) {
	if a == raftmeta.AxisX {
		return r[0], r[2]
	}
	return r[1], r[3]
}

// borders reports whether rectangles a and b share an edge of positive length.
func borders(a, b raftmeta.Rect) bool {
	overlapX := min(a[2], b[2]) - max(a[0], b[0])
	overlapZ := min(a[3], b[3]) - max(a[1], b[1])
	touchX := a[2] == b[0] || b[2] == a[0]
	touchZ := a[3] == b[1] || b[3] == a[1]
	return (touchX && overlapZ > 0) || (touchZ && overlapX > 0)
}

// ownsNeighbour reports whether server s owns a cell bordering c (other than c).
func (v *view) ownsNeighbour(s raftmeta.ServerID, c *cellView) bool {
	for _, o := range v.cells {
		if o != c && o.Owner == s && borders(o.Bounds, c.Bounds) {
			return true
		}
	}
	return false
}

// hist returns c's histogram on axis a, if its report has a usable one.
func (c *cellView) hist(a raftmeta.Axis) (hist, bool) {
	raw := c.hx
	if a == raftmeta.AxisZ {
		raw = c.hz
	}
	lo, hi := axisRange(c.Bounds, a)
	return newHist(raw, lo, hi, int(c.load))
}

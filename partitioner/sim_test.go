package partitioner

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/meridian-mmo/meridian/raftmeta"
)

// The simulation the data-driven, property and convergence tests share: a world of points
// (entities) in named groups, a raftmeta FSM holding the partition map, and a Planner. A round
// computes every live server's load report (per-cell counts and histograms) from the points,
// records it through Heartbeat, runs Plan on the map and applies the operations straight to
// the FSM (the plain commands, not Prepare), failing the test if the FSM rejects one.
//
// Dead and draining servers can be simulated two ways: through the FSM (MarkDead, which
// reassigns the cells itself) or as an overlay on the map Plan sees ("kill"/"drain": the
// server is shown dead or draining while still owning its cells, so the planner must move
// them); an overlaid server is made dead or draining in the FSM once it owns nothing.

// fataler is what testing.TB and *rapid.T have in common.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

type group struct {
	name string
	seed int // offsets the quasi-random sequence so groups differ
	pts  [][2]float64
}

type sim struct {
	t        fataler
	f        *raftmeta.FSM
	index    uint64
	now      int64
	cfg      Config
	p        *Planner
	world    raftmeta.Rect
	groups   []*group
	dead     map[raftmeta.ServerID]bool // overlay: shown dead to the planner
	draining map[raftmeta.ServerID]bool // overlay: shown draining to the planner
	silent   map[raftmeta.ServerID]bool // sends no load report
	rounds   int
	seeds    int
	// shadow, when set, is a second planner fed a copy of every map: its operations and
	// reasons must be identical (determinism).
	shadow *Planner
	// lagReports makes the load reports a round late: they are sent after Plan and before
	// its operations are applied, so a cell an operation changed has no report at its new
	// epoch until the round after next (as in a cluster where heartbeats and planner rounds
	// share a period).
	lagReports bool
	// last round's output
	ops     []raftmeta.Command
	reasons []string
}

const leaseTTL = int64(1) << 50

func newSim(t fataler, world raftmeta.Rect, minSize float64, cfg Config) *sim {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s := &sim{
		t: t, f: raftmeta.NewFSM(), cfg: cfg, p: p, world: world,
		dead: map[raftmeta.ServerID]bool{}, draining: map[raftmeta.ServerID]bool{}, silent: map[raftmeta.ServerID]bool{},
	}
	s.mustApply(raftmeta.InitWorld{
		World:       raftmeta.World{Min: [2]float64{world[0], world[1]}, Max: [2]float64{world[2], world[3]}},
		MinCellSize: minSize,
	})
	return s
}

// setConfig replaces the planner (its memory starts afresh).
func (s *sim) setConfig(cfg Config) error {
	p, err := New(cfg)
	if err != nil {
		return err
	}
	s.cfg, s.p = cfg, p
	return nil
}

func (s *sim) apply(c raftmeta.Command) *raftmeta.ApplyResult {
	s.t.Helper()
	data, err := raftmeta.EncodeCommand(c)
	if err != nil {
		s.t.Fatalf("encoding %#v: %v", c, err)
	}
	s.index++
	res, ok := s.f.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: data}).(*raftmeta.ApplyResult)
	if !ok || res == nil {
		s.t.Fatalf("Apply(%#v) returned %#v", c, res)
	}
	return res
}

func (s *sim) mustApply(c raftmeta.Command) {
	s.t.Helper()
	if res := s.apply(c); res.Err != nil {
		s.t.Fatalf("%#v rejected: %v", c, res.Err)
	}
}

func (s *sim) join(id raftmeta.ServerID, capacity int) {
	s.t.Helper()
	s.mustApply(raftmeta.Register{Server: id, Addr: fmt.Sprintf("s%d:1", id), Capacity: capacity, Now: s.now, LeaseTTL: leaseTTL})
	delete(s.dead, id)
	delete(s.draining, id)
	delete(s.silent, id)
}

// ---- entities ----

func (s *sim) group(name string) *group {
	for _, g := range s.groups {
		if g.name == name {
			return g
		}
	}
	s.seeds++
	g := &group{name: name, seed: s.seeds * 7919}
	s.groups = append(s.groups, g)
	return g
}

// clamp keeps a point inside the half-open world.
func (s *sim) clamp(p [2]float64) [2]float64 {
	for i := range 2 {
		lo, hi := s.world[i], math.Nextafter(s.world[i+2], s.world[i])
		p[i] = math.Min(math.Max(p[i], lo), hi)
	}
	return p
}

// crowd adds n points evenly over the disc of radius r at (x, z) (a sunflower spiral).
func (s *sim) crowd(name string, x, z, r float64, n int) {
	g := s.group(name)
	golden := math.Pi * (3 - math.Sqrt(5))
	for i := range n {
		rho := r * math.Sqrt((float64(i)+0.5)/float64(n))
		th := float64(i) * golden
		g.pts = append(g.pts, s.clamp([2]float64{x + rho*math.Cos(th), z + rho*math.Sin(th)}))
	}
}

// halton is the radical inverse of i in base b.
func halton(i, b int) float64 {
	f, r := 1.0, 0.0
	for i > 0 {
		f /= float64(b)
		r += f * float64(i%b)
		i /= b
	}
	return r
}

// uniform adds n points spread evenly (Halton 2,3) over rect.
func (s *sim) uniform(name string, n int, rect raftmeta.Rect) {
	g := s.group(name)
	base := g.seed + len(g.pts)
	for i := range n {
		k := base + i + 1
		g.pts = append(g.pts, s.clamp([2]float64{
			rect[0] + halton(k, 2)*(rect[2]-rect[0]),
			rect[1] + halton(k, 3)*(rect[3]-rect[1]),
		}))
	}
}

func (s *sim) walk(name string, dx, dz float64) {
	g := s.group(name)
	for i, p := range g.pts {
		g.pts[i] = s.clamp([2]float64{p[0] + dx, p[1] + dz})
	}
}

// clear removes a group's points.
func (s *sim) clear(name string) { s.group(name).pts = nil }

// disperse spreads a group's points evenly over the world.
func (s *sim) disperse(name string) {
	g := s.group(name)
	n := len(g.pts)
	g.pts = g.pts[:0]
	s.uniform(name, n, s.world)
}

func (s *sim) entities() int {
	n := 0
	for _, g := range s.groups {
		n += len(g.pts)
	}
	return n
}

// ---- load reports ----

// locate returns the cell holding p, descending the tree.
func locate(t *raftmeta.TreeNode, p [2]float64) raftmeta.CellID {
	for t != nil && (t.Low != nil || t.High != nil) {
		v := p[0]
		if t.Axis == raftmeta.AxisZ {
			v = p[1]
		}
		if v < t.At {
			t = t.Low
		} else {
			t = t.High
		}
	}
	if t == nil {
		return 0
	}
	return t.Cell
}

// measure computes every cell's load report from the points.
func (s *sim) measure(m *raftmeta.Map) map[raftmeta.CellID]*raftmeta.CellLoad {
	out := map[raftmeta.CellID]*raftmeta.CellLoad{}
	bounds := map[raftmeta.CellID]raftmeta.Rect{}
	for _, c := range m.Cells {
		out[c.ID] = &raftmeta.CellLoad{Cell: c.ID, Epoch: c.Epoch,
			HistX: make([]int32, raftmeta.LoadBins), HistZ: make([]int32, raftmeta.LoadBins)}
		bounds[c.ID] = c.Bounds
	}
	bin := func(v, lo, hi float64) int {
		i := int((v - lo) / (hi - lo) * raftmeta.LoadBins)
		return min(max(i, 0), raftmeta.LoadBins-1)
	}
	for _, g := range s.groups {
		for _, p := range g.pts {
			id := locate(m.Tree, p)
			cl, ok := out[id]
			if !ok {
				s.t.Fatalf("point %v is in no cell", p)
			}
			b := bounds[id]
			if p[0] < b[0] || p[0] >= b[2] || p[1] < b[1] || p[1] >= b[3] {
				s.t.Fatalf("point %v located in cell %d %v outside its bounds", p, id, b)
			}
			cl.Entities++
			cl.HistX[bin(p[0], b[0], b[2])]++
			cl.HistZ[bin(p[1], b[1], b[3])]++
		}
	}
	return out
}

// report sends every reporting server's load through Heartbeat.
func (s *sim) report() {
	s.t.Helper()
	s.now += int64(1e9)
	m := s.f.Map()
	loads := s.measure(&m)
	for _, srv := range m.Servers {
		if !srv.Alive || s.dead[srv.ID] || s.silent[srv.ID] {
			continue
		}
		var l raftmeta.Load
		for _, c := range m.Cells {
			if c.Owner == srv.ID {
				l.Cells = append(l.Cells, *loads[c.ID])
				l.Entities += loads[c.ID].Entities
			}
		}
		s.mustApply(raftmeta.Heartbeat{Server: srv.ID, Now: s.now, LeaseTTL: leaseTTL, Load: l})
	}
}

// plannerMap is the map as the planner sees it: the FSM's, with the overlays.
func (s *sim) plannerMap() raftmeta.Map {
	m := s.f.Map()
	for i := range m.Servers {
		if s.dead[m.Servers[i].ID] {
			m.Servers[i].Alive = false
		}
		if s.draining[m.Servers[i].ID] {
			m.Servers[i].Draining = true
		}
	}
	return m
}

// round runs one round: reports, Plan, apply. It fails the test if an operation is rejected
// or the map breaks an invariant.
func (s *sim) round() {
	s.t.Helper()
	if !s.lagReports || s.rounds == 0 {
		s.report()
	}
	m := s.plannerMap()
	s.rounds++
	before := cloneMap(m)
	s.ops = s.p.Plan(&m)
	s.reasons = s.p.Reasons()
	if !reflect.DeepEqual(before, m) {
		s.t.Fatalf("round %d: Plan modified its map", s.rounds)
	}
	if s.shadow != nil {
		m2 := cloneMap(before)
		ops2 := s.shadow.Plan(&m2)
		if !reflect.DeepEqual(ops2, s.ops) || !reflect.DeepEqual(s.shadow.Reasons(), s.reasons) {
			s.t.Fatalf("round %d: two planners disagree:\n%v %q\n%v %q", s.rounds, s.ops, s.reasons, ops2, s.shadow.Reasons())
		}
	}
	if len(s.reasons) != len(s.ops) {
		s.t.Fatalf("round %d: %d ops, %d reasons", s.rounds, len(s.ops), len(s.reasons))
	}
	if err := validatePlan(&m, s.cfg, s.ops); err != nil {
		s.t.Fatalf("round %d: %v", s.rounds, err)
	}
	if s.lagReports {
		s.report()
	}
	for i, op := range s.ops {
		if res := s.apply(op); res.Err != nil {
			s.t.Fatalf("round %d: the FSM rejected %s (%s): %v", s.rounds, fmtOp(op), s.reasons[i], res.Err)
		}
	}
	s.settleOverlays()
	if err := checkMap(s.plannerMap()); err != nil {
		s.t.Fatalf("round %d: %v", s.rounds, err)
	}
}

// cloneMap deep-copies m.
func cloneMap(m raftmeta.Map) raftmeta.Map {
	c := m
	c.Cells = slices.Clone(m.Cells)
	c.Servers = slices.Clone(m.Servers)
	for i := range c.Servers {
		cells := slices.Clone(c.Servers[i].Load.Cells)
		for j := range cells {
			cells[j].HistX = slices.Clone(cells[j].HistX)
			cells[j].HistZ = slices.Clone(cells[j].HistZ)
		}
		c.Servers[i].Load.Cells = cells
	}
	c.Changes = slices.Clone(m.Changes)
	for i := range c.Changes {
		c.Changes[i].Cells = slices.Clone(c.Changes[i].Cells)
		c.Changes[i].Transfers = slices.Clone(c.Changes[i].Transfers)
		c.Changes[i].Op = slices.Clone(c.Changes[i].Op)
	}
	c.Resolved = slices.Clone(m.Resolved)
	var tree func(n *raftmeta.TreeNode) *raftmeta.TreeNode
	tree = func(n *raftmeta.TreeNode) *raftmeta.TreeNode {
		if n == nil {
			return nil
		}
		t := *n
		t.Low, t.High = tree(n.Low), tree(n.High)
		return &t
	}
	c.Tree = tree(m.Tree)
	return c
}

// settleOverlays makes an overlaid dead or draining server so in the FSM once it owns nothing.
func (s *sim) settleOverlays() {
	m := s.f.Map()
	owns := map[raftmeta.ServerID]bool{}
	for _, c := range m.Cells {
		owns[c.Owner] = true
	}
	for _, srv := range m.Servers {
		if owns[srv.ID] || !srv.Alive {
			continue
		}
		if s.dead[srv.ID] {
			s.mustApply(raftmeta.MarkDead{Server: srv.ID, Now: srv.LeaseExpires})
		} else if s.draining[srv.ID] && !srv.Draining {
			s.mustApply(raftmeta.Drain{Server: srv.ID})
		}
	}
}

// checkMap checks what the tests promise of every map after a round: the cells tile the world
// (areas sum to its area, no two overlap, each matches its tree leaf and is at least
// MinCellSize), and every cell is owned by a registered server; by a live one unless no
// server is live (cells of an overlaid dead server are checked by the tests that kill).
func checkMap(m raftmeta.Map) error {
	w := raftmeta.Rect{m.World.Min[0], m.World.Min[1], m.World.Max[0], m.World.Max[1]}
	area := func(r raftmeta.Rect) float64 { return (r[2] - r[0]) * (r[3] - r[1]) }
	var sum float64
	for i, a := range m.Cells {
		if a.Bounds[2]-a.Bounds[0] < m.MinCellSize || a.Bounds[3]-a.Bounds[1] < m.MinCellSize {
			return fmt.Errorf("cell %d %v under min size %v", a.ID, a.Bounds, m.MinCellSize)
		}
		if a.Bounds[0] < w[0] || a.Bounds[1] < w[1] || a.Bounds[2] > w[2] || a.Bounds[3] > w[3] {
			return fmt.Errorf("cell %d %v outside the world %v", a.ID, a.Bounds, w)
		}
		sum += area(a.Bounds)
		for _, b := range m.Cells[i+1:] {
			if min(a.Bounds[2], b.Bounds[2]) > max(a.Bounds[0], b.Bounds[0]) && min(a.Bounds[3], b.Bounds[3]) > max(a.Bounds[1], b.Bounds[1]) {
				return fmt.Errorf("cells %d %v and %d %v overlap", a.ID, a.Bounds, b.ID, b.Bounds)
			}
		}
	}
	if math.Abs(sum-area(w)) > 1e-9*area(w) {
		return fmt.Errorf("cells cover %v, the world %v", sum, area(w))
	}
	leaves := map[raftmeta.CellID]raftmeta.Rect{}
	var walk func(n *raftmeta.TreeNode, r raftmeta.Rect)
	walk = func(n *raftmeta.TreeNode, r raftmeta.Rect) {
		if n.Low == nil {
			leaves[n.Cell] = r
			return
		}
		lo, hi := r, r
		if n.Axis == raftmeta.AxisX {
			lo[2], hi[0] = n.At, n.At
		} else {
			lo[3], hi[1] = n.At, n.At
		}
		walk(n.Low, lo)
		walk(n.High, hi)
	}
	walk(m.Tree, w)
	live, anyLive := map[raftmeta.ServerID]bool{}, false
	known := map[raftmeta.ServerID]bool{}
	for _, s := range m.Servers {
		known[s.ID] = true
		if s.Alive && !s.Draining {
			live[s.ID], anyLive = true, true
		}
	}
	if len(leaves) != len(m.Cells) {
		return fmt.Errorf("%d leaves, %d cells", len(leaves), len(m.Cells))
	}
	for _, c := range m.Cells {
		if leaves[c.ID] != c.Bounds {
			return fmt.Errorf("cell %d bounds %v, its leaf %v", c.ID, c.Bounds, leaves[c.ID])
		}
		if anyLive && !known[c.Owner] {
			return fmt.Errorf("cell %d owned by %d, not a registered server", c.ID, c.Owner)
		}
	}
	return nil
}

// ---- the truth ----

// balance returns each target server's load (entities, from the points) and max/mean of
// load per capacity, as the planner would weigh them.
func (s *sim) balance() (loads map[raftmeta.ServerID]int, ratio float64) {
	m := s.plannerMap()
	counts := s.measure(&m)
	for i := range m.Servers {
		m.Servers[i].Load = raftmeta.Load{}
		for _, c := range m.Cells {
			if c.Owner == m.Servers[i].ID {
				m.Servers[i].Load.Cells = append(m.Servers[i].Load.Cells, *counts[c.ID])
			}
		}
	}
	v := newView(&m)
	loads = map[raftmeta.ServerID]int{}
	var mx float64
	for _, sv := range v.servers {
		if sv.target {
			loads[sv.ID] = int(sv.load)
			mx = max(mx, sv.util())
		}
	}
	if v.mean() > 0 {
		ratio = mx / v.mean()
	}
	return loads, ratio
}

// ---- rendering ----

func fmtOp(op raftmeta.Command) string {
	switch op := op.(type) {
	case raftmeta.Split:
		s := fmt.Sprintf("split cell=%d epoch=%d axis=%s at=%g", op.Cell, op.Epoch, op.Axis, op.At)
		if op.NewOwner != 0 {
			s += fmt.Sprintf(" owner=%d", op.NewOwner)
		}
		return s
	case raftmeta.Merge:
		return fmt.Sprintf("merge low=%d:%d high=%d:%d", op.Low, op.LowEpoch, op.High, op.HighEpoch)
	case raftmeta.Shift:
		ids := make([]raftmeta.CellID, 0, len(op.Epochs))
		for id := range op.Epochs {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var ep []string
		for _, id := range ids {
			ep = append(ep, fmt.Sprintf("%d:%d", id, op.Epochs[id]))
		}
		return fmt.Sprintf("shift node=%d at=%g epochs=%s", op.Node, op.At, strings.Join(ep, ","))
	case raftmeta.Move:
		return fmt.Sprintf("move cell=%d epoch=%d to=%d", op.Cell, op.Epoch, op.To)
	}
	return fmt.Sprintf("%#v", op)
}

func renderTree(b *strings.Builder, n *raftmeta.TreeNode) {
	if n.Low == nil {
		fmt.Fprintf(b, "c%d", n.Cell)
		return
	}
	fmt.Fprintf(b, "%d:%s@%g(", n.ID, n.Axis, n.At)
	renderTree(b, n.Low)
	b.WriteString(" ")
	renderTree(b, n.High)
	b.WriteString(")")
}

// show renders the map: the tree, one line per cell (bounds, owner, entities) and the
// servers' loads with max/mean.
func (s *sim) show() string {
	var b strings.Builder
	m := s.plannerMap()
	counts := s.measure(&m)
	b.WriteString("tree ")
	renderTree(&b, m.Tree)
	for _, c := range m.Cells {
		fmt.Fprintf(&b, "\ncell %d x[%g,%g) z[%g,%g) s%d n=%d", c.ID, c.Bounds[0], c.Bounds[2], c.Bounds[1], c.Bounds[3], c.Owner, counts[c.ID].Entities)
	}
	b.WriteString("\n" + s.summary())
	return b.String()
}

// summary is one line: each server's entities (and state) and max/mean.
func (s *sim) summary() string {
	m := s.plannerMap()
	counts := s.measure(&m)
	var parts []string
	for _, srv := range m.Servers {
		n := 0
		for _, c := range m.Cells {
			if c.Owner == srv.ID {
				n += counts[c.ID].Entities
			}
		}
		p := fmt.Sprintf("s%d=%d", srv.ID, n)
		if srv.Capacity > 0 {
			p += fmt.Sprintf("/%d", srv.Capacity)
		}
		switch {
		case !srv.Alive:
			p += "(dead)"
		case srv.Draining:
			p += "(draining)"
		}
		parts = append(parts, p)
	}
	_, r := s.balance()
	return fmt.Sprintf("servers %s max/mean=%.2f", strings.Join(parts, " "), r)
}

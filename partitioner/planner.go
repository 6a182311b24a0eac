package partitioner

import (
	"fmt"
	"math"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// never is the "changed" round of a cell the planner has never seen change.
const never = math.MinInt / 2

// Planner runs the policy round by round. It remembers, between rounds, when each cell last
// changed (for the cooldown) and each tree node's shift direction and aggression (for the
// damping of reversals). It is not safe for concurrent use; it does no I/O, reads no clock,
// starts no goroutine and draws no random number, so the same sequence of maps always gives
// the same sequence of operations.
type Planner struct {
	cfg   Config
	round int // rounds run so far (Plan calls)
	seen  bool
	cells map[raftmeta.CellID]*cellMem
	// splits maps the leaf node of a cell this planner split to the round it proposed the
	// split, so that the new high half (which appears under that node) inherits its cooldown.
	splits  map[raftmeta.NodeID]int
	nodes   map[raftmeta.NodeID]*nodeMem
	reasons []string
}

type cellMem struct {
	epoch   raftmeta.Epoch
	changed int  // the round the cell last changed or an operation on it was proposed
	emitted bool // an operation was proposed since the epoch was last seen to change
}

type nodeMem struct {
	dir        int     // +1: the last shift moved the line up, −1 down
	aggression float64 // (0, 1]: the fraction of the wanted amount a shift moves
	calm       int     // the round of the last reversal or recovery step
}

// New returns a Planner for cfg, or cfg.Validate's error.
func New(cfg Config) (*Planner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Planner{
		cfg:    cfg,
		cells:  map[raftmeta.CellID]*cellMem{},
		splits: map[raftmeta.NodeID]int{},
		nodes:  map[raftmeta.NodeID]*nodeMem{},
	}, nil
}

// Reasons returns why each operation of the last Plan was chosen, one line per operation in
// the same order, for logs.
func (p *Planner) Reasons() []string { return slices.Clone(p.reasons) }

// Plan runs one round on m (its Servers[].Load.Cells are the latest load reports) and returns
// the operations to propose, in order: values of raftmeta.Split, Merge, Shift and Move. They
// touch pairwise disjoint cells and carry the epochs m shows, so each is valid on m and stays
// valid whatever the others do. Plan does not modify m.
func (p *Planner) Plan(m *raftmeta.Map) []raftmeta.Command {
	p.round++
	p.reasons = nil
	if m == nil {
		return nil
	}
	p.observe(m)
	r := &roundState{
		p:      p,
		v:      newView(m),
		used:   map[raftmeta.CellID]bool{},
		nCells: len(m.Cells),
	}
	r.evacuate()
	r.split()
	r.balance()
	r.merge()
	p.remember(r)
	if invariantsEnabled {
		checkPlan(m, p.cfg, r.ops)
	}
	p.reasons = r.reasons
	return r.ops
}

// observe updates the cell memory from m: a cell whose epoch changed since the last round
// (other than by an operation this planner proposed, whose cooldown already runs) is taken to
// have changed just before this round, as is a cell seen for the first time, unless it is the
// high half of a split this planner proposed (which inherits the split's round) or this is the
// first map the planner sees (nothing is cooling then).
func (p *Planner) observe(m *raftmeta.Map) {
	present := make(map[raftmeta.CellID]bool, len(m.Cells))
	leafNode := map[raftmeta.NodeID]bool{}
	parent := map[raftmeta.NodeID]raftmeta.NodeID{}
	var walk func(n *raftmeta.TreeNode)
	walk = func(n *raftmeta.TreeNode) {
		if n == nil {
			return
		}
		if n.Low == nil && n.High == nil {
			leafNode[n.ID] = true
			return
		}
		for _, ch := range []*raftmeta.TreeNode{n.Low, n.High} {
			if ch != nil {
				parent[ch.ID] = n.ID
				walk(ch)
			}
		}
	}
	walk(m.Tree)
	for _, c := range m.Cells {
		present[c.ID] = true
		mem, ok := p.cells[c.ID]
		switch {
		case !ok:
			changed := p.round - 1
			if !p.seen {
				changed = never
			} else if r, ok := p.splits[parent[c.Node]]; ok {
				changed = r
			}
			p.cells[c.ID] = &cellMem{epoch: c.Epoch, changed: changed}
		case mem.epoch != c.Epoch:
			if !mem.emitted {
				mem.changed = p.round - 1
			}
			mem.epoch, mem.emitted = c.Epoch, false
		}
	}
	p.seen = true
	for id := range p.cells {
		if !present[id] {
			delete(p.cells, id)
		}
	}
	// A split's record is done with once its node is no longer a leaf (the split happened and
	// the new half was seen above) or no longer exists; an abandoned one expires.
	for n, r := range p.splits {
		if !leafNode[n] || p.round-r > 100 {
			delete(p.splits, n)
		}
	}
	for n, nm := range p.nodes {
		if _, ok := parent[n]; !ok && !(m.Tree != nil && m.Tree.ID == n) || leafNode[n] {
			delete(p.nodes, n)
			continue
		}
		if nm.aggression < 1 && p.round-nm.calm >= p.cfg.AggressionRecoveryRounds {
			nm.aggression = min(1, nm.aggression*2)
			nm.calm = p.round
		}
	}
}

// cooling reports whether c changed (or had an operation proposed) within the last rounds
// rounds: a change between rounds r−1 and r, or a proposal in round r−1, holds the cell back
// in rounds r … r−1+rounds.
func (p *Planner) cooling(id raftmeta.CellID, rounds int) bool {
	mem, ok := p.cells[id]
	return ok && p.round-mem.changed <= rounds
}

// aggression returns node n's current aggression.
func (p *Planner) aggression(n raftmeta.NodeID) float64 {
	if nm, ok := p.nodes[n]; ok {
		return nm.aggression
	}
	return 1
}

// remember records this round's operations: their cells' cooldowns start now, the split
// cells' nodes are noted (for their new halves), and shifted nodes' directions are kept.
func (p *Planner) remember(r *roundState) {
	for id := range r.used {
		if mem, ok := p.cells[id]; ok {
			mem.changed, mem.emitted = p.round, true
		}
	}
	for _, n := range r.splitNodes {
		p.splits[n] = p.round
	}
	for _, s := range r.shifts {
		nm, ok := p.nodes[s.node]
		if !ok {
			nm = &nodeMem{aggression: 1, calm: p.round}
			p.nodes[s.node] = nm
		}
		if nm.dir == -s.dir {
			nm.aggression = max(nm.aggression/2, 1.0/16)
			nm.calm = p.round
		}
		nm.dir = s.dir
	}
}

// roundState is one round's work in progress.
type roundState struct {
	p          *Planner
	v          *view
	ops        []raftmeta.Command
	reasons    []string
	used       map[raftmeta.CellID]bool
	nCells     int // cells once this round's operations are applied
	splitNodes []raftmeta.NodeID
	shifts     []shiftRec
}

type shiftRec struct {
	node raftmeta.NodeID
	dir  int
}

func (r *roundState) full() bool { return len(r.ops) >= r.p.cfg.MaxOpsPerRound }

func (r *roundState) emit(op raftmeta.Command, reason string, cells ...*cellView) {
	r.ops = append(r.ops, op)
	r.reasons = append(r.reasons, reason)
	for _, c := range cells {
		r.used[c.ID] = true
	}
}

// free reports whether an operation may touch c this round at all: it is not locked by a
// pending change and no other operation of this round touches it.
func (r *roundState) free(c *cellView) bool { return c != nil && !c.locked && !r.used[c.ID] }

// settled reports whether c may take part in a split, shift, move or merge: free, its load
// known, out of its cooldown, and owned by a live, non-draining server.
func (r *roundState) settled(c *cellView) bool { return r.settledFor(c, r.p.cfg.CooldownRounds) }

// settledFor is settled with a cooldown of the given number of rounds.
func (r *roundState) settledFor(c *cellView, cooldown int) bool {
	if !r.free(c) || !c.known || r.p.cooling(c.ID, cooldown) {
		return false
	}
	s, ok := r.v.byS[c.Owner]
	return ok && s.target
}

// targets returns the live, non-draining servers.
func (r *roundState) targets() []*serverView {
	var out []*serverView
	for _, s := range r.v.servers {
		if s.target {
			out = append(out, s)
		}
	}
	return out
}

// quantize rounds x to the configured grid (nearest).
func (r *roundState) quantize(x float64) float64 {
	q := r.p.cfg.Quantum
	if q <= 0 {
		return x
	}
	return math.Round(x/q) * q
}

// fit returns the coordinate closest to want (rounded to the grid when that keeps it valid)
// that leaves [lo, x) and [x, hi) both at least the map's MinCellSize wide, or false if there
// is none. The width tests are the FSM's own (x − lo ≥ min, hi − x ≥ min).
func (r *roundState) fit(want, lo, hi float64) (float64, bool) {
	x, ok := r.fit0(want, lo, hi)
	return noNegZero(x), ok
}

// noNegZero turns −0 into 0 (a −0 coordinate would print as "-0" and not survive JSON's
// omitempty as itself).
func noNegZero(x float64) float64 {
	if x == 0 {
		return 0
	}
	return x
}

func (r *roundState) fit0(want, lo, hi float64) (float64, bool) {
	minSize := r.v.minSize
	ok := func(x float64) bool { return x > lo && x < hi && x-lo >= minSize && hi-x >= minSize }
	lowest, highest := lo+minSize, hi-minSize
	if !(lowest <= highest) {
		return 0, false
	}
	x := math.Min(math.Max(want, lowest), highest)
	if q := r.p.cfg.Quantum; q > 0 {
		for _, c := range []float64{r.quantize(x), math.Ceil(x/q) * q, math.Floor(x/q) * q} {
			if ok(c) {
				return c, true
			}
		}
	}
	if ok(x) {
		return x, true
	}
	for _, c := range []float64{lowest, highest} {
		if ok(c) {
			return c, true
		}
	}
	return 0, false
}

func fmtRatio(f float64) string { return fmt.Sprintf("%.2f", f) }

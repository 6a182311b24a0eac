package partitioner

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// ---- 1. evacuation ----

// evacuate moves every cell of a dead, draining or unknown server (or an unowned cell, if a
// server can take it) to a live, non-draining server: the least loaded one, except that a
// server owning a bordering cell is preferred while it would stay within the balance band.
// Neither the cooldown nor an unknown load stops it (an unknown load counts as 0); a locked
// cell waits for its change to end.
func (r *roundState) evacuate() {
	// Measured targets only, unless every target has an unreported cell.
	var targets []*serverView
	for _, s := range r.targets() {
		if !s.uncertain {
			targets = append(targets, s)
		}
	}
	if len(targets) == 0 {
		targets = r.targets()
	}
	if len(targets) == 0 {
		return
	}
	mean := r.v.mean()
	band := (1 + r.p.cfg.Imbalance) * mean
	for _, c := range r.v.cells {
		if r.full() {
			return
		}
		owner, ok := r.v.byS[c.Owner]
		if (ok && owner.target) || !r.free(c) {
			continue
		}
		var load float64
		if c.known {
			load = c.load
		}
		var best, bestNb *serverView
		after := func(s *serverView) float64 { return (s.load + load) / s.cap }
		for _, s := range targets {
			if best == nil || after(s) < after(best) {
				best = s
			}
			if r.v.ownsNeighbour(s.ID, c) && (bestNb == nil || after(s) < after(bestNb)) {
				bestNb = s
			}
		}
		to, why := best, "least loaded"
		if bestNb != nil && (bestNb == best || after(bestNb) <= math.Max(band, after(best))) {
			to, why = bestNb, "owns a bordering cell"
		}
		state := "unowned"
		switch {
		case ok && !owner.Alive:
			state = fmt.Sprintf("dead server %d", c.Owner)
		case ok && owner.Draining:
			state = fmt.Sprintf("draining server %d", c.Owner)
		case c.Owner != 0:
			state = fmt.Sprintf("unknown server %d", c.Owner)
		}
		loadStr := "unknown"
		if c.known {
			loadStr = fmt.Sprint(c.load)
		}
		reason := fmt.Sprintf("move cell %d (entities %s) off %s to server %d (%s; load/mean %s → %s)",
			c.ID, loadStr, state, to.ID, why, ratio(to.util(), mean), ratio(after(to), mean))
		r.emit(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: to.ID}, reason, c)
		if ok && c.known {
			owner.load -= load
		}
		to.load += load
	}
}

// ratio formats u/mean (load per capacity relative to the mean).
func ratio(u, mean float64) string {
	if mean <= 0 {
		return "-"
	}
	return fmtRatio(u / mean)
}

// ---- 2. splits ----

// splitThreshold is the load above which a cell is split: min(SplitLoad, max(SplitFraction ×
// share, 2 × MergeLoad, 2 × MinTransfer)). The floor keeps the halves of any split out of
// merge range (together they hold more than 2 × MergeLoad) and each worth a migration.
func (r *roundState) splitThreshold() (float64, string) {
	cfg := r.p.cfg
	abs := float64(cfg.SplitLoad)
	share := r.v.share()
	rel := cfg.SplitFraction * share
	floor := 2 * float64(max(cfg.MergeLoad, cfg.MinTransfer))
	floorWhy := fmt.Sprintf("%.4g = 2 × merge load", floor)
	if cfg.MinTransfer > cfg.MergeLoad {
		floorWhy = fmt.Sprintf("%.4g = 2 × min transfer", floor)
	}
	switch {
	case cfg.SplitFraction <= 0 || share <= 0 || abs <= floor:
	case rel >= abs:
	case rel >= floor:
		return rel, fmt.Sprintf("%.4g = split fraction %g × share %.4g", rel, cfg.SplitFraction, share)
	default:
		return floor, floorWhy
	}
	return abs, fmt.Sprintf("split load %d", cfg.SplitLoad)
}

// splitPlan is where and how to split one cell.
type splitPlan struct {
	axis      raftmeta.Axis
	at        float64
	low, high float64 // estimated entities of each half
	how       string  // "median", "clamped median", "midpoint"
	medianBin float64 // the fraction of the load in the median's bin (uncertainty)
}

// planSplit finds the split of c on axis a: at the median of its entities (from the
// histogram), clamped so both halves keep the map's MinCellSize; the midpoint when the report
// has no histogram.
func (r *roundState) planSplit(c *cellView, a raftmeta.Axis) (splitPlan, bool) {
	lo, hi := axisRange(c.Bounds, a)
	h, ok := c.hist(a)
	want, how := (lo+hi)/2, "midpoint"
	if ok {
		want, how = h.median(), "median"
	}
	at, fits := r.fit(want, lo, hi)
	if !fits {
		return splitPlan{}, false
	}
	sp := splitPlan{axis: a, at: at, how: how}
	if ok {
		sp.low = h.below(at)
		w := h.width()
		if i := int((want - lo) / w); i >= 0 && i < raftmeta.LoadBins {
			sp.medianBin = h.bins[i] / h.total
		}
		if math.Abs(at-want) > math.Max(r.p.cfg.Quantum, 1e-9*math.Abs(want)) {
			sp.how = "clamped median"
		}
	} else {
		sp.low = c.load * (at - lo) / (hi - lo)
	}
	sp.high = c.load - sp.low
	return sp, true
}

// chooseSplit picks the axis: the one whose split gives the more even halves (by more than
// 10 % of the load); otherwise the one whose halves are squarer (the smaller worst aspect
// ratio, which for a centred median is the longer side), so that a crowd near a cell's edge
// does not cut it into thin strips; then the longer side; then x.
func (r *roundState) chooseSplit(c *cellView) (splitPlan, string, bool) {
	px, okx := r.planSplit(c, raftmeta.AxisX)
	pz, okz := r.planSplit(c, raftmeta.AxisZ)
	switch {
	case !okx && !okz:
		return splitPlan{}, "", false
	case !okz:
		return px, "only axis wide enough", true
	case !okx:
		return pz, "only axis wide enough", true
	}
	ux, uz := math.Abs(px.low-px.high), math.Abs(pz.low-pz.high)
	if math.Abs(ux-uz) > 0.1*c.load {
		if ux < uz {
			return px, "more even halves", true
		}
		return pz, "more even halves", true
	}
	b := c.Bounds
	wx, wz := b[2]-b[0], b[3]-b[1]
	ax := max(aspect(px.at-b[0], wz), aspect(b[2]-px.at, wz))
	az := max(aspect(wx, pz.at-b[1]), aspect(wx, b[3]-pz.at))
	switch {
	case ax < az*0.999:
		return px, squarer(wx, wz), true
	case az < ax*0.999:
		return pz, squarer(wz, wx), true
	case wz > wx:
		return pz, "longer side", true
	}
	return px, "longer side", true
}

func squarer(w, other float64) string {
	if w > other {
		return "longer side"
	}
	return "squarer halves"
}

// split splits the cells above the split threshold, heaviest first, at the median of their
// entities. The high half goes to the least loaded server when the owner is above the balance
// band and that server would stay below the owner's current load per capacity.
func (r *roundState) split() {
	thr, thrWhy := r.splitThreshold()
	mean := r.v.mean()
	band := (1 + r.p.cfg.Imbalance) * mean
	var hot []*cellView
	for _, c := range r.v.cells {
		if c.known && c.load > thr && r.settledFor(c, r.p.cfg.SplitCooldownRounds) {
			hot = append(hot, c)
		}
	}
	slices.SortStableFunc(hot, func(a, b *cellView) int { return cmp.Compare(b.load, a.load) })
	for _, c := range hot {
		if r.full() {
			return
		}
		sp, axisWhy, ok := r.chooseSplit(c)
		if !ok || math.Min(sp.low, sp.high) < r.p.cfg.MinSplitShare*c.load {
			continue
		}
		owner := r.v.byS[c.Owner]
		op := raftmeta.Split{Cell: c.ID, Epoch: c.Epoch, Axis: sp.axis, At: sp.at}
		reason := fmt.Sprintf("split cell %d (entities %g > %s) at %s=%g (%s; %s; halves ≈ %.0f + %.0f)",
			c.ID, c.load, thrWhy, sp.axis, sp.at, sp.how, axisWhy, sp.low, sp.high)
		if mean > 0 && !owner.uncertain && owner.util() > band {
			var to *serverView
			for _, s := range r.targets() {
				if s != owner && !s.uncertain && (to == nil || s.util() < to.util()) {
					to = s
				}
			}
			if to != nil && (to.load+sp.high)/to.cap < owner.util() {
				op.NewOwner = to.ID
				reason += fmt.Sprintf(", high half to server %d (server %d at %s × mean, server %d at %s)",
					to.ID, owner.ID, ratio(owner.util(), mean), to.ID, ratio(to.util(), mean))
				owner.load -= sp.high
				to.load += sp.high
			}
		}
		r.emit(op, reason, c)
		r.nCells++
		r.splitNodes = append(r.splitNodes, c.Node)
	}
}

// ---- 3. balancing: shifts, moves ----

// balance runs while the heaviest server's load per capacity is above (1 + Imbalance) × the
// mean: for the heaviest server that can shed load, a boundary shift toward a server below the
// mean; else the move of one of its cells to the lightest server; else a shift toward a
// lighter neighbour above the mean (diffusion); else the split of one of its cells with the
// high half going to the lightest server (when its cells are too coarse to move whole). Each
// step lowers Σ load²/capacity over the servers (estimated), so balancing cannot cycle on a
// steady load.
func (r *roundState) balance() {
	mean := r.v.mean()
	if mean <= 0 {
		return
	}
	band := (1 + r.p.cfg.Imbalance) * mean
	for !r.full() {
		var heavy []*serverView
		for _, s := range r.targets() {
			if !s.uncertain && s.util() > band {
				heavy = append(heavy, s)
			}
		}
		if len(heavy) == 0 {
			return
		}
		slices.SortStableFunc(heavy, func(a, b *serverView) int { return cmp.Compare(b.util(), a.util()) })
		found := false
		for _, h := range heavy {
			if r.shiftFrom(h, mean, false) || r.moveFrom(h, mean) || r.shiftFrom(h, mean, true) || r.splitFrom(h, mean) {
				found = true
				break
			}
		}
		if !found {
			return
		}
	}
}

// shiftCand is a possible boundary shift.
type shiftCand struct {
	pair         *leafPair
	heavy, light *cellView
	to           *serverView
	at           float64
	moved        float64
}

// shiftFrom proposes the boundary shift that moves the most entities from server h to the
// owner of a sibling leaf: one below the mean (ΔE = min(h's excess, its deficit)) or, with
// diffuse, one above the mean but lighter than h (ΔE = min(h's excess, half the amount that
// would equalise the two, room up to the middle of the band)). ΔE is scaled by the node's
// aggression, capped at MaxShiftFraction of the shrinking cell's load, and the line is clamped
// so the shrinking cell keeps MinCellSize.
func (r *roundState) shiftFrom(h *serverView, mean float64, diffuse bool) bool {
	cfg := r.p.cfg
	var best *shiftCand
	for _, pr := range r.v.pairs {
		var hc, lc *cellView
		switch {
		case pr.low.Owner == h.ID && pr.high.Owner != h.ID:
			hc, lc = pr.low, pr.high
		case pr.high.Owner == h.ID && pr.low.Owner != h.ID:
			hc, lc = pr.high, pr.low
		default:
			continue
		}
		l := r.v.byS[lc.Owner]
		if !r.settled(hc) || !r.settled(lc) || l.uncertain || !(l.util() < h.util()) {
			continue
		}
		excess := (h.util() - mean) * h.cap
		var want float64
		if !diffuse {
			if !(l.util() < mean) {
				continue
			}
			want = math.Min(excess, (mean-l.util())*l.cap)
		} else {
			if l.util() < mean {
				continue // handled without diffusion
			}
			equalise := (h.util() - l.util()) / (1/h.cap + 1/l.cap)
			room := ((1+cfg.Imbalance/2)*mean - l.util()) * l.cap
			want = math.Min(excess, math.Min(equalise/2, room))
		}
		want *= r.p.aggression(pr.node)
		want = math.Min(want, cfg.MaxShiftFraction*hc.load)
		if want < float64(cfg.MinTransfer) {
			continue
		}
		hh, ok := hc.hist(pr.axis)
		if !ok {
			continue
		}
		lo, hi := axisRange(hc.Bounds, pr.axis)
		var at, moved float64
		found := false
		for _, x := range hh.cuts(want, hc == pr.low) {
			var fits bool
			var worst float64
			if hc == pr.low { // the line moves down into the low cell
				x, fits = r.fitShift(x, lo, pr.at, true)
				moved, worst = hc.load-hh.below(x), hh.atMostAbove(x)
			} else { // the line moves up into the high cell
				x, fits = r.fitShift(x, pr.at, hi, false)
				moved, worst = hh.below(x), hh.atMostBelow(x)
			}
			// The histogram cannot tell where inside a bin its entities are: even if the whole
			// bin the line lands in moved, the receiving server must still end well below where
			// h is now, or a concentrated crowd would be swung back and forth across the line.
			if fits && moved >= float64(cfg.MinTransfer) && x != pr.at && r.gains(h, l.util()+worst/l.cap) {
				at, found = x, true
				break
			}
		}
		if !found {
			continue
		}
		if best == nil || moved > best.moved {
			best = &shiftCand{pair: pr, heavy: hc, light: lc, to: l, at: at, moved: moved}
		}
	}
	if best == nil {
		return false
	}
	pr := best.pair
	dir := 1
	if best.at < pr.at {
		dir = -1
	}
	kind := "below the mean"
	if diffuse {
		kind = "lighter neighbour"
	}
	reason := fmt.Sprintf("shift node %d %s=%g → %g: ≈ %.0f entities of cell %d (server %d at %s × mean) to cell %d (server %d at %s × mean, %s)",
		pr.node, pr.axis, pr.at, best.at, best.moved, best.heavy.ID, h.ID, ratio(h.util(), mean),
		best.light.ID, best.to.ID, ratio(best.to.util(), mean), kind)
	if a := r.p.aggression(pr.node); a < 1 {
		reason += fmt.Sprintf(", aggression %g after reversals", a)
	}
	op := raftmeta.Shift{Node: pr.node, At: best.at, Epochs: map[raftmeta.CellID]raftmeta.Epoch{
		pr.low.ID: pr.low.Epoch, pr.high.ID: pr.high.Epoch,
	}}
	r.emit(op, reason, pr.low, pr.high)
	r.shifts = append(r.shifts, shiftRec{node: pr.node, dir: dir})
	h.load -= best.moved
	best.to.load += best.moved
	return true
}

// fitShift places a shifted line near want inside the shrinking cell [lo, hi): for a low
// cell (shrinkLow) the line must stay ≥ lo + MinCellSize and below hi (its current place); for
// a high cell it must stay ≤ hi − MinCellSize and above lo.
func (r *roundState) fitShift(want, lo, hi float64, shrinkLow bool) (float64, bool) {
	minSize := r.v.minSize
	ok := func(x float64) bool {
		if shrinkLow {
			return x > lo && x < hi && x-lo >= minSize
		}
		return x > lo && x < hi && hi-x >= minSize
	}
	x := want
	if shrinkLow {
		x = math.Max(x, lo+minSize)
	} else {
		x = math.Min(x, hi-minSize)
	}
	cands := []float64{x}
	if q := r.p.cfg.Quantum; q > 0 {
		// Rounded toward the current line first (moves a little less rather than more).
		if shrinkLow {
			cands = []float64{math.Ceil(x/q) * q, math.Floor(x/q) * q, x}
		} else {
			cands = []float64{math.Floor(x/q) * q, math.Ceil(x/q) * q, x}
		}
	}
	for _, c := range cands {
		if ok(c) {
			return noNegZero(c), true
		}
	}
	return 0, false
}

// moveFrom proposes moving one cell of server h to the lightest server, if that lowers the
// larger of the two servers' loads per capacity: the cell that lowers it most, preferring
// (within a tenth of the band) a cell bordering one of the target's cells.
func (r *roundState) moveFrom(h *serverView, mean float64) bool {
	cfg := r.p.cfg
	var l *serverView
	for _, s := range r.targets() {
		if s != h && !s.uncertain && (l == nil || s.util() < l.util()) {
			l = s
		}
	}
	if l == nil || !(l.util() < h.util()) {
		return false
	}
	type cand struct {
		c       *cellView
		pairMax float64
		nb      bool
	}
	var cands []cand
	for _, c := range r.v.cells {
		if c.Owner != h.ID || !r.settled(c) || c.load < float64(cfg.MinTransfer) {
			continue
		}
		pm := math.Max(h.util()-c.load/h.cap, l.util()+c.load/l.cap)
		if r.gains(h, pm) {
			cands = append(cands, cand{c: c, pairMax: pm, nb: r.v.ownsNeighbour(l.ID, c)})
		}
	}
	if len(cands) == 0 {
		return false
	}
	best := cands[0]
	for _, cd := range cands[1:] {
		if cd.pairMax < best.pairMax {
			best = cd
		}
	}
	slack := 0.1 * cfg.Imbalance * mean
	if !best.nb {
		for _, cd := range cands {
			if cd.nb && cd.pairMax <= best.pairMax+slack {
				best = cd
				break
			}
		}
	}
	c := best.c
	why := ""
	if best.nb {
		why = ", borders its cells"
	}
	reason := fmt.Sprintf("move cell %d (entities %g) from server %d (%s × mean) to server %d (%s × mean%s): the larger of the two drops to %s × mean",
		c.ID, c.load, h.ID, ratio(h.util(), mean), l.ID, ratio(l.util(), mean), why, ratio(best.pairMax, mean))
	r.emit(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: l.ID}, reason, c)
	h.load -= c.load
	l.load += c.load
	return true
}

// splitFrom proposes, when server h's cells are all too coarse to move whole, cutting a slice
// off one of them for the lightest server: a split whose high part (which the FSM gives to
// NewOwner) holds about the wanted amount (as for a shift: min(h's excess, the target's
// deficit), or half of what would equalise the two when the target is above the mean; at most
// half the cell), placed by the histogram and kept at least MinCellSize. Of the candidates
// that lower the larger of the two servers' loads per capacity, the one lowering it most is
// chosen, preferring (within a tenth of the band) cells bordering the target's cells. Only
// cells of at least MergeLoad entities are cut, so that the two parts (siblings holding the
// cell's load together) stay out of merge range; they are then a leaf pair with different
// owners, which later shifts fine-tune.
func (r *roundState) splitFrom(h *serverView, mean float64) bool {
	cfg := r.p.cfg
	var l *serverView
	for _, s := range r.targets() {
		if s != h && !s.uncertain && (l == nil || s.util() < l.util()) {
			l = s
		}
	}
	if l == nil || !(l.util() < h.util()) {
		return false
	}
	want := (h.util() - mean) * h.cap
	if l.util() < mean {
		want = math.Min(want, (mean-l.util())*l.cap)
	} else {
		want = math.Min(want, (h.util()-l.util())/(1/h.cap+1/l.cap)/2)
	}
	if want < float64(cfg.MinTransfer) {
		return false
	}
	type cand struct {
		c       *cellView
		axis    raftmeta.Axis
		at      float64
		high    float64
		pairMax float64
		nb      bool
		aspect  float64
	}
	var best *cand
	slack := 0.1 * cfg.Imbalance * mean
	better := func(cd, b *cand) bool {
		switch {
		case b == nil:
			return true
		case cd.nb && !b.nb:
			return cd.pairMax <= b.pairMax+slack
		case !cd.nb && b.nb:
			return cd.pairMax+slack < b.pairMax
		case cd.pairMax != b.pairMax:
			return cd.pairMax < b.pairMax
		}
		return cd.aspect < b.aspect
	}
	for _, c := range r.v.cells {
		if c.Owner != h.ID || c.load < max(float64(cfg.MergeLoad), 2*float64(cfg.MinTransfer)) || !r.settledFor(c, cfg.SplitCooldownRounds) {
			continue
		}
		nb := r.v.ownsNeighbour(l.ID, c)
		for _, a := range []raftmeta.Axis{raftmeta.AxisX, raftmeta.AxisZ} {
			hh, ok := c.hist(a)
			if !ok {
				continue
			}
			lo, hi := axisRange(c.Bounds, a)
			var at, high float64
			found := false
			for _, x := range hh.cuts(math.Min(want, c.load/2), true) {
				var fits bool
				if x, fits = r.fit(x, lo, hi); !fits {
					continue
				}
				high = c.load - hh.below(x)
				// As for shifts: no overshoot even if the whole bin of the cut moved.
				if high >= float64(cfg.MinTransfer) && c.load-high >= float64(cfg.MinTransfer) &&
					r.gains(h, l.util()+hh.atMostAbove(x)/l.cap) {
					at, found = x, true
					break
				}
			}
			if !found {
				continue
			}
			pm := math.Max(h.util()-high/h.cap, l.util()+high/l.cap)
			if !r.gains(h, pm) {
				continue
			}
			b := c.Bounds
			var asp float64
			if a == raftmeta.AxisX {
				asp = max(aspect(at-b[0], b[3]-b[1]), aspect(b[2]-at, b[3]-b[1]))
			} else {
				asp = max(aspect(b[2]-b[0], at-b[1]), aspect(b[2]-b[0], b[3]-at))
			}
			if cd := (&cand{c: c, axis: a, at: at, high: high, pairMax: pm, nb: nb, aspect: asp}); better(cd, best) {
				best = cd
			}
		}
	}
	if best == nil {
		return false
	}
	c := best.c
	nb := ""
	if best.nb {
		nb = ", borders its cells"
	}
	reason := fmt.Sprintf("split cell %d (entities %g; server %d at %s × mean has no cell small enough to move) at %s=%g, high part (≈ %.0f entities) to server %d (%s × mean%s): the larger of the two drops to %s × mean",
		c.ID, c.load, h.ID, ratio(h.util(), mean), best.axis, best.at, best.high, l.ID, ratio(l.util(), mean), nb, ratio(best.pairMax, mean))
	r.emit(raftmeta.Split{Cell: c.ID, Epoch: c.Epoch, Axis: best.axis, At: best.at, NewOwner: l.ID}, reason, c)
	r.nCells++
	r.splitNodes = append(r.splitNodes, c.Node)
	h.load -= best.high
	l.load += best.high
	return true
}

func aspect(w, h float64) float64 { return max(w/h, h/w) }

// gains reports whether a step that leaves the larger of servers h's and its target's loads per
// capacity at pairMax is worth its churn: that load must drop below h's current one by at
// least half of MinTransfer entities (of h's capacity), which also keeps float rounding from
// passing an exchange of equal cells as an improvement.
func (r *roundState) gains(h *serverView, pairMax float64) bool {
	return (h.util()-pairMax)*h.cap >= float64(r.p.cfg.MinTransfer)/2
}

// ---- 4. merges ----

// merge merges sibling leaves holding fewer than MergeLoad entities together, while the map
// keeps more than max(MinCells, live servers) cells: same-owner pairs first, then the lightest.
// A merge of two owners (the merged cell keeps the low cell's owner) is made only if it keeps
// that owner within the balance band; otherwise the low cell is moved to the high cell's
// owner, if that keeps this one within the band, so that the pair can merge once its cooldown
// is over.
func (r *roundState) merge() {
	cfg := r.p.cfg
	if cfg.MergeLoad <= 0 {
		return
	}
	minCells := max(cfg.MinCells, len(r.targets()))
	mean := r.v.mean()
	band := (1 + cfg.Imbalance) * mean
	var cands []*leafPair
	for _, pr := range r.v.pairs {
		if r.settled(pr.low) && r.settled(pr.high) && pr.low.load+pr.high.load < float64(cfg.MergeLoad) {
			cands = append(cands, pr)
		}
	}
	slices.SortStableFunc(cands, func(a, b *leafPair) int {
		da, db := a.low.Owner != a.high.Owner, b.low.Owner != b.high.Owner
		if da != db {
			if da {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.low.load+a.high.load, b.low.load+b.high.load)
	})
	for _, pr := range cands {
		if r.full() || r.nCells <= minCells {
			return
		}
		lo, hi := pr.low, pr.high
		reason := fmt.Sprintf("merge cells %d and %d (entities %g + %g < merge load %d)", lo.ID, hi.ID, lo.load, hi.load, cfg.MergeLoad)
		if lo.Owner != hi.Owner {
			lw, hw := r.v.byS[lo.Owner], r.v.byS[hi.Owner]
			if (lw.load+hi.load)/lw.cap > band {
				if (hw.load+lo.load)/hw.cap <= band {
					r.emit(raftmeta.Move{Cell: lo.ID, Epoch: lo.Epoch, To: hw.ID},
						fmt.Sprintf("move cell %d (entities %g) from server %d to server %d, which owns its sibling cell %d (entities %g), so that the two can merge (together < merge load %d; merging now would put server %d at %s × mean)",
							lo.ID, lo.load, lw.ID, hw.ID, hi.ID, hi.load, cfg.MergeLoad, lw.ID, ratio((lw.load+hi.load)/lw.cap, mean)), lo, hi)
					lw.load -= lo.load
					hw.load += lo.load
				}
				continue
			}
			lw.load += hi.load
			hw.load -= hi.load
			reason += fmt.Sprintf(", cell %d's entities move from server %d to server %d", hi.ID, hw.ID, lw.ID)
		} else {
			reason += fmt.Sprintf(", both on server %d", lo.Owner)
		}
		r.emit(raftmeta.Merge{Low: lo.ID, LowEpoch: lo.Epoch, High: hi.ID, HighEpoch: hi.Epoch}, reason, lo, hi)
		r.nCells--
	}
}

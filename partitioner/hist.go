package partitioner

import (
	"math"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// hist is a cell's entity histogram on one axis: LoadBins equal-width bins across [lo, hi),
// scaled so that the bins sum to the cell's reported load. Positions inside a bin are taken
// as spread evenly (linear interpolation).
type hist struct {
	lo, hi float64
	bins   [raftmeta.LoadBins]float64
	total  float64
}

// newHist validates a reported histogram: LoadBins non-negative counts with a positive sum.
// ok is false when the report has no usable histogram.
func newHist(raw []int32, lo, hi float64, load int) (h hist, ok bool) {
	if len(raw) != raftmeta.LoadBins || !(hi > lo) || load <= 0 {
		return h, false
	}
	var sum float64
	for _, v := range raw {
		if v < 0 {
			return h, false
		}
		sum += float64(v)
	}
	if sum <= 0 {
		return h, false
	}
	h.lo, h.hi, h.total = lo, hi, float64(load)
	scale := float64(load) / sum
	for i, v := range raw {
		h.bins[i] = float64(v) * scale
	}
	return h, true
}

func (h *hist) width() float64 { return (h.hi - h.lo) / raftmeta.LoadBins }

// below estimates how many entities lie in [lo, x).
func (h *hist) below(x float64) float64 {
	if x <= h.lo {
		return 0
	}
	if x >= h.hi {
		return h.total
	}
	w := h.width()
	f := (x - h.lo) / w
	i := min(int(f), raftmeta.LoadBins-1)
	var n float64
	for j := range i {
		n += h.bins[j]
	}
	return n + h.bins[i]*math.Min(1, f-float64(i))
}

// fromLow returns the lowest x with below(x) = n (0 ≤ n ≤ total): walking up from lo, the
// point where n entities have been passed.
func (h *hist) fromLow(n float64) float64 {
	if n <= 0 {
		return h.lo
	}
	w := h.width()
	var cum float64
	for i, b := range h.bins {
		if b > 0 && cum+b >= n {
			return h.lo + (float64(i)+(n-cum)/b)*w
		}
		cum += b
	}
	return h.hi
}

// fromHigh returns the highest x with total − below(x) = n: walking down from hi, the point
// where n entities have been passed.
func (h *hist) fromHigh(n float64) float64 {
	if n <= 0 {
		return h.hi
	}
	w := h.width()
	var cum float64
	for i := raftmeta.LoadBins - 1; i >= 0; i-- {
		b := h.bins[i]
		if b > 0 && cum+b >= n {
			return h.lo + (float64(i+1)-(n-cum)/b)*w
		}
		cum += b
	}
	return h.lo
}

// median returns the coordinate that halves the entities. When the halfway point falls in an
// empty stretch (two clusters), it is the middle of that stretch, as far from both as can be.
func (h *hist) median() float64 {
	half := h.total / 2
	return (h.fromLow(half) + h.fromHigh(half)) / 2
}

// atMostAbove bounds from above how many entities can lie in [x, hi): every bin reaching
// above x counted whole (the entities of the bin x falls in may all be above it).
func (h *hist) atMostAbove(x float64) float64 {
	w := h.width()
	var n float64
	for i, b := range h.bins {
		if h.lo+float64(i+1)*w > x {
			n += b
		}
	}
	return n
}

// atMostBelow bounds from above how many entities can lie in [lo, x).
func (h *hist) atMostBelow(x float64) float64 {
	w := h.width()
	var n float64
	for i, b := range h.bins {
		if h.lo+float64(i)*w < x {
			n += b
		}
	}
	return n
}

// cuts returns where to cut to pass about n entities across the cell's top edge (fromTop: the
// entities in [x, hi) pass) or its bottom edge (those in [lo, x)): the interpolated place,
// then the edge of its bin on the side of the moving edge, where the count passed is exact
// (every bin passed is passed whole) though smaller.
func (h *hist) cuts(n float64, fromTop bool) []float64 {
	w := h.width()
	if fromTop {
		x := h.fromHigh(n)
		k := math.Floor((x - h.lo) / w)
		return []float64{x, h.lo + (k+1)*w}
	}
	x := h.fromLow(n)
	k := math.Ceil((x - h.lo) / w)
	return []float64{x, h.lo + (k-1)*w}
}

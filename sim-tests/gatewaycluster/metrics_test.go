package gatewaycluster

import (
	"math"
	"slices"
	"strings"
	"testing"
)

const exposition = `# HELP meridian_transfer_frozen_ticks Ticks an entity was not simulated.
# TYPE meridian_transfer_frozen_ticks histogram
meridian_transfer_frozen_ticks_bucket{kind="handoff",le="0"} 60
meridian_transfer_frozen_ticks_bucket{kind="handoff",le="1"} 99
meridian_transfer_frozen_ticks_bucket{kind="handoff",le="2"} 100
meridian_transfer_frozen_ticks_bucket{kind="handoff",le="+Inf"} 100
meridian_transfer_frozen_ticks_sum{kind="handoff"} 41
meridian_transfer_frozen_ticks_count{kind="handoff"} 100
meridian_transfer_frozen_ticks_bucket{kind="migration",le="0"} 1
meridian_transfer_frozen_ticks_bucket{kind="migration",le="1"} 1
meridian_transfer_frozen_ticks_bucket{kind="migration",le="2"} 1
meridian_transfer_frozen_ticks_bucket{kind="migration",le="+Inf"} 1
meridian_transfer_frozen_ticks_count{kind="migration"} 1
meridian_peer_bytes_sent_total{type="ghosts"} 1.5e+06
meridian_peer_bytes_sent_total{type="ghost-gone"} 500
meridian_odd{a="x\"y",b="p,q"} 3 1700000000000
process_cpu_seconds_total 12.25
`

func TestParseMetrics(t *testing.T) {
	sc, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if v := sc.sum("meridian_peer_bytes_sent_total"); v != 1.5e6+500 {
		t.Fatalf("sum %v", v)
	}
	if v := sc.sum("meridian_peer_bytes_sent_total", "type", "ghosts"); v != 1.5e6 {
		t.Fatalf("ghosts %v", v)
	}
	if v := sc.sum("meridian_odd", "a", `x"y`, "b", "p,q"); v != 3 {
		t.Fatalf("escaped labels: %v", v)
	}
	if v := sc.sum("process_cpu_seconds_total"); v != 12.25 {
		t.Fatalf("cpu %v", v)
	}
	h := sc.histogram("meridian_transfer_frozen_ticks", "kind", "handoff")
	if h.count != 100 || h.sum != 41 || len(h.le) != 4 {
		t.Fatalf("histogram %+v", h)
	}
	if b50, b99, b100 := h.bound(0.5), h.bound(0.99), h.bound(1); b50 != 0 || b99 != 1 || b100 != 2 {
		t.Fatalf("bounds %v %v %v", b50, b99, b100)
	}
	if q := h.quantile(0.5); q != 0 {
		t.Fatalf("p50 %v", q)
	}
	if q := h.quantile(0.8); math.Abs(q-20.0/39) > 1e-9 { // 20 of the 39 in (0, 1]
		t.Fatalf("p80 %v, want %v", q, 20.0/39)
	}
	if f := h.fraction(1); f != 0.99 {
		t.Fatalf("fraction ≤ 1: %v", f)
	}
	d := h.sub(sc.histogram("meridian_transfer_frozen_ticks", "kind", "migration"))
	if d.count != 99 || d.counts[0] != 59 || d.counts[3] != 99 {
		t.Fatalf("difference %+v", d)
	}
	if !math.IsNaN(histogram{}.quantile(0.5)) {
		t.Fatal("quantile of nothing")
	}
}

func TestHistogramAdd(t *testing.T) {
	a := histogram{le: []float64{0, 1, math.Inf(1)}, counts: []float64{1, 2, 3}, count: 3, sum: 4}
	b := histogram{le: []float64{1, 5, math.Inf(1)}, counts: []float64{1, 1, 2}, count: 2, sum: 7}
	s := a.add(b)
	if !slices.Equal(s.le, []float64{0, 1, 5, math.Inf(1)}) || s.count != 5 || s.sum != 11 {
		t.Fatalf("%+v", s)
	}
	if e := (histogram{}).add(a); !slices.Equal(e.counts, a.counts) {
		t.Fatalf("%+v", e)
	}
}

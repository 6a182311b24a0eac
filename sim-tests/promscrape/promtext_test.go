package promscrape

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
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
	sc, err := ParseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if v := sc.Sum("meridian_peer_bytes_sent_total"); v != 1.5e6+500 {
		t.Fatalf("sum %v", v)
	}
	if v := sc.Sum("meridian_peer_bytes_sent_total", "type", "ghosts"); v != 1.5e6 {
		t.Fatalf("ghosts %v", v)
	}
	if v := sc.Sum("meridian_odd", "a", `x"y`, "b", "p,q"); v != 3 {
		t.Fatalf("escaped labels: %v", v)
	}
	if v := sc.Sum("process_cpu_seconds_total"); v != 12.25 {
		t.Fatalf("cpu %v", v)
	}
	h := sc.Histogram("meridian_transfer_frozen_ticks", "kind", "handoff")
	if h.Count != 100 || h.Sum != 41 || len(h.LE) != 4 {
		t.Fatalf("histogram %+v", h)
	}
	if b50, b99, b100 := h.Bound(0.5), h.Bound(0.99), h.Bound(1); b50 != 0 || b99 != 1 || b100 != 2 {
		t.Fatalf("bounds %v %v %v", b50, b99, b100)
	}
	if q := h.Quantile(0.5); q != 0 {
		t.Fatalf("p50 %v", q)
	}
	if q := h.Quantile(0.8); math.Abs(q-20.0/39) > 1e-9 { // 20 of the 39 in (0, 1]
		t.Fatalf("p80 %v, want %v", q, 20.0/39)
	}
	if f := h.Fraction(1); f != 0.99 {
		t.Fatalf("fraction ≤ 1: %v", f)
	}
	if n0, n1, n3 := h.AtMost(0), h.AtMost(1), h.AtMost(3); n0 != 60 || n1 != 99 || n3 != 0 {
		t.Fatalf("at most 0, 1, 3 (no such bucket): %v %v %v", n0, n1, n3)
	}
	d := h.Sub(sc.Histogram("meridian_transfer_frozen_ticks", "kind", "migration"))
	if d.Count != 99 || d.Counts[0] != 59 || d.Counts[3] != 99 {
		t.Fatalf("difference %+v", d)
	}
	if !math.IsNaN(Histogram{}.Quantile(0.5)) {
		t.Fatal("quantile of nothing")
	}
	if none := sc.Histogram("meridian_absent"); none.LE != nil || none.AtMost(0) != 0 || !math.IsNaN(none.Bound(0.5)) {
		t.Fatalf("absent histogram %+v", none)
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, bad := range []string{"no_value", "name{a=\"b\"}", "name{a=b} 1", "name{a=\"b} 1", "name one"} {
		if _, err := ParseMetrics(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestHistogramAdd(t *testing.T) {
	a := Histogram{LE: []float64{0, 1, math.Inf(1)}, Counts: []float64{1, 2, 3}, Count: 3, Sum: 4}
	b := Histogram{LE: []float64{1, 5, math.Inf(1)}, Counts: []float64{1, 1, 2}, Count: 2, Sum: 7}
	s := a.Add(b)
	if !slices.Equal(s.LE, []float64{0, 1, 5, math.Inf(1)}) || s.Count != 5 || s.Sum != 11 {
		t.Fatalf("%+v", s)
	}
	if e := (Histogram{}).Add(a); !slices.Equal(e.Counts, a.Counts) {
		t.Fatalf("%+v", e)
	}
}

func TestFetchMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write([]byte(exposition))
		case "/debug/json":
			_, _ = w.Write([]byte(`{"real":[1,2]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	sc, err := FetchMetrics(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if v := sc.Sum("process_cpu_seconds_total"); v != 12.25 {
		t.Fatalf("cpu %v", v)
	}
	var got struct{ Real []int }
	if err := GetJSON(context.Background(), addr, "/debug/json", &got); err != nil || !slices.Equal(got.Real, []int{1, 2}) {
		t.Fatalf("GetJSON: %v %+v", err, got)
	}
	// A path not served: the error names the address, the path and the status.
	err = GetJSON(context.Background(), addr, "/debug/entities", &got)
	if err == nil || !strings.HasPrefix(err.Error(), addr+"/debug/entities: 404") {
		t.Fatalf("a path not served: %v", err)
	}
}

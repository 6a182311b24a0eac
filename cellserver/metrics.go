package cellserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
)

// Metrics are the cell server's Prometheus collectors. The tick duration histogram is the
// most important metric of the whole system (DESIGN.md §6).
type Metrics struct {
	TickDuration   prometheus.Histogram
	TickOverruns   prometheus.Counter
	TicksSkipped   prometheus.Counter
	Entities       prometheus.Gauge
	Clients        prometheus.Gauge
	SnapshotBytes  prometheus.Counter
	RejectedInputs *prometheus.CounterVec // reason
	SkippedSeqs    prometheus.Counter
	CurrentTick    prometheus.Gauge
}

// NewMetrics creates the collectors and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		TickDuration: promutil.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meridian_tick_duration_seconds",
			Help:    "Wall time of one simulation tick (Step), including snapshot building.",
			Buckets: []float64{.0005, .001, .002, .004, .006, .008, .010, .0125, .015, .020, .025, .030, .040, .050, .075, .100, .200},
		})),
		TickOverruns: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_tick_overruns_total", Help: "Ticks whose Step took longer than the tick period."})),
		TicksSkipped: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ticks_skipped_total", Help: "Tick numbers skipped because the server fell further behind than it may catch up."})),
		Entities: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_entities", Help: "Real entities simulated by this server."})),
		Clients: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_clients", Help: "Clients whose entities this server simulates."})),
		SnapshotBytes: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_snapshot_bytes_total", Help: "Bytes of snapshot frames built for clients."})),
		RejectedInputs: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_rejected_inputs_total", Help: "Client inputs rejected, by reason."}, []string{"reason"})),
		SkippedSeqs: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_input_seqs_skipped_total", Help: "Input sequence numbers never received: a later input waited InputGapTicks for them, then they were given up (dropped inputs)."})),
		CurrentTick: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_tick", Help: "The tick number last simulated."})),
	}
}

package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
)

// Metrics are the edge's Prometheus collectors.
type Metrics struct {
	Sessions         prometheus.Gauge
	Connections      *prometheus.CounterVec // transport
	SessionsOpened   prometheus.Counter
	SessionsRejected *prometheus.CounterVec // reason
	SessionsClosed   *prometheus.CounterVec // reason
	SessionsKicked   prometheus.Counter
	BadFrames        *prometheus.CounterVec // reason
	RejectedInputs   *prometheus.CounterVec // reason (shared name with the cell server's)
	BytesSent        prometheus.Counter
	BytesReceived    prometheus.Counter
	SnapshotsDropped prometheus.Counter
}

// NewMetrics creates the collectors and registers them on reg (nil: not registered).
// Collectors already registered under the same name (by the cell server in the same process)
// are shared, not duplicated.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		Sessions: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_gateway_sessions", Help: "Client sessions currently open."})),
		Connections: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_gateway_connections_total", Help: "Client connections accepted by the edge, by transport (kcp, websocket), before any limit or hello."}, []string{"transport"})),
		SessionsOpened: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_gateway_sessions_opened_total", Help: "Client sessions that completed the hello."})),
		SessionsRejected: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_gateway_sessions_rejected_total", Help: "Sessions refused or closed by the edge, by reason."}, []string{"reason"})),
		SessionsClosed: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_gateway_sessions_closed_total", Help: "Sessions ended, by reason (client_disconnect, idle_timeout, transport_error, or the disconnect reason sent)."}, []string{"reason"})),
		SessionsKicked: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_gateway_sessions_kicked_total", Help: "Sessions disconnected (reason kicked) because a newer session of this edge signed in as the same player."})),
		BadFrames: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_bad_frames_total", Help: "Malformed, oversized or unknown frames received, by reason."}, []string{"reason"})),
		RejectedInputs: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_rejected_inputs_total", Help: "Client inputs rejected, by reason."}, []string{"reason"})),
		BytesSent: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_bytes_sent_total", Help: "Bytes of frames handed to client transports."})),
		BytesReceived: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_bytes_received_total", Help: "Bytes of frames received from clients."})),
		SnapshotsDropped: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_snapshots_superseded_total", Help: "Snapshots replaced by a newer one before a congested session could send them."})),
	}
}

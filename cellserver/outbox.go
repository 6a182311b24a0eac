package cellserver

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
	"github.com/meridian-mmo/meridian/persistence"
)

// outbox writes the Member's critical events to the local store's outbox before the tick's
// output leaves the process (a death is durable before any client hears of it), and, with
// PostgreSQL, runs the flusher that delivers them to its event log. Without a local store the
// events are counted and dropped.
type outbox struct {
	store   *persistence.Store // nil: no local store
	flusher *persistence.OutboxFlusher
	evs     []persistence.Event
	events  *prometheus.CounterVec // result
	append  prometheus.Histogram
}

func newOutbox(store *persistence.Store, pg *persistence.PG, reg prometheus.Registerer) (*outbox, error) {
	o := &outbox{store: store,
		events: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_critical_events_total", Help: "Critical events (deaths) by result: stored in the local outbox, or dropped for want of a local store."},
			[]string{"result"})),
		append: promutil.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_outbox_append_seconds", Help: "Time the tick waited for a synced outbox append.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})),
	}
	if store != nil && pg != nil {
		var err error
		if o.flusher, err = persistence.NewOutboxFlusher(store, pg, persistence.DefaultOutboxFlusherConfig(), reg); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// write makes evs durable (one synced batch). A storage failure reaches the store's OnFatal;
// write returns it so that the caller sends nothing of the tick.
func (o *outbox) write(evs []CriticalEvent) error {
	if len(evs) == 0 {
		return nil
	}
	if o.store == nil {
		o.events.WithLabelValues("dropped_no_store").Add(float64(len(evs)))
		return nil
	}
	o.evs = o.evs[:0]
	for _, e := range evs {
		o.evs = append(o.evs, persistence.Event{Key: e.Key, Kind: e.Kind, Cell: uint64(e.Cell), Epoch: uint64(e.Epoch), Payload: e.Payload})
	}
	start := time.Now()
	err := o.store.AppendEvents(o.evs)
	o.append.Observe(time.Since(start).Seconds())
	if err != nil {
		o.events.WithLabelValues("failed").Add(float64(len(evs)))
		return err
	}
	o.events.WithLabelValues("stored").Add(float64(len(evs)))
	return nil
}

// run delivers the outbox to PostgreSQL until ctx ends (nothing to do without both stores).
func (o *outbox) run(ctx context.Context) error {
	if o.flusher == nil {
		return nil
	}
	err := o.flusher.Run(ctx)
	if errors.Is(err, persistence.ErrClosed) {
		return nil
	}
	return err
}

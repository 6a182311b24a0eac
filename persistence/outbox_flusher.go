package persistence

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
)

// The outbox flusher: moves the local Store's pending outbox events into PostgreSQL's events
// table, then acknowledges (deletes) them locally. Delivery is at least once and application
// exactly once: a batch is inserted with ON CONFLICT (idem_key) DO NOTHING and acknowledged
// only after its transaction committed, so a crash (or a lost COMMIT answer) between the two
// re-delivers the batch, which inserts nothing twice.

// OutboxFlusherConfig configures an OutboxFlusher. DefaultOutboxFlusherConfig fills every
// field.
type OutboxFlusherConfig struct {
	// Interval is how often Run drains the outbox while deliveries succeed: [10ms, 10m]. An
	// event waits in the outbox about this long while PostgreSQL is up.
	Interval time.Duration
	// BatchSize is the most events one transaction inserts: [1, 10 000]. A batch is also cut
	// before its events' stored size passes 16 MiB (outboxBatchBytes); it holds at least one
	// event.
	BatchSize int
	// BackoffMin and BackoffMax: after the k-th failed drain in a row, Run tries again
	// min(BackoffMin·2^(k−1), BackoffMax) later (instead of Interval).
	// 0 < BackoffMin ≤ BackoffMax ≤ 10m.
	BackoffMin, BackoffMax time.Duration
	// Timeout bounds the delivery of one batch (its INSERT transaction): (0, 10m]. A batch
	// that runs out of it fails with ErrUnavailable and stays pending.
	Timeout time.Duration
	// Logger receives failed drains (Run), and events PostgreSQL cannot store. nil:
	// slog.Default().
	Logger *slog.Logger
}

// OutboxFlusherConfig bounds.
const (
	minOutboxInterval  = 10 * time.Millisecond
	maxOutboxInterval  = 10 * time.Minute
	maxOutboxBatchSize = 10_000
	maxOutboxBackoff   = 10 * time.Minute
	maxOutboxTimeout   = 10 * time.Minute

	// outboxBatchBytes bounds the stored size of one batch's events (payloads included): a
	// batch of BatchSize events of up to MaxEventPayload each would not fit in one statement.
	outboxBatchBytes = 16 << 20
)

// DefaultOutboxFlusherConfig returns the defaults: a drain every second, batches of up to
// 1000 events, a backoff from 100 ms to 5 s, 5 s per batch.
func DefaultOutboxFlusherConfig() OutboxFlusherConfig {
	return OutboxFlusherConfig{
		Interval:   time.Second,
		BatchSize:  1000,
		BackoffMin: 100 * time.Millisecond,
		BackoffMax: 5 * time.Second,
		Timeout:    5 * time.Second,
	}
}

// Validate names the first field that is out of bounds.
func (c OutboxFlusherConfig) Validate() error {
	switch {
	case c.Interval < minOutboxInterval || c.Interval > maxOutboxInterval:
		return fmt.Errorf("%w: OutboxFlusherConfig.Interval %v, want [%v, %v]", ErrInvalidOptions, c.Interval, minOutboxInterval, maxOutboxInterval)
	case c.BatchSize < 1 || c.BatchSize > maxOutboxBatchSize:
		return fmt.Errorf("%w: OutboxFlusherConfig.BatchSize %d, want [1, %d]", ErrInvalidOptions, c.BatchSize, maxOutboxBatchSize)
	case c.BackoffMin <= 0 || c.BackoffMin > c.BackoffMax:
		return fmt.Errorf("%w: OutboxFlusherConfig.BackoffMin %v, want (0, BackoffMax %v]", ErrInvalidOptions, c.BackoffMin, c.BackoffMax)
	case c.BackoffMax > maxOutboxBackoff:
		return fmt.Errorf("%w: OutboxFlusherConfig.BackoffMax %v, want [BackoffMin %v, %v]", ErrInvalidOptions, c.BackoffMax, c.BackoffMin, maxOutboxBackoff)
	case c.Timeout <= 0 || c.Timeout > maxOutboxTimeout:
		return fmt.Errorf("%w: OutboxFlusherConfig.Timeout %v, want (0, %v]", ErrInvalidOptions, c.Timeout, maxOutboxTimeout)
	}
	return nil
}

// backoff returns the wait after the k-th consecutive failure (k ≥ 1).
func (c OutboxFlusherConfig) backoff(k int) time.Duration {
	return backoffAfter(k, c.BackoffMin, c.BackoffMax)
}

// OutboxStats are an OutboxFlusher's counts since it was made, and the outbox's size.
type OutboxStats struct {
	// Delivered counts the events acknowledged in the outbox once PostgreSQL held them:
	// inserted by this flusher, or found there already (Duplicates).
	Delivered uint64
	// Duplicates counts the delivered events whose key PostgreSQL already held: a
	// re-delivery after a crash between a commit and its acknowledgement, or a key used by
	// another writer of the events table.
	Duplicates uint64
	// Rejected counts the events PostgreSQL cannot store, even with the payload as raw bytes
	// (a key or kind that is not UTF-8 text without NUL): logged, acknowledged and dropped.
	Rejected uint64
	// Failures counts the failed batch deliveries (PostgreSQL unavailable, a timeout, ...);
	// their events stayed pending.
	Failures uint64
	// Pending is the number of events in the outbox, not yet delivered (appended since
	// included); if the Store fails, the last count made.
	Pending uint64
}

type outboxMetrics struct {
	delivered, duplicates, rejected, failures prometheus.Counter
}

// outboxAckFault, when set (tests only), is called after a batch's transaction committed and
// before its AckEvents, with the batch's last sequence number; an error it returns ends the
// FlushOnce there, as a crash at that moment would (nothing acknowledged).
var outboxAckFault atomic.Pointer[func(lastSeq uint64) error]

// OutboxFlusher delivers the local Store's outbox to PostgreSQL (DESIGN.md §5). Each batch
// (the oldest pending events, up to BatchSize, in sequence order) is one INSERT … ON CONFLICT
// (idem_key) DO NOTHING, hence one transaction, into events; once it committed, the batch is
// acknowledged with Store.AckEvents(its last sequence number). An event whose key PostgreSQL
// already holds inserts nothing (a Duplicate) and is acknowledged all the same: a crash
// between the commit and the acknowledgement re-delivers the batch and applies nothing twice.
// PostgreSQL assigns events.seq in outbox order within a batch, and batches are delivered in
// order.
//
// Each event becomes a row: idem_key and kind from the event (a key or kind that is not UTF-8
// text without NUL cannot be stored: the event is Rejected — logged, counted, acknowledged);
// cell and epoch from the event (NULL above math.MaxInt64); payload the event's Payload when
// it is a JSON object PostgreSQL accepts as jsonb, else {"raw_b64": "<standard base64 of the
// Payload>"} (an empty Payload included); player the object's top-level "player" field when it
// is an integer literal that fits an int64, else NULL. A batch PostgreSQL refuses because of
// its data (SQLSTATE classes 22 and 23, or 54001 for a too deeply nested payload) is split in
// halves until the refused event is alone; that event is then stored with its payload as
// raw_b64, and Rejected only if that is refused too.
//
// A failed delivery (PostgreSQL unreachable: ErrUnavailable; a batch running out of Timeout)
// acknowledges nothing; the events stay pending, and Run retries with backoff. A Store error
// is not PostgreSQL's: ErrFsync, ErrClosed and ErrCorrupt end Run.
//
// Metrics (on the Registerer given to NewOutboxFlusher): meridian_outbox_delivered_total,
// meridian_outbox_duplicates_total (of the delivered ones), meridian_outbox_rejected_total,
// meridian_outbox_failures_total, meridian_outbox_pending (events in the outbox) and
// meridian_outbox_lag_seconds (while events are pending, the time since the last drain that
// left the outbox empty — an upper bound of the oldest pending event's age, which the outbox
// does not store; 0 when none is pending).
//
// Its methods are safe for concurrent use; drains (Run's, FlushOnce) are serialised. One
// OutboxFlusher per Store: another acknowledging the same events would make the counts wrong,
// not the delivery. It must not be used from the tick goroutine (it waits on PostgreSQL and
// on the Store's synced commits).
type OutboxFlusher struct {
	store  *Store
	insert func(ctx context.Context, rows []eventRow) (inserted int, err error)
	cfg    OutboxFlusherConfig
	log    *slog.Logger
	m      outboxMetrics

	mu sync.Mutex // held by a drain

	acked     atomic.Uint64 // no event with a sequence number ≤ acked is pending
	pending   atomic.Uint64 // the last count of pending events
	lastDrain atomic.Int64  // UnixNano of the last moment the outbox was known drained

	delivered, duplicates, rejected, failures atomic.Uint64
}

// NewOutboxFlusher returns an OutboxFlusher from store to pg, its metrics registered on reg
// (nil: not registered). It starts nothing: call Run (or FlushOnce). It does not own store or
// pg; close them after Run has returned.
func NewOutboxFlusher(store *Store, pg *PG, cfg OutboxFlusherConfig, reg prometheus.Registerer) (*OutboxFlusher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || pg == nil {
		return nil, fmt.Errorf("%w: NewOutboxFlusher needs a Store and a PG", ErrInvalidOptions)
	}
	f := &OutboxFlusher{store: store, insert: pg.insertEvents, cfg: cfg, log: cfg.Logger}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.lastDrain.Store(time.Now().UnixNano())
	counter := func(name, help string) prometheus.Counter {
		return promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	f.m = outboxMetrics{
		delivered:  counter("meridian_outbox_delivered_total", "Outbox events delivered to PostgreSQL and acknowledged (inserted, or already there)."),
		duplicates: counter("meridian_outbox_duplicates_total", "Delivered outbox events whose idempotency key PostgreSQL already held (re-deliveries)."),
		rejected:   counter("meridian_outbox_rejected_total", "Outbox events PostgreSQL cannot store, acknowledged and dropped."),
		failures:   counter("meridian_outbox_failures_total", "Failed deliveries of an outbox batch to PostgreSQL (the events stay pending and are retried)."),
	}
	promutil.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_outbox_pending", Help: "Events in the local outbox, not yet delivered to PostgreSQL."},
		func() float64 { return float64(f.pendingNow()) }))
	promutil.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_outbox_lag_seconds", Help: "While outbox events are pending, the time since the outbox was last drained (0: none pending)."},
		func() float64 { return f.Lag().Seconds() }))
	return f, nil
}

// Run drains the outbox every Interval until ctx ends, then returns nil. A failed delivery is
// retried with backoff (BackoffMin doubling up to BackoffMax). A Store error that no retry
// cures — ErrFsync (the process must stop), ErrClosed, ErrCorrupt — ends Run with that error.
// To deliver what is left at shutdown, call FlushOnce after Run returned, before closing the
// Store.
func (f *OutboxFlusher) Run(ctx context.Context) error {
	failures := 0 // consecutive failed drains
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		_, err := f.FlushOnce(ctx)
		switch {
		case err == nil:
			failures = 0
			timer.Reset(f.cfg.Interval)
		case errors.Is(err, ErrFsync) || errors.Is(err, ErrClosed) || errors.Is(err, ErrCorrupt):
			return err
		case ctx.Err() != nil:
			return nil
		default:
			failures++
			wait := f.cfg.backoff(failures)
			f.log.Warn("persistence: outbox delivery failed; the events stay pending and are retried",
				"failures", failures, "retry_in", wait, "err", err)
			timer.Reset(wait)
		}
	}
}

// FlushOnce delivers the events pending when it is called (and those appended meanwhile that
// its batches reach), batch by batch, and returns how many were delivered (inserted or found
// in PostgreSQL already, and acknowledged). It stops at the first error: the batches before it
// are delivered and acknowledged, the failed one and the rest stay pending. A PostgreSQL
// failure wraps ErrUnavailable when the server is out of reach or the batch ran out of
// Timeout; ctx ending fails with ctx's error; Store errors are returned as they are. Run calls
// it; a shutdown calls it after Run returned.
func (f *OutboxFlusher) FlushOnce(ctx context.Context) (delivered int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.pendingNow()
	start := time.Now()
	target, err := f.store.lastEventSeq()
	if err != nil {
		return 0, err
	}
	after := f.acked.Load()
	for after < target {
		readAt := time.Now()
		evs, err := f.store.pendingEvents(after, f.cfg.BatchSize, outboxBatchBytes)
		if err != nil {
			return delivered, err
		}
		if len(evs) == 0 { // everything up to target was acknowledged (by an earlier process)
			f.acked.Store(target)
			f.lastDrain.Store(readAt.UnixNano())
			return delivered, nil
		}
		n, err := f.deliver(ctx, evs)
		delivered += n
		if err != nil {
			return delivered, err
		}
		after = evs[len(evs)-1].Seq
	}
	f.lastDrain.Store(start.UnixNano()) // what was pending at start is delivered
	return delivered, nil
}

// deliver inserts one batch and acknowledges it, returning how many of its events PostgreSQL
// now holds.
func (f *OutboxFlusher) deliver(ctx context.Context, evs []StoredEvent) (int, error) {
	rows := make([]eventRow, 0, len(evs))
	rejected := 0
	for i := range evs {
		r, err := newEventRow(&evs[i])
		if err != nil {
			f.log.Error("persistence: an outbox event cannot be stored in PostgreSQL; it is dropped",
				"seq", evs[i].Seq, "key", evs[i].Key, "kind", evs[i].Kind, "err", err)
			rejected++
			continue
		}
		rows = append(rows, r)
	}
	inserted, refused, err := f.insertBatch(ctx, rows)
	if err != nil {
		f.failures.Add(1)
		f.m.failures.Inc()
		return 0, err
	}
	last := evs[len(evs)-1].Seq
	if fault := outboxAckFault.Load(); fault != nil {
		if err := (*fault)(last); err != nil {
			return 0, err
		}
	}
	if err := f.store.AckEvents(last); err != nil {
		return 0, err
	}
	f.acked.Store(last)
	rejected += refused
	delivered := len(rows) - refused
	dups := delivered - inserted
	f.delivered.Add(uint64(delivered))
	f.duplicates.Add(uint64(dups))
	f.rejected.Add(uint64(rejected))
	f.m.delivered.Add(float64(delivered))
	f.m.duplicates.Add(float64(dups))
	f.m.rejected.Add(float64(rejected))
	return delivered, nil
}

// insertBatch inserts rows in one statement (so one transaction) and, when PostgreSQL refuses
// it because of an event's data, inserts each half separately, recursively, until the refused
// event is alone: it is then tried with its payload as raw_b64, and if that is refused too,
// logged and counted in refused. Halves inserted before a failure stay inserted (delivering
// them again inserts nothing).
func (f *OutboxFlusher) insertBatch(ctx context.Context, rows []eventRow) (inserted, refused int, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	tctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	inserted, err = f.insert(tctx, rows)
	cancel()
	if err == nil {
		return inserted, 0, nil
	}
	if !rowError(err) && pgErrCode(err) != "54001" { // 54001: stack depth, a deeply nested payload
		return 0, 0, classify(ctx, fmt.Sprintf("delivering %d outbox events", len(rows)), err)
	}
	if len(rows) == 1 {
		r := &rows[0]
		if r.raw != nil {
			f.log.Warn("persistence: PostgreSQL refused an outbox event's JSON payload; it is stored as raw_b64",
				"seq", r.seq, "key", r.key, "err", err)
			r.payload, r.raw = rawPayload(r.raw), nil
			return f.insertBatch(ctx, rows)
		}
		f.log.Error("persistence: PostgreSQL refused an outbox event; it is dropped",
			"seq", r.seq, "key", r.key, "kind", r.kind, "err", err)
		return 0, 1, nil
	}
	h := len(rows) / 2
	i1, r1, err := f.insertBatch(ctx, rows[:h])
	if err != nil {
		return i1, r1, err
	}
	i2, r2, err := f.insertBatch(ctx, rows[h:])
	return i1 + i2, r1 + r2, err
}

// Stats returns the flusher's counts and the number of pending events.
func (f *OutboxFlusher) Stats() OutboxStats {
	return OutboxStats{
		Delivered:  f.delivered.Load(),
		Duplicates: f.duplicates.Load(),
		Rejected:   f.rejected.Load(),
		Failures:   f.failures.Load(),
		Pending:    f.pendingNow(),
	}
}

// Lag returns, while events are pending, the time since the outbox was last known drained
// (the start of the last FlushOnce that delivered everything pending at its start, or the
// flusher's creation): an upper bound of the age of the oldest pending event, as the outbox
// does not store when an event was appended. 0 when none is pending.
func (f *OutboxFlusher) Lag() time.Duration {
	if f.pendingNow() == 0 {
		return 0
	}
	return time.Since(time.Unix(0, f.lastDrain.Load()))
}

// pendingNow counts the pending events, or returns the last count if the Store fails.
func (f *OutboxFlusher) pendingNow() uint64 {
	n, err := f.store.pendingCount(f.acked.Load())
	if err != nil {
		return f.pending.Load()
	}
	f.pending.Store(n)
	return n
}

// eventRow is an outbox event as the events table stores it.
type eventRow struct {
	seq                 uint64
	key, kind           string
	player, cell, epoch *int64 // nil: NULL
	payload             json.RawMessage
	raw                 []byte // the Payload, while payload is it as a JSON object; nil once payload is raw_b64
}

// newEventRow maps an event to its row (see OutboxFlusher). An error: the event's key or kind
// cannot be stored.
func newEventRow(e *StoredEvent) (eventRow, error) {
	for _, f := range [...]struct{ name, s string }{{"key", e.Key}, {"kind", e.Kind}} {
		if !utf8.ValidString(f.s) || strings.IndexByte(f.s, 0) >= 0 {
			return eventRow{}, fmt.Errorf("%w: outbox event %d: %s %q is not UTF-8 text without NUL", ErrInvalidArgument, e.Seq, f.name, f.s)
		}
	}
	r := eventRow{seq: e.Seq, key: e.Key, kind: e.Kind, cell: optInt64(e.Cell), epoch: optInt64(e.Epoch)}
	if js, player, ok := objectPayload(e.Payload); ok {
		r.payload, r.player, r.raw = js, player, e.Payload
	} else {
		r.payload = rawPayload(e.Payload)
	}
	return r, nil
}

func optInt64(v uint64) *int64 {
	if v > math.MaxInt64 {
		return nil
	}
	i := int64(v)
	return &i
}

// objectPayload reports whether p is a JSON object that PostgreSQL should accept as jsonb
// (valid JSON, valid UTF-8, no \u0000 escape, which jsonb refuses), and returns its
// top-level "player" when that is an integer literal fitting an int64.
func objectPayload(p []byte) (js json.RawMessage, player *int64, ok bool) {
	t := bytes.TrimSpace(p)
	if len(t) == 0 || t[0] != '{' || !utf8.Valid(t) || bytes.Contains(t, []byte(`\u0000`)) {
		return nil, nil, false
	}
	var fields map[string]json.RawMessage // validates too; keys matched exactly, the last of duplicates wins (as in jsonb)
	if err := json.Unmarshal(t, &fields); err != nil || fields == nil {
		return nil, nil, false
	}
	if v, ok := fields["player"]; ok {
		if id, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			player = &id
		}
	}
	return json.RawMessage(t), player, true
}

// rawPayload is {"raw_b64": "<standard base64 of p>"}.
func rawPayload(p []byte) json.RawMessage {
	const head, tail = `{"raw_b64": "`, `"}`
	out := make([]byte, 0, len(head)+base64.StdEncoding.EncodedLen(len(p))+len(tail))
	out = append(out, head...)
	out = base64.StdEncoding.AppendEncode(out, p)
	return append(out, tail...)
}

// insertEvents inserts rows into events in one statement, in their order (events.seq follows
// it), skipping those whose idem_key is already there, and returns how many it inserted.
func (p *PG) insertEvents(ctx context.Context, rows []eventRow) (int, error) {
	n := len(rows)
	var (
		keys     = make([]string, n)
		kinds    = make([]string, n)
		players  = make([]*int64, n)
		cells    = make([]*int64, n)
		epochs   = make([]*int64, n)
		payloads = make([]json.RawMessage, n)
	)
	for i := range rows {
		r := &rows[i]
		keys[i], kinds[i], players[i], cells[i], epochs[i], payloads[i] = r.key, r.kind, r.player, r.cell, r.epoch, r.payload
	}
	tag, err := p.pool.Exec(ctx, `
		INSERT INTO events (idem_key, kind, player, cell, epoch, payload)
		SELECT k, kd, pl, c, ep, pa
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::jsonb[])
		     WITH ORDINALITY AS e(k, kd, pl, c, ep, pa, ord)
		ORDER BY ord
		ON CONFLICT (idem_key) DO NOTHING`,
		keys, kinds, players, cells, epochs, payloads)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

package persistence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
)

// The position flusher: the cell server offers its players' latest state every tick; a
// goroutine of the Flusher writes what changed to PostgreSQL every FlushInterval, off the tick
// goroutine, and keeps it through an outage.

// FlusherConfig configures a Flusher. DefaultFlusherConfig fills every field.
type FlusherConfig struct {
	// FlushInterval is how often the rows offered since the last write are written:
	// [10ms, 10m]. A player's position in PostgreSQL is at most about this old while
	// PostgreSQL is up.
	FlushInterval time.Duration
	// MaxPending bounds the players held (offered and not yet written, a batch being retried
	// included): [1, 10 000 000]. An offer of a player not already held while the bound is
	// reached is dropped and counted (meridian_pg_flush_dropped_rows_total{reason="queue_full"});
	// a newer row of a held player always replaces the older one.
	MaxPending int
	// BackoffMin and BackoffMax: after the k-th failed write in a row, the next attempt is
	// made min(BackoffMin·2^(k−1), BackoffMax) later (instead of FlushInterval).
	// 0 < BackoffMin ≤ BackoffMax ≤ 10m.
	BackoffMin, BackoffMax time.Duration
	// WriteTimeout bounds one write (one FlushPlayers or UpsertPlayers call): (0, 10m].
	WriteTimeout time.Duration
	// CopyMinRows: a batch of at least this many rows is written with FlushPlayers (COPY),
	// a smaller one with UpsertPlayers, which has a lower fixed cost (one statement, no
	// temporary table): [1, 100 000 000]. docs/performance.md has the measured crossover.
	CopyMinRows int
	// Logger receives rows rejected by PostgreSQL and write failures. nil: slog.Default().
	Logger *slog.Logger
}

// FlusherConfig bounds.
const (
	minFlushInterval  = 10 * time.Millisecond
	maxFlushInterval  = 10 * time.Minute
	maxFlushPending   = 10_000_000
	maxFlushBackoff   = 10 * time.Minute
	maxFlushWrite     = 10 * time.Minute
	maxFlushCopyMin   = 100_000_000
	defaultCopyMinRow = 2000
)

// DefaultFlusherConfig returns the defaults: a flush every 2 s, up to 1 000 000 players held,
// a backoff from 250 ms to 10 s, 30 s per write, COPY from 2000 rows.
func DefaultFlusherConfig() FlusherConfig {
	return FlusherConfig{
		FlushInterval: 2 * time.Second,
		MaxPending:    1_000_000,
		BackoffMin:    250 * time.Millisecond,
		BackoffMax:    10 * time.Second,
		WriteTimeout:  30 * time.Second,
		CopyMinRows:   defaultCopyMinRow,
	}
}

// Validate names the first field that is out of bounds.
func (c FlusherConfig) Validate() error {
	switch {
	case c.FlushInterval < minFlushInterval || c.FlushInterval > maxFlushInterval:
		return fmt.Errorf("%w: FlusherConfig.FlushInterval %v, want [%v, %v]", ErrInvalidOptions, c.FlushInterval, minFlushInterval, maxFlushInterval)
	case c.MaxPending < 1 || c.MaxPending > maxFlushPending:
		return fmt.Errorf("%w: FlusherConfig.MaxPending %d, want [1, %d]", ErrInvalidOptions, c.MaxPending, maxFlushPending)
	case c.BackoffMin <= 0 || c.BackoffMin > c.BackoffMax:
		return fmt.Errorf("%w: FlusherConfig.BackoffMin %v, want (0, BackoffMax %v]", ErrInvalidOptions, c.BackoffMin, c.BackoffMax)
	case c.BackoffMax > maxFlushBackoff:
		return fmt.Errorf("%w: FlusherConfig.BackoffMax %v, want [BackoffMin %v, %v]", ErrInvalidOptions, c.BackoffMax, c.BackoffMin, maxFlushBackoff)
	case c.WriteTimeout <= 0 || c.WriteTimeout > maxFlushWrite:
		return fmt.Errorf("%w: FlusherConfig.WriteTimeout %v, want (0, %v]", ErrInvalidOptions, c.WriteTimeout, maxFlushWrite)
	case c.CopyMinRows < 1 || c.CopyMinRows > maxFlushCopyMin:
		return fmt.Errorf("%w: FlusherConfig.CopyMinRows %d, want [1, %d]", ErrInvalidOptions, c.CopyMinRows, maxFlushCopyMin)
	}
	return nil
}

// backoff returns the wait after the k-th consecutive failure (k ≥ 1).
func (c FlusherConfig) backoff(k int) time.Duration {
	return backoffAfter(k, c.BackoffMin, c.BackoffMax)
}

// backoffAfter is the wait after the k-th consecutive failure (k ≥ 1): lo, doubling with every
// further failure, at most hi.
func backoffAfter(k int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < k && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// FlusherStats are a Flusher's counts since it was made.
type FlusherStats struct {
	Held     int    // players offered and not yet written (an upper bound: see Offer)
	Written  uint64 // rows written
	Fenced   uint64 // rows not written because PostgreSQL holds a newer epoch (dropped)
	Rejected uint64 // rows PostgreSQL refused on their own (a constraint or data error; dropped)
	Dropped  uint64 // offers dropped because MaxPending players were held
	Invalid  uint64 // offers refused by Offer's checks
	Failures uint64 // failed writes (each retried)
}

type flusherMetrics struct {
	seconds  prometheus.Histogram
	rows     *prometheus.CounterVec // result: written, fenced, rejected
	dropped  *prometheus.CounterVec // reason: queue_full, invalid
	failures prometheus.Counter
}

// writeFunc writes rows as UpsertPlayers does.
type writeFunc func(ctx context.Context, rows []PlayerRow) (written, fenced int, err error)

// Flusher moves players' positions and stats to PostgreSQL in bulk (DESIGN.md §5): the tick
// goroutine offers the latest rows (Offer never blocks on I/O); the Flusher keeps the newest
// row of each player and, every FlushInterval, writes the players offered since the last
// write in one epoch-fenced call from its own goroutine (FlushPlayers, or UpsertPlayers for
// a small batch). A failed write keeps its rows — offers made meanwhile replace them — and is
// retried with exponential backoff, so that after an outage everything offered is written
// once PostgreSQL is back, each player at its newest offered state. Rows fenced by a newer
// epoch (the player was handed to another server) and rows PostgreSQL refuses on their own
// (say, an account held by another player) are dropped and counted; the rest of their batch
// is written.
//
// Metrics (on the Registerer given to NewFlusher): meridian_pg_flush_seconds (duration of
// each write), meridian_pg_flush_rows_total{result="written"|"fenced"|"rejected"},
// meridian_pg_flush_failures_total, meridian_pg_flush_dropped_rows_total{reason="queue_full"|
// "invalid"}, meridian_pg_flush_queue_rows (players held) and meridian_pg_flush_lag_seconds
// (the age of the oldest offer not yet written; 0 when none is).
//
// Its methods are safe for concurrent use. Close stops it.
type Flusher struct {
	cfg   FlusherConfig
	write writeFunc
	log   *slog.Logger
	m     flusherMetrics

	mu           sync.Mutex
	pending      map[int64]PlayerRow // offered since the loop last took them
	pendingSince time.Time           // when pending last became non-empty; zero when empty
	heldRows     int                 // an upper bound of len(the loop's held map)
	heldSince    time.Time           // the oldest offer in held; zero when held is empty
	closed       bool

	written, fenced, rejected, dropped, invalid, failures atomic.Uint64

	flushReq chan flushRequest
	closeReq chan flushRequest
	done     chan struct{}
	closeErr error // set before done is closed

	// Owned by the loop goroutine.
	held  map[int64]PlayerRow // taken from pending, not yet written
	spare map[int64]PlayerRow // an empty map to swap with pending
	batch []PlayerRow
}

type flushRequest struct {
	ctx   context.Context
	reply chan error
}

// NewFlusher starts a Flusher writing to pg, its metrics registered on reg (nil: not
// registered). The caller must Close it, before closing pg.
func NewFlusher(pg *PG, cfg FlusherConfig, reg prometheus.Registerer) (*Flusher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	copyMin := cfg.CopyMinRows
	return newFlusher(func(ctx context.Context, rows []PlayerRow) (int, int, error) {
		if len(rows) >= copyMin {
			return pg.FlushPlayers(ctx, rows)
		}
		return pg.UpsertPlayers(ctx, rows)
	}, cfg, reg), nil
}

func newFlusher(write writeFunc, cfg FlusherConfig, reg prometheus.Registerer) *Flusher {
	f := &Flusher{
		cfg:      cfg,
		write:    write,
		log:      cfg.Logger,
		pending:  map[int64]PlayerRow{},
		held:     map[int64]PlayerRow{},
		spare:    map[int64]PlayerRow{},
		flushReq: make(chan flushRequest),
		closeReq: make(chan flushRequest),
		done:     make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.m = flusherMetrics{
		seconds: promutil.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_pg_flush_seconds", Help: "Duration of each position flush write to PostgreSQL, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})),
		rows: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_pg_flush_rows_total", Help: "Player rows handled by position flushes, by result: written, fenced (PostgreSQL holds a newer epoch), rejected (refused by a constraint)."}, []string{"result"})),
		dropped: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_pg_flush_dropped_rows_total", Help: "Player rows offered to the position flusher and dropped before any write, by reason: queue_full, invalid."}, []string{"reason"})),
		failures: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_pg_flush_failures_total", Help: "Position flush writes that failed (their rows are kept and retried)."})),
	}
	promutil.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_pg_flush_queue_rows", Help: "Players offered to the position flusher and not yet written."},
		func() float64 { return float64(f.Stats().Held) }))
	promutil.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_pg_flush_lag_seconds", Help: "Age of the oldest player row offered to the position flusher and not yet written (0: none)."},
		func() float64 { return f.Lag().Seconds() }))
	go f.run()
	return f
}

// Offer hands the Flusher the latest state of some players; it returns at once (it takes a
// lock held only briefly by the flushing goroutine, never across I/O). For each player, only
// the newest row offered is kept: an offer replaces the one held, written or not, its Stats
// whole (the write merges that row's stats keys into the stored object; a key only a replaced,
// unwritten offer carried is not written, so offer every key the server keeps). Rows failing
// PlayerRow's checks are not kept (counted as invalid; err wraps ErrInvalidArgument and names
// the first); a row of a player not held while MaxPending players are held is dropped (counted
// in dropped). The other rows are kept. After Close, Offer keeps nothing and returns ErrClosed.
//
// The Flusher keeps the rows by value but shares their Stats bytes: they must not be modified
// after the call (the rows slice itself may be reused).
func (f *Flusher) Offer(rows []PlayerRow) (dropped int, err error) {
	var bad []bool // the rows failing their checks, when any does (checked outside the lock)
	for i := range rows {
		if verr := rows[i].validate(); verr != nil {
			if bad == nil {
				bad = make([]bool, len(rows))
				err = verr
			}
			bad[i] = true
		}
	}
	now := time.Now()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, ErrClosed
	}
	invalid := 0
	for i := range rows {
		if bad != nil && bad[i] {
			invalid++
			continue
		}
		r := &rows[i]
		if _, ok := f.pending[r.ID]; !ok && len(f.pending)+f.heldRows >= f.cfg.MaxPending {
			dropped++
			continue
		}
		f.pending[r.ID] = *r
	}
	if len(f.pending) > 0 && f.pendingSince.IsZero() {
		f.pendingSince = now
	}
	f.mu.Unlock()
	if dropped > 0 {
		f.dropped.Add(uint64(dropped))
		f.m.dropped.WithLabelValues("queue_full").Add(float64(dropped))
	}
	if invalid > 0 {
		f.invalid.Add(uint64(invalid))
		f.m.dropped.WithLabelValues("invalid").Add(float64(invalid))
	}
	return dropped, err
}

// Flush writes now what was offered before the call (and what earlier writes left), without
// waiting for FlushInterval, and returns nil once it is written (or fenced or rejected), or
// the write's error (the rows are kept and retried as usual). ctx bounds the wait and the
// write.
func (f *Flusher) Flush(ctx context.Context) error {
	req := flushRequest{ctx: ctx, reply: make(chan error, 1)}
	select {
	case f.flushReq <- req:
	case <-f.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done(): // the write sees ctx too, and ends
		return ctx.Err()
	}
}

// Close stops taking offers and writes what is held, retrying with backoff until it is all
// written or ctx ends; then it stops the Flusher's goroutine. It returns nil when nothing was
// left unwritten, else an error saying how many players' rows were lost. Later calls return
// the same.
func (f *Flusher) Close(ctx context.Context) error {
	f.mu.Lock()
	first := !f.closed
	f.closed = true
	f.mu.Unlock()
	if first {
		f.closeReq <- flushRequest{ctx: ctx}
	}
	<-f.done
	return f.closeErr
}

// Stats returns the Flusher's counts.
func (f *Flusher) Stats() FlusherStats {
	f.mu.Lock()
	held := len(f.pending) + f.heldRows
	f.mu.Unlock()
	return FlusherStats{
		Held:     held,
		Written:  f.written.Load(),
		Fenced:   f.fenced.Load(),
		Rejected: f.rejected.Load(),
		Dropped:  f.dropped.Load(),
		Invalid:  f.invalid.Load(),
		Failures: f.failures.Load(),
	}
}

// Lag returns the age of the oldest offer not yet written, 0 when everything offered is.
func (f *Flusher) Lag() time.Duration {
	f.mu.Lock()
	oldest := f.heldSince
	if oldest.IsZero() || !f.pendingSince.IsZero() && f.pendingSince.Before(oldest) {
		oldest = f.pendingSince
	}
	f.mu.Unlock()
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}

// run is the Flusher's goroutine.
func (f *Flusher) run() {
	defer close(f.done)
	failures := 0 // consecutive failed writes
	timer := time.NewTimer(f.cfg.FlushInterval)
	defer timer.Stop()
	next := func(err error) {
		if err != nil {
			failures++
			timer.Reset(f.cfg.backoff(failures))
		} else {
			failures = 0
			timer.Reset(f.cfg.FlushInterval)
		}
	}
	for {
		select {
		case <-timer.C:
			next(f.flushHeld(context.Background()))
		case req := <-f.flushReq:
			err := f.flushHeld(req.ctx)
			req.reply <- err
			next(err)
		case req := <-f.closeReq:
			f.closeErr = f.drain(req.ctx, failures)
			return
		}
	}
}

// drain writes what is held until nothing is or ctx ends, waiting out the backoff after a
// failure (failures is the count of consecutive failures so far).
func (f *Flusher) drain(ctx context.Context, failures int) error {
	for {
		err := f.flushHeld(ctx)
		if err == nil {
			return nil
		}
		failures++
		select {
		case <-ctx.Done():
			return fmt.Errorf("persistence: flusher closed with the rows of %d players unwritten: %w", len(f.held), err)
		case <-time.After(f.cfg.backoff(failures)):
		}
	}
}

// flushHeld takes the pending rows into held (newer rows replacing older ones) and writes
// held in one call. Held is emptied when the write succeeds and kept when it fails.
func (f *Flusher) flushHeld(ctx context.Context) error {
	f.mu.Lock()
	p := f.pending
	f.pending, f.spare = f.spare, nil
	if !f.pendingSince.IsZero() && (f.heldSince.IsZero() || f.pendingSince.Before(f.heldSince)) {
		f.heldSince = f.pendingSince
	}
	f.pendingSince = time.Time{}
	f.heldRows += len(p) // an upper bound until the merge below
	f.mu.Unlock()

	if len(f.held) == 0 {
		f.held, p = p, f.held // nothing to merge into: take p as it is
	} else {
		for id, r := range p {
			f.held[id] = r
		}
		clear(p)
	}
	f.spare = p
	f.mu.Lock()
	f.heldRows = len(f.held)
	f.mu.Unlock()
	if len(f.held) == 0 {
		return nil
	}

	f.batch = f.batch[:0]
	for _, r := range f.held {
		f.batch = append(f.batch, r)
	}
	written, fenced, rejected, err := f.writeBatch(ctx, f.batch)
	f.written.Add(uint64(written))
	f.fenced.Add(uint64(fenced))
	f.rejected.Add(uint64(rejected))
	f.m.rows.WithLabelValues("written").Add(float64(written))
	f.m.rows.WithLabelValues("fenced").Add(float64(fenced))
	f.m.rows.WithLabelValues("rejected").Add(float64(rejected))
	clear(f.batch) // drop the references to Stats
	if err != nil {
		f.log.Warn("persistence: position flush failed; its rows are kept and retried",
			"players", len(f.held), "err", err)
		return err
	}
	clear(f.held)
	f.mu.Lock()
	f.heldRows, f.heldSince = 0, time.Time{}
	f.mu.Unlock()
	return nil
}

// writeBatch writes rows with one call, and when PostgreSQL refuses the call because of a
// row's data (a constraint or data error, which no retry will cure), writes each half
// separately, recursively, until the refused rows are alone; they are logged, counted as
// rejected and not retried. A failed write counts in the failures metric and returns its
// error; the halves already written by then stay written (writing them again is harmless).
func (f *Flusher) writeBatch(ctx context.Context, rows []PlayerRow) (written, fenced, rejected int, err error) {
	wctx, cancel := context.WithTimeout(ctx, f.cfg.WriteTimeout)
	start := time.Now()
	written, fenced, err = f.write(wctx, rows)
	f.m.seconds.Observe(time.Since(start).Seconds())
	cancel()
	if err == nil {
		return written, fenced, 0, nil
	}
	if !rowError(err) {
		f.failures.Add(1)
		f.m.failures.Inc()
		return 0, 0, 0, err
	}
	if len(rows) == 1 {
		f.log.Error("persistence: PostgreSQL refused a player's position row; it is dropped",
			"player", rows[0].ID, "epoch", rows[0].Epoch, "err", err)
		return 0, 0, 1, nil
	}
	h := len(rows) / 2
	w1, f1, r1, err := f.writeBatch(ctx, rows[:h])
	if err != nil {
		return w1, f1, r1, err
	}
	w2, f2, r2, err := f.writeBatch(ctx, rows[h:])
	return w1 + w2, f1 + f2, r1 + r2, err
}

// rowError reports whether err is PostgreSQL refusing the data itself (SQLSTATE class 22,
// data exception, or 23, integrity constraint violation), or a row failing this package's
// checks, rather than a failure of the server or the connection.
func rowError(err error) bool {
	if errors.Is(err, ErrInvalidArgument) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && len(pe.Code) == 5 && (pe.Code[:2] == "22" || pe.Code[:2] == "23")
}

package persistence

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/pgtest"
)

func TestFlusherConfigValidate(t *testing.T) {
	if err := DefaultFlusherConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, c := range []struct {
		mut   func(*FlusherConfig)
		field string
	}{
		{func(c *FlusherConfig) { c.FlushInterval = time.Millisecond }, "FlushInterval"},
		{func(c *FlusherConfig) { c.FlushInterval = time.Hour }, "FlushInterval"},
		{func(c *FlusherConfig) { c.MaxPending = 0 }, "MaxPending"},
		{func(c *FlusherConfig) { c.MaxPending = maxFlushPending + 1 }, "MaxPending"},
		{func(c *FlusherConfig) { c.BackoffMin = 0 }, "BackoffMin"},
		{func(c *FlusherConfig) { c.BackoffMin = c.BackoffMax + 1 }, "BackoffMin"},
		{func(c *FlusherConfig) { c.BackoffMin, c.BackoffMax = time.Second, time.Hour }, "BackoffMax"},
		{func(c *FlusherConfig) { c.WriteTimeout = 0 }, "WriteTimeout"},
		{func(c *FlusherConfig) { c.WriteTimeout = time.Hour }, "WriteTimeout"},
		{func(c *FlusherConfig) { c.CopyMinRows = 0 }, "CopyMinRows"},
	} {
		cfg := DefaultFlusherConfig()
		c.mut(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "FlusherConfig."+c.field+" ") {
			t.Errorf("%+v: %v, want ErrInvalidOptions naming %s", cfg, err, c.field)
		}
		if _, err := NewFlusher(nil, cfg, nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewFlusher with %+v: %v", cfg, err)
		}
	}
}

func TestFlusherBackoff(t *testing.T) {
	cfg := DefaultFlusherConfig()
	cfg.BackoffMin, cfg.BackoffMax = 100*time.Millisecond, time.Second
	var got []time.Duration
	for k := 1; k <= 6; k++ {
		got = append(got, cfg.backoff(k))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoff: %v, want %v", got, want)
	}
	if d := cfg.backoff(1000); d != time.Second {
		t.Errorf("backoff(1000) = %v", d)
	}
}

// fakeWriter records the batches written; fail makes a write fail.
type fakeWriter struct {
	mu      sync.Mutex
	batches [][]PlayerRow
	stored  map[int64]PlayerRow
	fail    func(rows []PlayerRow) error
}

func (w *fakeWriter) write(_ context.Context, rows []PlayerRow) (int, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		if err := w.fail(rows); err != nil {
			return 0, 0, err
		}
	}
	w.batches = append(w.batches, slices.Clone(rows))
	if w.stored == nil {
		w.stored = map[int64]PlayerRow{}
	}
	written := 0
	for _, r := range rows {
		if old, ok := w.stored[r.ID]; ok && old.Epoch > r.Epoch {
			continue
		}
		w.stored[r.ID] = r
		written++
	}
	return written, len(rows) - written, nil
}

func (w *fakeWriter) setFail(f func([]PlayerRow) error) {
	w.mu.Lock()
	w.fail = f
	w.mu.Unlock()
}

func testFlusherConfig() FlusherConfig {
	cfg := DefaultFlusherConfig()
	cfg.FlushInterval = time.Hour // tests flush explicitly unless they say otherwise
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 40*time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

func closeFlusher(t *testing.T, f *Flusher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestFlusherCoalesces: many offers of the same players make one write of each player's
// newest row; invalid rows and rows over MaxPending are dropped and counted; Close writes
// what is left; offers after Close are refused.
func TestFlusherCoalesces(t *testing.T) {
	w := &fakeWriter{}
	cfg := testFlusherConfig()
	cfg.MaxPending = 10
	f := newFlusher(w.write, cfg, prometheus.NewRegistry())
	for tick := range 5 {
		rows := make([]PlayerRow, 8)
		for i := range rows {
			rows[i] = flushRow(int64(i+1), float64(tick), 1)
		}
		if d, err := f.Offer(rows); d != 0 || err != nil {
			t.Fatalf("tick %d: Offer dropped %d, %v", tick, d, err)
		}
	}
	if s := f.Stats(); s.Held != 8 {
		t.Errorf("held %d, want 8", s.Held)
	}
	if f.Lag() <= 0 {
		t.Error("Lag is 0 with rows held")
	}
	// Two new players fit, the third does not; an invalid row is refused, the rest kept.
	d, err := f.Offer([]PlayerRow{flushRow(9, 0, 1), {ID: 0}, flushRow(10, 0, 1), flushRow(11, 0, 1), flushRow(1, 9, 1)})
	if d != 1 || !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Offer over the bound: dropped %d, %v; want 1, ErrInvalidArgument", d, err)
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 || len(w.batches[0]) != 10 {
		t.Fatalf("batches %v, want one of 10 rows", w.batches)
	}
	for id, r := range w.stored {
		want := 4.0
		switch {
		case id == 1:
			want = 9
		case id > 8:
			want = 0
		}
		if r.X != want {
			t.Errorf("player %d written with x %v, want %v", id, r.X, want)
		}
	}
	s := f.Stats()
	if s.Held != 0 || s.Written != 10 || s.Dropped != 1 || s.Invalid != 1 || f.Lag() != 0 {
		t.Errorf("after the flush: %+v, lag %v", s, f.Lag())
	}
	// Nothing new: a flush writes nothing.
	if err := f.Flush(context.Background()); err != nil || len(w.batches) != 1 {
		t.Errorf("an idle flush: %v, %d batches", err, len(w.batches))
	}
	if _, err := f.Offer([]PlayerRow{flushRow(3, 100, 1)}); err != nil {
		t.Fatal(err)
	}
	closeFlusher(t, f)
	if len(w.batches) != 2 || w.stored[3].X != 100 {
		t.Errorf("Close did not write what was left: %d batches, player 3 %+v", len(w.batches), w.stored[3])
	}
	if _, err := f.Offer([]PlayerRow{flushRow(3, 101, 1)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Offer after Close: %v", err)
	}
	if err := f.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if err := f.Close(context.Background()); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestFlusherTicks: without Flush, the rows are written every FlushInterval.
func TestFlusherTicks(t *testing.T) {
	w := &fakeWriter{}
	cfg := testFlusherConfig()
	cfg.FlushInterval = 20 * time.Millisecond
	f := newFlusher(w.write, cfg, nil)
	defer closeFlusher(t, f)
	for i := range 3 {
		if _, err := f.Offer([]PlayerRow{flushRow(1, float64(i), 1)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() bool { return f.Stats().Written == uint64(i+1) })
	}
}

// TestFlusherKeepsRowsOnFailure: failed writes keep their rows, newer offers replace them,
// failures are counted and retried with backoff, and everything is written once writes
// succeed again; Close with writes failing reports what it lost.
func TestFlusherKeepsRowsOnFailure(t *testing.T) {
	w := &fakeWriter{}
	down := errors.New("connection refused")
	w.setFail(func([]PlayerRow) error { return down })
	cfg := testFlusherConfig()
	cfg.FlushInterval = 10 * time.Millisecond
	reg := prometheus.NewRegistry()
	f := newFlusher(w.write, cfg, reg)
	for tick := range 20 {
		rows := []PlayerRow{flushRow(1, float64(tick), 1), flushRow(int64(100+tick), 0, 1)}
		if _, err := f.Offer(rows); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.Flush(context.Background()); !errors.Is(err, down) {
		t.Errorf("Flush while writes fail: %v", err)
	}
	s := f.Stats()
	if s.Failures < 2 || s.Held != 21 || s.Written != 0 {
		t.Errorf("while failing: %+v; want ≥ 2 failures, 21 players held", s)
	}
	if lag := f.Lag(); lag < 50*time.Millisecond {
		t.Errorf("lag %v while failing for ~100 ms", lag)
	}
	if v := gaugeValue(t, reg, "meridian_pg_flush_queue_rows"); v != 21 {
		t.Errorf("meridian_pg_flush_queue_rows %v", v)
	}
	w.setFail(nil)
	waitFor(t, 5*time.Second, func() bool { return f.Stats().Held == 0 })
	if len(w.stored) != 21 || w.stored[1].X != 19 {
		t.Errorf("after recovery: %d players stored, player 1 %+v", len(w.stored), w.stored[1])
	}
	if v := gaugeValue(t, reg, "meridian_pg_flush_lag_seconds"); v != 0 {
		t.Errorf("meridian_pg_flush_lag_seconds %v after catching up", v)
	}
	if v := counterValue(t, reg, "meridian_pg_flush_failures_total"); v < 2 {
		t.Errorf("meridian_pg_flush_failures_total %v", v)
	}

	w.setFail(func([]PlayerRow) error { return down })
	if _, err := f.Offer([]PlayerRow{flushRow(1, 50, 1)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.Close(ctx); !errors.Is(err, down) || !strings.Contains(err.Error(), "1 players") {
		t.Errorf("Close while failing: %v", err)
	}
}

// TestFlusherRejectsBadRows: a row PostgreSQL refuses on its own (a constraint) is isolated
// and dropped; the rest of its batch is written, and the Flusher does not retry it forever.
func TestFlusherRejectsBadRows(t *testing.T) {
	w := &fakeWriter{}
	w.setFail(func(rows []PlayerRow) error {
		for _, r := range rows {
			if r.ID == 13 || r.ID == 40 {
				return &pgconn.PgError{Code: "23505", Message: "duplicate key value violates unique constraint"}
			}
		}
		return nil
	})
	f := newFlusher(w.write, testFlusherConfig(), nil)
	defer closeFlusher(t, f)
	rows := make([]PlayerRow, 64)
	for i := range rows {
		rows[i] = flushRow(int64(i+1), 1, 1)
	}
	if _, err := f.Offer(rows); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := f.Stats()
	if s.Written != 62 || s.Rejected != 2 || s.Held != 0 || s.Failures != 0 {
		t.Errorf("%+v; want 62 written, 2 rejected", s)
	}
	if _, ok := w.stored[13]; ok || len(w.stored) != 62 {
		t.Errorf("%d stored; 13 stored %v", len(w.stored), ok)
	}
}

// TestFlusherPostgreSQL: the Flusher against a real server, which is stopped mid-run while
// the game goes on offering newer positions: the writes fail and are counted, the rows are
// kept, and once the server is back the Flusher catches up, with each player at its newest
// offered position and nothing lost. A zombie flusher with an older epoch is fenced. Both
// write paths are used (CopyMinRows in the middle of the batch sizes).
func TestFlusherPostgreSQL(t *testing.T) {
	ctx := context.Background()
	cl := pgtest.NewCluster(t)
	pg, err := OpenPG(ctx, cl.URL(), DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	cfg := DefaultFlusherConfig()
	cfg.FlushInterval = 50 * time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.CopyMinRows = 500
	cfg.Logger = slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	f, err := NewFlusher(pg, cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFlusher(t, f)

	const players = 2000
	latest := map[int64]PlayerRow{}
	tick := 0
	offer := func(ids int) { // the tick goroutine: ids players move, a new one appears
		tick++
		rows := make([]PlayerRow, 0, ids+1)
		for i := range ids {
			id := int64((tick*37+i)%players + 1)
			rows = append(rows, flushRow(id, float64(tick), 3))
		}
		rows = append(rows, flushRow(int64(players+tick), float64(tick), 3))
		for _, r := range rows {
			latest[r.ID] = r
		}
		if d, err := f.Offer(rows); d != 0 || err != nil {
			t.Fatalf("tick %d: Offer dropped %d, %v", tick, d, err)
		}
	}
	offer(players) // every player, through COPY
	for range 10 {
		offer(100) // small batches, through the upsert
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, func() bool { return f.Stats().Held == 0 })
	checkStored(t, pg, latest)

	cl.Stop()
	before := f.Stats().Failures
	for range 30 {
		offer(300)
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, func() bool { return f.Stats().Failures >= before+2 })
	s := f.Stats()
	if s.Held < 300 {
		t.Errorf("while PostgreSQL is down: %+v; want the rows held", s)
	}
	if lag := f.Lag(); lag < 200*time.Millisecond {
		t.Errorf("lag %v while PostgreSQL has been down for ≥ 300 ms", lag)
	}
	if v := counterValue(t, reg, "meridian_pg_flush_failures_total"); v < 2 {
		t.Errorf("meridian_pg_flush_failures_total %v", v)
	}
	if v := gaugeValue(t, reg, "meridian_pg_flush_lag_seconds"); v < 0.2 {
		t.Errorf("meridian_pg_flush_lag_seconds %v", v)
	}
	cl.Start()
	for range 5 {
		offer(50)
	}
	waitFor(t, 30*time.Second, func() bool { return f.Stats().Held == 0 })
	checkStored(t, pg, latest)
	s = f.Stats()
	if s.Fenced != 0 || s.Rejected != 0 || s.Dropped != 0 || s.Written == 0 {
		t.Errorf("after catching up: %+v", s)
	}
	if v := counterValue(t, reg, "meridian_pg_flush_rows_total"); v != float64(s.Written) {
		t.Errorf("meridian_pg_flush_rows_total %v, Stats.Written %d", v, s.Written)
	}

	// A zombie with the players at an older epoch: fenced, nothing changed.
	zombie, err := NewFlusher(pg, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rows []PlayerRow
	for id := range latest {
		rows = append(rows, flushRow(id, -1, 2))
	}
	if _, err := zombie.Offer(rows); err != nil {
		t.Fatal(err)
	}
	if err := zombie.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if zs := zombie.Stats(); zs.Fenced != uint64(len(rows)) || zs.Written != 0 {
		t.Errorf("the zombie: %+v; want all %d fenced", zs, len(rows))
	}
	closeFlusher(t, zombie)
	checkStored(t, pg, latest)
}

func checkStored(t *testing.T, pg *PG, want map[int64]PlayerRow) {
	t.Helper()
	got := readPlayers(t, pg)
	if len(got) != len(want) {
		t.Errorf("%d players stored, want %d", len(got), len(want))
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		r := want[id]
		if p, ok := got[id]; !ok || p.x != r.X || p.epoch != int64(r.Epoch) {
			t.Fatalf("player %d stored as %+v (present %v), want x %v epoch %d", id, p, ok, r.X, r.Epoch)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue sums the values of the named metric over its label sets.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, gauge bool) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			if gauge {
				sum += m.GetGauge().GetValue()
			} else {
				sum += m.GetCounter().GetValue()
			}
		}
		return sum
	}
	return math.NaN()
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return metricValue(t, reg, name, true)
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return metricValue(t, reg, name, false)
}

package persistence

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/pgtest"
)

func TestOutboxFlusherConfigValidate(t *testing.T) {
	if err := DefaultOutboxFlusherConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, c := range []struct {
		mut   func(*OutboxFlusherConfig)
		field string
	}{
		{func(c *OutboxFlusherConfig) { c.Interval = time.Millisecond }, "Interval"},
		{func(c *OutboxFlusherConfig) { c.Interval = time.Hour }, "Interval"},
		{func(c *OutboxFlusherConfig) { c.BatchSize = 0 }, "BatchSize"},
		{func(c *OutboxFlusherConfig) { c.BatchSize = maxOutboxBatchSize + 1 }, "BatchSize"},
		{func(c *OutboxFlusherConfig) { c.BackoffMin = 0 }, "BackoffMin"},
		{func(c *OutboxFlusherConfig) { c.BackoffMin = c.BackoffMax + 1 }, "BackoffMin"},
		{func(c *OutboxFlusherConfig) { c.BackoffMin, c.BackoffMax = time.Second, time.Hour }, "BackoffMax"},
		{func(c *OutboxFlusherConfig) { c.Timeout = 0 }, "Timeout"},
		{func(c *OutboxFlusherConfig) { c.Timeout = time.Hour }, "Timeout"},
	} {
		cfg := DefaultOutboxFlusherConfig()
		c.mut(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "OutboxFlusherConfig."+c.field+" ") {
			t.Errorf("%+v: %v, want ErrInvalidOptions naming %s", cfg, err, c.field)
		}
		if _, err := NewOutboxFlusher(nil, nil, cfg, nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewOutboxFlusher with %+v: %v", cfg, err)
		}
	}
	cfg := DefaultOutboxFlusherConfig()
	cfg.BatchSize = maxOutboxBatchSize
	if err := cfg.Validate(); err != nil {
		t.Errorf("BatchSize %d: %v", cfg.BatchSize, err)
	}
	if _, err := NewOutboxFlusher(nil, nil, DefaultOutboxFlusherConfig(), nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("NewOutboxFlusher without a Store: %v", err)
	}
	cfg = DefaultOutboxFlusherConfig()
	cfg.BackoffMin, cfg.BackoffMax = 100*time.Millisecond, time.Second
	var got []time.Duration
	for k := 1; k <= 6; k++ {
		got = append(got, cfg.backoff(k))
	}
	if fmt.Sprint(got) != "[100ms 200ms 400ms 800ms 1s 1s]" {
		t.Errorf("backoff: %v", got)
	}
}

// TestOutboxPayloadMapping: which payloads are stored as they are, which as raw_b64, and
// which give the player column.
func TestOutboxPayloadMapping(t *testing.T) {
	for _, c := range []struct {
		payload string
		object  bool
		player  string // "" for none
	}{
		{`{"player": 12, "item": 7}`, true, "12"},
		{` {"player":-3} `, true, "-3"},
		{`{"player": 9223372036854775807}`, true, "9223372036854775807"},
		{`{"player": 9223372036854775808}`, true, ""},
		{`{"player": "12"}`, true, ""},
		{`{"player": 1.5}`, true, ""},
		{`{"player": 1e3}`, true, ""},
		{`{"player": null}`, true, ""},
		{`{"Player": 4}`, true, ""},
		{`{"nested": {"player": 4}}`, true, ""},
		{`{"player": 1, "player": 2}`, true, "2"},
		{`{}`, true, ""},
		{`[{"player": 1}]`, false, ""},
		{`"text"`, false, ""},
		{`42`, false, ""},
		{`{"a": 1} trailing`, false, ""},
		{`{"a": "\u0000"}`, false, ""},
		{"{\"a\": \"\xff\"}", false, ""},
		{`{"a": `, false, ""},
		{"", false, ""},
		{"\x00\x01binary", false, ""},
	} {
		js, player, ok := objectPayload([]byte(c.payload))
		gotPlayer := ""
		if player != nil {
			gotPlayer = fmt.Sprint(*player)
		}
		if ok != c.object || gotPlayer != c.player || ok && string(js) != strings.TrimSpace(c.payload) {
			t.Errorf("%q: object %v (%s), player %q; want object %v, player %q", c.payload, ok, js, gotPlayer, c.object, c.player)
		}
	}
	for _, p := range [][]byte{nil, {0xff, 0, 1}, []byte("hello")} {
		var v map[string]string
		if err := json.Unmarshal(rawPayload(p), &v); err != nil || len(v) != 1 || v["raw_b64"] != base64.StdEncoding.EncodeToString(p) {
			t.Errorf("rawPayload(%q) = %s (%v)", p, rawPayload(p), err)
		}
	}
}

// openDiskStore opens a local Store in dir, on the real filesystem.
func openDiskStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, DefaultStoreOptions())
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

// outboxTestEvent is the i-th event of the tests: a mix of payloads (an object with a
// numeric player, an object without, a player that is not a number, a JSON array, binary
// bytes, nothing).
func outboxTestEvent(i int) Event {
	var p []byte
	switch i % 6 {
	case 0:
		p = fmt.Appendf(nil, `{"player": %d, "item": %d, "op": "loot"}`, 1000+i, i)
	case 1:
		p = fmt.Appendf(nil, `{"item": %d}`, i)
	case 2:
		p = fmt.Appendf(nil, `{"player": "p%d"}`, i)
	case 3:
		p = fmt.Appendf(nil, `[%d]`, i)
	case 4:
		p = []byte{0xff, 0x00, byte(i), byte(i >> 8)}
	}
	return Event{Key: fmt.Sprintf("ev-%06d", i), Kind: "loot", Cell: uint64(i%9 + 1), Epoch: uint64(i % 4), Payload: p}
}

func appendTestEvents(t *testing.T, s *Store, from, to int) {
	t.Helper()
	evs := make([]Event, 0, to-from)
	for i := from; i < to; i++ {
		evs = append(evs, outboxTestEvent(i))
	}
	if err := s.AppendEvents(evs); err != nil { // one synced batch
		t.Fatal(err)
	}
}

// pgEvent is a row of events as the tests read it.
type pgEvent struct {
	seq          int64
	kind         string
	player, cell *int64
	epoch        *int64
	payload      []byte
}

// readPGEvents returns the events table by key, failing the test if a key is there twice.
func readPGEvents(t *testing.T, pg *PG) (map[string]pgEvent, []string) {
	t.Helper()
	rows, _ := pg.pool.Query(context.Background(), `SELECT seq, idem_key, kind, player, cell, epoch, payload FROM events ORDER BY seq`)
	out := map[string]pgEvent{}
	var order []string
	var key string
	var e pgEvent
	if _, err := pgx.ForEachRow(rows, []any{&e.seq, &key, &e.kind, &e.player, &e.cell, &e.epoch, &e.payload}, func() error {
		if _, dup := out[key]; dup {
			return fmt.Errorf("key %q stored twice", key)
		}
		out[key] = e
		order = append(order, key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out, order
}

// checkPGEvents checks that events holds exactly the test events [0, n), once each, with the
// payload mapping of OutboxFlusher, in key order (the outbox's order).
func checkPGEvents(t *testing.T, pg *PG, n int) {
	t.Helper()
	got, order := readPGEvents(t, pg)
	if len(got) != n {
		t.Fatalf("%d events in PostgreSQL, want %d", len(got), n)
	}
	for i := range n {
		want := outboxTestEvent(i)
		if i < len(order) && order[i] != want.Key {
			t.Fatalf("event %d in seq order is %q, want %q", i, order[i], want.Key)
		}
		g, ok := got[want.Key]
		if !ok {
			t.Fatalf("event %q missing", want.Key)
		}
		wantPayload := want.Payload
		var wantPlayer *int64
		switch i % 6 {
		case 0:
			p := int64(1000 + i)
			wantPlayer = &p
		case 1, 2:
		default:
			wantPayload = fmt.Appendf(nil, `{"raw_b64": %q}`, base64.StdEncoding.EncodeToString(want.Payload))
		}
		if g.kind != want.Kind || g.cell == nil || *g.cell != int64(want.Cell) || g.epoch == nil || *g.epoch != int64(want.Epoch) ||
			fmt.Sprint(deref(g.player)) != fmt.Sprint(deref(wantPlayer)) || !sameJSON(t, g.payload, wantPayload) {
			t.Fatalf("event %q stored as kind %q player %v cell %v epoch %v payload %s; want %+v, player %v, payload %s",
				want.Key, g.kind, deref(g.player), deref(g.cell), deref(g.epoch), g.payload, want, deref(wantPlayer), wantPayload)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func outboxTestConfig() OutboxFlusherConfig {
	cfg := DefaultOutboxFlusherConfig()
	cfg.Interval = 10 * time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

func pendingEventCount(t *testing.T, s *Store) int {
	t.Helper()
	evs, err := s.PendingEvents(0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestOutboxFlusherDelivers: 2 500 events, appended in one synced batch, are delivered by one
// FlushOnce in batches of 1000: each exactly once in PostgreSQL, in outbox order, with the
// payload mapping; the outbox is empty after, and the metrics say so.
func TestOutboxFlusherDelivers(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	s := openDiskStore(t, t.TempDir())
	defer closeT(t, s)
	const n = 2500
	appendTestEvents(t, s, 0, n)
	reg := prometheus.NewRegistry()
	f, err := NewOutboxFlusher(s, pg, outboxTestConfig(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Pending != n || st.Delivered != 0 {
		t.Fatalf("before: %+v", st)
	}
	if v := gaugeValue(t, reg, "meridian_outbox_pending"); v != n {
		t.Errorf("meridian_outbox_pending %v before, want %d", v, n)
	}
	delivered, err := f.FlushOnce(ctx)
	if err != nil || delivered != n {
		t.Fatalf("FlushOnce = %d, %v; want %d", delivered, err, n)
	}
	checkPGEvents(t, pg, n)
	if c := pendingEventCount(t, s); c != 0 {
		t.Errorf("%d events still pending in the Store", c)
	}
	want := OutboxStats{Delivered: n}
	if st := f.Stats(); st != want {
		t.Errorf("Stats %+v, want %+v", st, want)
	}
	if f.Lag() != 0 {
		t.Errorf("Lag %v with nothing pending", f.Lag())
	}
	for name, want := range map[string]float64{
		"meridian_outbox_delivered_total":  n,
		"meridian_outbox_duplicates_total": 0,
		"meridian_outbox_failures_total":   0,
		"meridian_outbox_rejected_total":   0,
	} {
		if v := counterValue(t, reg, name); v != want {
			t.Errorf("%s %v, want %v", name, v, want)
		}
	}
	for _, name := range []string{"meridian_outbox_pending", "meridian_outbox_lag_seconds"} {
		if v := gaugeValue(t, reg, name); v != 0 {
			t.Errorf("%s %v after the drain", name, v)
		}
	}
	// Nothing left: nothing delivered. New events: only they are.
	if d, err := f.FlushOnce(ctx); d != 0 || err != nil {
		t.Errorf("an idle FlushOnce = %d, %v", d, err)
	}
	appendTestEvents(t, s, n, n+10)
	if st := f.Stats(); st.Pending != 10 || f.Lag() <= 0 {
		t.Errorf("after 10 more events: %+v, lag %v", st, f.Lag())
	}
	if d, err := f.FlushOnce(ctx); d != 10 || err != nil {
		t.Errorf("FlushOnce of 10 new events = %d, %v", d, err)
	}
	checkPGEvents(t, pg, n+10)
}

// TestOutboxFlusherRedelivery: a crash after a batch committed in PostgreSQL and before its
// AckEvents leaves the batch pending; the restarted process delivers it again and inserts
// nothing twice. Also the statement itself: the same rows inserted twice insert once.
func TestOutboxFlusherRedelivery(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	dir := t.TempDir()
	s := openDiskStore(t, dir)
	appendTestEvents(t, s, 0, 30)
	cfg := outboxTestConfig()
	cfg.BatchSize = 10
	f, err := NewOutboxFlusher(s, pg, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	crash := errors.New("simulated crash before the ack")
	fault := func(lastSeq uint64) error {
		if lastSeq == 20 { // the second batch: committed in PostgreSQL, not acknowledged
			return crash
		}
		return nil
	}
	outboxAckFault.Store(&fault)
	t.Cleanup(func() { outboxAckFault.Store(nil) })
	if d, err := f.FlushOnce(ctx); d != 10 || !errors.Is(err, crash) {
		t.Fatalf("FlushOnce with a crash at the second ack = %d, %v", d, err)
	}
	outboxAckFault.Store(nil)
	if got, _ := readPGEvents(t, pg); len(got) != 20 {
		t.Fatalf("%d events in PostgreSQL after the crash, want 20 (two batches committed)", len(got))
	}
	if c := pendingEventCount(t, s); c != 20 {
		t.Fatalf("%d events pending after the crash, want 20 (the unacknowledged batch and the last)", c)
	}

	// The process restarts: the Store is reopened from disk, a new flusher delivers again.
	closeT(t, s)
	s = openDiskStore(t, dir)
	defer closeT(t, s)
	f, err = NewOutboxFlusher(s, pg, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Pending != 20 {
		t.Fatalf("after the restart: %+v", st)
	}
	if d, err := f.FlushOnce(ctx); d != 20 || err != nil {
		t.Fatalf("FlushOnce after the restart = %d, %v; want 20", d, err)
	}
	if st := f.Stats(); st.Delivered != 20 || st.Duplicates != 10 || st.Pending != 0 {
		t.Errorf("after the re-delivery: %+v; want 20 delivered of which 10 duplicates", st)
	}
	checkPGEvents(t, pg, 30)

	// The statement alone: a batch inserted twice is inserted once.
	rows := make([]eventRow, 5)
	for i := range rows {
		e := StoredEvent{Seq: uint64(i + 1), Event: outboxTestEvent(100 + i)}
		if rows[i], err = newEventRow(&e); err != nil {
			t.Fatal(err)
		}
	}
	for attempt, want := range []int{5, 0} {
		if n, err := pg.insertEvents(ctx, rows); n != want || err != nil {
			t.Errorf("insert %d of the same 5 events: %d inserted, %v; want %d", attempt+1, n, err, want)
		}
	}
}

// TestOutboxFlusherRefusedEvents: an event whose JSON object PostgreSQL refuses is stored
// with its payload as raw_b64 (its player kept); an event whose key is not text is rejected,
// logged and acknowledged; the rest of their batch is delivered.
func TestOutboxFlusherRefusedEvents(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	s := openDiskStore(t, t.TempDir())
	defer closeT(t, s)
	refusedJSON := []byte(`{"player": 9, "s": "\ud800"}`) // valid for Go, a lone surrogate for PostgreSQL
	evs := []Event{
		{Key: "ok-1", Kind: "loot", Cell: 1, Payload: []byte(`{"player": 1}`)},
		{Key: "surrogate", Kind: "death", Cell: 2, Epoch: 1, Payload: refusedJSON},
		{Key: "bad-\xff", Kind: "loot", Cell: 1},
		{Key: "bad-kind", Kind: "lo\x00ot", Cell: 1},
		{Key: "ok-2", Kind: "trade", Cell: 1 << 63, Epoch: 1<<63 + 1, Payload: []byte(`{}`)},
	}
	if err := s.AppendEvents(evs); err != nil {
		t.Fatal(err)
	}
	f, err := NewOutboxFlusher(s, pg, outboxTestConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := f.FlushOnce(ctx); d != 3 || err != nil {
		t.Fatalf("FlushOnce = %d, %v; want 3 delivered", d, err)
	}
	if st := f.Stats(); st.Delivered != 3 || st.Rejected != 2 || st.Pending != 0 || st.Failures != 0 {
		t.Errorf("Stats %+v; want 3 delivered, 2 rejected, nothing pending", st)
	}
	got, order := readPGEvents(t, pg)
	if fmt.Sprint(order) != "[ok-1 surrogate ok-2]" {
		t.Fatalf("stored %v", order)
	}
	sur := got["surrogate"]
	wantRaw := fmt.Appendf(nil, `{"raw_b64": %q}`, base64.StdEncoding.EncodeToString(refusedJSON))
	if !sameJSON(t, sur.payload, wantRaw) || deref(sur.player) != int64(9) || deref(sur.cell) != int64(2) || sur.kind != "death" {
		t.Errorf("the refused payload stored as %s, player %v, cell %v, kind %q", sur.payload, deref(sur.player), deref(sur.cell), sur.kind)
	}
	if e := got["ok-2"]; e.cell != nil || e.epoch != nil || e.player != nil {
		t.Errorf("cell and epoch above MaxInt64 stored as %v, %v (want NULL)", deref(e.cell), deref(e.epoch))
	}
}

// TestOutboxFlusherOutage: with PostgreSQL stopped, FlushOnce fails with ErrUnavailable and
// acknowledges nothing; Run keeps failing and backing off while the game appends more; once
// PostgreSQL is back, Run catches up, nothing lost and nothing twice; cancelling ctx ends Run.
func TestOutboxFlusherOutage(t *testing.T) {
	ctx := context.Background()
	cl := pgtest.NewCluster(t)
	pg, err := OpenPG(ctx, cl.URL(), DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	s := openDiskStore(t, t.TempDir())
	defer closeT(t, s)
	reg := prometheus.NewRegistry()
	cfg := outboxTestConfig()
	cfg.BatchSize = 200
	f, err := NewOutboxFlusher(s, pg, cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	appendTestEvents(t, s, 0, 500)
	if d, err := f.FlushOnce(ctx); d != 500 || err != nil {
		t.Fatalf("FlushOnce while up = %d, %v", d, err)
	}

	appendTestEvents(t, s, 500, 1200)
	cl.Stop()
	d, err := f.FlushOnce(ctx)
	if d != 0 || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("FlushOnce with PostgreSQL stopped = %d, %v; want 0, ErrUnavailable", d, err)
	}
	t.Logf("stopped: %v", err)
	if c := pendingEventCount(t, s); c != 700 {
		t.Fatalf("%d events pending after the failed FlushOnce, want all 700 (nothing acknowledged)", c)
	}
	if st := f.Stats(); st.Pending != 700 || st.Failures != 1 || st.Delivered != 500 {
		t.Errorf("while down: %+v", st)
	}
	if v := gaugeValue(t, reg, "meridian_outbox_pending"); v != 700 {
		t.Errorf("meridian_outbox_pending %v, want 700", v)
	}
	if v := counterValue(t, reg, "meridian_outbox_failures_total"); v != 1 {
		t.Errorf("meridian_outbox_failures_total %v, want 1", v)
	}
	if v := gaugeValue(t, reg, "meridian_outbox_lag_seconds"); v <= 0 {
		t.Errorf("meridian_outbox_lag_seconds %v with events pending", v)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	appendTestEvents(t, s, 1200, 1500) // the game goes on
	waitUntil(func() bool { return f.Stats().Failures >= 4 })
	if c := pendingEventCount(t, s); c != 1000 {
		t.Fatalf("%d events pending while Run fails, want 1000", c)
	}
	cl.Start()
	waitUntil(func() bool { return f.Stats().Pending == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	checkPGEvents(t, pg, 1500)
	if st := f.Stats(); st.Delivered != 1500 || st.Duplicates != 0 || st.Rejected != 0 {
		t.Errorf("after catching up: %+v", st)
	}
	if v := gaugeValue(t, reg, "meridian_outbox_lag_seconds"); v != 0 {
		t.Errorf("meridian_outbox_lag_seconds %v after catching up", v)
	}
}

// TestOutboxFlusherRun: Run delivers what is appended, round after round; cancelling its ctx
// returns nil; a closed Store ends it with ErrClosed.
func TestOutboxFlusherRun(t *testing.T) {
	pg := openTestPG(t)
	s := openDiskStore(t, t.TempDir())
	f, err := NewOutboxFlusher(s, pg, outboxTestConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for round := range 3 {
		appendTestEvents(t, s, round*50, (round+1)*50)
		waitUntil(func() bool { return f.Stats().Delivered == uint64((round+1)*50) })
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	checkPGEvents(t, pg, 150)

	go func() { done <- f.Run(context.Background()) }()
	closeT(t, s)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Run on a closed Store: %v, want ErrClosed", err)
	}
}

// waitUntil polls cond until it holds; a condition that never does is caught by go test's
// -timeout, not by a wall-clock bound here.
func waitUntil(cond func() bool) {
	for !cond() {
		time.Sleep(2 * time.Millisecond)
		runtime.Gosched()
	}
}

// TestOutboxBatchBounds: the byte bound of a batch read (the first event always comes), and
// the pending count from any known-acknowledged point.
func TestOutboxBatchBounds(t *testing.T) {
	s := openT(t, memOptions(nil))
	defer closeT(t, s)
	big := Event{Kind: "k", Payload: make([]byte, 100)}
	var evs []Event
	for i := range 5 {
		e := big
		e.Key = fmt.Sprint("k", i)
		evs = append(evs, e)
	}
	if err := s.AppendEvents(evs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ max, maxBytes, want int }{
		{10, 0, 5}, {3, 0, 3}, {10, 1, 1}, {10, 150, 1}, {10, 250, 2}, {10, 1 << 20, 5},
	} {
		got, err := s.pendingEvents(0, c.max, c.maxBytes)
		if err != nil || len(got) != c.want {
			t.Errorf("pendingEvents(0, %d, %d): %d events, %v; want %d", c.max, c.maxBytes, len(got), err, c.want)
		}
	}
	for after, want := range []uint64{5, 4, 3, 2, 1, 0, 0} {
		if n, err := s.pendingCount(uint64(after)); n != want || err != nil {
			t.Errorf("pendingCount(%d) = %d, %v; want %d", after, n, err, want)
		}
	}
	if err := s.AckEvents(3); err != nil {
		t.Fatal(err)
	}
	for _, after := range []uint64{0, 3} {
		if n, err := s.pendingCount(after); n != 2 || err != nil {
			t.Errorf("pendingCount(%d) after AckEvents(3) = %d, %v; want 2", after, n, err)
		}
	}
}

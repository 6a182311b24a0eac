package cellserver

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meridian-mmo/meridian/wire"
)

// tickRecorder is a Sink that records tick numbers and joins, and can stall once.
type tickRecorder struct {
	mu      sync.Mutex
	ticks   []wire.Tick
	joined  []Joined
	frames  map[ClientID]int
	stallAt int           // stall on this delivery (1-based; 0: never)
	stall   time.Duration // for this long
	w       *World
}

func (r *tickRecorder) Deliver(out *StepOutput) {
	r.mu.Lock()
	r.ticks = append(r.ticks, r.w.Tick())
	r.joined = append(r.joined, out.Joined...)
	for _, s := range out.Snapshots {
		r.frames[s.Client]++
	}
	n := len(r.ticks)
	r.mu.Unlock()
	if n == r.stallAt {
		time.Sleep(r.stall)
	}
}

func (r *tickRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ticks)
}

func runDriver(t *testing.T, rec *tickRecorder, until func() bool) (*Driver, *Metrics) {
	t.Helper()
	w := newTestWorld(t, nil)
	rec.w, rec.frames = w, map[ClientID]int{}
	m := NewMetrics(nil)
	d, err := NewDriver(w, DefaultDriverConfig(time.Now()), rec, m)
	if err != nil {
		t.Fatal(err)
	}
	d.Join(Join{Client: 7, Spawn: [2]float64{100, 100}})
	d.Input(ClientInput{Client: 99, Input: wire.Input{Seq: 1}}) // nobody: rejected and counted
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !until() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return d, m
}

// TestDriverTicks: the driver runs increasing ticks on the clock, applies what was queued
// between them (a join) and hands every output to the sink.
func TestDriverTicks(t *testing.T) {
	rec := &tickRecorder{}
	d, m := runDriver(t, rec, func() bool { return rec.count() >= 10 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := 1; i < len(rec.ticks); i++ {
		if rec.ticks[i] <= rec.ticks[i-1] {
			t.Fatalf("tick %d after tick %d", rec.ticks[i], rec.ticks[i-1])
		}
	}
	if len(rec.joined) != 1 || rec.joined[0].Client != 7 {
		t.Fatalf("joined %+v, want client 7 once", rec.joined)
	}
	if rec.frames[7] != len(rec.ticks) {
		t.Fatalf("client 7 got %d snapshots in %d ticks", rec.frames[7], len(rec.ticks))
	}
	if d.Tick() != rec.ticks[len(rec.ticks)-1] {
		t.Fatalf("driver tick %d, last delivered %d", d.Tick(), rec.ticks[len(rec.ticks)-1])
	}
	if got := testutil.ToFloat64(m.RejectedInputs.WithLabelValues("unknown_client")); got != 1 {
		t.Fatalf("meridian_rejected_inputs_total{reason=unknown_client} = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.TickDuration); got != 1 {
		t.Fatalf("tick histogram not collected (%d)", got)
	}
	if w := d.TakeWindow(); len(w.Durations) != len(rec.ticks) || w.Clients != 1 || w.InView != 1 {
		t.Fatalf("window: %d durations for %d ticks, %d clients, %d in view", len(w.Durations), len(rec.ticks), w.Clients, w.InView)
	}
}

// TestDriverCatchUpAndSkip: after a stall of many periods the driver runs MaxCatchUp late
// ticks back to back and skips the rest, and the skipped count is exactly the gap in the tick
// numbers it ran.
func TestDriverCatchUpAndSkip(t *testing.T) {
	rec := &tickRecorder{stallAt: 3, stall: 600 * time.Millisecond} // 12 periods
	d, m := runDriver(t, rec, func() bool { return rec.count() >= 12 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	gaps := 0
	for i := 1; i < len(rec.ticks); i++ {
		gaps += int(rec.ticks[i]-rec.ticks[i-1]) - 1
	}
	skipped := testutil.ToFloat64(m.TicksSkipped)
	if skipped < 1 {
		t.Fatalf("no ticks skipped after a 600 ms stall; ticks %v", rec.ticks)
	}
	if float64(gaps) != skipped {
		t.Fatalf("ticks %v have %d missing numbers, metric says %v skipped", rec.ticks, gaps, skipped)
	}
	if w := d.TakeWindow(); w.Skipped != gaps {
		t.Fatalf("window says %d skipped, ticks show %d", w.Skipped, gaps)
	}
}

func TestDriverConfigValidate(t *testing.T) {
	good := DefaultDriverConfig(time.Now())
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*DriverConfig){
		func(c *DriverConfig) { c.Epoch = time.Time{} },
		func(c *DriverConfig) { c.TickHz = 0 },
		func(c *DriverConfig) { c.MaxCatchUp = 0 },
	} {
		c := good
		bad(&c)
		if c.Validate() == nil {
			t.Fatalf("%+v validated", c)
		}
	}
}

// TestDriverJoinThenLeaveBeforeTick: a client that joins and leaves between two ticks never
// enters the world (Step handles leaves before joins, so a queued leave would strand it).
func TestDriverJoinThenLeaveBeforeTick(t *testing.T) {
	w := newTestWorld(t, nil)
	d, err := NewDriver(w, DefaultDriverConfig(time.Now()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Join(Join{Client: 1, Spawn: [2]float64{10, 10}})
	d.Join(Join{Client: 2, Spawn: [2]float64{20, 20}})
	d.Input(ClientInput{Client: 2, Input: wire.Input{Seq: 1, MoveX: 10}})
	d.Ack(ClientAck{Client: 2, Tick: 1})
	d.Leave(2)
	var in StepInput
	d.step(1, &in)
	if _, ok := w.ClientEntity(2); ok || len(w.clients) != 1 {
		t.Fatalf("client 2 left before the tick but is in the world (%d clients)", len(w.clients))
	}
	if got := testutil.ToFloat64(d.metrics.RejectedInputs.WithLabelValues("unknown_client")); got != 0 {
		t.Fatalf("the departed client's queued input/ack/leave were counted as rejections (%v)", got)
	}
	d.Leave(1)
	d.step(2, &in)
	if len(w.clients) != 0 || len(w.EntityIDs()) != 0 {
		t.Fatalf("after both left: %d clients, %d entities", len(w.clients), len(w.EntityIDs()))
	}
}

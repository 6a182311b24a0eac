package cellserver

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// This file is the edge of the cell server that touches the clock: the Driver runs World.Step
// on the cluster-wide 50 ms grid. The World itself never reads a clock.

// DriverConfig tunes the real-time loop.
type DriverConfig struct {
	// Epoch is the world epoch: tick n starts at Epoch + n × period (DESIGN.md §1a).
	Epoch time.Time
	// TickHz is the tick rate; it must equal the World's.
	TickHz int
	// MaxCatchUp is how many late ticks are run back to back after a stall; beyond it the
	// driver skips ahead to the current tick and counts the skipped ones.
	MaxCatchUp int
}

// DefaultDriverConfig runs at 20 Hz with the epoch one period before now, so the first tick
// is tick 1.
func DefaultDriverConfig(now time.Time) DriverConfig {
	const hz = 20
	return DriverConfig{Epoch: now.Add(-time.Second / hz), TickHz: hz, MaxCatchUp: 3}
}

// Validate names the first field out of bounds.
func (c DriverConfig) Validate() error {
	switch {
	case c.Epoch.IsZero():
		return fmt.Errorf("cellserver: DriverConfig.Epoch must be set")
	case c.TickHz < 1 || c.TickHz > 1000:
		return fmt.Errorf("cellserver: DriverConfig.TickHz (%d) must be in [1, 1000]", c.TickHz)
	case c.MaxCatchUp < 1:
		return fmt.Errorf("cellserver: DriverConfig.MaxCatchUp (%d) must be ≥ 1", c.MaxCatchUp)
	}
	return nil
}

// Sink receives each tick's output on the tick goroutine. It must copy what it keeps: the
// output's buffers are reused by the next Step.
type Sink interface {
	Deliver(out *StepOutput)
}

// Stepper is what a Driver runs: a World, or a cluster member's glue (Cluster), which steps
// its World itself.
type Stepper interface {
	Step(in *StepInput) *StepOutput
	Config() Config
}

// Driver runs a World in real time and queues the inputs that arrive between ticks.
type Driver struct {
	world   Stepper
	cfg     DriverConfig
	period  time.Duration
	sink    Sink
	metrics *Metrics

	mu      sync.Mutex // guards pending
	pending StepInput

	tick atomic.Uint32

	statsMu sync.Mutex // guards window
	window  TickWindow
}

// TickWindow summarises the ticks run since the last TakeWindow.
type TickWindow struct {
	Durations []time.Duration
	BytesOut  int
	Clients   int
	InView    int // entities in views, summed over clients, at the window's last tick
	Entities  int
	Overruns  int
	Skipped   int
}

// Quantile returns the q-quantile (0..1) of the window's tick durations (nearest rank).
func (w *TickWindow) Quantile(q float64) time.Duration {
	return DurationQuantile(w.Durations, q)
}

// DurationQuantile returns the q-quantile of ds by nearest rank; it sorts ds in place.
func DurationQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// NewDriver wires a World (or another Stepper) to a Sink. sink and metrics may be nil.
func NewDriver(w Stepper, cfg DriverConfig, sink Sink, metrics *Metrics) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TickHz != w.Config().TickHz {
		return nil, fmt.Errorf("cellserver: DriverConfig.TickHz (%d) must equal the World's TickHz (%d)", cfg.TickHz, w.Config().TickHz)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Driver{world: w, cfg: cfg, period: time.Second / time.Duration(cfg.TickHz), sink: sink, metrics: metrics}, nil
}

// Join queues a client join for the next tick.
func (d *Driver) Join(j Join) {
	d.mu.Lock()
	d.pending.Joins = append(d.pending.Joins, j)
	d.mu.Unlock()
}

// Leave queues a client's departure for the next tick. A client that joined and left since
// the last tick never enters the world: its queued join, inputs and acks are dropped here
// (Step handles leaves before joins, so queuing the leave would strand its entity).
func (d *Driver) Leave(c ClientID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := &d.pending
	if i := slices.IndexFunc(p.Joins, func(j Join) bool { return j.Client == c }); i >= 0 {
		p.Joins = slices.Delete(p.Joins, i, i+1)
		p.Inputs = slices.DeleteFunc(p.Inputs, func(in ClientInput) bool { return in.Client == c })
		p.Acks = slices.DeleteFunc(p.Acks, func(a ClientAck) bool { return a.Client == c })
		return
	}
	p.Leaves = append(p.Leaves, c)
}

// Input queues a client input for the next tick.
func (d *Driver) Input(in ClientInput) {
	d.mu.Lock()
	d.pending.Inputs = append(d.pending.Inputs, in)
	d.mu.Unlock()
}

// Ack queues a snapshot acknowledgement for the next tick.
func (d *Driver) Ack(a ClientAck) {
	d.mu.Lock()
	d.pending.Acks = append(d.pending.Acks, a)
	d.mu.Unlock()
}

// Tick is the last tick simulated.
func (d *Driver) Tick() wire.Tick { return wire.Tick(d.tick.Load()) }

// TakeWindow returns the statistics gathered since the previous call and starts a new window.
func (d *Driver) TakeWindow() TickWindow {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	w := d.window
	d.window = TickWindow{Durations: make([]time.Duration, 0, cap(w.Durations))}
	return w
}

// due is the tick number whose period contains t.
func (d *Driver) due(t time.Time) int64 {
	return int64(t.Sub(d.cfg.Epoch) / d.period)
}

// Run ticks until ctx ends. After a stall it runs up to MaxCatchUp late ticks back to back,
// then skips ahead; each Step longer than the period counts as an overrun.
func (d *Driver) Run(ctx context.Context) error {
	last := d.due(time.Now()) - 1
	if last < 0 {
		last = 0
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var in StepInput
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		due := d.due(time.Now())
		if behind := due - last; behind > int64(d.cfg.MaxCatchUp) {
			skipped := behind - int64(d.cfg.MaxCatchUp)
			d.metrics.TicksSkipped.Add(float64(skipped))
			d.statsMu.Lock()
			d.window.Skipped += int(skipped)
			d.statsMu.Unlock()
			last = due - int64(d.cfg.MaxCatchUp)
		}
		for t := last + 1; t <= due; t++ {
			d.step(wire.Tick(t), &in)
		}
		if due > last {
			last = due
		}
		timer.Reset(time.Until(d.cfg.Epoch.Add(time.Duration(last+1) * d.period)))
	}
}

// step runs one tick with everything queued since the previous one.
func (d *Driver) step(t wire.Tick, in *StepInput) {
	d.mu.Lock()
	d.pending, *in = StepInput{
		Joins: in.Joins[:0], Leaves: in.Leaves[:0], Inputs: in.Inputs[:0], Acks: in.Acks[:0],
	}, d.pending
	d.mu.Unlock()
	in.Tick = t

	start := time.Now()
	out := d.world.Step(in)
	took := time.Since(start)

	d.tick.Store(uint32(t))
	m := d.metrics
	m.TickDuration.Observe(took.Seconds())
	overrun := took > d.period
	if overrun {
		m.TickOverruns.Inc()
	}
	m.Entities.Set(float64(out.Entities))
	m.Clients.Set(float64(out.Clients))
	m.SnapshotBytes.Add(float64(out.BytesOut))
	m.CurrentTick.Set(float64(t))
	if out.SkippedSeqs > 0 {
		m.SkippedSeqs.Add(float64(out.SkippedSeqs))
	}
	out.Rejected.each(func(reason string, n int) {
		m.RejectedInputs.WithLabelValues(reason).Add(float64(n))
	})

	d.statsMu.Lock()
	d.window.Durations = append(d.window.Durations, took)
	d.window.BytesOut += out.BytesOut
	d.window.Clients = out.Clients
	d.window.InView = out.ViewEntities
	d.window.Entities = out.Entities
	if overrun {
		d.window.Overruns++
	}
	d.statsMu.Unlock()

	if d.sink != nil {
		d.sink.Deliver(out)
	}
}

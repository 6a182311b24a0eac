package client

import (
	"math"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

func TestInterpolated(t *testing.T) {
	cfg := DefaultConfig("127.0.0.1:1", []byte("t"))
	cfg.InterpolationDelay = 50 * time.Millisecond // one tick at 20 Hz
	c := &Client{cfg: cfg, history: make([]decoded, 8), welcome: wire.Welcome{TickHz: 20}}
	t0 := time.Unix(1000, 0)
	m := func(x float64) int32 { return wire.QuantisePos(x) }
	push := func(tick wire.Tick, at time.Time, slots ...wire.ViewSlot) {
		c.head = (c.head + 1) % len(c.history)
		c.count++
		c.history[c.head] = decoded{tick: tick, arrived: at, slots: slots}
	}
	// Entity 1 walks from x=0 to x=1 m between ticks 10 and 11; entity 2 leaves at 11;
	// entity 3 enters at 11.
	push(10, t0, wire.ViewSlot{ID: 1, State: wire.EntityState{X: m(0)}}, wire.ViewSlot{ID: 2, State: wire.EntityState{X: m(5)}})
	push(11, t0.Add(50*time.Millisecond), wire.ViewSlot{ID: 1, State: wire.EntityState{X: m(1), Z: m(2)}}, wire.ViewSlot{}, wire.ViewSlot{ID: 3, State: wire.EntityState{X: m(9)}})

	byID := func(es []Entity) map[wire.EntityID]Entity {
		out := map[wire.EntityID]Entity{}
		for _, e := range es {
			out[e.ID] = e
		}
		return out
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

	// Half a tick after tick 11 arrived, the render moment is tick 10.5.
	got := byID(c.Interpolated(t0.Add(75*time.Millisecond), nil))
	if len(got) != 2 {
		t.Fatalf("got %d entities, want 2 (entity 2 has left, 3 has entered): %+v", len(got), got)
	}
	if e := got[1]; !near(e.X, 0.5) || !near(e.Z, 1) {
		t.Fatalf("entity 1 at (%v, %v), want (0.5, 1)", e.X, e.Z)
	}
	if e := got[3]; !near(e.X, 9) {
		t.Fatalf("entity 3 at x=%v, want its only known position 9", e.X)
	}
	// Long after the newest snapshot, the newest view is shown as it is.
	got = byID(c.Interpolated(t0.Add(time.Second), nil))
	if e := got[1]; !near(e.X, 1) || !near(e.Z, 2) {
		t.Fatalf("entity 1 at (%v, %v), want (1, 2)", e.X, e.Z)
	}
	// Before any snapshot: nothing.
	empty := &Client{cfg: cfg, history: make([]decoded, 8)}
	if n := len(empty.Interpolated(t0, nil)); n != 0 {
		t.Fatalf("empty client shows %d entities", n)
	}
}

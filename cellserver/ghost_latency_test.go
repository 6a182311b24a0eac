package cellserver

import (
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestGhostStateIndependentOfLatency: ghost updates reach a neighbour 0, 1 or 2 ticks after the
// owner's tick (servers tick on one grid, but when a message arrives relative to the receiver's
// tick varies from tick to tick). The ghost must nevertheless be exactly where its owner has
// the entity at the same tick: otherwise every change of latency moves it a velocity step off
// its extrapolation, and every client seeing it pays an update record in its delta snapshot
// (clients near a border paid ~2x the bytes of clients seeing the same crowd as real entities).
func TestGhostStateIndependentOfLatency(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	// Server 1's entity walks along the border (never crosses it); server 2's client watches it.
	out := p.step(1, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{250, 100}}}})
	if len(out.Welcomes) != 1 {
		t.Fatalf("welcomes %+v", out.Welcomes)
	}
	e := out.Welcomes[0].Entity
	p.step(2, MemberInput{Opens: []SessionOpen{{Client: 6, Spawn: [2]float64{262, 110}}}})

	type sent struct {
		tick wire.Tick
		msgs []PeerIn
	}
	var queue []sent
	// Ticks between server 1's tick and the step of server 2 that receives its messages.
	latency := []wire.Tick{1, 0, 0, 1, 2, 1, 0, 2, 2, 0, 1, 1, 2, 0, 1}
	seq := uint32(0)
	checked := 0
	for i := range 40 {
		p.tick++
		in := MemberInput{}
		if i == 0 {
			seq++
			in.Inputs = []ClientInput{{Client: 5, Input: wire.Input{Seq: seq, MoveZ: 127}}}
		}
		p.step(1, in)
		queue = append(queue, sent{p.tick, p.from(1)})
		var msgs []PeerIn
		for len(queue) > 0 && queue[0].tick+latency[i%len(latency)] <= p.tick {
			msgs = append(msgs, queue[0].msgs...)
			queue = queue[1:]
		}
		p.step(2, MemberInput{}, msgs...)
		if !p.m[2].World().IsGhost(e) {
			continue // not ghosted there yet
		}
		want, _ := p.m[1].World().Entity(e)
		got, _ := p.m[2].World().Entity(e)
		if want.VZ <= 0 {
			t.Fatalf("tick %d: the entity does not move: %+v", p.tick, want)
		}
		if got != want {
			t.Errorf("tick %d (latency %d): ghost %+v, owner has %+v", p.tick, latency[i%len(latency)], got, want)
		}
		checked++
	}
	if checked < 30 {
		t.Fatalf("the ghost was checked at %d ticks only", checked)
	}
}

func TestGhostLead(t *testing.T) {
	for _, c := range []struct {
		t, of wire.Tick
		want  int
	}{{10, 9, 0}, {10, 10, -1}, {10, 12, -3}, {10, 5, 4}, {100, 1, 40}, {1, 100, -40}} {
		if got := ghostLead(c.t, c.of, 40); got != c.want {
			t.Errorf("ghostLead(%d, %d) = %d, want %d", c.t, c.of, got, c.want)
		}
	}
}

func TestExtrapolateMatchesMove(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.WorldMax = [2]float64{10, 10} })
	id := w.AddNPC([2]float64{5, 9}, [2]int32{-20, 30}, 1)
	w.Step(&StepInput{Tick: 1})
	s0, _ := w.Entity(id)
	for k := 1; k <= 10; k++ {
		w.Step(&StepInput{Tick: wire.Tick(1 + k)})
		st, _ := w.Entity(id)
		if got := w.extrapolate(s0, k); got != st {
			t.Fatalf("extrapolate(%d) = %+v, move() gives %+v", k, got, st)
		}
	}
	s1 := s0.Predict(1)
	if got := w.extrapolate(s1, -1); got != s0 {
		t.Fatalf("extrapolate(-1) = %+v, want %+v", got, s0)
	}
	bad := wire.EntityState{X: -1, VX: 5}
	if got := w.extrapolate(bad, 3); got != bad {
		t.Fatalf("an invalid state was extrapolated: %+v", got)
	}
}

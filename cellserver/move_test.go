package cellserver

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestVelocitySpeedClamp checks every possible intent, hacked ones included, at several
// speeds: the velocity never exceeds MaxSpeed, and it is the rounded scaled intent up to one
// unit per component.
func TestVelocitySpeedClamp(t *testing.T) {
	for _, speed := range []float64{0.3125, 1, 7, 7.3, 13.37, 100, 5000} {
		w := newTestWorld(t, func(c *Config) { c.MaxSpeed = speed })
		units := speed * wire.PosUnitsPerMetre / float64(w.cfg.TickHz)
		for mx := -128; mx <= 127; mx++ {
			for mz := -128; mz <= 127; mz++ {
				vx, vz := w.velocity(int8(mx), int8(mz))
				if l := math.Hypot(float64(vx), float64(vz)); l > units {
					t.Fatalf("speed %v: intent (%d,%d) → velocity (%d,%d) of length %v > %v units/tick",
						speed, mx, mz, vx, vz, l, units)
				}
				fx, fz := float64(max(mx, -127)), float64(max(mz, -127))
				scale := units / max(127, math.Hypot(fx, fz))
				if math.Abs(fx*scale-float64(vx)) > 1 || math.Abs(fz*scale-float64(vz)) > 1 {
					t.Fatalf("speed %v: intent (%d,%d) → (%d,%d), want about (%v,%v)", speed, mx, mz, vx, vz, fx*scale, fz*scale)
				}
				if (mx == 0 && vx != 0) || (mz == 0 && vz != 0) || (vx != 0 && (vx > 0) != (mx > 0)) || (vz != 0 && (vz > 0) != (mz > 0)) {
					t.Fatalf("speed %v: intent (%d,%d) → (%d,%d): wrong direction", speed, mx, mz, vx, vz)
				}
			}
		}
		if vx, _ := w.velocity(127, 0); vx != int32(math.Floor(units)) && vx != int32(math.Round(units)) {
			t.Errorf("speed %v: full intent → %d units/tick, want ⌊%v⌉", speed, vx, units)
		}
	}
}

// TestMovementExact drives random intents (hacked values included) in a small world and checks
// after every tick, for every entity, that the position moved by exactly the state's velocity
// or was stopped by a bound with that axis' velocity zeroed, and stays in bounds.
func TestMovementExact(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.WorldMax = [2]float64{30, 20}; c.MaxSpeed = 20 })
	rng := rand.New(rand.NewPCG(5, 5))
	var joins []Join
	for i := range 40 {
		joins = append(joins, Join{Client: ClientID(i), Spawn: [2]float64{rng.Float64() * 30, rng.Float64() * 20}})
	}
	w.AddNPC([2]float64{15, 10}, [2]int32{100, -37}, 2)
	w.Step(&StepInput{Tick: 1, Joins: joins})
	prev := map[wire.EntityID]wire.EntityState{}
	for _, id := range w.EntityIDs() {
		prev[id], _ = w.Entity(id)
	}
	seq := uint32(0)
	for tick := wire.Tick(2); tick < 300; tick++ {
		in := &StepInput{Tick: tick}
		seq++
		for i := range 40 {
			if rng.IntN(4) == 0 {
				in.Inputs = append(in.Inputs, ClientInput{Client: ClientID(i), Input: wire.Input{
					Seq: seq, MoveX: int8(rng.IntN(256) - 128), MoveZ: int8(rng.IntN(256) - 128), Yaw: uint16(rng.IntN(wire.YawSteps)),
				}})
			}
		}
		out := w.Step(in)
		if out.Rejected.Total() != 0 {
			t.Fatalf("tick %d: rejected %+v", tick, out.Rejected)
		}
		for _, id := range w.EntityIDs() {
			s, _ := w.Entity(id)
			p := prev[id]
			check := func(axis string, pos, prevPos, vel, lo, hi int32) {
				if pos < lo || pos > hi {
					t.Fatalf("tick %d: entity %d %s = %d outside [%d, %d]", tick, id, axis, pos, lo, hi)
				}
				if pos-prevPos != vel && !(vel == 0 && (pos == lo || pos == hi)) {
					t.Fatalf("tick %d: entity %d moved %s by %d with velocity %d", tick, id, axis, pos-prevPos, vel)
				}
			}
			check("x", s.X, p.X, s.VX, 0, 30*64)
			check("z", s.Z, p.Z, s.VZ, 0, 20*64)
			if float64(s.VX)*float64(s.VX)+float64(s.VZ)*float64(s.VZ) > w.speed*w.speed && s.Kind != 2 {
				t.Fatalf("tick %d: entity %d velocity (%d,%d) beyond MaxSpeed", tick, id, s.VX, s.VZ)
			}
			prev[id] = s
		}
	}
}

func TestInputRejections(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.MaxInputsPerTick = 4; c.InputGapTicks = 0 })
	out := w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{100, 100}}}})
	id := out.Joined[0].Entity
	in := func(seq uint32, mx int8, yaw uint16) ClientInput {
		return ClientInput{Client: 1, Input: wire.Input{Seq: seq, MoveX: mx, Yaw: yaw, Action: uint8(seq)}}
	}
	steps := []struct {
		inputs []ClientInput
		want   RejectCounts
		seq    uint32 // LastInputSeq afterwards
		vx     int32
		action uint8 // the last applied input's
	}{
		// Seq 0 is never valid; out of order within a tick is applied in seq order.
		{[]ClientInput{in(0, 127, 0), in(3, 127, 5), in(2, -127, 5)}, RejectCounts{ReplayedInput: 1}, 3, 22, 3},
		// Replays of applied inputs, a duplicate in the same tick, an unknown client.
		{[]ClientInput{in(3, -127, 0), in(2, 0, 0), in(4, 0, 0), in(4, 127, 0), {Client: 9}}, RejectCounts{ReplayedInput: 3, UnknownClient: 1}, 4, 0, 4},
		// Bad yaw: rejected, not applied; its sequence number is used up.
		{[]ClientInput{in(5, 127, wire.YawSteps)}, RejectCounts{BadYaw: 1}, 5, 0, 4},
		// More than MaxInputsPerTick: the first four in sequence apply now, the rest next tick.
		{[]ClientInput{in(10, 1, 0), in(6, 127, 0), in(7, 127, 0), in(8, 127, 0), in(9, 127, 0), in(11, -127, 0)}, RejectCounts{}, 9, 22, 9},
		{nil, RejectCounts{}, 11, -22, 11},
		// No input: the velocity persists.
		{nil, RejectCounts{}, 11, -22, 11},
	}
	for i, st := range steps {
		out := w.Step(&StepInput{Tick: wire.Tick(i + 2), Inputs: st.inputs})
		if out.Rejected != st.want {
			t.Errorf("step %d: Rejected = %+v, want %+v", i, out.Rejected, st.want)
		}
		if h := headerOf(t, snapshotFor(out, 1)); h.LastInputSeq != st.seq {
			t.Errorf("step %d: LastInputSeq = %d, want %d", i, h.LastInputSeq, st.seq)
		}
		if s, _ := w.Entity(id); s.VX != st.vx || s.Action != st.action {
			t.Errorf("step %d: VX %d action %d, want %d %d", i, s.VX, s.Action, st.vx, st.action)
		}
	}
}

// randomScenario produces, from a seed, a stream of step inputs with joins, leaves, inputs
// (hacked ones included), acks (some lost, some delayed, some bogus) and tick gaps.
type randomScenario struct {
	rng     *rand.Rand
	tick    wire.Tick
	next    ClientID
	clients []ClientID
	seq     map[ClientID]uint32
	sent    map[ClientID][]wire.Tick // snapshot ticks not yet acked
}

func newRandomScenario(seed uint64) *randomScenario {
	return &randomScenario{rng: rand.New(rand.NewPCG(seed, 99)), seq: map[ClientID]uint32{}, sent: map[ClientID][]wire.Tick{}}
}

func (s *randomScenario) step(prevOut *StepOutput) *StepInput {
	r := s.rng
	if prevOut != nil {
		for _, snap := range prevOut.Snapshots {
			s.sent[snap.Client] = append(s.sent[snap.Client], s.tick)
		}
	}
	s.tick++
	if r.IntN(20) == 0 {
		s.tick += wire.Tick(1 + r.IntN(3)) // the driver skipped ticks
	}
	in := &StepInput{Tick: s.tick}
	for range r.IntN(4) {
		s.next++
		in.Joins = append(in.Joins, Join{Client: s.next, Spawn: [2]float64{r.Float64() * 300, r.Float64() * 300}, Kind: uint8(r.IntN(3))})
		s.clients = append(s.clients, s.next)
	}
	if len(s.clients) > 3 && r.IntN(5) == 0 {
		i := r.IntN(len(s.clients))
		in.Leaves = append(in.Leaves, s.clients[i])
		delete(s.sent, s.clients[i])
		s.clients = slices.Delete(s.clients, i, i+1)
	}
	for _, c := range s.clients {
		if r.IntN(10) < 7 {
			s.seq[c]++
			in.Inputs = append(in.Inputs, ClientInput{Client: c, Input: wire.Input{
				Seq: s.seq[c], MoveX: int8(r.IntN(256) - 128), MoveZ: int8(r.IntN(256) - 128),
				Yaw: uint16(r.IntN(wire.YawSteps + 4)), Action: uint8(r.IntN(3)),
			}})
		}
		if r.IntN(30) == 0 { // a replay
			in.Inputs = append(in.Inputs, ClientInput{Client: c, Input: wire.Input{Seq: s.seq[c]}})
		}
		if ts := s.sent[c]; len(ts) > 0 && r.IntN(3) != 0 { // ack a recent snapshot, or lose it
			k := max(0, len(ts)-1-r.IntN(3))
			in.Acks = append(in.Acks, ClientAck{Client: c, Tick: ts[k]})
			s.sent[c] = ts[k+1:]
		}
		if r.IntN(50) == 0 {
			in.Acks = append(in.Acks, ClientAck{Client: c, Tick: s.tick + 5}) // future
		}
	}
	return in
}

// TestDeterminism runs two worlds from the same seed on the same inputs for 200 ticks and
// requires identical outputs, frames byte for byte.
func TestDeterminism(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WorldMax = [2]float64{300, 300}
	cfg.MaxViewSlots = 24 // exercise the capacity path too
	mk := func() *World {
		w, err := NewWorld(cfg, rand.New(rand.NewPCG(42, 42)))
		if err != nil {
			t.Fatal(err)
		}
		w.AddNPC([2]float64{150, 150}, [2]int32{3, 4}, 9)
		return w
	}
	a, b := mk(), mk()
	sa, sb := newRandomScenario(7), newRandomScenario(7)
	var oa, ob *StepOutput
	var frames, rejected int
	for range 200 {
		ia, ib := sa.step(oa), sb.step(ob)
		oa, ob = a.Step(ia), b.Step(ib)
		if oa.Rejected != ob.Rejected || oa.BytesOut != ob.BytesOut || oa.Entities != ob.Entities ||
			oa.Clients != ob.Clients || len(oa.Snapshots) != len(ob.Snapshots) || !slices.Equal(oa.Joined, ob.Joined) {
			t.Fatalf("tick %d: outputs differ: %+v vs %+v", ia.Tick, oa, ob)
		}
		for i := range oa.Snapshots {
			if oa.Snapshots[i].Client != ob.Snapshots[i].Client || !bytes.Equal(oa.Snapshots[i].Frame, ob.Snapshots[i].Frame) {
				t.Fatalf("tick %d: snapshot %d differs", ia.Tick, i)
			}
			frames++
		}
		if oa.EncodeErrors != 0 {
			t.Fatalf("tick %d: %d encode errors", ia.Tick, oa.EncodeErrors)
		}
		rejected += oa.Rejected.Total()
	}
	if frames < 1000 || rejected == 0 {
		t.Errorf("scenario too tame: %d frames, %d rejections", frames, rejected)
	}
	if !slices.Equal(a.EntityIDs(), b.EntityIDs()) {
		t.Error("entity ids differ")
	}
}

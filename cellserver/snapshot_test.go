package cellserver

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// simClient is a client of the end-to-end test: it decodes its snapshots with the wire
// package's client-side ring and acks them through a lossy, delaying network.
type simClient struct {
	id       ClientID
	ring     wire.ViewRing
	snap     wire.Snapshot
	seq      uint32
	acks     []pendingAck
	newest   wire.Tick // newest ack delivered to the server
	neverAck bool
}

type pendingAck struct {
	at   wire.Tick // delivered with the step of this tick or later
	tick wire.Tick
}

// currentView is the world's view of client id as the wire would carry it.
func currentView(w *World, id ClientID) []wire.ViewSlot {
	var v []wire.ViewSlot
	for _, e := range viewOf(w, id) {
		s := wire.ViewSlot{ID: e}
		if e != 0 {
			s.State, _ = w.Entity(e)
		}
		v = append(v, s)
	}
	return v
}

// TestSnapshotsEndToEnd decodes every snapshot of every client of a busy world on simulated
// clients that ack through a lossy network, and checks that each decoded view equals the
// world's state of the entities in view exactly, that each frame is byte for byte the
// reference encoding (wire.AppendSnapshot against the client's baseline), and that the
// server picks the newest usable ack as baseline.
func TestSnapshotsEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name           string
		slots, history int
		seed           uint64
	}{
		{"slots=40 history=16", 40, 16, 11},
		{"slots=5 history=2", 5, 2, 12},
		{"slots=256 history=32", 256, 32, 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSnapshotsEndToEnd(t, tc.slots, tc.history, tc.seed)
		})
	}
}

func testSnapshotsEndToEnd(t *testing.T, slots, history int, seed uint64) {
	w := newTestWorld(t, func(c *Config) {
		c.WorldMax = [2]float64{200, 200}
		c.AOIEnterRadius, c.AOILeaveRadius = 40, 50
		c.MaxViewSlots = slots
		c.HistoryTicks = history
	})
	rng := rand.New(rand.NewPCG(seed, 12))
	clients := map[ClientID]*simClient{}
	var order []ClientID
	next := ClientID(0)
	for range 8 {
		w.AddNPC([2]float64{rng.Float64() * 200, rng.Float64() * 200}, [2]int32{int32(rng.IntN(41) - 20), int32(rng.IntN(41) - 20)}, 5)
	}
	var deltaBytes, deltaFrames, fullBytes, fullFrames int
	tick := wire.Tick(0)
	for step := 0; step < 300; step++ {
		tick++
		if rng.IntN(25) == 0 {
			tick += 2 // skipped ticks
		}
		in := &StepInput{Tick: tick}
		if len(order) > 10 && rng.IntN(8) == 0 {
			i := rng.IntN(len(order))
			in.Leaves = append(in.Leaves, order[i])
			delete(clients, order[i])
			order = slices.Delete(order, i, i+1)
		}
		if len(order) < 40 && rng.IntN(2) == 0 {
			next++
			in.Joins = append(in.Joins, Join{Client: next, Spawn: [2]float64{rng.Float64() * 200, rng.Float64() * 200}})
			clients[next] = &simClient{id: next, neverAck: next%7 == 0}
			order = append(order, next)
		}
		var stale int
		for _, id := range order {
			c := clients[id]
			if rng.IntN(3) == 0 {
				c.seq++
				in.Inputs = append(in.Inputs, ClientInput{Client: id, Input: wire.Input{
					Seq: c.seq, MoveX: int8(rng.IntN(255) - 127), MoveZ: int8(rng.IntN(255) - 127),
					Yaw: uint16(rng.IntN(wire.YawSteps)), Action: uint8(rng.IntN(2)),
				}})
			}
			kept := c.acks[:0]
			for _, a := range c.acks {
				if a.at <= tick {
					in.Acks = append(in.Acks, ClientAck{Client: id, Tick: a.tick})
					switch {
					case a.tick <= c.newest: // ignored
					case int(tick-a.tick) >= history:
						stale++
					default:
						c.newest = a.tick
					}
				} else {
					kept = append(kept, a)
				}
			}
			c.acks = kept
		}
		out := w.Step(in)
		if out.Rejected != (RejectCounts{StaleAck: stale}) || out.EncodeErrors != 0 {
			t.Fatalf("tick %d: rejected %+v, %d encode errors", tick, out.Rejected, out.EncodeErrors)
		}
		if len(out.Snapshots) != len(order) {
			t.Fatalf("tick %d: %d snapshots for %d clients", tick, len(out.Snapshots), len(order))
		}
		for _, s := range out.Snapshots {
			c := clients[s.Client]
			typ, payload, rest, err := wire.SplitFrame(s.Frame)
			if err != nil || typ != wire.MsgSnapshot || len(rest) != 0 {
				t.Fatalf("tick %d client %d: frame: %v %v %d", tick, c.id, typ, err, len(rest))
			}
			h, err := wire.PeekSnapshotHeader(payload)
			if err != nil {
				t.Fatal(err)
			}
			wantBase := c.newest
			if wantBase != 0 && int(tick-wantBase) >= w.cfg.HistoryTicks {
				wantBase = 0
			}
			if h.ServerTick != tick || h.BaselineTick != wantBase || h.LastInputSeq != c.seq {
				t.Fatalf("tick %d client %d: header %+v, want baseline %d, input seq %d", tick, c.id, h, wantBase, c.seq)
			}
			cur := currentView(w, c.id)
			var base []wire.ViewSlot
			if h.BaselineTick != 0 {
				var ok bool
				if base, ok = c.ring.Get(h.BaselineTick); !ok {
					t.Fatalf("tick %d client %d: baseline %d not in the client's ring", tick, c.id, h.BaselineTick)
				}
			}
			ref, err := wire.AppendSnapshot(nil, h, base, cur)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ref, s.Frame) {
				t.Fatalf("tick %d client %d: frame differs from the reference encoding\n got %x\nwant %x", tick, c.id, s.Frame, ref)
			}
			if err := c.ring.Decode(payload, &c.snap); err != nil {
				t.Fatalf("tick %d client %d: decode: %v", tick, c.id, err)
			}
			if !slices.Equal(c.snap.Slots, cur) {
				t.Fatalf("tick %d client %d: decoded view\n got %v\nwant %v", tick, c.id, c.snap.Slots, cur)
			}
			if h.BaselineTick == 0 {
				fullBytes += len(s.Frame)
				fullFrames++
			} else {
				deltaBytes += len(s.Frame)
				deltaFrames++
			}
			if !c.neverAck && rng.IntN(4) != 0 { // a quarter of acks are lost
				c.acks = append(c.acks, pendingAck{at: tick + 1 + wire.Tick(rng.IntN(3)), tick: tick})
			}
		}
	}
	if deltaFrames < 1000 || fullFrames < 200 {
		t.Fatalf("scenario too tame: %d delta frames, %d full", deltaFrames, fullFrames)
	}
	t.Logf("mean frame: delta %d B, full %d B", deltaBytes/deltaFrames, fullBytes/fullFrames)
	if deltaBytes/deltaFrames*2 > fullBytes/fullFrames {
		t.Errorf("delta frames (%d B) not much smaller than full ones (%d B)", deltaBytes/deltaFrames, fullBytes/fullFrames)
	}
}

func TestAckValidation(t *testing.T) {
	w := newTestWorld(t, nil)
	w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{10, 10}}}})
	steps := []struct {
		acks     []ClientAck
		joins    []Join
		want     RejectCounts
		baseline wire.Tick // of client 1's next snapshot
	}{
		{[]ClientAck{{1, 1}}, []Join{{Client: 2, Spawn: [2]float64{10, 10}}}, RejectCounts{}, 1}, // tick 2
		{[]ClientAck{{1, 9}, {2, 1}, {7, 2}}, nil, RejectCounts{BadAck: 2, UnknownClient: 1}, 1}, // future; before 2 joined; unknown
		{[]ClientAck{{1, 3}, {1, 2}}, nil, RejectCounts{}, 3},                                    // an older ack after a newer one is ignored
		{[]ClientAck{{1, 4}, {1, 4}}, nil, RejectCounts{}, 4},                                    // duplicates are ignored
	}
	for i, st := range steps {
		tick := wire.Tick(i + 2)
		out := w.Step(&StepInput{Tick: tick, Acks: st.acks, Joins: st.joins})
		if out.Rejected != st.want {
			t.Errorf("tick %d: Rejected = %+v, want %+v", tick, out.Rejected, st.want)
		}
		if h := headerOf(t, snapshotFor(out, 1)); h.BaselineTick != st.baseline {
			t.Errorf("tick %d: baseline %d, want %d", tick, h.BaselineTick, st.baseline)
		}
	}
	// Ticks pass without acks: the baseline ages out of the window and snapshots become full;
	// an ack of a tick beyond the window is stale.
	for tick := wire.Tick(6); tick < 6+32; tick++ {
		out := w.Step(&StepInput{Tick: tick})
		want := wire.Tick(4)
		if tick-4 >= 32 {
			want = 0
		}
		if h := headerOf(t, snapshotFor(out, 1)); h.BaselineTick != want {
			t.Fatalf("tick %d: baseline %d, want %d", tick, h.BaselineTick, want)
		}
	}
	out := w.Step(&StepInput{Tick: 40, Acks: []ClientAck{{1, 6}, {2, 9}}})
	if out.Rejected != (RejectCounts{StaleAck: 1}) {
		t.Errorf("Rejected = %+v, want one stale ack", out.Rejected)
	}
	if h := headerOf(t, snapshotFor(out, 2)); h.BaselineTick != 9 {
		t.Errorf("client 2 baseline %d, want 9", h.BaselineTick)
	}
}

// TestViewLogMemory checks that a client's view history follows its acks: with acks two ticks
// behind only a few views are live, and without acks the buffer stays bounded by the window.
func TestViewLogMemory(t *testing.T) {
	w, p := benchWorld(t, 400)
	noAck := map[ClientID]bool{}
	for _, id := range p.ids[:50] {
		noAck[id] = true
	}
	for tick := wire.Tick(1); tick <= 200; tick++ {
		in := p.step(tick)
		in.Acks = slices.DeleteFunc(in.Acks, func(a ClientAck) bool { return noAck[a.Client] })
		w.Step(in)
	}
	for i := range w.clients {
		c := &w.clients[i]
		l := &c.log
		view := len(l.view())
		limit := 16 * (view + 16) // live: ~3 views; growth by doubling and compaction at half

		if noAck[c.id] {
			limit = 4 * w.cfg.HistoryTicks * (view + 16)
		}
		if cap(l.data) > limit {
			t.Errorf("client %d (acks: %v): log buffer capacity %d for a view of %d slots, want ≤ %d",
				c.id, !noAck[c.id], cap(l.data), view, limit)
		}
	}
}

// TestViewLogModel drives a viewLog with random views, acks and tick gaps and compares it
// with a model that keeps every view: whatever get returns is what was recorded, and every
// tick the server may still delta against is returned.
func TestViewLogModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const history = 8
	l := newViewLog(history)
	model := map[wire.Tick][]int32{}
	var cur []int32
	acked := wire.Tick(0)
	tick := wire.Tick(0)
	for range 5000 {
		tick += wire.Tick(1 + rng.IntN(2)*rng.IntN(3))
		l.begin(tick)
		if !slices.Equal(l.view(), cur) {
			t.Fatalf("tick %d: begin copied %v, want %v", tick, l.view(), cur)
		}
		for s, r := range l.view() {
			if r != noRow && rng.IntN(5) == 0 {
				l.vacate(s)
			}
		}
		for range rng.IntN(4) {
			l.put(int32(rng.IntN(1000)))
		}
		l.end()
		cur = slices.Clone(l.view())
		if n := len(cur); n > 0 && cur[n-1] == noRow {
			t.Fatalf("tick %d: view not trimmed: %v", tick, cur)
		}
		occupied := 0
		for _, r := range cur {
			if r != noRow {
				occupied++
			}
		}
		if occupied != l.n {
			t.Fatalf("tick %d: n = %d, %d occupied", tick, l.n, occupied)
		}
		model[tick] = cur
		if rng.IntN(3) != 0 {
			a := tick - wire.Tick(rng.IntN(4))
			if _, ok := model[a]; ok && a > acked && int(tick-a) < history {
				if _, ok := l.get(a); !ok {
					t.Fatalf("tick %d: get(%d) of a live tick failed", tick, a)
				}
				acked = a
				l.release(a)
			}
		}
		for t0, v := range model {
			got, ok := l.get(t0)
			switch {
			case ok && !slices.Equal(got, v):
				t.Fatalf("tick %d: get(%d) = %v, want %v", tick, t0, got, v)
			case !ok && t0 >= acked && int(tick-t0) < history:
				t.Fatalf("tick %d: get(%d) failed; acked %d", tick, t0, acked)
			case int(tick-t0) > 4*history:
				delete(model, t0)
			}
		}
	}
}

package cellserver

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// newTestWorld returns a world of the default config edited by edit (may be nil).
func newTestWorld(tb testing.TB, edit func(*Config)) *World {
	tb.Helper()
	cfg := DefaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	w, err := NewWorld(cfg, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

// viewOf returns the entity ids of a client's current view, slot by slot (0: empty).
func viewOf(w *World, id ClientID) []wire.EntityID {
	i, ok := w.byClient[id]
	if !ok {
		return nil
	}
	var ids []wire.EntityID
	for _, r := range w.clients[i].log.view() {
		if r == noRow {
			ids = append(ids, 0)
		} else {
			ids = append(ids, w.st.ids[r])
		}
	}
	return ids
}

// snapshotFor returns the frame a step produced for a client.
func snapshotFor(out *StepOutput, id ClientID) []byte {
	for _, s := range out.Snapshots {
		if s.Client == id {
			return s.Frame
		}
	}
	return nil
}

// headerOf decodes a snapshot frame's header.
func headerOf(tb testing.TB, frame []byte) wire.SnapshotHeader {
	tb.Helper()
	typ, payload, rest, err := wire.SplitFrame(frame)
	if err != nil || typ != wire.MsgSnapshot || len(rest) != 0 {
		tb.Fatalf("SplitFrame: type %v, %d bytes left, %v", typ, len(rest), err)
	}
	h, err := wire.PeekSnapshotHeader(payload)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestJoinLeave(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.MaxClients = 3; c.EntityIDBase = 1 << 40 })
	out := w.Step(&StepInput{Tick: 5, Joins: []Join{
		{Client: 10, Spawn: [2]float64{100, 100}, Kind: 1},
		{Client: 11, Spawn: [2]float64{-50, 1e9}}, // clamped into the world
		{Client: 10, Spawn: [2]float64{1, 1}},     // duplicate
		{Client: 12, Spawn: [2]float64{math.NaN(), 1}},
		{Client: 13, Spawn: [2]float64{110, 100}},
		{Client: 14, Spawn: [2]float64{1, 1}}, // full
	}})
	if got, want := out.Rejected, (RejectCounts{DuplicateJoin: 1, BadSpawn: 1, ServerFull: 1}); got != want {
		t.Errorf("Rejected = %+v, want %+v", got, want)
	}
	if got, want := out.Refused, []Refused{{12, wire.ReasonProtocolError}, {14, wire.ReasonServerFull}}; !slices.Equal(got, want) {
		t.Errorf("Refused = %+v, want %+v", got, want)
	}
	if len(out.Joined) != 3 || out.Clients != 3 || out.Entities != 3 || len(out.Snapshots) != 3 {
		t.Fatalf("joined %d, clients %d, entities %d, snapshots %d; want 3 each",
			len(out.Joined), out.Clients, out.Entities, len(out.Snapshots))
	}
	j := out.Joined[0]
	if j.Client != 10 || j.Entity != 1<<40+1 || j.Welcome.Entity != j.Entity || j.Welcome.ServerTick != 5 ||
		j.Welcome.TickHz != 20 || j.Welcome.Version != wire.ProtocolVersion ||
		j.Welcome.WorldMax != [2]int32{16384 * 64, 16384 * 64} {
		t.Errorf("Joined[0] = %+v", j)
	}
	if err := j.Welcome.Validate(); err != nil {
		t.Errorf("Welcome.Validate: %v", err)
	}
	if s, _ := w.Entity(out.Joined[1].Entity); s.X != 0 || s.Z != 16384*64 {
		t.Errorf("clamped spawn = (%d, %d), want (0, %d)", s.X, s.Z, 16384*64)
	}
	if s, _ := w.Entity(j.Entity); s.Kind != 1 || s.X != 6400 {
		t.Errorf("entity state %+v", s)
	}
	// Clients 10 and 13 see each other (10 m apart), 11 only itself; own entity in slot 0.
	if v := viewOf(w, 10); !slices.Equal(v, []wire.EntityID{j.Entity, out.Joined[2].Entity}) {
		t.Errorf("view of 10 = %v", v)
	}
	if v := viewOf(w, 11); !slices.Equal(v, []wire.EntityID{out.Joined[1].Entity}) {
		t.Errorf("view of 11 = %v", v)
	}
	for _, s := range out.Snapshots {
		if h := headerOf(t, s.Frame); h.ServerTick != 5 || h.BaselineTick != 0 {
			t.Errorf("first snapshot header %+v", h)
		}
	}

	// Leave and rejoin under the same client id in one step: a new entity, ids never reused.
	first := j.Entity
	out = w.Step(&StepInput{Tick: 6, Leaves: []ClientID{10, 99}, Joins: []Join{{Client: 10, Spawn: [2]float64{100, 100}}}})
	if out.Rejected != (RejectCounts{UnknownClient: 1}) {
		t.Errorf("Rejected = %+v", out.Rejected)
	}
	if len(out.Joined) != 1 || out.Joined[0].Entity != 1<<40+4 {
		t.Fatalf("rejoin: %+v", out.Joined)
	}
	if _, ok := w.Entity(first); ok {
		t.Error("the departed client's entity still exists")
	}
	if got := w.EntityIDs(); !slices.Equal(got, []wire.EntityID{1<<40 + 2, 1<<40 + 3, 1<<40 + 4}) {
		t.Errorf("EntityIDs = %v", got)
	}
	if v := viewOf(w, 13); len(v) != 2 || v[1] != 1<<40+4 {
		t.Errorf("view of 13 after 10 rejoined = %v (old entity must have left, new one entered)", v)
	}
	if e, ok := w.ClientEntity(10); !ok || e != 1<<40+4 {
		t.Errorf("ClientEntity(10) = %d, %v", e, ok)
	}
}

func TestStepPanicsOnOldTick(t *testing.T) {
	w := newTestWorld(t, nil)
	w.Step(&StepInput{Tick: 3})
	for _, tick := range []wire.Tick{3, 2} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Step(tick %d) after tick 3 did not panic", tick)
				}
			}()
			w.Step(&StepInput{Tick: tick})
		}()
	}
	w.Step(&StepInput{Tick: 10}) // gaps are fine
	if w.Tick() != 10 {
		t.Errorf("Tick() = %d", w.Tick())
	}
}

func TestNPCs(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.WorldMax = [2]float64{100, 100} })
	id := w.AddNPC([2]float64{50, 50}, [2]int32{64, -1 << 20}, 7)
	w.Step(&StepInput{Tick: 1})
	s, ok := w.Entity(id)
	if !ok || s.X != 51*64 || s.Z != 0 || s.VX != 64 || s.VZ != 0 || s.Kind != 7 {
		t.Errorf("NPC after one tick: %+v (velocity clamped to ±65536, then stopped by the bound)", s)
	}
	out := w.Step(&StepInput{Tick: 2, Joins: []Join{{Client: 1, Spawn: [2]float64{50, 50}}}})
	if w.SetNPCVelocity(out.Joined[0].Entity, [2]int32{1, 1}) || w.RemoveNPC(out.Joined[0].Entity) {
		t.Error("SetNPCVelocity/RemoveNPC accepted a client's entity")
	}
	if !w.SetNPCVelocity(id, [2]int32{0, 0}) || !w.RemoveNPC(id) || w.RemoveNPC(id) {
		t.Error("SetNPCVelocity/RemoveNPC of the NPC")
	}
	w.Step(&StepInput{Tick: 3})
	if v := viewOf(w, 1); len(v) != 1 {
		t.Errorf("view after the NPC was removed = %v", v)
	}
}

func TestRejectCountsEach(t *testing.T) {
	r := RejectCounts{UnknownClient: 1, BadYaw: 2, BadSpawn: 3}
	got := map[string]int{}
	r.each(func(reason string, n int) { got[reason] = n })
	if len(got) != 3 || got["unknown_client"] != 1 || got["bad_yaw"] != 2 || got["bad_spawn"] != 3 || r.Total() != 6 {
		t.Errorf("each reported %v, Total %d", got, r.Total())
	}
}

package cellserver

import (
	"errors"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestGhostSeenAndOverwritten: a ghost enters a nearby client's view like any entity, its
// owner's updates overwrite what this World extrapolated, and it is neither exported, listed
// as real, counted as an entity, nor controllable.
func TestGhostSeenAndOverwritten(t *testing.T) {
	w := newTestWorld(t, nil)
	w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{100, 100}}}})
	g := Ghost{ID: 1 << 50, State: wire.EntityState{X: wire.QuantisePos(110), Z: wire.QuantisePos(100), VX: 5, Kind: 3}}
	if err := w.UpsertGhost(g); err != nil {
		t.Fatal(err)
	}
	out := w.Step(&StepInput{Tick: 2})
	if !slices.Contains(viewOf(w, 1), g.ID) {
		t.Fatalf("the ghost is not in the nearby client's view %v", viewOf(w, 1))
	}
	if out.Entities != 1 || !slices.Equal(w.EntityIDs(), []wire.EntityID{1}) || !slices.Equal(w.GhostIDs(), []wire.EntityID{g.ID}) {
		t.Fatalf("entities %d, real %v, ghosts %v", out.Entities, w.EntityIDs(), w.GhostIDs())
	}
	if st, _ := w.Entity(g.ID); st.X != g.State.X+5 {
		t.Fatalf("the ghost was not extrapolated between updates: %+v", st)
	}
	g.State.X, g.State.VX = wire.QuantisePos(120), 0
	if err := w.UpsertGhost(g); err != nil {
		t.Fatal(err)
	}
	w.Step(&StepInput{Tick: 3})
	if st, _ := w.Entity(g.ID); st != g.State {
		t.Fatalf("the owner's update did not win: %+v, want %+v", st, g.State)
	}
	if exp := w.Export(nil, g.ID); len(exp) != 0 || w.SetNPCVelocity(g.ID, [2]int32{1, 1}) || w.RemoveNPC(g.ID) {
		t.Fatal("a ghost was exported or treated as an NPC")
	}
	if err := w.UpsertGhost(Ghost{ID: 1, State: g.State}); !errors.Is(err, ErrNotGhost) {
		t.Fatalf("ghost over a real entity: %v, want ErrNotGhost", err)
	}
	if !w.RemoveGhost(g.ID) || w.RemoveGhost(g.ID) || w.IsGhost(g.ID) {
		t.Fatal("RemoveGhost")
	}
	w.Step(&StepInput{Tick: 4})
	if slices.Contains(viewOf(w, 1), g.ID) {
		t.Fatal("a removed ghost is still in view")
	}
}

// TestPromoteDemoteInPlace: promoting a ghost keeps the entity in the same view slot of every
// client that saw it (no leave and enter at a handoff), and its controlling client continues
// from its last input; demoting keeps it visible here while its client leaves.
func TestPromoteDemoteInPlace(t *testing.T) {
	w := newTestWorld(t, nil)
	w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{100, 100}}}})
	id := wire.EntityID(1 << 50)
	if err := w.UpsertGhost(Ghost{ID: id, State: wire.EntityState{X: wire.QuantisePos(105), Z: wire.QuantisePos(100)}}); err != nil {
		t.Fatal(err)
	}
	w.Step(&StepInput{Tick: 2, Acks: nil})
	before := viewOf(w, 1)
	st := wire.EntityState{X: wire.QuantisePos(106), Z: wire.QuantisePos(100)}
	if err := w.Promote(Exported{ID: id, State: st, Client: 9, LastSeq: 41, LastTick: 2}); err != nil {
		t.Fatal(err)
	}
	out := w.Step(&StepInput{Tick: 3, Inputs: []ClientInput{{Client: 9, Input: wire.Input{Seq: 41, MoveX: 127}}, {Client: 9, Input: wire.Input{Seq: 42, MoveZ: 127}}}})
	if after := viewOf(w, 1); !slices.Equal(before, after) {
		t.Fatalf("client 1's view changed at the promotion: %v → %v", before, after)
	}
	if w.IsGhost(id) || out.Entities != 2 || out.Rejected.ReplayedInput != 1 {
		t.Fatalf("after promotion: ghost %v, entities %d, rejections %+v", w.IsGhost(id), out.Entities, out.Rejected)
	}
	if s, _ := w.Entity(id); s.VZ <= 0 || s.VX != 0 {
		t.Fatalf("input 42 not applied after the promotion: %+v", s)
	}

	exp, ok := w.Demote(nil, id)
	if !ok || len(exp) != 1 || exp[0].Client != 9 || exp[0].LastSeq != 42 {
		t.Fatalf("Demote: %v %+v", ok, exp)
	}
	out = w.Step(&StepInput{Tick: 4, Inputs: []ClientInput{{Client: 9, Input: wire.Input{Seq: 43}}}})
	if !w.IsGhost(id) || out.Rejected.UnknownClient != 1 || out.Clients != 1 || snapshotFor(out, 9) != nil {
		t.Fatalf("after demotion: ghost %v, %+v", w.IsGhost(id), out.Rejected)
	}
	if after := viewOf(w, 1); !slices.Equal(before, after) {
		t.Fatalf("client 1's view changed at the demotion: %v → %v", before, after)
	}
	if _, ok := w.Demote(nil, id); ok {
		t.Fatal("demoted a ghost")
	}
}

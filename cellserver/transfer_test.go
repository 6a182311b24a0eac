package cellserver

import (
	"errors"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestExportImport: an entity with its client moves from one World to another with its full
// state and input sequence; the client keeps playing there (inputs after LastSeq apply, a
// replay of an old one is rejected) and gets a full snapshot first. Both worlds pass their
// invariant checks (on in make test) after every step.
func TestExportImport(t *testing.T) {
	a := newTestWorld(t, func(c *Config) { c.InputGapTicks = 0 }) // inputs from Seq 5 on: no gap wait
	b := newTestWorld(t, func(c *Config) { c.EntityIDBase = 1 << 40 })
	out := a.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 7, Spawn: [2]float64{100, 100}}, {Client: 8, Spawn: [2]float64{105, 100}}}})
	e7 := out.Joined[0].Entity
	npc := a.AddNPC([2]float64{110, 100}, [2]int32{3, -2}, 9)
	a.Step(&StepInput{Tick: 2, Inputs: []ClientInput{{Client: 7, Input: wire.Input{Seq: 5, MoveX: 127}}}})
	before, _ := a.Entity(e7)

	exp := a.Export(nil, e7, npc, 999999)
	if len(exp) != 2 {
		t.Fatalf("exported %d entities, want 2 (unknown ids skipped)", len(exp))
	}
	if exp[0].Client != 7 || exp[0].LastSeq != 5 || exp[0].State != before || exp[1].Client != 0 || exp[1].State.Kind != 9 {
		t.Fatalf("exported %+v", exp)
	}
	if _, ok := a.Entity(e7); ok || a.hasClient(7) {
		t.Fatal("the exported entity or its client is still in the source world")
	}
	out = a.Step(&StepInput{Tick: 3, Inputs: []ClientInput{{Client: 7, Input: wire.Input{Seq: 6}}}})
	if out.Rejected.UnknownClient != 1 || out.Entities != 1 || snapshotFor(out, 7) != nil {
		t.Fatalf("source after export: %+v", out)
	}

	for _, e := range exp {
		if err := b.Import(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Import(exp[0]); !errors.Is(err, ErrDuplicateEntity) {
		t.Fatalf("importing twice: %v, want ErrDuplicateEntity", err)
	}
	out = b.Step(&StepInput{Tick: 3, Inputs: []ClientInput{
		{Client: 7, Input: wire.Input{Seq: 5, MoveZ: 127}}, // a replay: already applied on a
		{Client: 7, Input: wire.Input{Seq: 6, MoveX: -127}},
	}})
	if out.Rejected.ReplayedInput != 1 {
		t.Fatalf("rejections %+v, want one replayed input", out.Rejected)
	}
	after, _ := b.Entity(e7)
	if after.VX >= 0 || after.VZ != 0 || after.X != before.X+after.VX {
		t.Fatalf("entity after its input on b: %+v (before %+v)", after, before)
	}
	frame := snapshotFor(out, 7)
	if frame == nil {
		t.Fatal("no snapshot for the imported client")
	}
	if h := headerOf(t, frame); h.BaselineTick != 0 || h.LastInputSeq != 6 {
		t.Fatalf("first snapshot after import %+v, want a full one acking input 6", h)
	}
	if exp[0].LastTick != 2 {
		t.Fatalf("exported LastTick %d, want 2", exp[0].LastTick)
	}
	// A client imported from a server that already sent it ticks 4 and 5 (its clock ran ahead)
	// gets no snapshot of those ticks here, and an ack of them is not taken as a baseline.
	late := Exported{ID: 77, State: wire.EntityState{X: 6400, Z: 6400}, Client: 9, LastSeq: 1, LastTick: 5}
	if err := b.Import(late); err != nil {
		t.Fatal(err)
	}
	for tick := wire.Tick(4); tick <= 6; tick++ {
		in := &StepInput{Tick: tick}
		if tick == 6 {
			in.Acks = []ClientAck{{Client: 9, Tick: 5}}
		}
		out := b.Step(in)
		switch f := snapshotFor(out, 9); {
		case tick <= 5 && f != nil:
			t.Fatalf("a snapshot of tick %d for a client whose previous server sent it", tick)
		case tick == 6 && (f == nil || headerOf(t, f).BaselineTick != 0 || out.Rejected.BadAck != 1):
			t.Fatalf("tick 6: frame %v, rejections %+v: want a full snapshot and the ack of 5 refused", f != nil, out.Rejected)
		}
	}
	n, _ := b.Entity(npc)
	if n.X != exp[1].State.X+3*4 || n.Z != exp[1].State.Z-2*4 {
		t.Fatalf("the NPC did not keep moving: %+v from %+v", n, exp[1].State)
	}
}

// TestImportRejects: invalid records change nothing (a full World still takes a transfer).
func TestImportRejects(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.MaxClients = 1 })
	w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{1, 1}}}})
	good := wire.EntityState{X: 640, Z: 640}
	for name, e := range map[string]Exported{
		"id 0":       {ID: 0, State: good},
		"outside":    {ID: 5, State: wire.EntityState{X: -1, Z: 640}},
		"fast":       {ID: 5, State: wire.EntityState{X: 640, Z: 640, VX: maxVelUnits + 1}},
		"bad yaw":    {ID: 5, State: wire.EntityState{X: 640, Z: 640, Yaw: wire.YawSteps}},
		"dup client": {ID: 5, State: good, Client: 1},
	} {
		if err := w.Import(e); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
	if ids := w.EntityIDs(); len(ids) != 1 {
		t.Fatalf("entities %v after rejected imports", ids)
	}
	w.Step(&StepInput{Tick: 2})
}

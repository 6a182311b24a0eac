package cluster

import (
	"flag"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

var (
	long    = flag.Bool("sim.long", false, "run many seeds for longer")
	oneSeed = flag.Uint64("sim.seed", 0, "run only this seed (replay a failure)")
)

func seeds(n, nLong int) []uint64 {
	if *oneSeed != 0 {
		return []uint64{*oneSeed}
	}
	if *long {
		n = nLong
	}
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

func logTrace(t *testing.T) func(string) {
	if !testing.Verbose() || *oneSeed == 0 {
		return nil
	}
	return func(s string) { t.Log(s) }
}

// TestSimSeeds: a hotspot forms under a lossy network with delays (bots through a gateway,
// chatting with their neighbours); the invariants hold after every tick of every seed, and the
// cluster did split and hand off (so the run tested something).
func TestSimSeeds(t *testing.T) { testSeeds(t, false) }

// TestSimSeedsReorder: the same with messages overtaking each other on every link, not only
// across links: ownership, inputs and interactions stay exactly once (views may flicker: a
// ghost update can overtake the handoff it should precede).
func TestSimSeedsReorder(t *testing.T) { testSeeds(t, true) }

func testSeeds(t *testing.T, reorder bool) {
	var splits, handoffs, migrated, ghostTicks, interactions int
	var flickers, botTicks float64
	for _, seed := range seeds(6, 200) {
		o := DefaultOptions(seed)
		o.Reorder = reorder
		if *long {
			o.Ticks = 2400
			o.Bots = 300
		}
		o.Trace = logTrace(t)
		sim, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sim.Run()
		if err != nil {
			t.Fatalf("%v (replay: go test ./sim-tests/cluster -run TestSimSeeds -v -args -sim.seed %d)", err, seed)
		}
		t.Logf("seed %d: splits %d shifts %d merges %d moves %d aborted %d handoffs %d migrated %d frozen %v %v max/mean p50 %.2f",
			seed, rep.Splits, rep.Shifts, rep.Merges, rep.Moves, rep.Aborted, rep.Handoffs, rep.Migrated, rep.FrozenHandoff, rep.FrozenMigration,
			Quantile(rep.MaxOverMean, 0.5))
		t.Logf("seed %d: inputs sent %d applied %d skipped %d; interactions sent %d delivered %d; snapshots %d; flickers %d; reconnects %d; gateway %+v",
			seed, rep.InputsSent, rep.InputsApplied, rep.SkippedSeqs, rep.InteractsSent, rep.InteractsDelivered, rep.Snapshots, rep.Flickers, rep.Reconnects, rep.Gateways)
		if rep.Reconnects != 0 || rep.SkippedSeqs != 0 {
			t.Fatalf("seed %d: %d sessions disconnected, %d input sequence numbers skipped", seed, rep.Reconnects, rep.SkippedSeqs)
		}
		splits += rep.Splits
		handoffs += rep.Handoffs
		migrated += rep.Migrated
		ghostTicks += rep.GhostTicks
		interactions += rep.InteractsDelivered
		flickers += float64(rep.Flickers)
		botTicks += float64(o.Bots * o.Ticks)
	}
	if splits == 0 || handoffs == 0 || migrated == 0 || ghostTicks == 0 || interactions == 0 {
		t.Fatalf("nothing happened: %d splits, %d handoffs, %d migrated entities, %d ghost-ticks, %d interactions delivered",
			splits, handoffs, migrated, ghostTicks, interactions)
	}
	// A flicker (an entity leaving a view and back within flickerTicks) comes from a map change
	// whose new borders the ghosts have not crossed yet (docs/performance.md has the rate). A
	// regression guard, not the target: fixed borders have none (sim-tests/gatewaycluster).
	t.Logf("flickers: %.0f in %.0f bot-ticks (%.1f per million)", flickers, botTicks, flickers/botTicks*1e6)
	if !reorder && flickers/botTicks > 3e-4 {
		t.Fatalf("views flickered %.0f times in %.0f bot-ticks (%.1f per million, guard 300; ~110 measured over 16 seeds)", flickers, botTicks, flickers/botTicks*1e6)
	}
}

// TestSimServerKilled: a server dies mid-hotspot; its cells go to the others, which carry on;
// only the entities it held are lost.
func TestSimServerKilled(t *testing.T) {
	for _, seed := range seeds(3, 50) {
		o := DefaultOptions(seed)
		o.KillServer, o.KillAt = 2, 250
		o.Ticks = 500
		o.Trace = logTrace(t)
		sim, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sim.Run()
		if err != nil {
			t.Fatalf("%v (replay: go test ./sim-tests/cluster -run TestSimServerKilled -v -args -sim.seed %d)", err, seed)
		}
		mp := sim.fsm.Map()
		for _, c := range mp.Cells {
			if c.Owner == 2 {
				t.Fatalf("seed %d: cell %d still owned by the dead server", seed, c.ID)
			}
		}
		for _, s := range mp.Servers {
			if s.ID == 2 && s.Alive {
				t.Fatalf("seed %d: server 2 not declared dead", seed)
			}
		}
		if len(sim.killed) == 0 {
			t.Fatalf("seed %d: the killed server held nothing: the test tested nothing", seed)
		}
		if o.Gateway && rep.EntitiesLost != 0 {
			t.Fatalf("seed %d: %d entities of open sessions were lost with the killed server (the gateway re-creates them)", seed, rep.EntitiesLost)
		}
		t.Logf("seed %d: killed server held %d entities, %d lost, %d re-created; %d inputs sent while it was dead dropped",
			seed, len(sim.killed), rep.EntitiesLost, resumes(rep), rep.InputsLostToKill)
	}
}

// TestSimDeterministic: the same seed gives the same trace; another seed a different one.
func TestSimDeterministic(t *testing.T) {
	run := func(seed uint64) *Report {
		o := DefaultOptions(seed)
		o.Ticks = 300
		sim, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sim.Run()
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	a, b, c := run(7), run(7), run(8)
	if a.Trace != b.Trace || a.Handoffs != b.Handoffs || a.Splits != b.Splits {
		t.Fatalf("seed 7 twice: traces %x and %x, handoffs %d and %d", a.Trace, b.Trace, a.Handoffs, b.Handoffs)
	}
	if a.Trace == c.Trace {
		t.Fatalf("seeds 7 and 8 gave the same trace %x", a.Trace)
	}
}

// TestSimStaticGrid: the static partitioning keeps its cells and owners.
func TestSimStaticGrid(t *testing.T) {
	o := DefaultOptions(3)
	o.Static = true
	o.Ticks = 200
	sim, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Run(); err != nil {
		t.Fatal(err)
	}
	mp := sim.fsm.Map()
	if len(mp.Cells) != 9 {
		t.Fatalf("%d cells, want 9", len(mp.Cells))
	}
	per := map[raftmeta.ServerID]int{}
	for _, c := range mp.Cells {
		per[c.Owner]++
	}
	for id, n := range per {
		if n != 3 {
			t.Fatalf("server %d owns %d cells, want 3: %v", id, n, per)
		}
	}
}

// resumes sums the gateways' re-created entities.
func resumes(rep *Report) int {
	n := 0
	for _, g := range rep.Gateways {
		n += g.Resumes
	}
	return n
}

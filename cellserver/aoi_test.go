package cellserver

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/meridian-mmo/meridian/wire"
)

// aoiRef is the brute-force reference for the AOI: every tick it checks every entity against
// every client (O(n²)), applies the same hysteresis, capacity and slot rules as the spec in
// aoi.go, and keeps its own slot arrays.
type aoiRef struct {
	enter2, leave2 int64
	scale          float64
	maxSlots       int
	views          map[ClientID][]wire.EntityID // slot → entity, 0 empty, trailing empties trimmed
}

func newAOIRef(cfg Config) *aoiRef {
	e, l := cfg.AOIEnterRadius*wire.PosUnitsPerMetre, cfg.AOILeaveRadius*wire.PosUnitsPerMetre
	r := &aoiRef{
		enter2:   int64(math.Floor(e * e)),
		leave2:   int64(math.Floor(l * l)),
		maxSlots: cfg.MaxViewSlots,
		views:    map[ClientID][]wire.EntityID{},
	}
	r.scale = float64(r.enter2) / float64(r.leave2)
	return r
}

// update computes every client's expected view after a Step of w.
func (ref *aoiRef) update(w *World) {
	states := map[wire.EntityID]wire.EntityState{}
	ids := w.EntityIDs()
	for _, id := range ids {
		states[id], _ = w.Entity(id)
	}
	views := map[ClientID][]wire.EntityID{}
	for i := range w.clients {
		c := &w.clients[i]
		me := states[c.entity]
		d2 := func(id wire.EntityID) int64 {
			s := states[id]
			dx, dz := int64(s.X)-int64(me.X), int64(s.Z)-int64(me.Z)
			return dx*dx + dz*dz
		}
		type cand struct {
			id   wire.EntityID
			key  float64
			d2   int64
			slot int
		}
		var all []cand
		view := slices.Clone(ref.views[c.id])
		inView := map[wire.EntityID]bool{}
		for s, id := range view {
			if id == 0 {
				continue
			}
			if _, alive := states[id]; !alive || (id != c.entity && d2(id) > ref.leave2) {
				view[s] = 0
				continue
			}
			inView[id] = true
			key := float64(d2(id)) * ref.scale
			if id == c.entity {
				key = -1
			}
			all = append(all, cand{id, key, d2(id), s})
		}
		for _, id := range ids {
			if !inView[id] && d2(id) <= ref.enter2 {
				key, k2 := float64(d2(id)), d2(id)
				if id == c.entity {
					key, k2 = -1, -1
				}
				all = append(all, cand{id, key, k2, -1})
			}
		}
		byRank := func(a, b cand) int {
			return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.id, b.id))
		}
		if len(all) > ref.maxSlots {
			slices.SortFunc(all, byRank)
			for _, x := range all[ref.maxSlots:] {
				if x.slot >= 0 {
					view[x.slot] = 0
				}
			}
			all = all[:ref.maxSlots]
		}
		var newcomers []cand
		for _, x := range all {
			if x.slot < 0 {
				newcomers = append(newcomers, x)
			}
		}
		slices.SortFunc(newcomers, func(a, b cand) int { return cmp.Or(cmp.Compare(a.d2, b.d2), cmp.Compare(a.id, b.id)) })
		for _, x := range newcomers {
			s := slices.Index(view, 0)
			if s < 0 {
				view = append(view, x.id)
			} else {
				view[s] = x.id
			}
		}
		for len(view) > 0 && view[len(view)-1] == 0 {
			view = view[:len(view)-1]
		}
		views[c.id] = view
	}
	ref.views = views
}

// fataler is what check needs of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// check compares the world's views with the reference's.
func (ref *aoiRef) check(tb fataler, w *World, tick wire.Tick) {
	tb.Helper()
	if len(ref.views) != len(w.clients) {
		tb.Fatalf("tick %d: %d clients, reference has %d", tick, len(w.clients), len(ref.views))
	}
	for id, want := range ref.views {
		if got := viewOf(w, id); !slices.Equal(got, want) {
			tb.Fatalf("tick %d: client %d view\n got %v\nwant %v", tick, id, got, want)
		}
		i := w.byClient[id]
		if n := len(slices.DeleteFunc(slices.Clone(want), func(e wire.EntityID) bool { return e == 0 })); n != w.clients[i].log.n {
			tb.Fatalf("tick %d: client %d: occupied count %d, want %d", tick, id, w.clients[i].log.n, n)
		}
	}
}

// TestAOIMatchesBruteForce runs random worlds (uniform or clustered, with joins, leaves, NPCs
// spawning and despawning, random moves including hacked intents, tick gaps, tight and loose
// view caps) and requires the grid AOI's views to equal the brute-force reference's, slot for
// slot, after every tick.
func TestAOIMatchesBruteForce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := DefaultConfig()
		side := rapid.Float64Range(20, 400).Draw(rt, "side")
		cfg.WorldMin = [2]float64{-side / 2, -side / 3}
		cfg.WorldMax = [2]float64{side / 2, side}
		cfg.AOIEnterRadius = rapid.Float64Range(1, 80).Draw(rt, "enter")
		cfg.AOILeaveRadius = cfg.AOIEnterRadius + rapid.Float64Range(0.01, 40).Draw(rt, "margin")
		cfg.MaxViewSlots = rapid.SampledFrom([]int{1, 3, 8, 256}).Draw(rt, "slots")
		cfg.MaxSpeed = rapid.Float64Range(1, 60).Draw(rt, "speed")
		w, err := NewWorld(cfg, nil)
		if err != nil {
			rt.Fatal(err)
		}
		ref := newAOIRef(cfg)
		clustered := rapid.Bool().Draw(rt, "clustered")
		var centre [2]float64
		if clustered {
			centre = [2]float64{
				rapid.Float64Range(cfg.WorldMin[0], cfg.WorldMax[0]).Draw(rt, "cx"),
				rapid.Float64Range(cfg.WorldMin[1], cfg.WorldMax[1]).Draw(rt, "cz"),
			}
		}
		pos := func(label string) [2]float64 {
			if clustered {
				spread := cfg.AOILeaveRadius
				return [2]float64{
					centre[0] + rapid.Float64Range(-spread, spread).Draw(rt, label+"x"),
					centre[1] + rapid.Float64Range(-spread, spread).Draw(rt, label+"z"),
				}
			}
			return [2]float64{
				rapid.Float64Range(cfg.WorldMin[0]-5, cfg.WorldMax[0]+5).Draw(rt, label+"x"),
				rapid.Float64Range(cfg.WorldMin[1]-5, cfg.WorldMax[1]+5).Draw(rt, label+"z"),
			}
		}
		var clients []ClientID
		var npcs []wire.EntityID
		next := ClientID(0)
		seq := uint32(0)
		tick := wire.Tick(0)
		ticks := rapid.IntRange(1, 25).Draw(rt, "ticks")
		for k := range ticks {
			tick += wire.Tick(rapid.IntRange(1, 2).Draw(rt, "dt"))
			in := &StepInput{Tick: tick}
			for range rapid.IntRange(0, 6).Draw(rt, "joins") {
				next++
				in.Joins = append(in.Joins, Join{Client: next, Spawn: pos("spawn")})
				clients = append(clients, next)
			}
			if len(clients) > 0 && rapid.IntRange(0, 3).Draw(rt, "leave") == 0 {
				i := rapid.IntRange(0, len(clients)-1).Draw(rt, "leaver")
				in.Leaves = append(in.Leaves, clients[i])
				clients = slices.Delete(clients, i, i+1)
			}
			seq++
			for _, c := range clients {
				if rapid.Bool().Draw(rt, "moves") {
					in.Inputs = append(in.Inputs, ClientInput{Client: c, Input: wire.Input{
						Seq:   seq,
						MoveX: int8(rapid.IntRange(-128, 127).Draw(rt, "mx")),
						MoveZ: int8(rapid.IntRange(-128, 127).Draw(rt, "mz")),
					}})
				}
			}
			w.Step(in)
			ref.update(w)
			ref.check(rt, w, tick)
			if k%3 == 0 { // NPCs come and go between steps
				for range rapid.IntRange(0, 4).Draw(rt, "npcs") {
					v := [2]int32{int32(rapid.IntRange(-300, 300).Draw(rt, "nvx")), int32(rapid.IntRange(-300, 300).Draw(rt, "nvz"))}
					npcs = append(npcs, w.AddNPC(pos("npc"), v, 3))
				}
				if len(npcs) > 0 && rapid.Bool().Draw(rt, "despawn") {
					i := rapid.IntRange(0, len(npcs)-1).Draw(rt, "npc")
					if !w.RemoveNPC(npcs[i]) {
						rt.Fatalf("RemoveNPC(%d) failed", npcs[i])
					}
					npcs = slices.Delete(npcs, i, i+1)
				}
			}
		}
	})
}

// TestAOIHysteresis walks one entity away from and back towards a client along x.
func TestAOIHysteresis(t *testing.T) {
	w := newTestWorld(t, nil) // enter 50 m, leave 60 m
	out := w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{1000, 1000}}}})
	me := out.Joined[0].Entity
	npc := w.AddNPC([2]float64{1055, 1000}, [2]int32{0, 0}, 0)
	tick := wire.Tick(1)
	at := func(x float64) []wire.EntityID {
		r, _ := w.st.lookup(npc)
		w.st.x[r] = wire.QuantisePos(x)
		w.grid.moved(&w.st, r)
		tick++
		w.Step(&StepInput{Tick: tick})
		return viewOf(w, 1)
	}
	for _, step := range []struct {
		x    float64
		want []wire.EntityID
	}{
		{1055, []wire.EntityID{me}},      // between the radii, never entered
		{1050, []wire.EntityID{me, npc}}, // exactly on the enter radius: enters
		{1060, []wire.EntityID{me, npc}}, // exactly on the leave radius: stays
		{1059, []wire.EntityID{me, npc}},
		{1060.02, []wire.EntityID{me}}, // beyond: leaves
		{1055, []wire.EntityID{me}},
		{950, []wire.EntityID{me, npc}},
	} {
		if got := at(step.x); !slices.Equal(got, step.want) {
			t.Errorf("npc at x=%v: view %v, want %v", step.x, got, step.want)
		}
	}
}

// TestViewSlotsStable checks the slot rules on a crowd: an entity keeps its slot while in
// view; the own entity is in slot 0 from the first tick.
func TestViewSlotsStable(t *testing.T) {
	w, p := benchWorld(t, 300)
	prev := map[ClientID]map[wire.EntityID]int{}
	for tick := wire.Tick(1); tick <= 100; tick++ {
		out := w.Step(p.step(tick))
		for _, j := range out.Joined {
			if v := viewOf(w, j.Client); len(v) == 0 || v[0] != j.Entity {
				t.Fatalf("client %d joined with view %v: own entity not in slot 0", j.Client, v)
			}
		}
		for _, id := range p.ids {
			cur := map[wire.EntityID]int{}
			for s, e := range viewOf(w, id) {
				if e != 0 {
					cur[e] = s
					if old, ok := prev[id][e]; ok && old != s {
						t.Fatalf("tick %d: client %d: entity %d moved from slot %d to %d", tick, id, e, old, s)
					}
				}
			}
			prev[id] = cur
		}
	}
}

// TestAOIGridConsistent checks the grid's bookkeeping after a random run: every alive row is
// in exactly the cell of its position, with the right back-pointer and position copy.
func TestAOIGridConsistent(t *testing.T) {
	w, p := benchWorld(t, 500)
	for tick := wire.Tick(1); tick <= 300; tick++ {
		in := p.step(tick)
		if tick%10 == 0 { // churn
			id := p.ids[int(tick)%len(p.ids)]
			in.Leaves = append(in.Leaves, id)
			in.Joins = append(in.Joins, Join{Client: id, Spawn: [2]float64{float64(tick), float64(tick)}})
		}
		w.Step(in)
	}
	seen := 0
	for c, cell := range w.grid.cells {
		for i, e := range cell {
			r := e.row
			if w.st.ids[r] == 0 || w.st.cell[r] != int32(c) || w.st.cellAt[r] != int32(i) ||
				e.x != w.st.x[r] || e.z != w.st.z[r] || w.grid.cellOf(e.x, e.z) != int32(c) {
				t.Fatalf("cell %d entry %d: %+v inconsistent with row %d", c, i, e, r)
			}
			seen++
		}
	}
	if seen != len(w.st.alive) {
		t.Fatalf("grid holds %d entries, %d alive", seen, len(w.st.alive))
	}
}

func ExampleConfig_Validate() {
	c := DefaultConfig()
	c.AOILeaveRadius = 40
	fmt.Println(c.Validate())
	// Output: cellserver: AOILeaveRadius (40) must be > AOIEnterRadius (50)
}

func TestSelectBest(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for iter := range 3000 {
		n := rng.IntN(300)
		if iter%100 == 0 {
			n = 2000 + rng.IntN(2000)
		}
		r := make([]rankedCandidate, n)
		for i := range r {
			key := float64(rng.IntN(50)) // many ties, broken by id
			switch iter % 4 {
			case 1:
				key = float64(i) // sorted
			case 2:
				key = float64(n - i) // reversed
			case 3:
				key = rng.Float64()
			}
			r[i] = rankedCandidate{key: key, candidate: candidate{id: wire.EntityID(rng.Uint64N(1 << 40))}}
		}
		want := slices.Clone(r)
		cmpR := func(x, y rankedCandidate) int { return cmp.Or(cmp.Compare(x.key, y.key), cmp.Compare(x.id, y.id)) }
		slices.SortFunc(want, cmpR)
		k := rng.IntN(n + 2)
		selectBest(r, k)
		if k > n {
			k = n
		}
		got := slices.Clone(r[:k])
		slices.SortFunc(got, cmpR)
		if !slices.Equal(got, want[:k]) {
			t.Fatalf("n=%d k=%d: selected set differs from the k smallest", n, k)
		}
	}
}

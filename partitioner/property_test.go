package partitioner

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
	"pgregory.net/rapid"
)

// genConfig draws a valid Config.
func genConfig(t *rapid.T) Config {
	c := DefaultConfig()
	c.SplitLoad = rapid.IntRange(20, 3000).Draw(t, "SplitLoad")
	c.MergeLoad = rapid.IntRange(0, c.SplitLoad/2).Draw(t, "MergeLoad")
	c.SplitFraction = rapid.SampledFrom([]float64{0, 0.25, 0.5, 1, 1.5}).Draw(t, "SplitFraction")
	c.MinCells = rapid.IntRange(0, 6).Draw(t, "MinCells")
	c.Imbalance = rapid.SampledFrom([]float64{0.02, 0.05, 0.1, 0.3, 1}).Draw(t, "Imbalance")
	c.MaxShiftFraction = rapid.SampledFrom([]float64{0.1, 0.5, 1}).Draw(t, "MaxShiftFraction")
	c.MinTransfer = rapid.IntRange(1, 40).Draw(t, "MinTransfer")
	c.MinSplitShare = rapid.SampledFrom([]float64{0, 0.1, 0.25, 0.5}).Draw(t, "MinSplitShare")
	c.CooldownRounds = rapid.IntRange(0, 4).Draw(t, "CooldownRounds")
	c.SplitCooldownRounds = rapid.IntRange(0, c.CooldownRounds).Draw(t, "SplitCooldownRounds")
	c.MaxOpsPerRound = rapid.IntRange(1, 8).Draw(t, "MaxOpsPerRound")
	c.AggressionRecoveryRounds = rapid.IntRange(1, 20).Draw(t, "AggressionRecoveryRounds")
	c.Quantum = rapid.SampledFrom([]float64{0, 0.25, 1, 0.1, 7}).Draw(t, "Quantum")
	return c
}

// genWorld draws a world rectangle and a min cell size.
func genWorld(t *rapid.T) (raftmeta.Rect, float64) {
	x0 := rapid.Float64Range(-5000, 5000).Draw(t, "x0")
	z0 := rapid.Float64Range(-5000, 5000).Draw(t, "z0")
	w := rapid.Float64Range(10, 5000).Draw(t, "w")
	h := rapid.Float64Range(10, 5000).Draw(t, "h")
	r := raftmeta.Rect{x0, z0, x0 + w, z0 + h}
	small := math.Min(r[2]-r[0], r[3]-r[1])
	minSize := math.Min(small, small*rapid.SampledFrom([]float64{0.01, 0.03, 0.1, 0.3, 1}).Draw(t, "minFrac"))
	return r, minSize
}

// genEntities adds groups of entities to s: crowds and uniform spreads.
func genEntities(t *rapid.T, s *sim, uniformOnly bool) {
	w := s.world
	n := rapid.IntRange(1, 4).Draw(t, "groups")
	for i := range n {
		name := fmt.Sprintf("g%d", i)
		count := rapid.IntRange(0, 1500).Draw(t, "count")
		if uniformOnly || rapid.Bool().Draw(t, "uniform") {
			s.uniform(name, count, w)
			continue
		}
		x := rapid.Float64Range(w[0], w[2]).Draw(t, "cx")
		z := rapid.Float64Range(w[1], w[3]).Draw(t, "cz")
		r := rapid.Float64Range(0, math.Min(w[2]-w[0], w[3]-w[1])/2).Draw(t, "r")
		s.crowd(name, x, z, r, count)
	}
}

// genServers registers 1–5 servers with random capacities (0: undeclared).
func genServers(t *rapid.T, s *sim) {
	n := rapid.IntRange(1, 5).Draw(t, "servers")
	for i := 1; i <= n; i++ {
		s.join(raftmeta.ServerID(i), rapid.SampledFrom([]int{0, 500, 1000, 1000, 3000}).Draw(t, "cap"))
	}
}

// ownersLive checks, on the FSM's map, that every cell is owned by a live server when one
// that can own cells (alive, not draining) exists.
func ownersLive(s *sim) error {
	m := s.f.Map()
	live := map[raftmeta.ServerID]bool{}
	for _, srv := range m.Servers {
		if srv.Alive && !srv.Draining {
			live[srv.ID] = true
		}
	}
	if len(live) == 0 {
		return nil
	}
	for _, c := range m.Cells {
		if srv, ok := findServer(m, c.Owner); !ok || !srv.Alive {
			return fmt.Errorf("cell %d owned by %d, not a live server", c.ID, c.Owner)
		}
	}
	return nil
}

func findServer(m raftmeta.Map, id raftmeta.ServerID) (raftmeta.Server, bool) {
	for _, s := range m.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return raftmeta.Server{}, false
}

// evacuees counts the cells the planner sees on dead or draining servers.
func evacuees(s *sim) int {
	m := s.plannerMap()
	bad := map[raftmeta.ServerID]bool{}
	for _, srv := range m.Servers {
		if !srv.Alive || srv.Draining {
			bad[srv.ID] = true
		}
	}
	n := 0
	for _, c := range m.Cells {
		if bad[c.Owner] {
			n++
		}
	}
	return n
}

// TestPropertyRounds runs random worlds through random events and rounds. After every round:
// every operation was accepted by the FSM (sim.round fails otherwise) and valid on the map the
// planner saw (validatePlan: budget, disjoint cells, epochs); the cells tile the world with no
// gap or overlap (checkMap); every cell is owned by a live server; a second planner fed the
// same maps proposed exactly the same; and the cells left on dead or draining servers decrease
// every round until there are none.
func TestPropertyRounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		world, minSize := genWorld(t)
		s := newSim(t, world, minSize, cfg)
		s.shadow, _ = New(cfg)
		s.lagReports = rapid.Bool().Draw(t, "lagReports")
		genServers(t, s)
		genEntities(t, s, false)
		nextID := raftmeta.ServerID(10)
		rounds := rapid.IntRange(1, 25).Draw(t, "rounds")
		for range rounds {
			switch rapid.IntRange(0, 12).Draw(t, "event") {
			case 0:
				g := s.groups[rapid.IntRange(0, len(s.groups)-1).Draw(t, "group")]
				s.walk(g.name, rapid.Float64Range(-300, 300).Draw(t, "dx"), rapid.Float64Range(-300, 300).Draw(t, "dz"))
			case 1:
				s.join(nextID, rapid.SampledFrom([]int{0, 1000, 2000}).Draw(t, "cap"))
				nextID++
			case 2, 3, 4, 5:
				m := s.f.Map()
				srv := m.Servers[rapid.IntRange(0, len(m.Servers)-1).Draw(t, "victim")]
				if !srv.Alive {
					break
				}
				switch rapid.IntRange(0, 4).Draw(t, "how") {
				case 0:
					s.mustApply(raftmeta.MarkDead{Server: srv.ID, Now: srv.LeaseExpires})
					s.silent[srv.ID] = true
				case 1:
					s.dead[srv.ID] = true
				case 2:
					s.draining[srv.ID] = true
				case 3:
					s.silent[srv.ID] = !s.silent[srv.ID]
				case 4:
					if res := s.apply(raftmeta.Drain{Server: srv.ID}); res.Err == nil {
						s.draining[srv.ID] = true
					}
				}
			case 6:
				g := s.groups[rapid.IntRange(0, len(s.groups)-1).Draw(t, "group")]
				s.disperse(g.name)
			}
			before := evacuees(s)
			s.round()
			if err := ownersLive(s); err != nil {
				t.Fatalf("round %d: %v", s.rounds, err)
			}
			if after := evacuees(s); before > 0 && after >= before && hasTarget(s) {
				t.Fatalf("round %d: %d cells on dead or draining servers before, %d after", s.rounds, before, after)
			}
		}
	})
}

// hasTarget reports whether the planner sees a live, non-draining server.
func hasTarget(s *sim) bool {
	for _, srv := range s.plannerMap().Servers {
		if srv.Alive && !srv.Draining {
			return true
		}
	}
	return false
}

// TestPropertySteadyLoadGoesQuiet: on a steady load (entities do not move) the planner
// converges: within 400 rounds it has CooldownRounds+1 rounds in a row without operations
// (one more if reports are late), and from then on it stays quiet (20 more rounds).
func TestPropertySteadyLoadGoesQuiet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		world, minSize := genWorld(t)
		s := newSim(t, world, minSize, cfg)
		s.shadow, _ = New(cfg)
		s.lagReports = rapid.Bool().Draw(t, "lagReports")
		genServers(t, s)
		genEntities(t, s, rapid.Bool().Draw(t, "uniformOnly"))
		// Quiet: more rounds in a row without operations than a changed cell can be held back
		// (by its cooldown, or by the round its first report is late).
		hold := cfg.CooldownRounds
		if s.lagReports {
			hold = max(hold, 1)
		}
		quiet := 0
		var history []string // the last rounds, for the failure message
		for quiet <= hold {
			if s.rounds >= 400 {
				t.Fatalf("not quiet after %d rounds (%d entities); the last rounds:\n%s", s.rounds, s.entities(), strings.Join(history, "\n"))
			}
			state := s.show()
			s.round()
			history = append(history, fmt.Sprintf("round %d:\n%s\n%q", s.rounds, state, s.reasons))
			if len(history) > 4 {
				history = history[1:]
			}
			if len(s.ops) == 0 {
				quiet++
			} else {
				quiet = 0
			}
		}
		settled := s.rounds
		for range 20 {
			s.round()
			if len(s.ops) != 0 {
				t.Fatalf("round %d: quiet since round %d, then %v %q", s.rounds, settled, s.ops, s.reasons)
			}
		}
	})
}

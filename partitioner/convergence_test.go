package partitioner

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// TestConvergenceCrowdInCorner: three servers share a lightly populated world; a dense crowd
// forms in one corner. With the default config, max/mean of the servers' loads must come
// down to ≤ 1.10 within a few rounds and stay there while the load is steady. Rounds, not
// time: the leader runs one per period (e.g. 1 s). Reports are fresh every round here; in a
// cluster a changed cell's first report at its new epoch may come a round later.
func TestConvergenceCrowdInCorner(t *testing.T) {
	for _, tc := range []struct {
		name            string
		lag             bool
		world           raftmeta.Rect
		minSize         float64
		background, n   int
		x, z, r         float64
		capacity        int
		maxRoundsToGoal int
	}{
		{"1k world, 900 in the crowd", false, raftmeta.Rect{0, 0, 1024, 1024}, 16, 300, 900, 100, 100, 60, 1000, 6},
		{"4k world, 3000 in the crowd", false, raftmeta.Rect{0, 0, 4096, 4096}, 32, 1500, 3000, 300, 300, 100, 5000, 6},
		{"16k world, 12000 in the crowd", false, raftmeta.Rect{0, 0, 16384, 16384}, 64, 3000, 12000, 800, 15500, 250, 10000, 6},
		{"16k world, 12000 in the crowd, reports a round late", true, raftmeta.Rect{0, 0, 16384, 16384}, 64, 3000, 12000, 800, 15500, 250, 10000, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			s := newSim(t, tc.world, tc.minSize, cfg)
			s.shadow, _ = New(cfg)
			s.lagReports = tc.lag
			for id := raftmeta.ServerID(1); id <= 3; id++ {
				s.join(id, tc.capacity)
			}
			s.uniform("bg", tc.background, tc.world)
			for s.rounds < 30 { // the background settles first
				s.round()
			}
			s.crowd("crowd", tc.x, tc.z, tc.r, tc.n)
			start := s.rounds
			var trace []string
			reached := -1
			for i := 1; i <= 40; i++ {
				s.round()
				_, ratio := s.balance()
				trace = append(trace, fmt.Sprintf("%d:%.2f/%dops", i, ratio, len(s.ops)))
				if ratio <= 1.10 && reached < 0 {
					reached = i
				}
				if reached > 0 && ratio > 1.10 {
					t.Fatalf("max/mean back to %.2f at round %d after the crowd formed (≤ 1.10 from round %d): %s", ratio, i, reached, strings.Join(trace, " "))
				}
			}
			t.Logf("max/mean ≤ 1.10 at round %d after the crowd formed (round %d overall); %d cells; trace %s",
				reached, start+reached, len(s.f.Map().Cells), strings.Join(trace, " "))
			if reached < 0 || reached > tc.maxRoundsToGoal {
				t.Fatalf("max/mean ≤ 1.10 reached at round %d, want ≤ %d: %s\n%s", reached, tc.maxRoundsToGoal, strings.Join(trace, " "), s.show())
			}
		})
	}
}

package bots

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// walk moves a point by a behaviour's intents (held until the next one) for n steps of 1/20 s
// at 7 m/s full stick, the way the server would, and returns where it ends and how close to
// the edge it came.
func walk(b Behavior, start [2]float64, n int, rng *rand.Rand, visit func(x, z float64)) {
	x, z := start[0], start[1]
	var mx, mz int8
	for range n {
		self := wire.EntityState{X: wire.QuantisePos(x), Z: wire.QuantisePos(z)}
		if nx, nz, _, send := b.Next(self, true, rng); send {
			mx, mz = nx, nz
		}
		x += float64(mx) / 127 * 7 / 20
		z += float64(mz) / 127 * 7 / 20
		visit(x, z)
	}
}

func TestWanderStaysInTheWorld(t *testing.T) {
	world := [2][2]float64{{0, 0}, {100, 60}}
	f, err := ParseBehavior("wander")
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		moved := 0.0
		px, pz := 50.0, 30.0
		walk(f(world), [2]float64{50, 30}, 20*60, rng, func(x, z float64) {
			// The server clamps at the bounds; the behaviour must turn back within a few metres.
			if x < -5 || x > 105 || z < -5 || z > 65 {
				t.Fatalf("seed %d: wandered to (%.1f, %.1f), outside the world", seed, x, z)
			}
			moved += math.Hypot(x-px, z-pz)
			px, pz = x, z
		})
		if moved < 50 {
			t.Fatalf("seed %d: moved only %.1f m in a minute", seed, moved)
		}
	}
}

func TestHotspotConverges(t *testing.T) {
	world := [2][2]float64{{0, 0}, {200, 200}}
	f, _ := ParseBehavior("hotspot")
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 2))
		var last [2]float64
		start := [2]float64{rng.Float64() * 200, rng.Float64() * 200}
		walk(f(world), start, 20*60, rng, func(x, z float64) { last = [2]float64{x, z} })
		if d := math.Hypot(last[0]-100, last[1]-100); d > 30 {
			t.Fatalf("seed %d: after a minute still %.1f m from the hotspot", seed, d)
		}
	}
}

func TestParseBehaviorUnknown(t *testing.T) {
	if _, err := ParseBehavior("teleport"); err == nil {
		t.Fatal("unknown behaviour accepted")
	}
}

// TestPatrolCrossesTheCentre: patrolling bots spawned anywhere in the world reach the centre
// line and cross it every few seconds, keep to the line through their spot, stay in the world,
// and walk the same way for the same seed, index and spawn point.
func TestPatrolCrossesTheCentre(t *testing.T) {
	world := [2][2]float64{{0, 0}, {200, 200}}
	f, err := ParseBehavior("patrol")
	if err != nil {
		t.Fatal(err)
	}
	trace := func(seed, bot uint64, start [2]float64) (xs []float64) {
		walk(f(world), start, 20*60, rand.New(rand.NewPCG(seed, bot)), func(x, z float64) {
			xs = append(xs, x)
			if math.Abs(z-start[1]) > 1.5 {
				t.Fatalf("seed %d bot %d: strayed to z=%.1f from its line z=%.1f", seed, bot, z, start[1])
			}
			if x < 0 || x > 200 {
				t.Fatalf("seed %d bot %d: walked out of the world to x=%.1f", seed, bot, x)
			}
		})
		return xs
	}
	place := rand.New(rand.NewPCG(9, 9))
	for bot := range uint64(40) {
		start := [2]float64{place.Float64() * 200, place.Float64() * 200}
		xs := trace(5, bot, start)
		var crossings []int // the steps at which the bot crossed x = 100
		for i := 1; i < len(xs); i++ {
			if (xs[i-1] < 100) != (xs[i] < 100) {
				crossings = append(crossings, i)
			}
		}
		if len(crossings) < 4 {
			t.Fatalf("bot %d from (%.0f, %.0f): crossed the centre %d times in a minute, want ≥ 4", bot, start[0], start[1], len(crossings))
		}
		if first := crossings[0]; first > 20*15 {
			t.Fatalf("bot %d from (%.0f, %.0f): first crossed the centre after %.1f s", bot, start[0], start[1], float64(first)/20)
		}
		for i := 1; i < len(crossings); i++ {
			if gap := float64(crossings[i]-crossings[i-1]) / 20; gap > 13 {
				t.Fatalf("bot %d: %.1f s between two crossings", bot, gap)
			}
		}
		last := xs[crossings[0]:]
		if lo, hi := slices.Min(last), slices.Max(last); lo < 100-30-1 || hi > 100+30+1 {
			t.Fatalf("bot %d: paced x in [%.1f, %.1f], beyond the reach of 30 m", bot, lo, hi)
		}
		if again := trace(5, bot, start); !slices.Equal(again, xs) {
			t.Fatalf("bot %d: a second walk from the same seed differs", bot)
		}
	}
	// A world narrower than the reach: the stretch stays inside it.
	narrow := [2][2]float64{{0, 0}, {40, 40}}
	walk(f(narrow), [2]float64{20, 20}, 20*30, rand.New(rand.NewPCG(1, 1)), func(x, z float64) {
		if x < 1 || x > 39 {
			t.Fatalf("narrow world: walked to x=%.1f", x)
		}
	})
	if _, err := ParseBehavior("patrol:-3"); err == nil {
		t.Fatal("a negative reach accepted")
	}
	if _, err := ParseBehavior("patrol:12.5"); err != nil {
		t.Fatal(err)
	}
}

package bots

import (
	"math"
	"math/rand/v2"
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

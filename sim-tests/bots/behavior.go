package bots

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/meridian-mmo/meridian/wire"
)

// Behavior decides a bot's next move intent. It is called at the input rate with the bot's
// own state (ok=false before the first snapshot) and returns the intent to send, or send=false
// to keep the previous one (the server holds an intent until the next input).
type Behavior interface {
	Next(self wire.EntityState, ok bool, rng *rand.Rand) (moveX, moveZ int8, yaw uint16, send bool)
}

// Factory makes a bot's behaviour for a world (min and max corners in metres, x and z).
type Factory func(world [2][2]float64) Behavior

// ParseBehavior maps a command-line name to a behaviour factory.
func ParseBehavior(name string) (Factory, error) {
	switch name {
	case "wander":
		return func(world [2][2]float64) Behavior { return &Wander{World: world} }, nil
	case "hotspot":
		return func(world [2][2]float64) Behavior {
			c := [2]float64{(world[0][0] + world[1][0]) / 2, (world[0][1] + world[1][1]) / 2}
			return &Hotspot{Target: c, Radius: 20}
		}, nil
	}
	return nil, fmt.Errorf("bots: unknown behavior %q (want wander or hotspot)", name)
}

// Wander walks in a random direction at a random speed for 1–5 s, then picks another; near
// the world's edge it turns back inward.
type Wander struct {
	World [2][2]float64 // min, max in metres (x, z)
	left  int           // calls until the next change
	dx    float64
	dz    float64
}

// Next implements Behavior.
func (w *Wander) Next(self wire.EntityState, ok bool, rng *rand.Rand) (int8, int8, uint16, bool) {
	const margin = 5.0
	if ok {
		x, z := wire.DequantisePos(self.X), wire.DequantisePos(self.Z)
		if (x < w.World[0][0]+margin && w.dx < 0) || (x > w.World[1][0]-margin && w.dx > 0) ||
			(z < w.World[0][1]+margin && w.dz < 0) || (z > w.World[1][1]-margin && w.dz > 0) {
			cx, cz := (w.World[0][0]+w.World[1][0])/2, (w.World[0][1]+w.World[1][1])/2
			w.dx, w.dz = normalise(cx-x+rng.Float64()*20-10, cz-z+rng.Float64()*20-10)
			w.left = 20 + rng.IntN(80)
			return intent(w.dx, w.dz, 1)
		}
	}
	if w.left > 0 {
		w.left--
		return 0, 0, 0, false
	}
	a := rng.Float64() * 2 * math.Pi
	w.dx, w.dz = math.Cos(a), math.Sin(a)
	w.left = 20 + rng.IntN(80) // 1–5 s at 20 Hz
	return intent(w.dx, w.dz, 0.4+0.6*rng.Float64())
}

// Hotspot walks straight to Target, then mills around within Radius of it: the crowd that
// gathers for a world boss.
type Hotspot struct {
	Target [2]float64
	Radius float64
	left   int
}

// Next implements Behavior.
func (h *Hotspot) Next(self wire.EntityState, ok bool, rng *rand.Rand) (int8, int8, uint16, bool) {
	if !ok {
		return 0, 0, 0, false
	}
	if h.left > 0 {
		h.left--
		return 0, 0, 0, false
	}
	x, z := wire.DequantisePos(self.X), wire.DequantisePos(self.Z)
	dx, dz := h.Target[0]-x, h.Target[1]-z
	d := math.Hypot(dx, dz)
	if d > h.Radius {
		h.left = 10 // re-aim every half second
		nx, nz := normalise(dx, dz)
		return intent(nx, nz, 1)
	}
	a := rng.Float64() * 2 * math.Pi
	h.left = 10 + rng.IntN(30)
	return intent(math.Cos(a), math.Sin(a), 0.2+0.3*rng.Float64())
}

func normalise(x, z float64) (float64, float64) {
	d := math.Hypot(x, z)
	if d == 0 {
		return 0, 0
	}
	return x / d, z / d
}

// intent turns a unit direction and a speed fraction into a quantised intent and facing.
func intent(dx, dz, speed float64) (int8, int8, uint16, bool) {
	return int8(math.Round(dx * speed * 127)), int8(math.Round(dz * speed * 127)), wire.QuantiseYaw(math.Atan2(dz, dx)), true
}

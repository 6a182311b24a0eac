package bots

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

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
		return hotspotAround(20), nil
	}
	if r, ok := strings.CutPrefix(name, "hotspot:"); ok {
		radius, err := strconv.ParseFloat(r, 64)
		if err != nil || !(radius > 0 && radius < 1e6) {
			return nil, fmt.Errorf("bots: behavior %q: the radius after hotspot: must be a positive number of metres", name)
		}
		return hotspotAround(radius), nil
	}
	if name == "patrol" {
		return patrolAcross(DefaultPatrolReach), nil
	}
	if r, ok := strings.CutPrefix(name, "gather:"); ok {
		var f [3]float64
		parts := strings.Split(r, ",")
		bad := len(parts) != 3
		for i := 0; !bad && i < 3; i++ {
			v, err := strconv.ParseFloat(parts[i], 64)
			bad = err != nil || !(v >= 0 && v <= 1)
			f[i] = v
		}
		if bad || f[2] == 0 {
			return nil, fmt.Errorf("bots: behavior %q: want gather:X,Z,R with X, Z in [0, 1] (fractions of the world) and R in (0, 1] (of its side)", name)
		}
		return gatherAt(f[0], f[1], f[2]), nil
	}
	if r, ok := strings.CutPrefix(name, "patrol:"); ok {
		reach, err := strconv.ParseFloat(r, 64)
		if err != nil || !(reach > 0 && reach < 1e6) {
			return nil, fmt.Errorf("bots: behavior %q: the reach after patrol: must be a positive number of metres", name)
		}
		return patrolAcross(reach), nil
	}
	return nil, fmt.Errorf("bots: unknown behavior %q (want wander, hotspot, hotspot:RADIUS, gather:X,Z,R, patrol or patrol:REACH)", name)
}

// gatherAt makes bots that gather like a hotspot's, around the point at fractions (fx, fz) of
// the world, within fr of its side.
func gatherAt(fx, fz, fr float64) Factory {
	return func(world [2][2]float64) Behavior {
		w, h := world[1][0]-world[0][0], world[1][1]-world[0][1]
		return &Hotspot{Target: [2]float64{world[0][0] + fx*w, world[0][1] + fz*h}, Radius: fr * min(w, h)}
	}
}

// DefaultPatrolReach is how far either side of the centre line `patrol` bots walk, metres.
const DefaultPatrolReach = 30.0

// patrolAcross makes bots that pace back and forth across the world's vertical centre line.
func patrolAcross(reach float64) Factory {
	return func(world [2][2]float64) Behavior {
		return &Patrol{World: world, Reach: reach}
	}
}

// hotspotAround makes bots that gather within radius metres of the world's centre.
func hotspotAround(radius float64) Factory {
	return func(world [2][2]float64) Behavior {
		c := [2]float64{(world[0][0] + world[1][0]) / 2, (world[0][1] + world[1][1]) / 2}
		return &Hotspot{Target: c, Radius: radius}
	}
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

// Hotspot gathers a crowd for a world boss: each bot picks its own spot, uniformly in the disc
// of Radius around Target, walks straight there, then mills about it (within a few metres).
type Hotspot struct {
	Target [2]float64
	Radius float64
	spot   [2]float64
	picked bool
	left   int
}

// millRadius is how far a bot strays from its spot before walking back.
const millRadius = 4.0

// Next implements Behavior.
func (h *Hotspot) Next(self wire.EntityState, ok bool, rng *rand.Rand) (int8, int8, uint16, bool) {
	if !ok {
		return 0, 0, 0, false
	}
	if !h.picked {
		d, a := h.Radius*math.Sqrt(rng.Float64()), rng.Float64()*2*math.Pi
		h.spot = [2]float64{h.Target[0] + d*math.Cos(a), h.Target[1] + d*math.Sin(a)}
		h.picked = true
	}
	if h.left > 0 {
		h.left--
		return 0, 0, 0, false
	}
	x, z := wire.DequantisePos(self.X), wire.DequantisePos(self.Z)
	dx, dz := h.spot[0]-x, h.spot[1]-z
	d := math.Hypot(dx, dz)
	if d > millRadius {
		h.left = 10 // re-aim every half second
		nx, nz := normalise(dx, dz)
		return intent(nx, nz, min(1, 0.3+d/20))
	}
	a := rng.Float64() * 2 * math.Pi
	h.left = 10 + rng.IntN(30)
	return intent(math.Cos(a), math.Sin(a), 0.1+0.2*rng.Float64())
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

// Patrol paces back and forth across the vertical line through the world's centre (x =
// centre), the line a two-cell map is split at: each bot keeps to the horizontal line through
// the spot it spawned at (its z) and walks between centre − reach and centre + reach, turning at
// either end, so it crosses the centre line every few seconds (with the default reach of 30 m
// and 7 m/s, every 5–12 s). A bot that spawned outside its stretch first walks to it along the
// same line, at full speed. Its reach (60–100 % of Reach, at most the world allows), its speed (70–100 % of
// full stick) and, inside the stretch, its first direction are drawn from the bot's RNG at the
// first call, so the walk is a function of the seed, the bot's index and its spawn point. It
// re-sends its intent every RefreshTicks calls (inputs keep flowing across borders), and steers
// back to its line should anything push it off.
type Patrol struct {
	World [2][2]float64 // min, max in metres (x, z)
	Reach float64       // metres either side of the centre line

	started bool
	line    float64 // the z the bot keeps to
	lo, hi  float64 // the ends of its stretch (x)
	speed   float64 // fraction of full stick
	dir     float64 // +1 east, −1 west
	left    int     // calls until the intent is re-sent
}

// RefreshTicks is how many calls a Patrol waits between re-sending an unchanged intent.
const RefreshTicks = 5

// Next implements Behavior.
func (p *Patrol) Next(self wire.EntityState, ok bool, rng *rand.Rand) (int8, int8, uint16, bool) {
	if !ok {
		return 0, 0, 0, false
	}
	x, z := wire.DequantisePos(self.X), wire.DequantisePos(self.Z)
	if !p.started {
		p.started = true
		const margin = 2.0
		c := (p.World[0][0] + p.World[1][0]) / 2
		reach := min(p.Reach*(0.6+0.4*rng.Float64()), c-p.World[0][0]-margin)
		p.lo, p.hi = c-reach, c+reach
		p.speed = 0.7 + 0.3*rng.Float64()
		p.line = z
		switch {
		case x < p.lo:
			p.dir = 1
		case x > p.hi:
			p.dir = -1
		case rng.IntN(2) == 0:
			p.dir = 1
		default:
			p.dir = -1
		}
		return p.aim(x, z)
	}
	switch {
	case p.dir > 0 && x >= p.hi:
		p.dir = -1
		return p.aim(x, z)
	case p.dir < 0 && x <= p.lo:
		p.dir = 1
		return p.aim(x, z)
	}
	if p.left > 0 {
		p.left--
		return 0, 0, 0, false
	}
	return p.aim(x, z)
}

// aim returns the intent along the bot's line in its direction, with a slight pull back to
// the line if it has drifted more than a metre from it.
func (p *Patrol) aim(x, z float64) (int8, int8, uint16, bool) {
	p.left = RefreshTicks - 1
	dz := 0.0
	if d := p.line - z; math.Abs(d) > 1 {
		dz = math.Copysign(0.2, d)
	}
	dx, ndz := normalise(p.dir, dz)
	speed := p.speed
	if x < p.lo || x > p.hi {
		speed = 1 // still walking in
	}
	return intent(dx, ndz, speed)
}

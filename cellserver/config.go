package cellserver

import (
	"math"

	"github.com/meridian-mmo/meridian/wire"
)

// Config is the World's configuration. Distances are in metres, speeds in metres per second;
// the World converts them once to the wire's fixed-point units (wire.PosUnitsPerMetre).
type Config struct {
	// WorldMin and WorldMax bound the simulated area on x and z (metres). Positions are
	// clamped into [WorldMin, WorldMax] on both axes.
	WorldMin, WorldMax [2]float64
	// TickHz is the simulation rate; velocities are in position units per tick.
	TickHz int
	// MaxSpeed is the fastest a player may move (m/s), whatever intent it sends.
	MaxSpeed float64
	// AOIEnterRadius: an entity enters a client's view when it comes within this distance.
	AOIEnterRadius float64
	// AOILeaveRadius (> AOIEnterRadius): an entity in view leaves it only beyond this distance.
	AOILeaveRadius float64
	// MaxViewSlots caps how many entities one client sees (its own included); when more
	// qualify, the nearest are kept. At most wire.MaxViewSlots.
	MaxViewSlots int
	// HistoryTicks is how far back (in ticks) a client's acknowledged snapshot can serve as a
	// delta baseline; older acks get a full snapshot. At most wire.BaselineWindow, the views a
	// client keeps.
	HistoryTicks int
	// MaxInputsPerTick is how many inputs one client may have applied per tick; further ones
	// wait for the next ticks (a backlog after a handoff drains in a few ticks).
	MaxInputsPerTick int
	// InputGapTicks is how long a client's input that arrives ahead of a gap in its sequence
	// waits for the missing ones (inputs travel gateway → old owner → new owner and gateway →
	// new owner at a handoff, and may cross); after that the gap is skipped (counted). 0: never
	// wait.
	InputGapTicks int
	// RecordInputs lists every applied input in StepOutput.Applied (tests check that each is
	// applied exactly once).
	RecordInputs bool
	// MaxClients caps the connected clients; further joins are rejected.
	MaxClients int
	// EntityIDBase: entity ids are allocated EntityIDBase+1, EntityIDBase+2, ... and never
	// reused. Give every server a disjoint range (e.g. serverID << 40) for cluster-unique ids.
	EntityIDBase wire.EntityID
}

// Bounds enforced by Validate.
const (
	// MaxWorldCoord bounds |WorldMin|, |WorldMax| (metres) so positions fit ±2^29 units, their
	// differences an int32 and squared distances an int64.
	MaxWorldCoord = 1 << 23
	// MaxAOIRadius bounds the AOI radii (metres).
	MaxAOIRadius = 10000
	// MaxGridCells bounds the AOI grid's cell count ((world extent / AOILeaveRadius)²).
	MaxGridCells = 1 << 22
	// maxVelUnits bounds any velocity component, in units per tick.
	maxVelUnits = 1 << 16
)

// DefaultConfig returns the configuration of a 16 384 m × 16 384 m world at 20 Hz.
func DefaultConfig() Config {
	return Config{
		WorldMin:         [2]float64{0, 0},
		WorldMax:         [2]float64{16384, 16384},
		TickHz:           20,
		MaxSpeed:         7,
		AOIEnterRadius:   50,
		AOILeaveRadius:   60,
		MaxViewSlots:     256,
		HistoryTicks:     32,
		MaxInputsPerTick: 8,
		InputGapTicks:    10,
		MaxClients:       10000,
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Validate returns an error wrapping ErrInvalidConfig that names the first field out of bounds
// and the bound, e.g. "cellserver: AOILeaveRadius (40) must be > AOIEnterRadius (50)".
func (c Config) Validate() error {
	axis := [2]string{"0", "1"}
	for i := range 2 {
		lo, hi := c.WorldMin[i], c.WorldMax[i]
		if !finite(lo) || math.Abs(lo) > MaxWorldCoord {
			return configErr("WorldMin["+axis[i]+"]", lo, "must be finite and within ±%d", MaxWorldCoord)
		}
		if !finite(hi) || math.Abs(hi) > MaxWorldCoord {
			return configErr("WorldMax["+axis[i]+"]", hi, "must be finite and within ±%d", MaxWorldCoord)
		}
		if hi <= lo {
			return configErr("WorldMax["+axis[i]+"]", hi, "must be > WorldMin[%s] (%v)", axis[i], lo)
		}
	}
	if c.TickHz < 1 || c.TickHz > 255 {
		return configErr("TickHz", c.TickHz, "must be in [1, 255]")
	}
	if minSpeed := float64(c.TickHz) / wire.PosUnitsPerMetre; !finite(c.MaxSpeed) || c.MaxSpeed < minSpeed {
		return configErr("MaxSpeed", c.MaxSpeed, "must be ≥ TickHz/%d (%v) so a player moves at least one position unit per tick",
			wire.PosUnitsPerMetre, minSpeed)
	}
	if maxSpeed := float64(maxVelUnits) * float64(c.TickHz) / wire.PosUnitsPerMetre; c.MaxSpeed > maxSpeed {
		return configErr("MaxSpeed", c.MaxSpeed, "must be ≤ %v (%d position units per tick)", maxSpeed, maxVelUnits)
	}
	if !finite(c.AOIEnterRadius) || c.AOIEnterRadius < 1 || c.AOIEnterRadius > MaxAOIRadius {
		return configErr("AOIEnterRadius", c.AOIEnterRadius, "must be in [1, %d]", MaxAOIRadius)
	}
	if !finite(c.AOILeaveRadius) || c.AOILeaveRadius <= c.AOIEnterRadius {
		return configErr("AOILeaveRadius", c.AOILeaveRadius, "must be > AOIEnterRadius (%v)", c.AOIEnterRadius)
	}
	if c.AOILeaveRadius > MaxAOIRadius {
		return configErr("AOILeaveRadius", c.AOILeaveRadius, "must be ≤ %d", MaxAOIRadius)
	}
	if c.MaxViewSlots < 1 || c.MaxViewSlots > wire.MaxViewSlots {
		return configErr("MaxViewSlots", c.MaxViewSlots, "must be in [1, %d]", wire.MaxViewSlots)
	}
	if c.HistoryTicks < 2 || c.HistoryTicks > wire.BaselineWindow {
		return configErr("HistoryTicks", c.HistoryTicks, "must be in [2, %d] (wire.BaselineWindow: clients keep no older views)", wire.BaselineWindow)
	}
	if c.MaxInputsPerTick < 1 || c.MaxInputsPerTick > 1024 {
		return configErr("MaxInputsPerTick", c.MaxInputsPerTick, "must be in [1, 1024]")
	}
	if c.InputGapTicks < 0 || c.InputGapTicks > 200 {
		return configErr("InputGapTicks", c.InputGapTicks, "must be in [0, 200]")
	}
	if c.MaxClients < 1 || c.MaxClients > 1<<20 {
		return configErr("MaxClients", c.MaxClients, "must be in [1, %d]", 1<<20)
	}
	if n := c.gridCells(); n > MaxGridCells {
		return configErr("AOILeaveRadius", c.AOILeaveRadius,
			"gives an AOI grid of %.0f cells over the world; must be ≤ %d (raise the radius or shrink the world)", n, MaxGridCells)
	}
	return nil
}

// cellUnits is the AOI grid's cell size in position units.
func (c Config) cellUnits() int32 {
	return int32(math.Ceil(c.AOILeaveRadius * wire.PosUnitsPerMetre))
}

// gridCells is the number of cells of the AOI grid (as float64: it may be huge when invalid).
func (c Config) gridCells() float64 {
	cs := float64(c.cellUnits())
	extent := func(i int) float64 {
		return float64(wire.QuantisePos(c.WorldMax[i])) - float64(wire.QuantisePos(c.WorldMin[i]))
	}
	w := math.Floor(extent(0)/cs) + 1
	h := math.Floor(extent(1)/cs) + 1
	return w * h
}

package wire

import "math"

// Quantisation: the wire carries positions as int32 fixed-point on one world-wide grid of
// 1/PosUnitsPerMetre m, velocities as int32 position units per tick, and yaw as a YawBits-bit
// fraction of a turn. These helpers convert from and to float64 at the edges (simulation,
// rendering); everything between the edges stays integer, so every machine extrapolates the
// same way.

// QuantisePos converts metres to position units, rounding to the nearest 1/PosUnitsPerMetre m
// (halves away from zero). Values beyond the int32 range saturate; NaN gives 0. It serves
// velocities too: QuantisePos(metresPerSecond / tickHz) is a velocity in units per tick.
func QuantisePos(metres float64) int32 {
	u := math.Round(metres * PosUnitsPerMetre)
	switch {
	case u != u: // NaN
		return 0
	case u >= math.MaxInt32:
		return math.MaxInt32
	case u <= math.MinInt32:
		return math.MinInt32
	}
	return int32(u)
}

// DequantisePos converts position units to metres. It is exact: every int32 is a float64.
func DequantisePos(units int32) float64 {
	return float64(units) / PosUnitsPerMetre
}

// QuantiseYaw converts an angle in radians, any value, to 0..YawSteps-1: the angle is wrapped
// into [0, 2π) and rounded to the nearest of YawSteps steps (2π/1024 ≈ 0.35°); an angle that
// rounds up to a whole turn wraps to 0. NaN and ±Inf give 0.
func QuantiseYaw(radians float64) uint16 {
	if math.IsNaN(radians) || math.IsInf(radians, 0) {
		return 0
	}
	turns := math.Mod(radians/(2*math.Pi), 1) // in (-1, 1)
	if turns < 0 {
		turns++
	}
	return uint16(int(math.Round(turns*YawSteps)) & (YawSteps - 1))
}

// DequantiseYaw converts a quantised yaw to radians in [0, 2π). Bits above YawBits are ignored.
func DequantiseYaw(yaw uint16) float64 {
	return float64(yaw&(YawSteps-1)) * (2 * math.Pi / YawSteps)
}

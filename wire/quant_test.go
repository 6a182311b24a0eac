package wire

import (
	"math"
	"testing"
)

func TestPosResolution(t *testing.T) {
	if res := 1.0 / PosUnitsPerMetre; res > 0.02 {
		t.Fatalf("position resolution %v m, want ≤ 2 cm", res)
	}
	for _, m := range []float64{0, 0.001, -0.001, 0.0078, 0.0079, 1.5, -1.5, 123.456, -9876.54321, 16384, 3.14159e6, -3.3e7} {
		q := QuantisePos(m)
		if err := math.Abs(DequantisePos(q) - m); err > 0.5/PosUnitsPerMetre+1e-12 {
			t.Errorf("QuantisePos(%v) = %d → %v: error %v > half a unit", m, q, DequantisePos(q), err)
		}
	}
	for _, q := range []int32{0, 1, -1, 64, math.MaxInt32, math.MinInt32, 123456789} {
		if got := QuantisePos(DequantisePos(q)); got != q {
			t.Errorf("QuantisePos(DequantisePos(%d)) = %d", q, got)
		}
	}
	if QuantisePos(0.5/PosUnitsPerMetre) != 1 || QuantisePos(-0.5/PosUnitsPerMetre) != -1 {
		t.Error("halves must round away from zero")
	}
}

func TestPosSaturates(t *testing.T) {
	cases := map[float64]int32{
		math.Inf(1): math.MaxInt32, math.Inf(-1): math.MinInt32, math.NaN(): 0,
		1e12: math.MaxInt32, -1e12: math.MinInt32,
	}
	for m, want := range cases {
		if got := QuantisePos(m); got != want {
			t.Errorf("QuantisePos(%v) = %d, want %d", m, got, want)
		}
	}
}

func TestYaw(t *testing.T) {
	step := 2 * math.Pi / YawSteps
	for i := -3000; i <= 3000; i++ {
		a := float64(i) * 0.0137
		q := QuantiseYaw(a)
		if q >= YawSteps {
			t.Fatalf("QuantiseYaw(%v) = %d out of range", a, q)
		}
		back := DequantiseYaw(q)
		if back < 0 || back >= 2*math.Pi {
			t.Fatalf("DequantiseYaw(%d) = %v out of [0, 2π)", q, back)
		}
		// Angular distance, modulo a turn.
		d := math.Abs(math.Remainder(back-a, 2*math.Pi))
		if d > step/2+1e-9 {
			t.Fatalf("yaw %v → %d → %v: error %v > half a step", a, q, back, d)
		}
	}
	for q := uint16(0); q < YawSteps; q++ {
		if got := QuantiseYaw(DequantiseYaw(q)); got != q {
			t.Fatalf("QuantiseYaw(DequantiseYaw(%d)) = %d", q, got)
		}
	}
	cases := map[float64]uint16{0: 0, math.Pi: YawSteps / 2, -math.Pi / 2: 3 * YawSteps / 4,
		2 * math.Pi: 0, 2*math.Pi - step/4: 0, -step / 4: 0, math.NaN(): 0, math.Inf(1): 0}
	for a, want := range cases {
		if got := QuantiseYaw(a); got != want {
			t.Errorf("QuantiseYaw(%v) = %d, want %d", a, got, want)
		}
	}
	if DequantiseYaw(YawSteps+3) != DequantiseYaw(3) {
		t.Error("DequantiseYaw must ignore bits above YawBits")
	}
}

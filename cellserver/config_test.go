package cellserver

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"leave below enter", func(c *Config) { c.AOILeaveRadius = 40 },
			"cellserver: AOILeaveRadius (40) must be > AOIEnterRadius (50)"},
		{"leave equal enter", func(c *Config) { c.AOILeaveRadius = 50 }, "AOILeaveRadius (50) must be >"},
		{"empty world", func(c *Config) { c.WorldMax[1] = 0 }, "WorldMax[1] (0) must be > WorldMin[1] (0)"},
		{"NaN world", func(c *Config) { c.WorldMin[0] = math.NaN() }, "WorldMin[0] (NaN) must be finite"},
		{"huge world", func(c *Config) { c.WorldMax[0] = 1e9 }, "WorldMax[0] (1e+09) must be finite and within"},
		{"tick rate", func(c *Config) { c.TickHz = 0 }, "TickHz (0) must be in [1, 255]"},
		{"speed zero", func(c *Config) { c.MaxSpeed = 0 }, "MaxSpeed (0) must be ≥"},
		{"speed NaN", func(c *Config) { c.MaxSpeed = math.NaN() }, "MaxSpeed (NaN)"},
		{"speed huge", func(c *Config) { c.MaxSpeed = 1e9 }, "MaxSpeed (1e+09) must be ≤"},
		{"enter radius", func(c *Config) { c.AOIEnterRadius = 0 }, "AOIEnterRadius (0) must be in [1, 10000]"},
		{"leave radius huge", func(c *Config) { c.AOILeaveRadius = 2e4 }, "AOILeaveRadius (20000) must be ≤ 10000"},
		{"view slots", func(c *Config) { c.MaxViewSlots = 1025 }, "MaxViewSlots (1025) must be in [1, 1024]"},
		{"history", func(c *Config) { c.HistoryTicks = 1 }, "HistoryTicks (1) must be in [2, 32]"},
		{"history beyond wire window", func(c *Config) { c.HistoryTicks = 33 }, "HistoryTicks (33)"},
		{"inputs", func(c *Config) { c.MaxInputsPerTick = 0 }, "MaxInputsPerTick (0) must be in [1, 1024]"},
		{"clients", func(c *Config) { c.MaxClients = 0 }, "MaxClients (0) must be in [1, 1048576]"},
		{"grid too fine", func(c *Config) { c.WorldMin = [2]float64{-1e6, -1e6}; c.WorldMax = [2]float64{1e6, 1e6} },
			"AOILeaveRadius (60) gives an AOI grid of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field == "" {
				t.Errorf("error %v is not a *ConfigError naming a field", err)
			}
			if _, err := NewWorld(c, nil); err == nil {
				t.Error("NewWorld accepted the invalid config")
			}
		})
	}
}

package partitioner

import (
	"errors"
	"fmt"
	"math"
)

// Config holds every parameter of the policy. Loads are in entities (a cell's load is the
// number of entities its server last reported for it at its current epoch); rounds are calls
// of Plan (the leader calls it on a period, e.g. 1 s); lengths are in metres.
//
// The gaps between the thresholds are the hysteresis that keeps cells from flapping: a cell
// is split only above the split threshold (never below 2 × MergeLoad), two sibling cells are
// merged only when together they are below MergeLoad, servers are rebalanced only when the
// heaviest is more than Imbalance above the mean, and a cell that changed is left alone for
// CooldownRounds rounds.
type Config struct {
	// SplitLoad (entities, ≥ 1) is the absolute split threshold: a cell reporting more
	// entities than this is split, whatever the other servers carry. It bounds how much one
	// cell (and so one migration) can hold. Default 2000.
	SplitLoad int
	// SplitFraction (≥ 0; 0 disables the rule) is the relative split threshold as a fraction
	// of the share, the mean number of entities per live, non-draining server: a cell with more
	// than SplitFraction × share entities is split, so that every server's load is made of
	// pieces small enough to balance with. The effective threshold is
	// min(SplitLoad, max(SplitFraction × share, 2 × MergeLoad, 2 × MinTransfer)). Default 0.5.
	SplitFraction float64
	// MergeLoad (entities, ≥ 0; 0 disables merging; 2 × MergeLoad ≤ SplitLoad) is the low-water
	// mark: two sibling cells (the two leaves of one tree node) holding fewer entities than this
	// together are merged back into one. Default 250.
	MergeLoad int
	// MinCells (cells, ≥ 0) is the number of cells below which nothing is merged; the number
	// of live, non-draining servers is used when it is larger (so every server can keep a
	// cell). Default 0.
	MinCells int
	// Imbalance (> 0, ≤ 1) is the balancing trigger: servers are rebalanced (boundary shifts,
	// then moves) only while the heaviest server's load per capacity exceeds (1 + Imbalance) ×
	// the mean load per capacity. Default 0.05 (BigWorld held cell loads within ±5 %).
	Imbalance float64
	// MaxShiftFraction (> 0, ≤ 1) caps one boundary shift at this fraction of the load of the
	// cell that shrinks, so that an inaccurate histogram cannot swing the whole cell across.
	// Default 0.5.
	MaxShiftFraction float64
	// MinTransfer (entities, ≥ 1): a shift or a balancing move expected to carry fewer entities
	// than this is not worth its churn and is not proposed. Default 10.
	MinTransfer int
	// MinSplitShare (≥ 0, ≤ 0.5): a split whose lighter half is expected to hold less than this
	// fraction of the cell's entities (because the median had to be clamped to keep both halves
	// at least the map's MinCellSize) is not proposed. Default 0.25.
	MinSplitShare float64
	// CooldownRounds (rounds, ≥ 0): a cell whose epoch changed, or for which an operation was
	// proposed, is not merged, shifted or moved by balancing during the next CooldownRounds
	// rounds (cells of dead or draining servers are moved off regardless). Default 2.
	CooldownRounds int
	// SplitCooldownRounds (rounds, ≥ 0, ≤ CooldownRounds) is the same for splits. Splitting a
	// cell that is still above the split threshold, as measured at its new epoch, only refines
	// the map (it cannot flap: its halves stay above the merge load), so a hot crowd may be cut
	// down level by level on consecutive reports. Default 0.
	SplitCooldownRounds int
	// MaxOpsPerRound (operations, ≥ 1) is the churn budget: at most this many operations per
	// round, never two touching the same cell. Default 4.
	MaxOpsPerRound int
	// AggressionRecoveryRounds (rounds, ≥ 1): when the boundary of a node is shifted back in the
	// direction opposite to its previous shift, the node's aggression (the fraction of the
	// wanted amount a shift moves) halves, down to 1/16; it doubles back, up to 1, after every
	// AggressionRecoveryRounds rounds without a reversal (BigWorld's damping). Default 10.
	AggressionRecoveryRounds int
	// Quantum (metres, ≥ 0; 0: no rounding) is the grid split and shift coordinates are rounded
	// to, so the map carries short numbers and tiny shifts are not proposed. Default 0.25.
	Quantum float64
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		SplitLoad:                2000,
		SplitFraction:            0.5,
		MergeLoad:                250,
		MinCells:                 0,
		Imbalance:                0.05,
		MaxShiftFraction:         0.5,
		MinTransfer:              10,
		MinSplitShare:            0.25,
		CooldownRounds:           2,
		SplitCooldownRounds:      0,
		MaxOpsPerRound:           4,
		AggressionRecoveryRounds: 10,
		Quantum:                  0.25,
	}
}

// Validate checks every field against its bounds. The error wraps ErrInvalidConfig and names
// each bad field and the bound it breaks, e.g. "partitioner: SplitLoad (0) must be ≥ 1".
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, &configError{msg: fmt.Sprintf(format, a...)}) }
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

	if c.SplitLoad < 1 {
		bad("SplitLoad (%d) must be ≥ 1", c.SplitLoad)
	}
	if !finite(c.SplitFraction) || c.SplitFraction < 0 {
		bad("SplitFraction (%v) must be finite and ≥ 0", c.SplitFraction)
	}
	if c.MergeLoad < 0 {
		bad("MergeLoad (%d) must be ≥ 0", c.MergeLoad)
	} else if c.SplitLoad >= 1 && 2*int64(c.MergeLoad) > int64(c.SplitLoad) {
		bad("MergeLoad (%d) must be ≤ SplitLoad/2 (%d)", c.MergeLoad, c.SplitLoad/2)
	}
	if c.MinCells < 0 {
		bad("MinCells (%d) must be ≥ 0", c.MinCells)
	}
	if !finite(c.Imbalance) || c.Imbalance <= 0 || c.Imbalance > 1 {
		bad("Imbalance (%v) must be > 0 and ≤ 1", c.Imbalance)
	}
	if !finite(c.MaxShiftFraction) || c.MaxShiftFraction <= 0 || c.MaxShiftFraction > 1 {
		bad("MaxShiftFraction (%v) must be > 0 and ≤ 1", c.MaxShiftFraction)
	}
	if c.MinTransfer < 1 {
		bad("MinTransfer (%d) must be ≥ 1", c.MinTransfer)
	}
	if !finite(c.MinSplitShare) || c.MinSplitShare < 0 || c.MinSplitShare > 0.5 {
		bad("MinSplitShare (%v) must be ≥ 0 and ≤ 0.5", c.MinSplitShare)
	}
	if c.CooldownRounds < 0 {
		bad("CooldownRounds (%d) must be ≥ 0", c.CooldownRounds)
	}
	if c.SplitCooldownRounds < 0 || (c.CooldownRounds >= 0 && c.SplitCooldownRounds > c.CooldownRounds) {
		bad("SplitCooldownRounds (%d) must be ≥ 0 and ≤ CooldownRounds (%d)", c.SplitCooldownRounds, c.CooldownRounds)
	}
	if c.MaxOpsPerRound < 1 {
		bad("MaxOpsPerRound (%d) must be ≥ 1", c.MaxOpsPerRound)
	}
	if c.AggressionRecoveryRounds < 1 {
		bad("AggressionRecoveryRounds (%d) must be ≥ 1", c.AggressionRecoveryRounds)
	}
	if !finite(c.Quantum) || c.Quantum < 0 {
		bad("Quantum (%v) must be finite and ≥ 0", c.Quantum)
	}
	return errors.Join(errs...)
}

package partitioner

import (
	"fmt"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// checkPlan panics unless ops is a valid round for m: within the churn budget, touching
// pairwise disjoint, existing, unlocked cells at their current epochs, each operation valid on
// m as the FSM would judge it (bounds, MinCellSize, siblings, live targets). Plan calls it when
// built with -tags invariants; tests call it directly.
func checkPlan(m *raftmeta.Map, cfg Config, ops []raftmeta.Command) {
	if err := validatePlan(m, cfg, ops); err != nil {
		panic(err)
	}
}

func validatePlan(m *raftmeta.Map, cfg Config, ops []raftmeta.Command) error {
	if len(ops) > cfg.MaxOpsPerRound {
		return fmt.Errorf("partitioner: %d operations, budget %d", len(ops), cfg.MaxOpsPerRound)
	}
	v := newView(m)
	used := map[raftmeta.CellID]bool{}
	cell := func(id raftmeta.CellID, e raftmeta.Epoch) (*cellView, error) {
		c, ok := v.byID[id]
		switch {
		case !ok:
			return nil, fmt.Errorf("cell %d does not exist", id)
		case c.Epoch != e:
			return nil, fmt.Errorf("cell %d epoch %d, the operation carries %d", id, c.Epoch, e)
		case c.locked:
			return nil, fmt.Errorf("cell %d is locked", id)
		case used[id]:
			return nil, fmt.Errorf("cell %d touched twice in one round", id)
		}
		used[id] = true
		return c, nil
	}
	target := func(id raftmeta.ServerID) error {
		s, ok := v.byS[id]
		if !ok || !s.target {
			return fmt.Errorf("server %d is not a live, non-draining server", id)
		}
		return nil
	}
	wide := func(r raftmeta.Rect) bool { return r[2]-r[0] >= v.minSize && r[3]-r[1] >= v.minSize }
	for i, op := range ops {
		var err error
		switch op := op.(type) {
		case raftmeta.Split:
			var c *cellView
			if c, err = cell(op.Cell, op.Epoch); err != nil {
				break
			}
			lo, hi := axisRange(c.Bounds, op.Axis)
			low, high := c.Bounds, c.Bounds
			if op.Axis == raftmeta.AxisX {
				low[2], high[0] = op.At, op.At
			} else {
				low[3], high[1] = op.At, op.At
			}
			switch {
			case op.Axis != raftmeta.AxisX && op.Axis != raftmeta.AxisZ:
				err = fmt.Errorf("axis %q", op.Axis)
			case !(op.At > lo && op.At < hi) || !wide(low) || !wide(high):
				err = fmt.Errorf("split at %v leaves a half under %v", op.At, v.minSize)
			case op.NewOwner != 0:
				err = target(op.NewOwner)
			}
		case raftmeta.Move:
			var c *cellView
			if c, err = cell(op.Cell, op.Epoch); err != nil {
				break
			}
			if err = target(op.To); err == nil && c.Owner == op.To {
				err = fmt.Errorf("server %d already owns cell %d", op.To, c.ID)
			}
		case raftmeta.Merge:
			var lo, hi *cellView
			if lo, err = cell(op.Low, op.LowEpoch); err != nil {
				break
			}
			if hi, err = cell(op.High, op.HighEpoch); err != nil {
				break
			}
			if lo.parent == nil || lo.parent != hi.parent || lo.parent.low != lo {
				err = fmt.Errorf("cells %d and %d are not the low and high leaves of one node", lo.ID, hi.ID)
			}
		case raftmeta.Shift:
			var pr *leafPair
			for _, p := range v.pairs {
				if p.node == op.Node {
					pr = p
				}
			}
			if pr == nil {
				err = fmt.Errorf("node %d is not a pair of leaves", op.Node)
				break
			}
			if len(op.Epochs) != 2 {
				err = fmt.Errorf("shift lists %d epochs", len(op.Epochs))
				break
			}
			for _, c := range []*cellView{pr.low, pr.high} {
				e, ok := op.Epochs[c.ID]
				if !ok {
					err = fmt.Errorf("shift does not list cell %d", c.ID)
					break
				}
				if _, err = cell(c.ID, e); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
			lo, _ := axisRange(pr.low.Bounds, pr.axis)
			_, hi := axisRange(pr.high.Bounds, pr.axis)
			if !(op.At > lo && op.At < hi) || !(op.At-lo >= v.minSize) || !(hi-op.At >= v.minSize) || op.At == pr.at {
				err = fmt.Errorf("shift of node %d to %v (from %v) leaves a cell under %v", op.Node, op.At, pr.at, v.minSize)
			}
		default:
			err = fmt.Errorf("unexpected operation %T", op)
		}
		if err != nil {
			return fmt.Errorf("partitioner: operation %d (%#v): %w", i, op, err)
		}
	}
	return nil
}

package raftmeta

// The leader's planning loop (DESIGN.md §2: the partitioner runs on the leader only, on a
// period; its output is proposed as ordinary Raft commands). Every PlanInterval the leader calls
// Config.Planner with its map and proposes each operation returned as a Prepare with
// ChangeTimeout: an operation that moves no region between live servers is applied at once,
// any other becomes a two-phase change (changes.go) that the cell servers carry out. The
// planner sees the leader's FSM, which holds every committed entry once the leadership barrier
// is applied, and every operation carries the epochs it was planned from, so an operation
// planned from a map that changed meanwhile is rejected (stale_epoch, cell_migrating), never
// misapplied.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Results of a planned (or drain) operation, the result label of meridian_meta_planned_ops_total.
const (
	planApplied  = "applied"  // applied at once (no region changed hands)
	planPrepared = "prepared" // a two-phase change started
	planRejected = "rejected" // the map rejected it (stale epoch, cell migrating, ...)
	planFailed   = "failed"   // not committed, or the outcome is unknown (leadership lost, timeout)
)

// runPlanner runs the planner every PlanInterval until ctx ends (leadership lost or node
// closing).
func (n *Node) runPlanner(ctx context.Context) {
	t := time.NewTicker(n.cfg.PlanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ops, err := n.callPlanner(n.fsm.Map())
		if err != nil {
			n.log.Error("planner failed", "err", err)
			continue
		}
		for _, op := range ops {
			if !n.proposeOp(ctx, op, "planner") {
				break
			}
		}
	}
}

// callPlanner calls the planner, turning a panic into an error (a bug in the policy must not
// take the metadata node down).
func (n *Node) callPlanner(m Map) (ops []Command, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("planner panicked: %v", r)
		}
	}()
	return n.cfg.Planner(m), nil
}

// proposeOp proposes op wrapped in a Prepare with ChangeTimeout, logs and counts the outcome.
// It reports false when the loop should stop (leadership or the node's life ended).
func (n *Node) proposeOp(ctx context.Context, op Command, source string) bool {
	name := "nil"
	if op != nil {
		name = commandName(op.Type())
	}
	if source == "drain" {
		name = "drain_move"
	}
	b, err := EncodeCommand(op)
	if err != nil {
		n.met.planned.WithLabelValues(name, planRejected).Inc()
		n.log.Warn("planned operation cannot be encoded", "source", source, "op", name, "err", err)
		return true
	}
	res, err := n.Propose(ctx, Prepare{Op: b, Now: time.Now().UnixNano(), Timeout: int64(n.cfg.ChangeTimeout)})
	switch {
	case err == nil && res.Change == 0:
		n.met.planned.WithLabelValues(name, planApplied).Inc()
		n.log.Info("planned operation applied", "source", source, "op", name, "detail", fmt.Sprintf("%+v", op), "map_version", res.Version)
	case err == nil:
		n.met.planned.WithLabelValues(name, planPrepared).Inc()
		n.log.Info("planned operation started a change", "source", source, "op", name, "detail", fmt.Sprintf("%+v", op),
			"change", res.Change, "map_version", res.Version)
	case res != nil:
		n.met.planned.WithLabelValues(name, planRejected).Inc()
		n.log.Debug("planned operation rejected", "source", source, "op", name, "detail", fmt.Sprintf("%+v", op), "err", err)
	default:
		n.met.planned.WithLabelValues(name, planFailed).Inc()
		if ctx.Err() != nil || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) ||
			errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrShutdown) {
			return false
		}
		n.log.Warn("proposing a planned operation failed", "source", source, "op", name, "err", err)
	}
	return true
}

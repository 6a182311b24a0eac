package raftmeta

// Leases (DESIGN.md §2). A cell server's lease is granted by Register and renewed by
// Heartbeat, both stamped with the leader's clock; the server self-fences when it cannot renew
// before its lease ends. The leader runs the reaper below, and only the leader: every
// ReaperInterval it proposes MarkDead for each live server whose lease ended more than
// DeadMargin ago, and the FSM reassigns that server's cells to live servers (least loaded
// first). By the time a cell changes owner its old owner has stopped simulating it for at
// least DeadMargin, so no cell ever has two active owners.
//
// A new leader first grants every server a grace period of one LeaseTTL from the moment it
// became leader: leases stamped by the old leader's clock are not trusted to the nanosecond,
// and after the whole metadata service was down (no server could renew) servers get a chance to
// heartbeat before being declared dead. The FSM backs this up: MarkDead is rejected
// (server_not_expired) if a heartbeat renewed the lease after the reaper looked.
//
// The same loop looks after two-phase changes (changes.go): it proposes Abort for every pending
// change whose Deadline has passed (by the leader's clock; aborting is always safe, since the
// sources stay authoritative until the commit), and for every live draining server it proposes
// a Prepare of a Move for each of its unlocked cells, to the live non-draining server owning
// the fewest cells (ties: the lower ID), as Drain without Migrate would have chosen. A move
// that is aborted (deadline, a server dying) is proposed again on a later round, so a draining
// server ends up owning nothing as long as some server can take its cells.

import (
	"context"
	"errors"
	"slices"
	"time"
)

// runReaper runs until ctx ends (leadership lost or node closing).
func (n *Node) runReaper(ctx context.Context, leaderSince time.Time) {
	t := time.NewTicker(n.cfg.ReaperInterval)
	defer t.Stop()
	lastErr := map[ServerID]string{} // log a failing server once per distinct error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		n.reap(ctx, leaderSince, now, lastErr)
		n.expireChanges(ctx, now)
		n.migrateDraining(ctx)
	}
}

// expireChanges proposes Abort for every pending change whose deadline is before now.
func (n *Node) expireChanges(ctx context.Context, now time.Time) {
	for _, ch := range n.fsm.Map().Changes {
		if now.UnixNano() <= ch.Deadline {
			continue
		}
		_, err := n.Propose(ctx, Abort{Change: ch.ID, Reason: "deadline passed"})
		switch {
		case err == nil:
			n.met.changesAborted.Inc()
			n.log.Warn("change not complete by its deadline: aborted", "change", ch.ID, "op", commandName(ch.OpType),
				"cells", ch.Cells, "late", time.Duration(now.UnixNano()-ch.Deadline).Round(time.Millisecond))
		case errors.Is(err, ErrUnknownChange):
			// Committed or aborted meanwhile.
		case ctx.Err() != nil, errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader), errors.Is(err, ErrLeadershipLost):
			return
		default:
			n.log.Warn("aborting an expired change failed; retrying", "change", ch.ID, "err", err)
		}
	}
}

// migrateDraining proposes a two-phase move of every unlocked cell of every live draining
// server (see the file comment).
func (n *Node) migrateDraining(ctx context.Context) {
	m := n.fsm.Map()
	load := map[ServerID]int{}
	var takers []ServerID
	for _, s := range m.Servers {
		if s.Alive && !s.Draining {
			takers = append(takers, s.ID)
			load[s.ID] = 0
		}
	}
	if len(takers) == 0 {
		return
	}
	for _, c := range m.Cells {
		if _, ok := load[c.Owner]; ok {
			load[c.Owner]++
		}
	}
	draining := map[ServerID]bool{}
	for _, s := range m.Servers {
		if s.Alive && s.Draining {
			draining[s.ID] = true
		}
	}
	for _, c := range m.Cells { // sorted by ID
		if !draining[c.Owner] || c.State != CellActive {
			continue
		}
		best := slices.MinFunc(takers, func(a, b ServerID) int {
			if load[a] != load[b] {
				return load[a] - load[b]
			}
			return cmpU64(uint64(a), uint64(b))
		})
		load[best]++
		if !n.proposeOp(ctx, Move{Cell: c.ID, Epoch: c.Epoch, To: best}, "drain") {
			return
		}
	}
}

// reap proposes MarkDead for every live server whose lease (or the leader's grace period)
// ended more than DeadMargin before now.
func (n *Node) reap(ctx context.Context, leaderSince, now time.Time, lastErr map[ServerID]string) {
	grace := leaderSince.Add(n.cfg.LeaseTTL).UnixNano()
	for _, s := range n.fsm.Map().Servers {
		if !s.Alive {
			delete(lastErr, s.ID)
			continue
		}
		deadline := max(s.LeaseExpires, grace) + int64(n.cfg.DeadMargin)
		if now.UnixNano() <= deadline {
			continue
		}
		res, err := n.Propose(ctx, MarkDead{Server: s.ID, Now: now.UnixNano()})
		switch {
		case err == nil:
			delete(lastErr, s.ID)
			n.met.reaped.Inc()
			n.log.Warn("cell server lease lapsed: marked dead, its cells reassigned",
				"server", s.ID, "lease_expired_ago", time.Duration(now.UnixNano()-s.LeaseExpires).Round(time.Millisecond),
				"map_version", res.Version)
		case errors.Is(err, ErrServerNotExpired), errors.Is(err, ErrServerDead), errors.Is(err, ErrUnknownServer):
			// A heartbeat, deregistration or earlier MarkDead got there first.
		case ctx.Err() != nil:
			return
		default:
			if code := ErrorCode(err); lastErr[s.ID] != code {
				lastErr[s.ID] = code
				n.log.Warn("marking a lapsed cell server dead failed; retrying", "server", s.ID, "err", err)
			}
			if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrLeadershipLost) {
				return
			}
		}
	}
}

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

import (
	"context"
	"errors"
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
		n.reap(ctx, leaderSince, time.Now(), lastErr)
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

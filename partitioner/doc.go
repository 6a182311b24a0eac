// Package partitioner is Meridian's load-driven partitioning policy: given the partition map
// and the cell servers' latest load reports, it decides which splits, merges, boundary shifts
// and moves to propose (DESIGN.md §2). The raftmeta leader calls Planner.Plan once per period
// (e.g. 1 s) and proposes the returned operations (wrapped in Prepare) as ordinary Raft
// commands; Reasons says why each was chosen, for the logs.
//
// # What it owns, what it must not do
//
// It owns the policy only: thresholds, hysteresis, the choice of cells, axes, coordinates and
// target servers. It does no I/O, reads no clock, starts no goroutine and uses no random
// source (DESIGN.md §1): the only inputs are the maps passed to Plan and the Config, the only
// state is the Planner's memory of earlier rounds (rounds are counted by calls), so the same
// sequence of maps always yields the same sequence of operations. It does not apply
// operations, check leases or decide that a server is dead: the map says which servers are
// alive and draining, and the FSM validates and applies what is proposed.
//
// # Inputs
//
// The load of a cell is the Entities its owner last reported for it, but only if the report's
// Epoch is the cell's current epoch; otherwise (no report yet, or one from before the cell
// last changed) the load is unknown. A server's load is the sum of its cells' loads, weighed
// by capacity: load/Capacity (a server that declares no capacity counts as big as the
// average declared one; if none declares one, all weigh the same). A server with a cell of
// unknown load is "unmeasured": it is neither the source nor the target of balancing, and the
// mean load per capacity is taken over the measured live, non-draining servers. Cells that
// are migrating or listed in a pending Change are locked: no operation touches them.
//
// # The policy, in order, each round
//
//  1. Evacuation. Every cell owned by a dead, draining or unknown server is moved to a live,
//     non-draining one: the least loaded, except that a server owning a bordering cell
//     (locality: fewer ghosts and cross-server handoffs) is preferred unless that would put it
//     above the balance band while another would not. Neither the cooldown nor an unknown load
//     holds evacuation back.
//  2. Splits. A cell holding more than the split threshold — min(SplitLoad, max(SplitFraction
//     × the mean entities per server, 2 × MergeLoad, 2 × MinTransfer)) — is split, heaviest
//     first, at the median of its entities (from the report's histogram, interpolating inside
//     the bin; the middle of the gap if the median falls between two clusters), on the axis
//     whose split gives the more even halves; when both are even (within 10 % of the load), the
//     axis whose halves are squarer (for a centred median, the longer side). The median is
//     clamped (and rounded to Quantum) so both halves keep the map's MinCellSize; a split whose
//     lighter half would then hold less than MinSplitShare of the load is not made. If the
//     owner is above the balance band, the high half goes to the least loaded server
//     (NewOwner), provided that ends below the owner's current load.
//  3. Balancing, while the heaviest measured server's load per capacity exceeds (1 +
//     Imbalance) × the mean. For the heaviest server that can shed load, the first of:
//     (a) a boundary shift — the least churn: an internal node whose two children are leaves
//     owned by this server and by one below the mean has its line moved into the heavy cell so
//     that ΔE = min(heavy's excess, light's deficit) entities change sides (scaled by the
//     node's aggression, capped at MaxShiftFraction of the heavy cell's load; the line is
//     placed by the heavy cell's histogram, rounded to Quantum, and clamped so the heavy cell
//     keeps MinCellSize); (b) a move of one of its cells to the lightest server, the cell that
//     lowers the larger of the two loads most, preferring cells that border the target's;
//     (c) a shift toward a lighter neighbour above the mean (diffusion: half of what would
//     equalise them, at most to the middle of the band); (d) when its cells are too coarse to
//     move whole, a split that cuts a slice of about ΔE entities off one of them for the
//     lightest server (its high part, via NewOwner), leaving a leaf pair that later shifts
//     fine-tune. Every balancing step must lower the larger of the two servers' loads by at
//     least half of MinTransfer entities even if the whole histogram bin the new line lands in
//     moved (so a concentrated crowd is never swung back and forth across a line: when the
//     interpolated place fails that test, the bin edge before it is tried). With steady loads
//     each step lowers Σ load²/capacity over the servers, so balancing cannot cycle.
//  4. Merges. Sibling leaves (the two leaves of one node) holding fewer than MergeLoad
//     entities together are merged, same-owner pairs first, while more than max(MinCells,
//     live servers) cells remain. The merged cell keeps the low cell's owner; a merge across
//     owners is made only if it keeps that owner within the band, otherwise the low cell is
//     first moved to the high cell's owner (if that keeps it within the band) and the pair
//     merges after its cooldown.
//
// # Churn and hysteresis
//
// At most MaxOpsPerRound operations per round, never two touching the same cell (so each is
// valid on the map it was planned on, whatever order the others apply in). The thresholds
// leave gaps: a split's halves hold more than 2 × MergeLoad together and a balancing cut's
// parts at least MergeLoad, so neither is merged back while the load holds; balancing starts
// only above (1 + Imbalance) × the mean and aims at the mean. A cell whose epoch changed, or
// for which an operation was proposed, is left alone for CooldownRounds rounds
// (SplitCooldownRounds for splits: refining a cell still above the threshold cannot flap).
// A node whose boundary is shifted back against its previous shift halves its aggression (down
// to 1/16), which recovers after AggressionRecoveryRounds calm rounds (BigWorld's damping). A
// steady balanced load therefore produces no operations.
//
// With -tags invariants Plan checks its own output (budget, disjoint unlocked cells at their
// current epochs, every operation valid on the map) and panics on a violation.
package partitioner

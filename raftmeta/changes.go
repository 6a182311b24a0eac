package raftmeta

// Two-phase map changes (types.go: Change, Prepare, Staged, Abort; DESIGN.md §3).
//
// Prepare dry-runs its operation on a copy of the state (clone + the plain command's code), so
// it validates exactly as applying the operation would, and compares the copy with the state:
//
//   - a cell of the state whose owner or bounds differ in the copy (or that is gone from it) is
//     a cell the change locks;
//   - for every such cell c owned by a live server A and every cell d of the copy that is new or
//     changed and owned by another server B, the region c ∩ d (if not empty) is a Transfer from
//     A to B into d, at d's epoch in the copy.
//
// That one rule gives each operation's regions: a split to a new owner moves the high half; a
// move, the whole cell; a merge of differently owned siblings, the high cell's rectangle (to the
// low cell's owner); a shift, the strips between the old and new line that change hands.
//
// Without a transfer the copy simply becomes the state (the operation applied at once, exactly
// as the plain command). With one, the change is recorded, its cells are set migrating and the
// cell and node IDs the operation will allocate (a split's new high cell and its two tree nodes)
// are reserved, so that the operation, applied when the last transfer is staged, creates the
// IDs the transfers name.
//
// Why the transfers' epochs hold: the operation's result depends only on the locked cells and
// the tree nodes above and around them, and while the change is pending
//   - every command that would change a locked cell (Split, Merge, Shift, Move, Prepare) is
//     rejected with ErrCellMigrating, Drain leaves locked cells where they are, and Register
//     assigns only unowned cells (a locked cell always has a live owner);
//   - MarkDead and Deregister of a server that owns a locked cell or is a transfer's source or
//     target abort the change before anything else, and Drain aborts the changes that would
//     give the draining server a region (a draining server is never a target);
//   - a shift's node and the leaves it moves are locked; other cells under it may split or
//     merge, but a leaf whose bounds the shift does not change stays so (its pieces and unions
//     keep edges the shift does not move).
// So applying the operation at commit time gives every locked cell the epoch the dry run gave
// it. commit checks this anyway (on a copy again) and aborts the change if it ever fails.

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// MaxChangeTimeout bounds Prepare.Timeout.
const MaxChangeTimeout = 10 * time.Minute

// MaxReasonLen bounds an Abort's reason (bytes); longer reasons are rejected (ErrBadRequest).
const MaxReasonLen = 1024

// pendingChange is a Change in the state, with the IDs it reserved for its operation. It is
// also the snapshot's form of a pending change.
type pendingChange struct {
	Change
	// The operation allocates CellCount cell IDs from CellBase and NodeCount node IDs from
	// NodeBase when it is applied (a split: one cell, two nodes); Prepare reserved them.
	CellBase  CellID `json:"cell_base,omitempty"`
	CellCount int    `json:"cell_count,omitempty"`
	NodeBase  NodeID `json:"node_base,omitempty"`
	NodeCount int    `json:"node_count,omitempty"`
}

// copyChange deep-copies a Change.
func copyChange(c Change) Change {
	c.Op = slices.Clone(c.Op)
	c.Transfers = slices.Clone(c.Transfers)
	c.Cells = slices.Clone(c.Cells)
	return c
}

func (p *pendingChange) copy() pendingChange {
	c := *p
	c.Change = copyChange(p.Change)
	return c
}

// involves reports whether server id is a source or target of p's transfers or owns a cell p
// locks.
func (s *state) involves(p *pendingChange, id ServerID) bool {
	for _, t := range p.Transfers {
		if t.From == id || t.To == id {
			return true
		}
	}
	for _, cid := range p.Cells {
		if c, ok := s.cells[cid]; ok && c.Owner == id {
			return true
		}
	}
	return false
}

// receives reports whether server id is the target of one of p's transfers.
func receives(p *pendingChange, id ServerID) bool {
	for _, t := range p.Transfers {
		if t.To == id {
			return true
		}
	}
	return false
}

// lockedBy returns the change that locks cell id, or 0.
func (s *state) lockedBy(id CellID) ChangeID {
	for cid, p := range s.changes {
		if slices.Contains(p.Cells, id) {
			return cid
		}
	}
	return 0
}

// sortedChangeIDs returns the pending changes' IDs, ascending.
func (s *state) sortedChangeIDs() []ChangeID {
	ids := make([]ChangeID, 0, len(s.changes))
	for id := range s.changes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// clone copies the state for a dry run: the tree, the cells and the servers are copied (the
// servers' load reports are shared: no operation changes them); the pending changes and the
// resolved list are shared (operations do not touch them either).
func (s *state) clone() *state {
	c := *s
	c.nodes = make(map[NodeID]*node, len(s.nodes))
	for id, n := range s.nodes {
		nn := *n
		c.nodes[id] = &nn
	}
	c.cells = make(map[CellID]*Cell, len(s.cells))
	for id, cl := range s.cells {
		cc := *cl
		c.cells[id] = &cc
	}
	c.servers = make(map[ServerID]*Server, len(s.servers))
	for id, srv := range s.servers {
		sc := *srv
		c.servers[id] = &sc
	}
	return &c
}

// adopt makes next (a clone of s, changed) the state.
func (s *state) adopt(next *state) { *s = *next }

// applyOp applies one of the operations a change may hold.
func (s *state) applyOp(op Command, tx *txn) error {
	switch op := op.(type) {
	case Split:
		return s.split(op, tx)
	case Merge:
		return s.merge(op, tx)
	case Shift:
		return s.shift(op, tx)
	case Move:
		return s.move(op, tx)
	}
	return fmt.Errorf("%w: a change's operation must be a split, merge, shift or move, not %s", ErrBadRequest, commandName(op.Type()))
}

// decodeOp decodes a change's operation; it must be a split, merge, shift or move.
func decodeOp(b []byte) (Command, error) {
	op, err := DecodeCommand(b)
	if err != nil {
		return nil, fmt.Errorf("%w: the operation: %v", ErrBadRequest, err)
	}
	switch op.(type) {
	case Split, Merge, Shift, Move:
		return op, nil
	}
	return nil, fmt.Errorf("%w: a change's operation must be a split, merge, shift or move, not %s", ErrBadRequest, commandName(op.Type()))
}

// intersect returns a ∩ b and whether it is not empty.
func intersect(a, b Rect) (Rect, bool) {
	r := Rect{max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])}
	return r, r[0] < r[2] && r[1] < r[3]
}

// diff compares s with next (s after an operation): the cells of s whose owner or bounds
// change (or that disappear), ascending, and the transfers (see the file comment).
func (s *state) diff(next *state) (locked []CellID, transfers []Transfer) {
	all := func(*Cell) bool { return true }
	same := func(a, b *Cell) bool { return a.Owner == b.Owner && a.Bounds == b.Bounds }
	for _, id := range s.sortedCellIDs(all) {
		if n, ok := next.cells[id]; !ok || !same(s.cells[id], n) {
			locked = append(locked, id)
		}
	}
	var fresh []*Cell
	for _, id := range next.sortedCellIDs(all) {
		if o, ok := s.cells[id]; !ok || !same(o, next.cells[id]) {
			fresh = append(fresh, next.cells[id])
		}
	}
	for _, id := range locked {
		o := s.cells[id]
		if srv, ok := s.servers[o.Owner]; o.Owner == 0 || !ok || !srv.Alive {
			continue
		}
		for _, n := range fresh {
			if n.Owner == 0 || n.Owner == o.Owner {
				continue
			}
			if r, ok := intersect(o.Bounds, n.Bounds); ok {
				transfers = append(transfers, Transfer{From: o.Owner, To: n.Owner, Region: r, Cell: n.ID, Epoch: n.Epoch})
			}
		}
	}
	return locked, transfers
}

// prepare applies Prepare at log index index; it returns the change it started (0: the
// operation was applied at once).
func (s *state) prepare(index uint64, c Prepare, tx *txn) (ChangeID, error) {
	op, err := decodeOp(c.Op)
	if err != nil {
		return 0, err
	}
	if c.Timeout <= 0 || c.Timeout > int64(MaxChangeTimeout) {
		return 0, fmt.Errorf("%w: change timeout %v must be in (0, %v]", ErrBadRequest, time.Duration(c.Timeout), MaxChangeTimeout)
	}
	if c.Now > math.MaxInt64-c.Timeout {
		return 0, fmt.Errorf("%w: now %d + timeout %d overflows", ErrBadRequest, c.Now, c.Timeout)
	}
	next := s.clone()
	var dry txn
	if err := next.applyOp(op, &dry); err != nil {
		return 0, err
	}
	locked, transfers := s.diff(next)
	if len(transfers) == 0 {
		s.adopt(next)
		*tx = dry
		return 0, nil
	}
	for _, t := range transfers {
		if s.servers[t.To].Draining {
			return 0, fmt.Errorf("%w: server %d would receive part of cell %d", ErrServerDraining, t.To, t.Cell)
		}
	}
	canon, err := EncodeCommand(op)
	if err != nil {
		return 0, fmt.Errorf("%w: re-encoding the operation: %v", ErrBadRequest, err)
	}
	id := ChangeID(index)
	if _, dup := s.changes[id]; dup {
		return 0, fmt.Errorf("%w: change %d exists", ErrBadRequest, id) // index ≤ a change's: cannot happen
	}
	p := &pendingChange{
		Change: Change{
			ID: id, Op: canon, OpType: op.Type(), Transfers: transfers, Cells: locked,
			Created: c.Now, Deadline: c.Now + c.Timeout,
		},
		CellBase: s.nextCell, CellCount: int(next.nextCell - s.nextCell),
		NodeBase: s.nextNode, NodeCount: int(next.nextNode - s.nextNode),
	}
	s.nextCell, s.nextNode = next.nextCell, next.nextNode
	for _, cid := range locked {
		s.cells[cid].State = CellMigrating
	}
	s.changes[id] = p
	tx.changed = true
	return id, nil
}

func (s *state) staged(c Staged, tx *txn) error {
	p, ok := s.changes[c.Change]
	if !ok {
		return fmt.Errorf("%w: change %d is not pending", ErrUnknownChange, c.Change)
	}
	if c.Transfer < 0 || c.Transfer >= len(p.Transfers) {
		return fmt.Errorf("%w: change %d has transfers 0..%d, not %d", ErrBadRequest, c.Change, len(p.Transfers)-1, c.Transfer)
	}
	t := &p.Transfers[c.Transfer]
	if c.Server != t.To {
		return fmt.Errorf("%w: transfer %d of change %d goes to server %d, not %d", ErrBadRequest, c.Transfer, c.Change, t.To, c.Server)
	}
	if t.Staged {
		return nil
	}
	t.Staged = true
	tx.changed = true
	for _, t := range p.Transfers {
		if !t.Staged {
			return nil
		}
	}
	s.commit(p, tx)
	return nil
}

// commit applies a change whose transfers are all staged, and resolves it: committed, or
// aborted if the operation fails or does not give the transfers' cells the owners and epochs
// they name (neither can happen while the invariants hold).
func (s *state) commit(p *pendingChange, tx *txn) {
	op, err := decodeOp(p.Op)
	if err == nil {
		next := s.clone()
		for _, id := range p.Cells {
			next.cells[id].State = CellActive
		}
		next.nextCell, next.nextNode = p.CellBase, p.NodeBase
		var otx txn
		if err = next.applyOp(op, &otx); err == nil {
			err = next.verifyCommit(p)
		}
		if err == nil {
			next.nextCell, next.nextNode = s.nextCell, s.nextNode
			s.adopt(next)
			tx.created = otx.created
			s.resolve(p.ID, true, "")
			return
		}
	}
	s.abort(p, truncate("applying the operation failed: "+err.Error(), MaxReasonLen), tx)
}

// verifyCommit checks s (just after applying p's operation) against p's transfers and
// reservation.
func (s *state) verifyCommit(p *pendingChange) error {
	if s.nextCell != p.CellBase+CellID(p.CellCount) || s.nextNode != p.NodeBase+NodeID(p.NodeCount) {
		return fmt.Errorf("the operation allocated IDs up to cell %d and node %d, not the %d cells from %d and %d nodes from %d reserved",
			s.nextCell, s.nextNode, p.CellCount, p.CellBase, p.NodeCount, p.NodeBase)
	}
	for i, t := range p.Transfers {
		c, ok := s.cells[t.Cell]
		switch {
		case !ok:
			return fmt.Errorf("transfer %d: cell %d does not exist", i, t.Cell)
		case c.Owner != t.To || c.Epoch != t.Epoch:
			return fmt.Errorf("transfer %d: cell %d is owned by %d at epoch %d, not %d at %d", i, t.Cell, c.Owner, c.Epoch, t.To, t.Epoch)
		}
		if r, ok := intersect(c.Bounds, t.Region); !ok || r != t.Region {
			return fmt.Errorf("transfer %d: region %v is not inside cell %d %v", i, t.Region, t.Cell, c.Bounds)
		}
	}
	return nil
}

func (s *state) abortCmd(c Abort, tx *txn) error {
	p, ok := s.changes[c.Change]
	if !ok {
		return fmt.Errorf("%w: change %d is not pending", ErrUnknownChange, c.Change)
	}
	if len(c.Reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason is %d bytes, more than %d", ErrBadRequest, len(c.Reason), MaxReasonLen)
	}
	s.abort(p, c.Reason, tx)
	return nil
}

// abort unlocks p's cells (their epochs unchanged) and resolves p as aborted.
func (s *state) abort(p *pendingChange, reason string, tx *txn) {
	for _, id := range p.Cells {
		if c, ok := s.cells[id]; ok {
			c.State = CellActive
		}
	}
	s.resolve(p.ID, false, reason)
	tx.changed = true
}

// abortWhere aborts, in ID order, the pending changes pred accepts.
func (s *state) abortWhere(pred func(*pendingChange) bool, reason string, tx *txn) {
	for _, id := range s.sortedChangeIDs() {
		if p := s.changes[id]; pred(p) {
			s.abort(p, reason, tx)
		}
	}
}

// resolve removes change id and records its outcome (keeping the last MaxResolved).
func (s *state) resolve(id ChangeID, committed bool, reason string) {
	delete(s.changes, id)
	r := append(s.resolved, ResolvedChange{ID: id, Committed: committed, Reason: reason})
	if len(r) > MaxResolved {
		r = slices.Clone(r[len(r)-MaxResolved:])
	}
	s.resolved = r
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// checkChanges verifies the pending changes (state.check calls it): each is well formed, its
// operation decodes to a split, merge, shift or move, its cells exist, are migrating and are
// locked by it alone, its transfers go between distinct live servers and never to a draining
// one, its reserved IDs are below the counters and unused; every migrating cell is locked; at
// most MaxResolved outcomes are kept.
func (s *state) checkChanges() error {
	if len(s.resolved) > MaxResolved {
		return fmt.Errorf("%d resolved changes kept, more than %d", len(s.resolved), MaxResolved)
	}
	locked := map[CellID]ChangeID{}
	for _, id := range s.sortedChangeIDs() {
		p := s.changes[id]
		if id == 0 || p.ID != id {
			return fmt.Errorf("change key %d holds change %d", id, p.ID)
		}
		if uint64(id) > s.index {
			return fmt.Errorf("change %d is past the index %d", id, s.index)
		}
		op, err := decodeOp(p.Op)
		if err != nil {
			return fmt.Errorf("change %d: %v", id, err)
		}
		if op.Type() != p.OpType {
			return fmt.Errorf("change %d: op type %d, its operation is %d", id, p.OpType, op.Type())
		}
		if len(p.Transfers) == 0 || len(p.Cells) == 0 {
			return fmt.Errorf("change %d has %d transfers and %d cells", id, len(p.Transfers), len(p.Cells))
		}
		for i, cid := range p.Cells {
			if i > 0 && p.Cells[i-1] >= cid {
				return fmt.Errorf("change %d: cells %v not sorted and distinct", id, p.Cells)
			}
			c, ok := s.cells[cid]
			if !ok {
				return fmt.Errorf("change %d locks missing cell %d", id, cid)
			}
			if c.State != CellMigrating {
				return fmt.Errorf("change %d locks cell %d, which is %s", id, cid, c.State)
			}
			if other, dup := locked[cid]; dup {
				return fmt.Errorf("cell %d locked by changes %d and %d", cid, other, id)
			}
			locked[cid] = id
		}
		for i, t := range p.Transfers {
			from, ok1 := s.servers[t.From]
			to, ok2 := s.servers[t.To]
			switch {
			case !ok1 || !ok2 || !from.Alive || !to.Alive:
				return fmt.Errorf("change %d transfer %d: server %d or %d unknown or dead", id, i, t.From, t.To)
			case t.From == t.To:
				return fmt.Errorf("change %d transfer %d from server %d to itself", id, i, t.From)
			case to.Draining:
				return fmt.Errorf("change %d transfer %d to draining server %d", id, i, t.To)
			case t.Cell == 0 || t.Epoch < 1:
				return fmt.Errorf("change %d transfer %d: cell %d epoch %d", id, i, t.Cell, t.Epoch)
			}
			if _, ok := intersect(t.Region, t.Region); !ok {
				return fmt.Errorf("change %d transfer %d: empty region %v", id, i, t.Region)
			}
		}
		if p.CellCount < 0 || p.NodeCount < 0 ||
			p.CellCount > 0 && (p.CellBase == 0 || p.CellBase+CellID(p.CellCount) > s.nextCell) ||
			p.NodeCount > 0 && (p.NodeBase == 0 || p.NodeBase+NodeID(p.NodeCount) > s.nextNode) {
			return fmt.Errorf("change %d reserves %d cells from %d and %d nodes from %d, next cell %d node %d",
				id, p.CellCount, p.CellBase, p.NodeCount, p.NodeBase, s.nextCell, s.nextNode)
		}
		for i := range p.CellCount {
			if _, used := s.cells[p.CellBase+CellID(i)]; used {
				return fmt.Errorf("change %d reserved cell id %d, which is in use", id, p.CellBase+CellID(i))
			}
		}
		for i := range p.NodeCount {
			if _, used := s.nodes[p.NodeBase+NodeID(i)]; used {
				return fmt.Errorf("change %d reserved node id %d, which is in use", id, p.NodeBase+NodeID(i))
			}
		}
	}
	for id, c := range s.cells {
		if c.State == CellMigrating && locked[id] == 0 {
			return fmt.Errorf("cell %d is migrating but no change locks it", id)
		}
	}
	return nil
}

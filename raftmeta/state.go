package raftmeta

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// The FSM contract (hashicorp/raft's, as Consul applies it):
//
//   - Apply is deterministic. Given the same state and the same log entry, every replica
//     produces the same state and the same result. It reads no clock (the proposer stamps Now
//     into Register, Heartbeat, MarkDead and Prepare), starts no goroutine, uses no random
//     source and never iterates a Go map where the order could show (IDs are sorted first).
//   - An invalid command returns its error in ApplyResult.Err and changes nothing: every
//     command is validated completely before the first mutation, so there is no rollback.
//     Only Index (the last applied index) advances, as it does for every entry.
//   - Snapshot only captures: it deep-copies the state into a snapshotData under the lock and
//     returns at once, so Apply is blocked for as little as possible. Persist does the I/O
//     (JSON to the sink) and may run concurrently with later Applies.
//   - Restore replaces the state wholesale with the snapshot's (after checking it is a valid
//     map); nothing of the previous state survives.
//
// Map rules (DESIGN.md §2, §1a):
//
//   - The world is the root of a k-d tree; an internal node splits its rectangle at At on Axis
//     into Low (< At) and High (≥ At); every leaf holds exactly one cell, whose Bounds are the
//     rectangle the tree gives it. No cell is narrower than MinCellSize on either axis.
//   - Every change of a cell's owner or bounds increments its epoch exactly once per command.
//     Split gives both halves the old epoch + 1 (the high half is a new cell, but a writer
//     fenced on the old cell's epoch must be rejected by both halves); Merge gives the merged
//     cell max(low, high) + 1; Shift and Move increment the cells they change.
//   - A cell is owned by a live server or by none (0). Unowned cells are assigned, in ID order,
//     to live non-draining servers, each to the one owning the fewest cells (ties: lower ID),
//     whenever a command could have made that possible (InitWorld, Register, Deregister, Drain,
//     MarkDead, Split, Merge). So after every command either no cell is unowned or no server
//     can take one. A draining server takes no cell; it may still own cells while they migrate
//     away (Drain with Migrate, or cells that were locked when it started draining).
//   - Version is the index of the last entry that changed the map as the API shows it: the
//     world, the tree, the cells, the set of servers or a server's address, capacity, Alive or
//     Draining. Lease renewals and load reports (Heartbeat) change only Index, so watchers
//     blocked on the version wake for map changes, not for every heartbeat.
//   - Leases only grow: Register and Heartbeat set LeaseExpires to max(LeaseExpires, Now +
//     LeaseTTL), so a proposer whose clock is behind (a new leader) never shortens a lease and
//     a server is never declared dead before the lease it was granted ran out.
//   - Register needs a server ID ≠ 0, a peer address, a capacity ≥ 0 and a lease TTL > 0
//     (ErrBadRequest); re-registering keeps the server's cells and clears Draining. Heartbeat
//     rejects negative load figures. MarkDead leaves Draining as it was. Drain of a server that
//     owns no cell always succeeds (and draining twice changes nothing). A Shift to the node's
//     current coordinate moves no cell, lists none, and succeeds without a version change.
//   - Two-phase changes (changes.go): Prepare locks the cells an operation changes (state
//     migrating) until Staged commits it or Abort, MarkDead, Deregister or Drain abort it. A
//     cell is migrating exactly when a pending change locks it. Split, Merge, Shift, Move and
//     Prepare refuse to change a migrating cell (ErrCellMigrating); Drain leaves it alone.

// node is a node of the k-d tree. A leaf has cell != 0; an internal node has axis, at, low
// and high.
type node struct {
	id     NodeID
	parent NodeID // 0 for the root
	cell   CellID
	axis   Axis
	at     float64
	low    NodeID
	high   NodeID
}

func (n *node) leaf() bool { return n.cell != 0 }

// state is the FSM's in-memory map. It is not safe for concurrent use; FSM locks around it.
type state struct {
	world       World
	minCellSize float64
	root        NodeID // 0 until InitWorld
	nodes       map[NodeID]*node
	cells       map[CellID]*Cell
	servers     map[ServerID]*Server
	nextCell    CellID
	nextNode    NodeID
	version     uint64 // index of the last entry that changed the map
	index       uint64 // index of the last entry applied
	changes     map[ChangeID]*pendingChange
	resolved    []ResolvedChange // oldest first, at most MaxResolved
}

func newState() *state {
	return &state{
		nodes:    map[NodeID]*node{},
		cells:    map[CellID]*Cell{},
		servers:  map[ServerID]*Server{},
		changes:  map[ChangeID]*pendingChange{},
		nextCell: 1,
		nextNode: 1,
	}
}

// txn records what one command changed, so every touched cell's epoch grows exactly once.
type txn struct {
	changed bool            // the map as the API shows it changed: Version = index
	touched map[CellID]bool // cells whose epoch this command already incremented
	created []CellID
}

// touch increments c's epoch unless this command already did.
func (t *txn) touch(c *Cell) {
	if t.touched == nil {
		t.touched = map[CellID]bool{}
	}
	if !t.touched[c.ID] {
		t.touched[c.ID] = true
		c.Epoch++
	}
	t.changed = true
}

// apply applies one command at log index index. The result's Err is nil or a sentinel of
// errors.go wrapped with detail; when it is not nil nothing but Index changed.
func (s *state) apply(index uint64, c Command) *ApplyResult {
	if index > s.index {
		s.index = index
	}
	var tx txn
	var err error
	var change ChangeID
	switch c := c.(type) {
	case InitWorld:
		err = s.initWorld(c, &tx)
	case Register:
		err = s.register(c, &tx)
	case Heartbeat:
		err = s.heartbeat(c)
	case Deregister:
		err = s.deregister(c, &tx)
	case Split:
		err = s.split(c, &tx)
	case Merge:
		err = s.merge(c, &tx)
	case Shift:
		err = s.shift(c, &tx)
	case Move:
		err = s.move(c, &tx)
	case Drain:
		err = s.drain(c, &tx)
	case MarkDead:
		err = s.markDead(c, &tx)
	case Prepare:
		change, err = s.prepare(s.index, c, &tx)
	case Staged:
		err = s.staged(c, &tx)
	case Abort:
		err = s.abortCmd(c, &tx)
	default:
		err = fmt.Errorf("%w: %T", ErrUnknownCommand, c)
	}
	if err == nil && tx.changed {
		s.version = s.index
	}
	return &ApplyResult{Index: s.index, Version: s.version, Err: err, Cells: tx.created, Change: change}
}

// ---- validation helpers (no mutation) ----

// MaxWorldCoord bounds the world's coordinates (metres): |x|, |z| ≤ MaxWorldCoord, so every
// width and area the FSM computes is finite.
const MaxWorldCoord = 1 << 30

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func validCoord(f float64) bool { return finite(f) && math.Abs(f) <= MaxWorldCoord }

// worldRect is the world as a Rect.
func (s *state) worldRect() Rect {
	return Rect{s.world.Min[0], s.world.Min[1], s.world.Max[0], s.world.Max[1]}
}

// axisIndex is the index in a Rect of the low edge on axis a (X0 or Z0); the high edge is +2.
func axisIndex(a Axis) (int, bool) {
	switch a {
	case AxisX:
		return 0, true
	case AxisZ:
		return 1, true
	}
	return 0, false
}

// splitRect cuts r at at on axis a.
func splitRect(r Rect, a Axis, at float64) (low, high Rect) {
	i, _ := axisIndex(a)
	low, high = r, r
	low[i+2] = at
	high[i] = at
	return low, high
}

// nodeRect is the rectangle the tree gives node id.
func (s *state) nodeRect(id NodeID) Rect {
	n := s.nodes[id]
	if n.parent == 0 {
		return s.worldRect()
	}
	p := s.nodes[n.parent]
	low, high := splitRect(s.nodeRect(p.id), p.axis, p.at)
	if p.low == id {
		return low
	}
	return high
}

// tooSmall reports whether r is narrower than the minimum cell size on either axis (a
// degenerate or inverted r is too small).
func (s *state) tooSmall(r Rect) bool {
	return !(r[2]-r[0] >= s.minCellSize) || !(r[3]-r[1] >= s.minCellSize)
}

func (s *state) needWorld() error {
	if s.root == 0 {
		return fmt.Errorf("%w: run InitWorld first", ErrNoWorld)
	}
	return nil
}

func (s *state) cell(id CellID) (*Cell, error) {
	c, ok := s.cells[id]
	if !ok {
		return nil, fmt.Errorf("%w: cell %d", ErrUnknownCell, id)
	}
	return c, nil
}

func checkEpoch(c *Cell, e Epoch) error {
	if c.Epoch != e {
		return fmt.Errorf("%w: cell %d has epoch %d, the command carries %d", ErrStaleEpoch, c.ID, c.Epoch, e)
	}
	return nil
}

func (s *state) checkActive(c *Cell) error {
	if c.State != CellActive {
		if id := s.lockedBy(c.ID); id != 0 {
			return fmt.Errorf("%w: cell %d is %s (change %d)", ErrCellMigrating, c.ID, c.State, id)
		}
		return fmt.Errorf("%w: cell %d is %s", ErrCellMigrating, c.ID, c.State)
	}
	return nil
}

// target checks that server id can take a cell: registered, alive, not draining.
func (s *state) target(id ServerID) error {
	srv, ok := s.servers[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: server %d", ErrUnknownServer, id)
	case !srv.Alive:
		return fmt.Errorf("%w: server %d", ErrServerDead, id)
	case srv.Draining:
		return fmt.Errorf("%w: server %d", ErrServerDraining, id)
	}
	return nil
}

func (s *state) server(id ServerID) (*Server, error) {
	srv, ok := s.servers[id]
	if !ok {
		return nil, fmt.Errorf("%w: server %d", ErrUnknownServer, id)
	}
	return srv, nil
}

func leaseEnd(now, ttl int64) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("%w: lease TTL %d must be > 0", ErrBadRequest, ttl)
	}
	if now > math.MaxInt64-ttl {
		return 0, fmt.Errorf("%w: now %d + lease TTL %d overflows", ErrBadRequest, now, ttl)
	}
	return now + ttl, nil
}

// ---- assignment ----

// sortedCellIDs returns the IDs of the cells pred accepts, ascending.
func (s *state) sortedCellIDs(pred func(*Cell) bool) []CellID {
	var ids []CellID
	for id, c := range s.cells {
		if pred(c) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// canTake reports whether srv may be given cells.
func canTake(srv *Server) bool { return srv.Alive && !srv.Draining }

// hasTaker reports whether a server other than except can be given cells.
func (s *state) hasTaker(except ServerID) bool {
	for id, srv := range s.servers {
		if id != except && canTake(srv) {
			return true
		}
	}
	return false
}

// assign gives each cell of ids (ascending), in turn, to the live non-draining server owning
// the fewest cells (ties: the lower ID), touching it. Cells stay as they are if no server can
// take them.
func (s *state) assign(ids []CellID, tx *txn) {
	load := map[ServerID]int{}
	var takers []ServerID
	for id, srv := range s.servers {
		if canTake(srv) {
			takers = append(takers, id)
			load[id] = 0
		}
	}
	if len(takers) == 0 || len(ids) == 0 {
		return
	}
	slices.Sort(takers)
	for _, c := range s.cells {
		if _, ok := load[c.Owner]; ok {
			load[c.Owner]++
		}
	}
	for _, id := range ids {
		c := s.cells[id]
		best := takers[0]
		for _, t := range takers[1:] {
			if load[t] < load[best] {
				best = t
			}
		}
		if _, ok := load[c.Owner]; ok {
			load[c.Owner]--
		}
		c.Owner = best
		load[best]++
		tx.touch(c)
	}
}

// assignUnowned assigns every unowned cell.
func (s *state) assignUnowned(tx *txn) {
	s.assign(s.sortedCellIDs(func(c *Cell) bool { return c.Owner == 0 }), tx)
}

// release makes the cells of server id unowned (touching them) and assigns them, with any
// other unowned cell, to the servers that can take them.
func (s *state) release(id ServerID, tx *txn) {
	for _, cid := range s.sortedCellIDs(func(c *Cell) bool { return c.Owner == id }) {
		c := s.cells[cid]
		c.Owner = 0
		tx.touch(c)
	}
	s.assignUnowned(tx)
}

// ---- commands ----

func (s *state) initWorld(c InitWorld, tx *txn) error {
	if s.root != 0 {
		return fmt.Errorf("%w: world %v", ErrWorldExists, s.world)
	}
	w := c.World
	for i := range 2 {
		if !validCoord(w.Min[i]) || !validCoord(w.Max[i]) || !(w.Max[i] > w.Min[i]) {
			return fmt.Errorf("%w: bounds %v..%v must be within ±%d with max > min", ErrInvalidWorld, w.Min, w.Max, MaxWorldCoord)
		}
	}
	size := min(w.Max[0]-w.Min[0], w.Max[1]-w.Min[1])
	if !finite(c.MinCellSize) || !(c.MinCellSize > 0) || c.MinCellSize > size {
		return fmt.Errorf("%w: min cell size %v must be > 0 and ≤ the world's smaller side (%v)", ErrInvalidWorld, c.MinCellSize, size)
	}
	s.world = w
	s.minCellSize = c.MinCellSize
	nid, cid := s.nextNode, s.nextCell
	s.nextNode++
	s.nextCell++
	s.root = nid
	s.nodes[nid] = &node{id: nid, cell: cid}
	s.cells[cid] = &Cell{ID: cid, Node: nid, Bounds: s.worldRect(), Epoch: 1, State: CellActive}
	tx.touched = map[CellID]bool{} // a new cell starts at epoch 1; assignment increments it
	tx.changed = true
	tx.created = []CellID{cid}
	s.assignUnowned(tx)
	return nil
}

func (s *state) register(c Register, tx *txn) error {
	if c.Server == 0 {
		return fmt.Errorf("%w: server id 0 is reserved", ErrBadRequest)
	}
	if c.Addr == "" {
		return fmt.Errorf("%w: server %d has no peer address", ErrBadRequest, c.Server)
	}
	if c.Capacity < 0 {
		return fmt.Errorf("%w: server %d capacity %d must be ≥ 0", ErrBadRequest, c.Server, c.Capacity)
	}
	end, err := leaseEnd(c.Now, c.LeaseTTL)
	if err != nil {
		return err
	}
	srv, ok := s.servers[c.Server]
	if !ok {
		srv = &Server{ID: c.Server, LeaseExpires: end}
		s.servers[c.Server] = srv
		tx.changed = true
	}
	if srv.Addr != c.Addr || srv.ClientAddr != c.ClientAddr || srv.Capacity != c.Capacity || !srv.Alive || srv.Draining {
		tx.changed = true
	}
	srv.Addr, srv.ClientAddr, srv.Capacity = c.Addr, c.ClientAddr, c.Capacity
	srv.Alive, srv.Draining = true, false
	srv.LeaseExpires = max(srv.LeaseExpires, end)
	s.assignUnowned(tx)
	return nil
}

func (s *state) heartbeat(c Heartbeat) error {
	srv, err := s.server(c.Server)
	if err != nil {
		return err
	}
	if !srv.Alive {
		return fmt.Errorf("%w: server %d must register again", ErrServerDead, c.Server)
	}
	end, err := leaseEnd(c.Now, c.LeaseTTL)
	if err != nil {
		return err
	}
	l := c.Load
	if l.Entities < 0 || l.TickP99Micros < 0 || l.BytesOut < 0 {
		return fmt.Errorf("%w: server %d load has a negative figure", ErrBadRequest, c.Server)
	}
	for _, cl := range l.Cells {
		if cl.Entities < 0 || cl.TickP99Micros < 0 || cl.BytesOut < 0 {
			return fmt.Errorf("%w: server %d load of cell %d has a negative figure", ErrBadRequest, c.Server, cl.Cell)
		}
	}
	srv.LeaseExpires = max(srv.LeaseExpires, end)
	l.Cells = cloneCellLoads(l.Cells)
	srv.Load = l
	return nil
}

func (s *state) deregister(c Deregister, tx *txn) error {
	if _, err := s.server(c.Server); err != nil {
		return err
	}
	s.abortWhere(func(p *pendingChange) bool { return s.involves(p, c.Server) }, fmt.Sprintf("server %d left", c.Server), tx)
	delete(s.servers, c.Server)
	tx.changed = true
	s.release(c.Server, tx)
	return nil
}

func (s *state) markDead(c MarkDead, tx *txn) error {
	srv, err := s.server(c.Server)
	if err != nil {
		return err
	}
	if !srv.Alive {
		return fmt.Errorf("%w: server %d is already dead", ErrServerDead, c.Server)
	}
	if c.Now < srv.LeaseExpires {
		return fmt.Errorf("%w: server %d lease expires at %d, now is %d", ErrServerNotExpired, c.Server, srv.LeaseExpires, c.Now)
	}
	s.abortWhere(func(p *pendingChange) bool { return s.involves(p, c.Server) }, fmt.Sprintf("server %d dead", c.Server), tx)
	srv.Alive = false
	tx.changed = true
	s.release(c.Server, tx)
	return nil
}

func (s *state) drain(c Drain, tx *txn) error {
	srv, err := s.server(c.Server)
	if err != nil {
		return err
	}
	if !srv.Alive {
		return fmt.Errorf("%w: server %d", ErrServerDead, c.Server)
	}
	// Locked cells stay where they are: their change moves them or leaves them to a later drain.
	owned := s.sortedCellIDs(func(cl *Cell) bool { return cl.Owner == c.Server && cl.State == CellActive })
	if len(owned) > 0 && !s.hasTaker(c.Server) {
		return fmt.Errorf("%w: server %d owns %d cells and no other live, non-draining server can take them",
			ErrNoLiveServer, c.Server, len(owned))
	}
	s.abortWhere(func(p *pendingChange) bool { return receives(p, c.Server) }, fmt.Sprintf("server %d draining", c.Server), tx)
	if !srv.Draining {
		srv.Draining = true
		tx.changed = true
	}
	if !c.Migrate {
		s.assign(owned, tx)
	}
	return nil
}

func (s *state) split(c Split, tx *txn) error {
	if err := s.needWorld(); err != nil {
		return err
	}
	cl, err := s.cell(c.Cell)
	if err != nil {
		return err
	}
	if err := checkEpoch(cl, c.Epoch); err != nil {
		return err
	}
	if err := s.checkActive(cl); err != nil {
		return err
	}
	i, ok := axisIndex(c.Axis)
	if !ok {
		return fmt.Errorf("%w: %q (want %q or %q)", ErrBadAxis, c.Axis, AxisX, AxisZ)
	}
	if !finite(c.At) || !(c.At > cl.Bounds[i]) || !(c.At < cl.Bounds[i+2]) {
		return fmt.Errorf("%w: %s=%v is not strictly inside cell %d's [%v, %v)", ErrOutOfBounds, c.Axis, c.At, cl.ID, cl.Bounds[i], cl.Bounds[i+2])
	}
	low, high := splitRect(cl.Bounds, c.Axis, c.At)
	if s.tooSmall(low) || s.tooSmall(high) {
		return fmt.Errorf("%w: splitting cell %d at %s=%v leaves a side of %v or %v, under %v", ErrCellTooSmall,
			cl.ID, c.Axis, c.At, c.At-cl.Bounds[i], cl.Bounds[i+2]-c.At, s.minCellSize)
	}
	owner := cl.Owner
	if c.NewOwner != 0 {
		if err := s.target(c.NewOwner); err != nil {
			return err
		}
		owner = c.NewOwner
	}

	n := s.nodes[cl.Node]
	lowID, highID := s.nextNode, s.nextNode+1
	s.nextNode += 2
	hid := s.nextCell
	s.nextCell++
	n.cell, n.axis, n.at, n.low, n.high = 0, c.Axis, c.At, lowID, highID
	s.nodes[lowID] = &node{id: lowID, parent: n.id, cell: cl.ID}
	s.nodes[highID] = &node{id: highID, parent: n.id, cell: hid}
	cl.Node, cl.Bounds = lowID, low
	tx.touch(cl)
	hc := &Cell{ID: hid, Node: highID, Bounds: high, Owner: owner, Epoch: cl.Epoch, State: CellActive}
	s.cells[hid] = hc
	tx.touched[hid] = true
	tx.created = []CellID{hid}
	s.assignUnowned(tx)
	return nil
}

func (s *state) merge(c Merge, tx *txn) error {
	if err := s.needWorld(); err != nil {
		return err
	}
	lo, err := s.cell(c.Low)
	if err != nil {
		return err
	}
	hi, err := s.cell(c.High)
	if err != nil {
		return err
	}
	if err := checkEpoch(lo, c.LowEpoch); err != nil {
		return err
	}
	if err := checkEpoch(hi, c.HighEpoch); err != nil {
		return err
	}
	ln, hn := s.nodes[lo.Node], s.nodes[hi.Node]
	if ln.parent == 0 || ln.parent != hn.parent || s.nodes[ln.parent].low != ln.id || s.nodes[ln.parent].high != hn.id {
		return fmt.Errorf("%w: cells %d and %d are not the low and high leaves of one node", ErrNotSiblings, lo.ID, hi.ID)
	}
	if err := s.checkActive(lo); err != nil {
		return err
	}
	if err := s.checkActive(hi); err != nil {
		return err
	}

	p := s.nodes[ln.parent]
	p.cell, p.axis, p.at, p.low, p.high = lo.ID, "", 0, 0, 0
	delete(s.nodes, ln.id)
	delete(s.nodes, hn.id)
	delete(s.cells, hi.ID)
	lo.Node = p.id
	lo.Bounds = s.nodeRect(p.id)
	lo.Epoch = max(lo.Epoch, hi.Epoch) + 1
	tx.touched = map[CellID]bool{lo.ID: true}
	tx.changed = true
	s.assignUnowned(tx)
	return nil
}

// shiftPlan returns the leaves under internal node n whose bounds change if its split moves to
// at, with their new bounds, in cell ID order.
func (s *state) shiftPlan(n *node, at float64) (ids []CellID, bounds map[CellID]Rect) {
	bounds = map[CellID]Rect{}
	var walk func(id NodeID, r Rect)
	walk = func(id NodeID, r Rect) {
		m := s.nodes[id]
		if m.leaf() {
			if s.cells[m.cell].Bounds != r {
				ids = append(ids, m.cell)
				bounds[m.cell] = r
			}
			return
		}
		split := m.at
		if m == n {
			split = at
		}
		low, high := splitRect(r, m.axis, split)
		walk(m.low, low)
		walk(m.high, high)
	}
	walk(n.id, s.nodeRect(n.id))
	slices.Sort(ids)
	return ids, bounds
}

func (s *state) shift(c Shift, tx *txn) error {
	if err := s.needWorld(); err != nil {
		return err
	}
	n, ok := s.nodes[c.Node]
	if !ok {
		return fmt.Errorf("%w: node %d", ErrUnknownNode, c.Node)
	}
	if n.leaf() {
		return fmt.Errorf("%w: node %d is the leaf of cell %d", ErrNotInternal, n.id, n.cell)
	}
	r := s.nodeRect(n.id)
	i, _ := axisIndex(n.axis)
	if !finite(c.At) || !(c.At > r[i]) || !(c.At < r[i+2]) {
		return fmt.Errorf("%w: %s=%v is not strictly inside node %d's [%v, %v)", ErrOutOfBounds, n.axis, c.At, n.id, r[i], r[i+2])
	}
	ids, bounds := s.shiftPlan(n, c.At)
	for _, id := range ids {
		e, ok := c.Epochs[id]
		if !ok {
			return fmt.Errorf("%w: shifting node %d changes cell %d (epoch %d), which the command does not list", ErrStaleEpoch, n.id, id, s.cells[id].Epoch)
		}
		if err := checkEpoch(s.cells[id], e); err != nil {
			return err
		}
	}
	if len(c.Epochs) != len(ids) {
		extra := slices.Sorted(func(yield func(CellID) bool) {
			for id := range c.Epochs {
				if _, ok := bounds[id]; !ok && !yield(id) {
					return
				}
			}
		})
		return fmt.Errorf("%w: shifting node %d does not change cells %v that the command lists", ErrStaleEpoch, n.id, extra)
	}
	for _, id := range ids {
		if s.tooSmall(bounds[id]) {
			b := bounds[id]
			return fmt.Errorf("%w: shifting node %d to %s=%v leaves cell %d %v × %v, under %v", ErrCellTooSmall,
				n.id, n.axis, c.At, id, b[2]-b[0], b[3]-b[1], s.minCellSize)
		}
		if err := s.checkActive(s.cells[id]); err != nil {
			return err
		}
	}

	n.at = c.At
	for _, id := range ids {
		cl := s.cells[id]
		cl.Bounds = bounds[id]
		tx.touch(cl)
	}
	return nil
}

func (s *state) move(c Move, tx *txn) error {
	if err := s.needWorld(); err != nil {
		return err
	}
	cl, err := s.cell(c.Cell)
	if err != nil {
		return err
	}
	if err := checkEpoch(cl, c.Epoch); err != nil {
		return err
	}
	if err := s.checkActive(cl); err != nil {
		return err
	}
	if err := s.target(c.To); err != nil {
		return err
	}
	if cl.Owner == c.To {
		return fmt.Errorf("%w: server %d already owns cell %d", ErrAlreadyOwner, c.To, cl.ID)
	}
	cl.Owner = c.To
	tx.touch(cl)
	return nil
}

// ---- read side ----

// toMap returns a deep copy of the map: cells and servers sorted by ID, the tree built.
func (s *state) toMap() Map {
	m := Map{
		Version:     s.version,
		Index:       s.index,
		World:       s.world,
		MinCellSize: s.minCellSize,
		Cells:       s.sortedCells(),
		Servers:     s.sortedServers(),
	}
	if s.root != 0 {
		m.Tree = s.treeNode(s.root)
	}
	for _, id := range s.sortedChangeIDs() {
		m.Changes = append(m.Changes, copyChange(s.changes[id].Change))
	}
	m.Resolved = slices.Clone(s.resolved)
	return m
}

// sortedCells copies the cells, sorted by ID (an empty, not nil, slice if there are none).
func (s *state) sortedCells() []Cell {
	cells := make([]Cell, 0, len(s.cells))
	for _, c := range s.cells {
		cells = append(cells, *c)
	}
	slices.SortFunc(cells, func(a, b Cell) int { return cmp.Compare(a.ID, b.ID) })
	return cells
}

// sortedServers deep-copies the servers, sorted by ID (an empty, not nil, slice if none).
func (s *state) sortedServers() []Server {
	servers := make([]Server, 0, len(s.servers))
	for _, srv := range s.servers {
		servers = append(servers, copyServer(srv))
	}
	slices.SortFunc(servers, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	return servers
}

func copyServer(srv *Server) Server {
	c := *srv
	c.Load.Cells = cloneCellLoads(srv.Load.Cells)
	return c
}

// cloneCellLoads deep-copies load reports (histograms included).
func cloneCellLoads(ls []CellLoad) []CellLoad {
	out := slices.Clone(ls)
	for i := range out {
		out[i].HistX = slices.Clone(out[i].HistX)
		out[i].HistZ = slices.Clone(out[i].HistZ)
	}
	return out
}

func (s *state) treeNode(id NodeID) *TreeNode {
	n := s.nodes[id]
	if n.leaf() {
		return &TreeNode{ID: id, Cell: n.cell}
	}
	return &TreeNode{ID: id, Axis: n.axis, At: n.at, Low: s.treeNode(n.low), High: s.treeNode(n.high)}
}

// ---- snapshots ----

// snapshotFormat is the version of snapshotData's encoding; Restore refuses others.
const snapshotFormat = 1

// snapshotData is the persisted form of the state. The tree is a flat node list (not nested
// TreeNodes) so a deep tree cannot hit a JSON nesting limit.
type snapshotData struct {
	Format      int        `json:"format"`
	Version     uint64     `json:"version"`
	Index       uint64     `json:"index"`
	World       World      `json:"world"`
	MinCellSize float64    `json:"min_cell_size"`
	Root        NodeID     `json:"root"`
	Nodes       []snapNode `json:"nodes"`
	Cells       []Cell     `json:"cells"`
	Servers     []Server   `json:"servers"`
	NextCell    CellID     `json:"next_cell"`
	NextNode    NodeID     `json:"next_node"`
	// Pending changes (sorted by ID) and the last resolved ones; omitted when empty, so a map
	// without changes snapshots as before two-phase changes existed.
	Changes  []pendingChange  `json:"changes,omitempty"`
	Resolved []ResolvedChange `json:"resolved,omitempty"`
}

type snapNode struct {
	ID   NodeID  `json:"id"`
	Cell CellID  `json:"cell,omitempty"`
	Axis Axis    `json:"axis,omitempty"`
	At   float64 `json:"at,omitempty"`
	Low  NodeID  `json:"low,omitempty"`
	High NodeID  `json:"high,omitempty"`
}

// snapshot deep-copies the state into its persisted form.
func (s *state) snapshot() *snapshotData {
	d := &snapshotData{
		Format:      snapshotFormat,
		Version:     s.version,
		Index:       s.index,
		World:       s.world,
		MinCellSize: s.minCellSize,
		Root:        s.root,
		Nodes:       make([]snapNode, 0, len(s.nodes)),
		Cells:       s.sortedCells(),
		Servers:     s.sortedServers(),
		NextCell:    s.nextCell,
		NextNode:    s.nextNode,
		Resolved:    slices.Clone(s.resolved),
	}
	for _, id := range s.sortedChangeIDs() {
		d.Changes = append(d.Changes, s.changes[id].copy())
	}
	for _, n := range s.nodes {
		d.Nodes = append(d.Nodes, snapNode{ID: n.id, Cell: n.cell, Axis: n.axis, At: n.at, Low: n.low, High: n.high})
	}
	slices.SortFunc(d.Nodes, func(a, b snapNode) int { return cmp.Compare(a.ID, b.ID) })
	return d
}

// restoreState rebuilds a state from its persisted form and checks it; errors wrap
// ErrCorruptSnapshot.
func restoreState(d *snapshotData) (*state, error) {
	if d.Format != snapshotFormat {
		return nil, fmt.Errorf("%w: format %d, want %d", ErrCorruptSnapshot, d.Format, snapshotFormat)
	}
	s := newState()
	s.version, s.index = d.Version, d.Index
	s.world, s.minCellSize, s.root = d.World, d.MinCellSize, d.Root
	s.nextCell, s.nextNode = d.NextCell, d.NextNode
	for _, sn := range d.Nodes {
		if sn.ID == 0 || s.nodes[sn.ID] != nil {
			return nil, fmt.Errorf("%w: node id %d is zero or repeated", ErrCorruptSnapshot, sn.ID)
		}
		s.nodes[sn.ID] = &node{id: sn.ID, cell: sn.Cell, axis: sn.Axis, at: sn.At, low: sn.Low, high: sn.High}
	}
	for _, n := range s.nodes {
		for _, ch := range []NodeID{n.low, n.high} {
			if ch == 0 {
				continue
			}
			c, ok := s.nodes[ch]
			if !ok || c.parent != 0 || ch == s.root {
				return nil, fmt.Errorf("%w: node %d has a missing or shared child %d", ErrCorruptSnapshot, n.id, ch)
			}
			c.parent = n.id
		}
	}
	for i := range d.Cells {
		c := d.Cells[i]
		if c.ID == 0 || s.cells[c.ID] != nil {
			return nil, fmt.Errorf("%w: cell id %d is zero or repeated", ErrCorruptSnapshot, c.ID)
		}
		s.cells[c.ID] = &c
	}
	for i := range d.Servers {
		srv := copyServer(&d.Servers[i])
		if srv.ID == 0 || s.servers[srv.ID] != nil {
			return nil, fmt.Errorf("%w: server id %d is zero or repeated", ErrCorruptSnapshot, srv.ID)
		}
		s.servers[srv.ID] = &srv
	}
	for i := range d.Changes {
		p := d.Changes[i].copy()
		if p.ID == 0 || s.changes[p.ID] != nil {
			return nil, fmt.Errorf("%w: change id %d is zero or repeated", ErrCorruptSnapshot, p.ID)
		}
		s.changes[p.ID] = &p
	}
	if len(d.Resolved) > 0 {
		s.resolved = slices.Clone(d.Resolved)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	return s, nil
}

// ---- invariants ----

// check verifies the map's invariants: the tree is well formed and its leaves are exactly the
// cells, every cell's bounds are the rectangle the tree gives it and no narrower than the
// minimum cell size, the cells tile the world (their areas sum to its area), every owner is a
// live server, no cell is unowned while a server could take it, epochs are ≥ 1, the ID
// counters are past every ID in use, and the pending changes are consistent with the cells
// (checkChanges). Tests call it after every command; Restore calls it on every snapshot.
func (s *state) check() error {
	if s.version > s.index {
		return fmt.Errorf("version %d > index %d", s.version, s.index)
	}
	for id, srv := range s.servers {
		if id == 0 || srv.ID != id {
			return fmt.Errorf("server key %d holds server %d", id, srv.ID)
		}
	}
	if s.root == 0 {
		if len(s.nodes) != 0 || len(s.cells) != 0 || len(s.changes) != 0 {
			return fmt.Errorf("no world but %d nodes, %d cells and %d changes", len(s.nodes), len(s.cells), len(s.changes))
		}
		return s.checkChanges()
	}
	for i := range 2 {
		if !validCoord(s.world.Min[i]) || !validCoord(s.world.Max[i]) || !(s.world.Max[i] > s.world.Min[i]) {
			return fmt.Errorf("world %v is empty or out of range", s.world)
		}
	}
	if !finite(s.minCellSize) || !(s.minCellSize > 0) {
		return fmt.Errorf("min cell size %v", s.minCellSize)
	}
	if n, ok := s.nodes[s.root]; !ok || n.parent != 0 {
		return fmt.Errorf("root %d missing or has a parent", s.root)
	}
	seen := map[NodeID]bool{}
	leaves := 0
	var area float64
	var walk func(id, parent NodeID, r Rect) error
	walk = func(id, parent NodeID, r Rect) error {
		n, ok := s.nodes[id]
		if !ok {
			return fmt.Errorf("node %d (child of %d) missing", id, parent)
		}
		if seen[id] {
			return fmt.Errorf("node %d reached twice", id)
		}
		seen[id] = true
		if n.id != id || n.parent != parent {
			return fmt.Errorf("node %d: id %d parent %d, want parent %d", id, n.id, n.parent, parent)
		}
		if id >= NodeID(s.nextNode) {
			return fmt.Errorf("node %d ≥ next node id %d", id, s.nextNode)
		}
		if n.leaf() {
			if n.low != 0 || n.high != 0 || n.axis != "" || n.at != 0 {
				return fmt.Errorf("leaf node %d has children or a split", id)
			}
			c, ok := s.cells[n.cell]
			if !ok {
				return fmt.Errorf("leaf node %d holds missing cell %d", id, n.cell)
			}
			if c.Node != id {
				return fmt.Errorf("cell %d says node %d, leaf node %d holds it", c.ID, c.Node, id)
			}
			if c.Bounds != r {
				return fmt.Errorf("cell %d bounds %v, the tree gives %v", c.ID, c.Bounds, r)
			}
			if s.tooSmall(r) {
				return fmt.Errorf("cell %d bounds %v under the min cell size %v", c.ID, r, s.minCellSize)
			}
			leaves++
			area += (r[2] - r[0]) * (r[3] - r[1])
			return nil
		}
		i, ok := axisIndex(n.axis)
		if !ok {
			return fmt.Errorf("node %d axis %q", id, n.axis)
		}
		if !finite(n.at) || !(n.at > r[i]) || !(n.at < r[i+2]) {
			return fmt.Errorf("node %d splits at %v, outside [%v, %v)", id, n.at, r[i], r[i+2])
		}
		low, high := splitRect(r, n.axis, n.at)
		if err := walk(n.low, id, low); err != nil {
			return err
		}
		return walk(n.high, id, high)
	}
	if err := walk(s.root, 0, s.worldRect()); err != nil {
		return err
	}
	if len(seen) != len(s.nodes) {
		return fmt.Errorf("%d nodes, %d reachable from the root", len(s.nodes), len(seen))
	}
	if leaves != len(s.cells) {
		return fmt.Errorf("%d leaves, %d cells", leaves, len(s.cells))
	}
	wr := s.worldRect()
	worldArea := (wr[2] - wr[0]) * (wr[3] - wr[1])
	if math.Abs(area-worldArea) > 1e-9*worldArea {
		return fmt.Errorf("cells cover %v m², the world %v m²", area, worldArea)
	}
	unowned := 0
	for id, c := range s.cells {
		if c.ID != id {
			return fmt.Errorf("cell key %d holds cell %d", id, c.ID)
		}
		if id >= s.nextCell {
			return fmt.Errorf("cell %d ≥ next cell id %d", id, s.nextCell)
		}
		if c.Epoch < 1 {
			return fmt.Errorf("cell %d epoch %d", id, c.Epoch)
		}
		if c.State != CellActive && c.State != CellMigrating {
			return fmt.Errorf("cell %d state %q", id, c.State)
		}
		if c.Owner == 0 {
			unowned++
			continue
		}
		srv, ok := s.servers[c.Owner]
		if !ok || !srv.Alive {
			return fmt.Errorf("cell %d owned by unknown or dead server %d", id, c.Owner)
		}
	}
	if unowned > 0 && s.hasTaker(0) {
		return fmt.Errorf("%d cells unowned while a live server could take them", unowned)
	}
	return s.checkChanges()
}

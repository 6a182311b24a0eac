package raftmeta

// This file is the contract the FSM, the node/HTTP API and the admin CLI code against: the
// partition map's types (their JSON is the API's), and the FSM commands' payloads.

// CellID names a cell cluster-wide; never reused. 0 means none.
type CellID uint64

// ServerID names a cell server; chosen by the operator (meridian cell --id). 0 means none
// (an unowned cell).
type ServerID uint64

// NodeID names a node of the k-d tree (leaf or internal); never reused.
type NodeID uint64

// Epoch grows with every change of a cell's owner or bounds (DESIGN.md §1a). Commands that
// name a cell carry the epoch the proposer saw; an older one is rejected (ErrStaleEpoch).
type Epoch uint64

// Rect is a half-open rectangle [X0, X1) × [Z0, Z1) in metres; JSON [x0, z0, x1, z1].
type Rect [4]float64

// Axis is the coordinate an internal node splits on: "x" or "z".
type Axis string

const (
	AxisX Axis = "x"
	AxisZ Axis = "z"
)

// CellState is a leaf cell's state.
type CellState string

const (
	CellActive    CellState = "active"
	CellMigrating CellState = "migrating"
)

// Cell is a leaf of the k-d tree.
type Cell struct {
	ID     CellID    `json:"id"`
	Node   NodeID    `json:"node"`
	Bounds Rect      `json:"bounds"`
	Owner  ServerID  `json:"owner"`
	Epoch  Epoch     `json:"epoch"`
	State  CellState `json:"state"`
}

// LoadBins is the number of bins in a CellLoad's histograms.
const LoadBins = 16

// CellLoad is one cell's load as its server last reported it.
type CellLoad struct {
	Cell          CellID `json:"cell"`
	Epoch         Epoch  `json:"epoch"` // the cell's epoch the report was measured at
	Entities      int    `json:"entities"`
	TickP99Micros int64  `json:"tick_p99_us"`
	BytesOut      int64  `json:"bytes_out"` // bytes per second sent to clients
	// HistX and HistZ count the cell's entities in LoadBins equal-width bins across the cell's
	// bounds on x and on z (bin i covers [x0 + i·w, x0 + (i+1)·w), w = (x1−x0)/LoadBins). The
	// partitioner finds medians and split-line shifts from them. Empty: not reported.
	HistX []int32 `json:"hist_x,omitempty"`
	HistZ []int32 `json:"hist_z,omitempty"`
}

// Load is a server's last load report.
type Load struct {
	Entities      int        `json:"entities"`
	TickP99Micros int64      `json:"tick_p99_us"`
	BytesOut      int64      `json:"bytes_out"`
	Cells         []CellLoad `json:"cells,omitempty"`
}

// Server is a registered cell server.
type Server struct {
	ID           ServerID `json:"id"`
	Addr         string   `json:"addr"`        // peer address (cell server ↔ cell server)
	ClientAddr   string   `json:"client_addr"` // where gateways reach it
	Capacity     int      `json:"capacity"`    // entities it is sized for
	Alive        bool     `json:"alive"`
	Draining     bool     `json:"draining"`
	LeaseExpires int64    `json:"lease_expires"` // Unix nanoseconds, stamped by the proposer
	Load         Load     `json:"load"`
}

// World is the partitioned rectangle.
type World struct {
	Min [2]float64 `json:"min"` // x, z metres
	Max [2]float64 `json:"max"`
	// Epoch is the world epoch (Unix nanoseconds): tick n starts at Epoch + n × 50 ms on every
	// cell server (DESIGN.md §1a). Stamped by the proposer of InitWorld (0: not set).
	Epoch int64 `json:"epoch,omitempty"`
}

// TreeNode is a node of the k-d tree: a leaf holds Cell; an internal node splits its rectangle
// at At on Axis into Low (< At) and High (≥ At).
type TreeNode struct {
	ID   NodeID    `json:"id"`
	Cell CellID    `json:"cell,omitempty"`
	Axis Axis      `json:"axis,omitempty"`
	At   float64   `json:"at,omitempty"`
	Low  *TreeNode `json:"low,omitempty"`
	High *TreeNode `json:"high,omitempty"`
}

// Map is the whole partition map as the API serves it (GET /v1/map). Version is the Raft index
// of the last change to cells, tree or the set/state of servers; load reports and lease renewals
// do not change it (they change Index, the last applied index), so watchers wake on map changes,
// not on every heartbeat.
type Map struct {
	Version     uint64    `json:"version"`
	Index       uint64    `json:"index"`
	World       World     `json:"world"`
	MinCellSize float64   `json:"min_cell_size"`
	Cells       []Cell    `json:"cells"`   // sorted by ID
	Servers     []Server  `json:"servers"` // sorted by ID
	Tree        *TreeNode `json:"tree,omitempty"`
	// Changes are the map changes in progress (two-phase: see Prepare), sorted by ID.
	Changes []Change `json:"changes,omitempty"`
	// Resolved are the most recently resolved changes (at most MaxResolved, oldest first), so a
	// server that missed the intermediate versions still learns each change's outcome.
	Resolved []ResolvedChange `json:"resolved,omitempty"`
}

// ChangeID names a prepared map change: the Raft index of its Prepare. Never reused.
type ChangeID uint64

// MaxResolved is how many resolved changes the map remembers.
const MaxResolved = 64

// Transfer is one movement of entities a prepared change implies: every entity of server From
// inside Region moves to server To, into cell Cell whose epoch after the change is Epoch.
type Transfer struct {
	From   ServerID `json:"from"`
	To     ServerID `json:"to"`
	Region Rect     `json:"region"`
	Cell   CellID   `json:"cell"`
	Epoch  Epoch    `json:"epoch"`
	Staged bool     `json:"staged"` // the target has the entities (Staged applied)
}

// Change is a map change in progress (DESIGN.md §3). An operation (split, merge, shift, move)
// that moves a region of the world from one live server to another is not applied at once:
// Prepare records it with the Transfers it implies and marks the cells involved migrating;
// each source freezes the entities in its regions at a tick boundary and ships them to the
// target tagged with the new epoch; each target proposes Staged when it holds them; the FSM
// applies the operation when the last transfer is staged. Until then the sources stay
// authoritative. The leader aborts a change that is not complete by Deadline, and the FSM
// aborts the changes of a server that dies or deregisters.
type Change struct {
	ID        ChangeID    `json:"id"`
	Op        []byte      `json:"op"` // the operation, as EncodeCommand encodes it
	OpType    CommandType `json:"op_type"`
	Transfers []Transfer  `json:"transfers"`
	Cells     []CellID    `json:"cells"`    // the cells the change locks (state migrating), sorted
	Created   int64       `json:"created"`  // proposer's Unix nanoseconds
	Deadline  int64       `json:"deadline"` // the leader aborts the change after this
}

// ResolvedChange is a change's outcome.
type ResolvedChange struct {
	ID        ChangeID `json:"id"`
	Committed bool     `json:"committed"` // false: aborted (Reason says why)
	Reason    string   `json:"reason,omitempty"`
}

// CommandType is the first byte of every Raft log entry the FSM applies.
type CommandType uint8

const (
	CmdInitWorld  CommandType = 1
	CmdRegister   CommandType = 2
	CmdHeartbeat  CommandType = 3
	CmdDeregister CommandType = 4
	CmdSplit      CommandType = 5
	CmdMerge      CommandType = 6
	CmdShift      CommandType = 7
	CmdMove       CommandType = 8
	CmdDrain      CommandType = 9
	CmdMarkDead   CommandType = 10
	CmdPrepare    CommandType = 11
	CmdStaged     CommandType = 12
	CmdAbort      CommandType = 13
)

// Command is an FSM command. Times inside commands are stamped by the proposer (Unix
// nanoseconds); Apply never reads a clock.
type Command interface{ Type() CommandType }

// InitWorld creates the world as one unowned cell. Only valid on an empty map.
type InitWorld struct {
	World       World   `json:"world"`
	MinCellSize float64 `json:"min_cell_size"` // no split, shift or merge may leave a cell narrower
}

// Register adds a cell server (or re-registers it, keeping its cells) and starts its lease.
// Unowned cells are then assigned to live servers (least loaded first, ties by lower ID).
type Register struct {
	Server     ServerID `json:"server"`
	Addr       string   `json:"addr"`
	ClientAddr string   `json:"client_addr"`
	Capacity   int      `json:"capacity"`
	Now        int64    `json:"now"`
	LeaseTTL   int64    `json:"lease_ttl"` // nanoseconds
}

// Heartbeat renews a live server's lease and records its load.
type Heartbeat struct {
	Server   ServerID `json:"server"`
	Now      int64    `json:"now"`
	LeaseTTL int64    `json:"lease_ttl"`
	Load     Load     `json:"load"`
}

// Deregister removes a server that leaves cleanly; its cells are reassigned.
type Deregister struct {
	Server ServerID `json:"server"`
}

// Split cuts a leaf cell in two at At on Axis. The low half keeps the cell's ID and owner;
// the high half is a new cell owned by NewOwner (0: the same owner). Both epochs grow.
type Split struct {
	Cell     CellID   `json:"cell"`
	Epoch    Epoch    `json:"epoch"`
	Axis     Axis     `json:"axis"`
	At       float64  `json:"at"`
	NewOwner ServerID `json:"new_owner"`
}

// Merge joins two sibling leaves back into one cell, which keeps Low's ID and owner.
type Merge struct {
	Low       CellID `json:"low"`
	LowEpoch  Epoch  `json:"low_epoch"`
	High      CellID `json:"high"`
	HighEpoch Epoch  `json:"high_epoch"`
}

// Shift moves an internal node's split line to At; every leaf whose bounds change gets a new
// epoch. Epochs lists the epoch the proposer saw for each of those leaves.
type Shift struct {
	Node   NodeID           `json:"node"`
	At     float64          `json:"at"`
	Epochs map[CellID]Epoch `json:"epochs"`
}

// Move gives a cell to another live server.
type Move struct {
	Cell  CellID   `json:"cell"`
	Epoch Epoch    `json:"epoch"`
	To    ServerID `json:"to"`
}

// Drain marks a server draining: it takes no new cells, and pending changes that would give it
// a region are aborted. Migrate false (the original form, kept for log entries written before
// two-phase changes): its unlocked cells are moved to other live servers at once. Migrate true:
// no cell moves in this command; the leader then proposes a Prepare of a Move for each of the
// server's unlocked cells, so the cells migrate safely (see Change).
type Drain struct {
	Server  ServerID `json:"server"`
	Migrate bool     `json:"migrate,omitempty"`
}

// MarkDead declares a server dead after its lease lapsed (the leader proposes it after lease
// + margin; Apply checks Now ≥ LeaseExpires) and reassigns its cells.
type MarkDead struct {
	Server ServerID `json:"server"`
	Now    int64    `json:"now"`
}

// Prepare starts a two-phase map change (see Change). Op is a Split, Merge, Shift or Move,
// validated as if applied now. If it moves no region between two different live servers
// (same owner, or the losing owner is dead or absent) it is applied at once, exactly as Op
// alone; otherwise it becomes a Change with ID = this entry's index and Deadline = Now +
// Timeout, and ApplyResult.Change is set. A cell locked by a change rejects every other
// operation with ErrCellMigrating.
type Prepare struct {
	Op      []byte `json:"op"` // EncodeCommand(op)
	Now     int64  `json:"now"`
	Timeout int64  `json:"timeout"` // nanoseconds
}

// Staged reports that the target of a change's transfer holds its entities. Server must be that
// transfer's To. Staging a transfer twice is a no-op. When every transfer is staged the
// operation is applied (its cells' epochs grow) and the change is resolved committed.
type Staged struct {
	Change   ChangeID `json:"change"`
	Transfer int      `json:"transfer"` // index in Change.Transfers
	Server   ServerID `json:"server"`
}

// Abort abandons a change: its cells become active again, unchanged, and it is resolved
// aborted. Aborting a change that is not pending is ErrUnknownChange.
type Abort struct {
	Change ChangeID `json:"change"`
	Reason string   `json:"reason"`
}

func (Prepare) Type() CommandType { return CmdPrepare }
func (Staged) Type() CommandType  { return CmdStaged }
func (Abort) Type() CommandType   { return CmdAbort }

func (InitWorld) Type() CommandType  { return CmdInitWorld }
func (Register) Type() CommandType   { return CmdRegister }
func (Heartbeat) Type() CommandType  { return CmdHeartbeat }
func (Deregister) Type() CommandType { return CmdDeregister }
func (Split) Type() CommandType      { return CmdSplit }
func (Merge) Type() CommandType      { return CmdMerge }
func (Shift) Type() CommandType      { return CmdShift }
func (Move) Type() CommandType       { return CmdMove }
func (Drain) Type() CommandType      { return CmdDrain }
func (MarkDead) Type() CommandType   { return CmdMarkDead }

// ApplyResult is what FSM.Apply returns for every command (raft.ApplyFuture.Response()).
type ApplyResult struct {
	Index   uint64   // the log index applied
	Version uint64   // the map version after it
	Err     error    // nil, or an error from errors.go (wrapped with detail); nothing changed
	Cells   []CellID // cells the command created (Split: the new high cell)
	Change  ChangeID // Prepare: the change it started (0: the operation was applied at once)
}

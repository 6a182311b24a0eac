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

// CellLoad is one cell's load as its server last reported it.
type CellLoad struct {
	Cell          CellID `json:"cell"`
	Entities      int    `json:"entities"`
	TickP99Micros int64  `json:"tick_p99_us"`
	BytesOut      int64  `json:"bytes_out"` // bytes per second sent to clients
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

// Drain marks a server draining and moves all its cells to other live servers.
type Drain struct {
	Server ServerID `json:"server"`
}

// MarkDead declares a server dead after its lease lapsed (the leader proposes it after lease
// + margin; Apply checks Now ≥ LeaseExpires) and reassigns its cells.
type MarkDead struct {
	Server ServerID `json:"server"`
	Now    int64    `json:"now"`
}

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
}

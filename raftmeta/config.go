package raftmeta

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config configures one metadata node (Start). DefaultConfig fills every field except ID,
// the addresses and DataDir with values tuned for a LAN.
type Config struct {
	ID            uint64 // Raft server ID, as its decimal string; ≥ 1, unique in the cluster, never reused
	RaftAddr      string // TCP address the Raft transport binds, e.g. "127.0.0.1:7000"
	RaftAdvertise string // address peers dial for Raft ("": RaftAddr, which must then be a concrete IP)
	HTTPAddr      string // TCP address the HTTP API binds ("127.0.0.1:0" picks a port)
	HTTPAdvertise string // address peers use for the HTTP API ("": the bound address)
	DataDir       string // raft.db (log + stable store), snapshots/, http_addrs.json

	// Bootstrap makes this node a one-node cluster if DataDir holds no Raft state yet; the
	// others then Join it. Ignored when state exists (a restart needs neither flag).
	Bootstrap bool
	// Join is the HTTP address of any node of an existing cluster; used only if DataDir holds
	// no Raft state yet. Mutually exclusive with Bootstrap.
	Join        string
	JoinTimeout time.Duration // give up joining after this long (retries with backoff until then)

	// Raft timing, tuned for a LAN (hashicorp's defaults — 1 s heartbeat and election, 500 ms
	// lease — are WAN-safe and would make failover take seconds). See raft.Config. A follower
	// notices a dead leader after [HeartbeatTimeout, 2×HeartbeatTimeout) and the election
	// takes a round trip, so the defaults fail over in roughly 0.2–0.5 s. 100 ms works on an
	// idle LAN host, but on a loaded 2-core machine (load average ≈ 11) it made a 3-node
	// cluster hold 20 elections in 40 s from scheduling stalls; 200 ms held about one.
	HeartbeatTimeout   time.Duration // a follower without contact for [T, 2T) starts an election
	ElectionTimeout    time.Duration // a candidate without a quorum for [T, 2T) retries; ≥ HeartbeatTimeout
	LeaderLeaseTimeout time.Duration // a leader without quorum contact this long steps down; ≤ HeartbeatTimeout
	CommitTimeout      time.Duration // longest wait before an idle leader tells followers the commit index
	MaxAppendEntries   int           // log entries per AppendEntries RPC, [1, 1024]
	TransportTimeout   time.Duration // I/O deadline of Raft RPCs

	SnapshotInterval  time.Duration // how often Raft checks whether to snapshot
	SnapshotThreshold uint64        // snapshot once this many entries are beyond the last snapshot
	TrailingLogs      uint64        // entries kept after a snapshot so slow followers need not install it
	SnapshotRetain    int           // snapshots kept on disk

	ApplyTimeout time.Duration // longest a write waits to be committed and applied

	// Leases (DESIGN.md §2): LeaseTTL is what a register or heartbeat without its own TTL
	// grants; the leader marks a server dead once now > lease_expires + DeadMargin, checking
	// every ReaperInterval.
	LeaseTTL       time.Duration
	DeadMargin     time.Duration
	ReaperInterval time.Duration

	// PeerSyncInterval is how often a node exchanges its table of node HTTP addresses with
	// the other nodes (leader forwarding needs the leader's HTTP address; see peers.go).
	PeerSyncInterval time.Duration

	// Planner, if set, is the partitioner (DESIGN.md §2): on the leader only, every
	// PlanInterval, it is called with the leader's map and each operation it returns (a Split,
	// Merge, Shift or Move) is proposed as a Prepare with ChangeTimeout, so that it migrates
	// safely (see Change). nil: no planning. It runs on the leader's planning loop: it must
	// not block, and it is given a copy of the map it may keep.
	Planner      func(m Map) []Command
	PlanInterval time.Duration
	// ChangeTimeout is the timeout of the changes this node starts (the planner's, the admin
	// endpoints' and draining's): the leader aborts a change not complete by then.
	ChangeTimeout time.Duration
	// DirectOps makes the split, merge, shift and move endpoints propose the operation itself,
	// applied at once, instead of a Prepare, and drain move a server's cells at once (Drain
	// without Migrate). For tests of the Raft layer and for clusters whose cell servers do
	// not migrate entities; false in production: then no region ever changes owner while its
	// old owner may still be simulating it.
	DirectOps bool

	// The world a fresh cluster starts with: the first leader whose map is empty proposes
	// InitWorld with these. They mean nothing once the map exists.
	World       World
	MinCellSize float64

	// PeerDial, if set, opens every connection this node makes to another metadata node:
	// the Raft transport's outgoing RPC connections and node-to-node HTTP (leader
	// forwarding, the address-table sync, joining). Every byte between two nodes travels on
	// a connection one of them dialed, so a hook that refuses dials across a cut and closes
	// the connections it handed out there partitions the cluster (faultnet_test.go). It is
	// for fault injection in tests; nil in production: a plain TCP dial.
	PeerDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultConfig returns the LAN defaults. ID, RaftAddr, HTTPAddr and DataDir must still be set.
func DefaultConfig() Config {
	return Config{
		JoinTimeout:        2 * time.Minute,
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      10 * time.Millisecond,
		MaxAppendEntries:   64,
		TransportTimeout:   5 * time.Second,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  4096,
		TrailingLogs:       4096,
		SnapshotRetain:     3,
		ApplyTimeout:       5 * time.Second,
		LeaseTTL:           3 * time.Second,
		DeadMargin:         2 * time.Second,
		ReaperInterval:     500 * time.Millisecond,
		PeerSyncInterval:   2 * time.Second,
		PlanInterval:       time.Second,
		ChangeTimeout:      5 * time.Second,
		World:              World{Min: [2]float64{0, 0}, Max: [2]float64{16384, 16384}},
		MinCellSize:        64,
	}
}

// Validate names the first field that is out of bounds.
func (c Config) Validate() error {
	addr := func(name, v string, mayBeEmpty bool) error {
		if v == "" {
			if mayBeEmpty {
				return nil
			}
			return fmt.Errorf("%w: %s must be set (host:port)", ErrInvalidConfig, name)
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%w: %s (%q) must be host:port: %v", ErrInvalidConfig, name, v, err)
		}
		return nil
	}
	for _, a := range []struct {
		name, v string
		empty   bool
	}{{"RaftAddr", c.RaftAddr, false}, {"RaftAdvertise", c.RaftAdvertise, true},
		{"HTTPAddr", c.HTTPAddr, false}, {"HTTPAdvertise", c.HTTPAdvertise, true}, {"Join", c.Join, true}} {
		if err := addr(a.name, a.v, a.empty); err != nil {
			return err
		}
	}
	w := c.World
	switch {
	case c.ID == 0:
		return fmt.Errorf("%w: ID must be ≥ 1", ErrInvalidConfig)
	case c.DataDir == "":
		return fmt.Errorf("%w: DataDir must be set", ErrInvalidConfig)
	case c.Bootstrap && c.Join != "":
		return fmt.Errorf("%w: Bootstrap and Join (%q) are mutually exclusive", ErrInvalidConfig, c.Join)
	case c.Join != "" && c.JoinTimeout <= 0:
		return fmt.Errorf("%w: JoinTimeout (%v) must be > 0", ErrInvalidConfig, c.JoinTimeout)
	case c.HeartbeatTimeout < 5*time.Millisecond || c.HeartbeatTimeout > time.Minute:
		return fmt.Errorf("%w: HeartbeatTimeout (%v) must be in [5ms, 1m]", ErrInvalidConfig, c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout || c.ElectionTimeout > time.Minute:
		return fmt.Errorf("%w: ElectionTimeout (%v) must be in [HeartbeatTimeout (%v), 1m]", ErrInvalidConfig, c.ElectionTimeout, c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("%w: LeaderLeaseTimeout (%v) must be in [5ms, HeartbeatTimeout (%v)]", ErrInvalidConfig, c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout < time.Millisecond || c.CommitTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("%w: CommitTimeout (%v) must be in [1ms, HeartbeatTimeout (%v)]", ErrInvalidConfig, c.CommitTimeout, c.HeartbeatTimeout)
	case c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024:
		return fmt.Errorf("%w: MaxAppendEntries (%d) must be in [1, 1024]", ErrInvalidConfig, c.MaxAppendEntries)
	case c.TransportTimeout < 10*time.Millisecond:
		return fmt.Errorf("%w: TransportTimeout (%v) must be ≥ 10ms", ErrInvalidConfig, c.TransportTimeout)
	case c.SnapshotInterval < 5*time.Millisecond:
		return fmt.Errorf("%w: SnapshotInterval (%v) must be ≥ 5ms", ErrInvalidConfig, c.SnapshotInterval)
	case c.SnapshotThreshold < 1:
		return fmt.Errorf("%w: SnapshotThreshold (%d) must be ≥ 1", ErrInvalidConfig, c.SnapshotThreshold)
	case c.SnapshotRetain < 1:
		return fmt.Errorf("%w: SnapshotRetain (%d) must be ≥ 1", ErrInvalidConfig, c.SnapshotRetain)
	case c.ApplyTimeout < 10*time.Millisecond:
		return fmt.Errorf("%w: ApplyTimeout (%v) must be ≥ 10ms", ErrInvalidConfig, c.ApplyTimeout)
	case c.LeaseTTL < minLeaseTTL || c.LeaseTTL > maxLeaseTTL:
		return fmt.Errorf("%w: LeaseTTL (%v) must be in [%v, %v]", ErrInvalidConfig, c.LeaseTTL, minLeaseTTL, maxLeaseTTL)
	case c.DeadMargin < 0:
		return fmt.Errorf("%w: DeadMargin (%v) must be ≥ 0", ErrInvalidConfig, c.DeadMargin)
	case c.ReaperInterval < time.Millisecond:
		return fmt.Errorf("%w: ReaperInterval (%v) must be ≥ 1ms", ErrInvalidConfig, c.ReaperInterval)
	case c.PeerSyncInterval < time.Millisecond:
		return fmt.Errorf("%w: PeerSyncInterval (%v) must be ≥ 1ms", ErrInvalidConfig, c.PeerSyncInterval)
	case c.PlanInterval < time.Millisecond:
		return fmt.Errorf("%w: PlanInterval (%v) must be ≥ 1ms", ErrInvalidConfig, c.PlanInterval)
	case c.ChangeTimeout < time.Millisecond || c.ChangeTimeout > MaxChangeTimeout:
		return fmt.Errorf("%w: ChangeTimeout (%v) must be in [1ms, %v]", ErrInvalidConfig, c.ChangeTimeout, MaxChangeTimeout)
	case !(w.Max[0] > w.Min[0]) || !(w.Max[1] > w.Min[1]):
		return fmt.Errorf("%w: World (%v..%v) must have Max > Min on both axes", ErrInvalidConfig, w.Min, w.Max)
	case !(c.MinCellSize > 0) || c.MinCellSize > w.Max[0]-w.Min[0] || c.MinCellSize > w.Max[1]-w.Min[1]:
		return fmt.Errorf("%w: MinCellSize (%v) must be in (0, the world's smaller side]", ErrInvalidConfig, c.MinCellSize)
	}
	return nil
}

// Lease TTLs a register or heartbeat may ask for.
const (
	minLeaseTTL = 10 * time.Millisecond
	maxLeaseTTL = 10 * time.Minute
)

// serverID is the Raft server ID of a node ID.
func serverID(id uint64) raft.ServerID { return raft.ServerID(fmt.Sprintf("%d", id)) }

// raftConfig is the hashicorp/raft configuration of c (c must be valid).
func (c Config) raftConfig(logger hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.Logger = logger
	rc.LocalID = serverID(c.ID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	return rc
}

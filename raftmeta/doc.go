// Package raftmeta is Meridian's metadata service: the Raft-replicated partition map that says
// which cell server owns which rectangle of the world (DESIGN.md §2).
//
// # What it owns
//
//   - The partition map (types.go): the world rectangle, the k-d tree whose leaves are the
//     cells (id, bounds, owner, epoch, state), the registered cell servers with their leases
//     and last load reports, and the map version.
//   - The FSM (state.go, fsm.go): the deterministic state machine hashicorp/raft applies
//     committed log entries to. Every entry is one command: a one-byte CommandType followed by
//     a JSON payload (command.go), dispatched through a registration table as Consul does.
//     The commands are InitWorld, Register, Heartbeat, Deregister, Split, Merge, Shift, Move,
//     Drain, MarkDead, Prepare, Staged and Abort; an invalid one is rejected with an error from
//     errors.go and changes nothing. The FSM contract is written out at the top of state.go.
//   - Two-phase map changes (changes.go, DESIGN.md §3): a split, merge, shift or move that
//     hands a region of the world from one live cell server to another is proposed as Prepare.
//     The FSM records it as a Change with the Transfers it implies (from, to, region, and the
//     cell and epoch the region will have) and locks its cells (state migrating); the sources
//     ship the entities, each target proposes Staged, and the last Staged applies the
//     operation, giving the cells exactly the epochs the transfers named. Until then the
//     sources stay authoritative, so no region ever has two owners. An operation that moves
//     no region between live servers is applied at once. Changes end committed or aborted
//     (Abort, the leader at the change's deadline, a party dying, leaving or draining); the
//     map keeps the last MaxResolved outcomes.
//   - The nodes: log and stable store, file snapshots, TCP transport, bootstrap and join,
//     leader forwarding, and the leader's loops: the lease sweep that proposes MarkDead after
//     lease + margin, Abort of changes past their deadline and two-phase moves of draining
//     servers' cells (reaper.go), and the planner (planner.go), which proposes the operations
//     of Config.Planner (the partitioner) as Prepare.
//   - The HTTP/JSON API on every node (map, cells, servers, status, writes forwarded to the
//     leader, linearizable reads by default and ?stale follower reads, blocking queries on the
//     map version), with errors reported as the stable codes of ErrorCode.
//
// The log and stable store is raft-boltdb/v2 v2.3.0 because it is the store hashicorp/raft's own
// users (Consul, Nomad, Vault) run in production, it is one file per node with synced
// transactions, and the partition map's write rate (heartbeats and a few map changes per second)
// is far below what it sustains. bbolt syncs every transaction, so a write is on disk before
// the leader counts it and before any client is told it succeeded (acknowledged = durable; the
// all-nodes SIGKILL test in sim-tests/metacluster checks it). Measured peak: ~3–7k commits/s on
// the development machine, bound by that sync (docs/performance.md).
//
// Followers find the leader's HTTP address (to forward writes and linearizable reads) in a small
// table of Raft ID → Raft and HTTP addresses that nodes exchange at join time and every couple of
// seconds, persisted as http_addrs.json in the data directory (not peers.json, which
// hashicorp/raft reserves for outage recovery). Linearizable reads use the read-index method:
// one barrier per term, then per read VerifyLeader and a wait until the FSM has applied the
// commit index seen before it.
//
// # What it must not do
//
// It does not simulate entities, decide partitioning (the partitioner, plugged in as
// Config.Planner, decides; the leader proposes its splits, merges, shifts and moves as ordinary
// commands) or talk to game clients. The FSM's Apply never reads a
// clock, starts a goroutine or uses a global random source: every time it needs (lease start,
// the instant a server is declared dead) is stamped into the command by the proposer, so every
// replica that applies the same log reaches the same map.
package raftmeta

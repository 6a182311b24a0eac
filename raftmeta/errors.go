package raftmeta

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
)

// Every error of the package is one of these sentinels, wrapped with detail (fmt.Errorf("%w:
// ...")); test them with errors.Is. ErrorCode maps each to the stable snake_case code the JSON
// API reports, and ErrorForCode maps a code back (for clients of the API).

// Node and API errors.
var (
	// ErrNotLeader: the node is not the leader and the request cannot be forwarded to it.
	ErrNotLeader = errors.New("raftmeta: not the leader")
	// ErrNoLeader: the cluster has no known leader right now (election in progress, or this
	// node is in a minority partition).
	ErrNoLeader = errors.New("raftmeta: no leader")
	// ErrLeadershipLost: the leader lost leadership while committing; the write may or may not
	// have been applied (the outcome is unknown, so a retry must be idempotent or re-checked).
	ErrLeadershipLost = errors.New("raftmeta: leadership lost while committing")
	// ErrTimeout: the operation did not complete in time.
	ErrTimeout = errors.New("raftmeta: timeout")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("raftmeta: shutting down")
	// ErrBadRequest: a request or a command field is invalid (e.g. server id 0, a lease TTL
	// ≤ 0, an unparsable query parameter).
	ErrBadRequest = errors.New("raftmeta: bad request")
	// ErrInvalidConfig is wrapped by every error a Config.Validate returns.
	ErrInvalidConfig = errors.New("raftmeta: invalid config")
	// ErrCorruptSnapshot: a snapshot could not be decoded or does not describe a valid map.
	ErrCorruptSnapshot = errors.New("raftmeta: corrupt snapshot")
)

// Command decoding errors (command.go).
var (
	// ErrUnknownCommand: the entry's type byte names no registered command.
	ErrUnknownCommand = errors.New("raftmeta: unknown command")
	// ErrMalformedCommand: the payload is not a valid encoding of its command (bad or
	// truncated JSON, unknown fields, trailing data, non-finite numbers, too large).
	ErrMalformedCommand = errors.New("raftmeta: malformed command")
)

// FSM errors (state.go): the command was valid to decode but is not valid for the current map.
// The map is unchanged.
var (
	// ErrWorldExists: InitWorld on a map that already has a world.
	ErrWorldExists = errors.New("raftmeta: world already initialised")
	// ErrNoWorld: a cell command before InitWorld.
	ErrNoWorld = errors.New("raftmeta: no world")
	// ErrInvalidWorld: InitWorld with empty or non-finite bounds or a bad minimum cell size.
	ErrInvalidWorld = errors.New("raftmeta: invalid world")
	// ErrUnknownCell: no cell has that id (it never existed or was merged away).
	ErrUnknownCell = errors.New("raftmeta: unknown cell")
	// ErrUnknownServer: no registered server has that id.
	ErrUnknownServer = errors.New("raftmeta: unknown server")
	// ErrUnknownNode: no k-d tree node has that id.
	ErrUnknownNode = errors.New("raftmeta: unknown tree node")
	// ErrNotInternal: Shift named a leaf node (only internal nodes have a split line).
	ErrNotInternal = errors.New("raftmeta: tree node is not internal")
	// ErrStaleEpoch: the command carries an epoch other than the cell's current one (the
	// proposer acted on an old map), or Shift's epochs do not list exactly the leaves it moves.
	ErrStaleEpoch = errors.New("raftmeta: stale epoch")
	// ErrNotSiblings: Merge named cells that are not the low and high leaves of one node.
	ErrNotSiblings = errors.New("raftmeta: cells are not siblings")
	// ErrCellTooSmall: a split or shift would leave a cell narrower than the minimum cell size.
	ErrCellTooSmall = errors.New("raftmeta: cell would be smaller than the minimum cell size")
	// ErrOutOfBounds: a split or shift coordinate is not strictly inside the rectangle.
	ErrOutOfBounds = errors.New("raftmeta: coordinate out of bounds")
	// ErrBadAxis: an axis other than "x" or "z".
	ErrBadAxis = errors.New("raftmeta: bad axis")
	// ErrCellMigrating: the cell is migrating and cannot change until the migration ends.
	ErrCellMigrating = errors.New("raftmeta: cell is migrating")
	// ErrServerDead: the server is marked dead (it must register again).
	ErrServerDead = errors.New("raftmeta: server is dead")
	// ErrServerDraining: the server is draining and takes no new cells.
	ErrServerDraining = errors.New("raftmeta: server is draining")
	// ErrServerNotExpired: MarkDead before the server's lease expired.
	ErrServerNotExpired = errors.New("raftmeta: server lease not expired")
	// ErrNoLiveServer: no live, non-draining server can take the cells.
	ErrNoLiveServer = errors.New("raftmeta: no live server to take the cells")
	// ErrAlreadyOwner: Move to the server that already owns the cell.
	ErrAlreadyOwner = errors.New("raftmeta: server already owns the cell")
	// ErrUnknownChange: Staged or Abort named a change that is not pending (it never existed,
	// or it was already committed or aborted: see Map.Resolved).
	ErrUnknownChange = errors.New("raftmeta: unknown change")
)

// errorCodes is the stable code of every sentinel, in the order ErrorCode tries them. The codes
// are part of the API: never change one.
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrNotLeader, "not_leader"},
	{ErrNoLeader, "no_leader"},
	{ErrLeadershipLost, "leadership_lost"},
	{ErrTimeout, "timeout"},
	{ErrShutdown, "shutdown"},
	{ErrBadRequest, "bad_request"},
	{ErrInvalidConfig, "invalid_config"},
	{ErrCorruptSnapshot, "corrupt_snapshot"},
	{ErrUnknownCommand, "unknown_command"},
	{ErrMalformedCommand, "malformed_command"},
	{ErrWorldExists, "world_exists"},
	{ErrNoWorld, "no_world"},
	{ErrInvalidWorld, "invalid_world"},
	{ErrUnknownCell, "unknown_cell"},
	{ErrUnknownServer, "unknown_server"},
	{ErrUnknownNode, "unknown_node"},
	{ErrNotInternal, "not_internal"},
	{ErrStaleEpoch, "stale_epoch"},
	{ErrNotSiblings, "not_siblings"},
	{ErrCellTooSmall, "cell_too_small"},
	{ErrOutOfBounds, "out_of_bounds"},
	{ErrBadAxis, "bad_axis"},
	{ErrCellMigrating, "cell_migrating"},
	{ErrServerDead, "server_dead"},
	{ErrServerDraining, "server_draining"},
	{ErrServerNotExpired, "server_not_expired"},
	{ErrNoLiveServer, "no_live_server"},
	{ErrAlreadyOwner, "already_owner"},
	{ErrUnknownChange, "unknown_change"},

	// hashicorp/raft's own errors, so the API can pass them through unwrapped.
	{raft.ErrNotLeader, "not_leader"},
	{raft.ErrLeadershipLost, "leadership_lost"},
	{raft.ErrEnqueueTimeout, "timeout"},
	{raft.ErrRaftShutdown, "shutdown"},
	{context.DeadlineExceeded, "timeout"},
}

// ErrorCode returns the stable snake_case code of err for the JSON API ("stale_epoch",
// "not_leader", ...): the code of the first sentinel err wraps, "internal" for any other error,
// and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return "internal"
}

// ErrorForCode returns the sentinel error whose code is code (the inverse of ErrorCode, for
// clients that read an error code from the API and want errors.Is to work), or nil if code is
// not one of the package's codes.
func ErrorForCode(code string) error {
	for _, e := range errorCodes {
		if e.code == code {
			return e.err // the package's own sentinels come first in errorCodes
		}
	}
	return nil
}

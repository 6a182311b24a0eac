package persistence

import "errors"

// Sentinel errors. Every error this package returns is, or wraps (fmt.Errorf("%w:
// ...")), one of these or an error of the filesystem or of Pebble; test them with errors.Is.
var (
	// ErrFsync: the local store hit an unrecoverable storage error: a synced commit failed
	// (fsync or write error on the write-ahead log), or Pebble reported a fatal error in the
	// background (MANIFEST write, data corruption). Whether the write that returned it is on
	// disk is unknown, and after a failed fsync the kernel may have dropped the dirty pages
	// while reporting a later fsync as successful ("fsyncgate", PostgreSQL 2018): retrying
	// would acknowledge writes that are not durable. So the Store refuses all further work
	// (every method then returns this error) and the caller must stop the process; the
	// restarted process recovers from what actually reached the disk. Never retry.
	ErrFsync = errors.New("persistence: storage failure (fsync); the process must stop")

	// ErrStaleEpoch: a write carries an epoch older than the one stored for its cell (epoch
	// fencing: a server that lost a cell cannot overwrite what its new owner, or a later
	// incarnation of itself, wrote). Nothing was written.
	ErrStaleEpoch = errors.New("persistence: stale epoch")

	// ErrInvalidArgument: a checkpoint or event that cannot be stored (cell 0, an entity
	// record failing wire's checks, an empty or oversized idempotency key, ...). Nothing was
	// written.
	ErrInvalidArgument = errors.New("persistence: invalid argument")

	// ErrInvalidOptions is wrapped by every error StoreOptions.Validate returns.
	ErrInvalidOptions = errors.New("persistence: invalid options")

	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("persistence: store closed")

	// ErrCorrupt: stored bytes do not decode (a checkpoint's entity block, an event, a
	// missing format version key in a non-empty store).
	ErrCorrupt = errors.New("persistence: corrupt data")

	// ErrFormatVersion: the store on disk was written in a format version this build does not
	// read.
	ErrFormatVersion = errors.New("persistence: unsupported format version")

	// Inventory transactions (pg_inventory.go). ErrNotOwner, ErrItemGone and ErrTooFar are
	// refusals about the items: recorded in the event log under the operation's idempotency
	// key, so a retry with that key returns the same refusal (and PG.Outcome reads it back).
	// ErrUnknownPlayer, ErrDuplicateKeyMismatch and ErrInvalidArgument record nothing.

	// ErrNotOwner: an item of a drop, give or trade exists but is not held by the player the
	// operation takes it from (another player holds it, or it lies on the ground).
	ErrNotOwner = errors.New("persistence: item not owned by the player")

	// ErrItemGone: an item of the operation does not exist, or (loot) is no longer on the
	// ground: another player took it first.
	ErrItemGone = errors.New("persistence: item gone")

	// ErrTooFar: (loot with a Near) the item lies on the ground, but in another cell than the
	// looter's or farther than its reach from where the looter stands.
	ErrTooFar = errors.New("persistence: item out of reach")

	// ErrUnknownPlayer: a player of the operation does not exist in PostgreSQL (not created,
	// or not flushed yet). Nothing was applied or recorded: the same key may be used again.
	ErrUnknownPlayer = errors.New("persistence: unknown player")

	// ErrDuplicateKeyMismatch: the idempotency key was already used for a different operation
	// (another kind, other players, items or place). Nothing was applied.
	ErrDuplicateKeyMismatch = errors.New("persistence: idempotency key reused for a different operation")

	// ErrUnavailable: PostgreSQL could not be reached or dropped the connection (connect
	// failure, connection lost, server shutting down, too many connections). The transaction
	// was not committed, except when the connection was lost during its COMMIT: then it
	// committed whole or not at all, and a retry with the same idempotency key says which
	// (and applies nothing twice). Never half-done.
	ErrUnavailable = errors.New("persistence: PostgreSQL unavailable")

	// ErrContention: an inventory transaction kept failing with serialization failures or
	// deadlocks after its bounded retries. Nothing was applied; retry later with the same key.
	ErrContention = errors.New("persistence: transaction conflicts persisted after retries")
)

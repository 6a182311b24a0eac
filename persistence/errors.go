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
)

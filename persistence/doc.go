// Package persistence is Meridian's storage layer (DESIGN.md §5): the local Pebble store on
// every cell server, and the authoritative PostgreSQL store behind the whole cluster.
//
// # What it owns
//
//   - The local store (Store: checkpoint_store.go, checkpoint.go, outbox.go), one Pebble
//     (cockroachdb/pebble/v2) database per cell server, holding two things. Cell checkpoints:
//     each cell's entities (wire.EntityRecord, in wire's compressed entity block) tagged with
//     the cell's epoch and tick, one value per cell written by one batch committed with
//     pebble.Sync; a write with an older epoch than the stored one is rejected (ErrStaleEpoch),
//     and a cell given away keeps its epoch as a fence. The outbox: critical events (loot,
//     trade, death), each with an idempotency key, written in one synced batch before the game
//     acknowledges them, numbered by a persistent sequence, read by a flusher that delivers
//     them to PostgreSQL and then acknowledges (deletes) them. The key layout and the format
//     version checked on open are documented in checkpoint_store.go.
//   - The authoritative store (the pg*.go files and migrations/): the PostgreSQL schema and its
//     migrations; players (position, stats); items (owner, kind, attributes as JSONB); the
//     append-only event/audit log, whose idempotency keys make every delivery of an outbox
//     event apply once; periodic epoch-fenced position flushes; inventory changes (loot, trade,
//     drop) as ACID transactions with an idempotency key, run off the tick goroutine, whose
//     results the game applies on a later tick. If PostgreSQL is down, inventory changes fail
//     cleanly and movement goes on.
//   - Recovery inputs: a cell given to a new server loads the freshest of the local checkpoint
//     and the authoritative state; with no PostgreSQL configured the local store alone serves
//     (demo, local development).
//
// Built so far: the local Store (checkpoints, outbox) and, for PostgreSQL, the schema, its
// migrations, the pool and the epoch-fenced player upsert. The position flusher, the
// inventory transactions, the outbox flusher and recovery are the rest of issue 6, not here
// yet.
//
// # The authoritative store
//
// OpenPG opens a pgx pool (PGConfig: MaxConns, ConnectTimeout, StatementTimeout) and brings
// the schema up to date with Migrate: the migrations/NNNN_name.sql files embedded in the
// binary, each applied once, in order, in its own transaction under a transaction-level
// advisory lock (servers starting together do not race), and recorded with its checksum in
// schema_migrations. A database whose applied migration differs from this build's
// (ErrMigrationChecksum) or that has migrations this build lacks (ErrSchemaTooNew) is refused.
// Tables: players (position, cell, stats as JSONB, the authority epoch of the last writer);
// items (owned by a player or lying in a cell, kind, attributes as JSONB, version for
// optimistic concurrency); events, the append-only audit log (UPDATE, DELETE and TRUNCATE fail
// with SQLSTATE 23001; a UNIQUE idempotency key makes a redelivered event a no-op). Writes are
// epoch-fenced: UpsertPlayers writes a player only if the stored epoch is not newer than the
// row's, and counts the rows it did not write as fenced. Its tests run against a real server
// through internal/pgtest (an ephemeral cluster, or MERIDIAN_TEST_PG_URL).
//
// # Durability rules
//
// Every local write is one batch synced to Pebble's write-ahead log before the call returns:
// nil means durable, and a crash at any moment leaves each cell's previous or new checkpoint
// whole, never a mix (the crash tests check this on Pebble's crashable in-memory filesystem,
// after every acknowledged write and with random loss of unsynced data). There are no
// per-entity writes, no unsynced writes of authoritative state, and the WAL is never disabled.
// A failed fsync is never retried: the Store is poisoned, every call returns ErrFsync, and the
// caller must stop the process (StoreOptions.OnFatal hears of it even when it happens in
// Pebble's background work); the next process recovers from what reached the disk.
//
// # What it must not do
//
// It knows nothing of ticks, cells or the game beyond keys, epochs and the values it is given
// (a tick is stored with a checkpoint, never interpreted): it never decides who owns a cell
// (raftmeta does), never simulates entities, and never blocks the tick goroutine on
// PostgreSQL (those calls are made off it). It never retries a failed sync, never writes
// authoritative state without a sync, and the local store starts no goroutines beyond
// Pebble's.
package persistence

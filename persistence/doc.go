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
// migrations, the pool, the epoch-fenced player writes (UpsertPlayers, and FlushPlayers, its
// COPY-based twin for big batches) and the position Flusher, which the tick goroutine feeds
// with Offer and which writes every FlushInterval from its own goroutine, keeping its rows
// through an outage; the inventory transactions (Loot, Drop, Give, Trade; see below); the
// player reads (LoadPlayers, up to MaxLoadPlayers ids, and EnsurePlayer, which creates a
// player on first sight: pg_players.go); and the OutboxFlusher (outbox_flusher.go), which
// moves the outbox into the events table in batches of one INSERT … ON CONFLICT (idem_key) DO
// NOTHING each and acknowledges a batch only once it committed, so that a crash in between
// re-delivers it and applies nothing twice. The cell server checkpoints its cells into the
// local Store and restores them when it restarts within its lease
// (cellserver/checkpointer.go). Wiring the Flusher, the OutboxFlusher and the inventory
// operations into the cell server, and recovery of a dead server's cells from PostgreSQL are
// the rest of issue 6, not here yet.
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
// row's, and counts the rows it did not write as fenced; a written row's stats are merged into
// the stored object (players.stats || the row's: other keys a game keeps there stay).
// FlushPlayers does the same through COPY into a temporary table and one merge (2–3× faster
// at 50 000 rows; docs/performance.md).
// The Flusher (flusher.go) keeps the newest offered row per player (bounded by MaxPending),
// writes them with FlushPlayers or, below CopyMinRows, UpsertPlayers, retries a failed write
// with exponential backoff while newer offers replace its rows, drops rows that are fenced or
// that PostgreSQL refuses on their own (isolated by halving the batch), and exports the
// meridian_pg_flush_* metrics. Their tests run against a real server through internal/pgtest
// (an ephemeral cluster, or MERIDIAN_TEST_PG_URL; the Flusher's outage test on a cluster of
// its own, stopped and restarted).
//
// # Inventory transactions
//
// Loot, Drop, Give and Trade (pg_inventory.go) each run as one READ COMMITTED transaction,
// pipelined in two round trips, that carries an idempotency key (1..128 bytes) and records it
// in the events log in the same transaction: kind "loot", "drop", "give" or "trade", the
// acting player, and a payload with the request (players, sorted item ids, the drop's cell
// and position; for audit, a loot's Near), the outcome ("ok", "not_owner", "item_gone",
// "too_far") and the items moved with their new holders and versions. A retry with the same
// key applies nothing and returns the recorded outcome (InvOutcome.Replayed), whatever
// happened since; the same key with another request fails with ErrDuplicateKeyMismatch (a
// loot's Near is not part of the request: a resend from another position replays); calls
// racing with one key apply it once (the loser's INSERT meets the UNIQUE idem_key, and its
// retry replays). Outcome reads the recorded outcome by the key alone, for a caller that lost
// the first answer. Refusals about the items (ErrNotOwner, ErrItemGone, and ErrTooFar for a
// loot given a Near — where the looter stands — and an item in another cell or out of its
// reach) are outcomes too: recorded, so replayed — and visible to anti-cheat as attempted
// dupes. ErrUnknownPlayer and invalid arguments record nothing.
// Every decision is taken on rows locked by one SELECT … ORDER BY id FOR UPDATE, so
// transactions over the same items queue in id order and cannot deadlock; every change bumps
// the item's version; a trade checks every item of both sides before moving any. Deadlocks
// and serialization failures are retried with jittered backoff, a bounded number of times
// (then ErrContention). PostgreSQL out of reach fails with ErrUnavailable and nothing
// half-done; a connection lost during COMMIT leaves the outcome unknown to the caller, and
// the retry with the same key tells it. No epoch fence here, by choice: epochs fence the
// position flushes, where a zombie server would overwrite newer state blindly; an inventory
// operation overwrites nothing blindly — it is validated against the authoritative rows
// under their locks (the giver holds the item, the loot is still on the ground), so a zombie
// cannot duplicate or lose an item, and its request is a real player intent, keyed so that
// the new owner's retry of it applies once. Fencing it would refuse valid intents issued just
// before a handoff (players.epoch lags by a flush interval) without making items any safer.
// Keys are the inventory operation's own: the outbox must not deliver another event under
// one. CreatePlayer and CreateItem (setup, tests) record no event; Inventory and CountItems
// read.
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

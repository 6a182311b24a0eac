// Package cellserver simulates the cells of the seamless world that the partition map gives
// this server: the 20 Hz tick of its entities and the per-client snapshots of what each client
// can see.
//
// # What it owns
//
// The deterministic core is World. World.Step advances the simulation by one logical tick
// from explicit inputs (joins, leaves, client inputs, snapshot acks) and returns every client's
// snapshot frame for that tick. Inside it:
//
//   - an entity store (store.go): components as dense structure-of-arrays columns indexed by a
//     stable row, rows recycled through a free list, a dense alive list for iteration, and an
//     EntityID → row map only for lookups from outside;
//   - movement: client intents become integer velocities clamped to Config.MaxSpeed; every
//     tick pos += vel, clamped to the world bounds (a clamped axis loses its velocity), so a
//     client's integer extrapolation (wire.EntityState.Predict) is exact;
//   - area of interest (aoi.go): a uniform grid updated incrementally, and per client an
//     interest set with hysteresis (enter within AOIEnterRadius, leave beyond AOILeaveRadius)
//     kept as a stable array of view slots capped at MaxViewSlots;
//   - snapshots (snapshot.go): a world-wide ring of per-tick entity states and, per client, a
//     log of the slot → row tables it was sent, so each snapshot is delta-encoded
//     (wire.SnapshotEncoder) against the newest tick the client acknowledged, in O(1) per slot.
//
// # What it must not do
//
// The core does not read clocks, start goroutines, open sockets or use a global random source:
// the tick number and a seeded *rand.Rand are passed in, so the same inputs and seed give the
// same output bytes on every run (DESIGN.md §1). It does not decide partitioning (raftmeta and
// partitioner do) and it does not talk to clients except through the gateway or the embedded
// edge: it only produces frames for them to carry. The real-time driver, metrics and the edge
// live in their own files of this package and are the only parts that touch time or I/O.
package cellserver

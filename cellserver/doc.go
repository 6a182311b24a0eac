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
//     (wire.SnapshotEncoder) against the newest tick the client acknowledged, in O(1) per slot;
//   - World.Export / World.Import (transfer.go): an entity and its client leave one World and
//     enter another with their full state.
//
// The cluster member (member.go) is the second deterministic core: Member.Step takes a tick, a
// newer partition map, peer messages and the events of the sessions homed here, steps the
// World, and returns the peer messages to send and the raftmeta.Staged proposals to make. It
// hands each entity to the server that owns its cell (handoff: one entity, a transfer id,
// retried until acknowledged, a duplicate answered but never imported twice), freezes and ships
// the entities of a region when the map shows a prepared change that moves it (migration:
// DESIGN.md §3, the source authoritative until the change commits), holds or forwards the inputs
// of entities in flight, relays snapshots between a session's home and its entity's owner,
// and measures each owned cell's load (entities, histograms, bytes) for the partitioner.
//
// Around the cores: Driver (driver.go) runs a Stepper on the cluster-wide 50 ms grid;
// Standalone (standalone.go) is a server that owns the whole world; Cluster (cluster.go) is a
// server in cluster mode — registration, lease renewal with self-fencing, the map watch, Staged
// proposals — with its peer links over TCP (peerlink.go).
//
// # What it must not do
//
// The core does not read clocks, start goroutines, open sockets or use a global random source:
// the tick number and a seeded *rand.Rand are passed in, so the same inputs and seed give the
// same output bytes on every run (DESIGN.md §1); Member likewise, with no seed at all (every
// iteration over a Go map is in sorted key order). It does not decide partitioning (raftmeta
// and partitioner do) and it does not talk to clients except through the gateway or the
// embedded edge: it only produces frames for them to carry. Driver, Standalone, Cluster,
// peerlink.go and the metrics are the only parts that touch time or I/O.
//
// # Lock order
//
// Cluster holds no lock while calling into another; peerNet.mu guards its inbox, links and
// connections and is never held while a link's own mu is taken (setAddrs takes them one after
// the other).
package cellserver

// Package cluster is the deterministic simulation of Meridian's cluster logic (DESIGN.md
// §2–3): several cell servers (cellserver.Member, the same state machine the real servers
// run), the partition map (the raftmeta FSM, applied directly), the partitioner on a period,
// leases and the reaper, and a simulated network that drops, delays and reorders peer
// messages — all in one goroutine, every random choice drawn from one seeded generator.
//
// After every tick it checks the invariants: no entity is real on two servers; every entity
// is real or in flight on some live server (except those the killed server held); every cell
// of every map version is owned by a live server. A run is named by its seed: a failure
// prints it, and `go test ./sim-tests/cluster -run TestSimSeeds -v -args -sim.seed N` replays it with a trace.
// `-args -sim.long` runs many more seeds for longer (make sim-long).
//
// It must not be imported by production code.
package cluster

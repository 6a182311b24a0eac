// Package harness starts and stops a whole local Meridian cluster as child processes of the
// calling program: three (Config.Metas) `meridian meta` nodes, Config.Cells `meridian cell`
// servers and one `meridian gateway`, on 127.0.0.1 with free ports, each with its data
// directory and its log file (NAME.log) under Config.Dir. It is what `meridian sim` and the
// whole-cluster tests stand a cluster up with.
//
// It owns:
//
//   - launching the processes with the right flags (the first meta node bootstraps, the others
//     join it; cell servers register in cluster mode without a client edge; the gateway routes
//     by the map) and waiting until the cluster is ready: a meta leader with every node a
//     voter, every cell server alive in the partition map, with the static partitioning the
//     grid committed, and the gateway linked to every cell server at the current map version;
//   - the static partitioning: the world cut into a g × g grid through the metadata service's
//     split and move operations and dealt round robin, before the gateway starts;
//   - killing processes on purpose (a cell server, the meta leader) and stopping everything:
//     every child runs in a process group of its own, Close (or the end of Start's context)
//     stops every group, SIGTERM first, SIGKILL after 10 s; on Linux a child also dies with
//     the process that started it;
//   - reading what the processes expose: /metrics of every process, /debug/entities of cell
//     servers, the partition map.
//
// It must not simulate anything (bots, scenarios and invariant checks live elsewhere in
// sim-tests/), must not depend on package testing (its API takes contexts and returns errors,
// so a command can use it; of sim-tests/procs it uses only the helpers that take no testing.TB), and must not be imported by production packages: only by
// cmd/meridian (for `meridian sim`) and by tests.
package harness

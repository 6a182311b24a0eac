// Package procs starts the `meridian cell` and `meridian gateway` processes of the whole-cluster
// tests (sim-tests/cellcluster, sim-tests/gatewaycluster) on 127.0.0.1 and reads what they
// expose:
//
//   - process.go: a Process (a cell server or gateway with its metrics address), the Launcher
//     that starts them in a test's directory and stops them when the test ends, free UDP
//     ports, and the ends of their logs for a failed test;
//   - ready.go: WaitFor, the poll loop the tests wait with, and the conditions they wait on
//     before sending bots: cell servers alive in the partition map, a gateway linked to them;
//   - their Prometheus /metrics are parsed by sim-tests/promscrape (which `meridian sim` links
//     too; this package imports testing and must stay out of the binary);
//   - holdings.go: what cell servers hold (/debug/entities) and the check that every bot's
//     entity is real on exactly one of them.
//
// The meta nodes, and the process plumbing underneath (Proc, Binary, FreeAddr), are
// sim-tests/metacluster's: this package builds on that plumbing. It must not be imported by
// production code.
package procs

// Package gatewaycluster runs the seamless-border scenario of DESIGN.md §3–§4 as real processes
// on 127.0.0.1: three `meridian meta` nodes with the partitioner off, two `meridian cell`
// servers owning the two halves of the world (split at x = centre by hand), and one `meridian
// gateway` that every bot connects to over KCP. The bots patrol back and forth across the
// border and chat to each other; the test checks what a player would notice (no reconnect, no
// entity flickering at the seam, ticks only forward, no missing baseline, every input
// acknowledged) and the cluster's invariants (every entity real on exactly one server, none
// lost or duplicated, no input sequence skipped), and it measures the handoff pause, the
// latency and CPU the gateway adds and the ghost traffic across the border
// (docs/performance.md). It must not be imported by production code.
package gatewaycluster

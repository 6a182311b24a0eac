// Package mapview renders a partition map (raftmeta.Map, the JSON of GET /v1/map) for people:
// tables of cells and servers, a terminal drawing of the world and an SVG picture for design
// docs. It also answers the few read-only questions the admin CLI asks of a map before it
// proposes a change (which cells a merge joins, where a manual split cuts), and it prints a
// node's view of the Raft cluster (Status).
//
// Everything here is a pure function of its input: no clocks, no network, no I/O beyond the
// io.Writer it is given. Output is deterministic — cells and servers in ID order, numbers in
// fixed formats — so it is tested against golden files (go test ./raftmeta/mapview -update
// rewrites them).
//
// Orientation: x grows to the right (east) and z grows upwards (north), in the terminal and in
// the SVG alike; the world's minimum corner is bottom-left.
//
// Owners are named by letters in server order (A for the lowest server ID, then B, C, …; the
// 27th server onwards gets digits, then '*'), the same in every view. An unowned cell is '.',
// a migrating cell uses its owner's letter in lower case (hatched in SVG), and a cell whose
// owner is not among the registered servers is '?'.
package mapview

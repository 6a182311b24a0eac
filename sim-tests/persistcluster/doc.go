// Package persistcluster tests persistence end to end with real processes: three meta nodes,
// cell servers writing to a real PostgreSQL (an ephemeral cluster from internal/pgtest, or
// $MERIDIAN_TEST_PG_URL), a gateway and bots over KCP. It checks what DESIGN.md §5 promises
// players: items are never duplicated or lost across servers, handoffs and a SIGKILL; a dead
// server's players come back elsewhere with fresh positions and their inventories; with
// PostgreSQL down inventory operations fail cleanly while movement goes on, and the position
// flush catches up when it returns.
//
// It only holds tests; it must not be imported.
package persistcluster

// Package cellcluster runs a whole cluster as real processes on 127.0.0.1 — three `meridian
// meta` nodes, three `meridian cell --meta` servers without a client edge and one `meridian
// gateway` — with 150 bots connected to the gateway over real KCP: a crowd gathers, the
// partitioner splits the map and spreads the load, the busiest cell server is SIGKILLed, its
// cells go to the others and the gateway resumes its sessions' entities there. No bot is
// disconnected, and at the end every bot's entity is real on exactly one live server and
// nothing else is held. The test also reads the servers' frozen-ticks histograms (the
// migration pause of docs/performance.md) and times the recovery after the SIGKILL. It must
// not be imported by production code.
package cellcluster

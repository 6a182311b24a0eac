// Package cellcluster runs a whole cluster as real processes on 127.0.0.1 — three `meridian
// meta` nodes and three `meridian cell --meta` servers — with bots over real KCP: a crowd
// gathers, the partitioner splits the map and spreads the load, one cell server is SIGKILLed,
// and at the end every connected bot's entity is real on exactly one live server. The test
// also reads the servers' frozen-ticks histograms (the migration pause of
// docs/performance.md). It must not be imported by production code.
package cellcluster

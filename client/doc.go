// Package client is the Go client library for Meridian: it connects over KCP, says hello,
// sends move intents, decodes the per-client delta snapshots against the views it has kept,
// acknowledges them, measures RTT and clock offset with ping/pong, and keeps an interpolated
// view of the world for rendering. The bots use it; a Go game client can too, and docs/wire.md
// is what a client in another language is written from.
//
// It owns no game logic and never sends positions: only intents (DESIGN.md §4).
package client

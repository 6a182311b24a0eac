// Package client is the Go client library for Meridian: it connects over KCP, says hello,
// sends move intents and interactions (attack, chat, trade) numbered from one sequence,
// decodes the per-client delta snapshots against the views it has kept, acknowledges them,
// receives the interactions aimed at its entity, measures RTT and clock offset with ping/pong,
// and keeps an interpolated view of the world for rendering. Its Stats also count what a
// player would notice at a cell border (an entity flickering out of view, a tick going
// backwards, a snapshot it cannot decode, an input never acknowledged). The bots use it; a Go
// game client can too, and docs/wire.md is what a client in another language is written from.
//
// It owns no game logic and never sends positions: only intents (DESIGN.md §4).
package client

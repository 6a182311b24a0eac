// Package bots drives many client sessions over real KCP with simple behaviours (wander,
// hotspot, patrol), the way a crowd of players would, and measures what they receive.
//
// Behaviours are pure functions of a bot's own view and a seeded RNG; the runner is the I/O
// edge (one goroutine ticks every bot's behaviour at the client input rate; each client has
// its own reader goroutine in package client).
package bots

// Package gateway owns client sessions: the KCP listener, the hello/auth handshake, framing,
// per-session rate limits and the bounded outbound queue of each session.
//
// Today the cell server embeds this edge in standalone mode (meridian cell without a
// metadata service); the gateway process of DESIGN.md §4 reuses it and adds routing of each
// session to the cell server that owns its entity.
//
// What it must not do: simulate. It never interprets entity state; it moves frames between
// clients and a Backend, validates what it can without game knowledge (framing, message
// shapes, versions, tokens, rates) and counts what it rejects.
//
// Concurrency: each session has one reader goroutine (decodes client frames and calls the
// Backend) and one writer goroutine (drains the session's outbound queue into KCP). The tick
// goroutine only ever calls Deliver/Send, which copy into the queue and never block on the
// network: when a client cannot keep up its newest snapshot replaces the unsent one (a
// snapshot is a delta against an acknowledged baseline, so skipping one loses nothing).
//
// Lock order: Listener.mu before Session.mu; neither is held while calling the Backend.
package gateway

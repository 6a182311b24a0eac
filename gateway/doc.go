// Package gateway owns client sessions: the KCP and WebSocket listeners, the hello/auth
// handshake, framing, per-session rate limits and the bounded outbound queue of each session
// (the edge: Listener, Session); and the gateway process of DESIGN.md §1 and §4 (Server), which
// routes every session to the cell server that owns its entity.
//
// The edge serves a Backend. A standalone cell server (meridian cell without a metadata
// service) embeds it with itself as the Backend; the gateway process (meridian gateway) puts a
// Server behind it: a deterministic Router (router.go) between the sessions and one peer link
// per cell server (peers.go), following the partition map with blocking queries.
//
// What it must not do: simulate. It never interprets entity state; it moves frames between
// clients and cell servers, validates what it can without game knowledge (framing, message
// shapes, versions, tokens, rates) and counts what it rejects.
//
// # Transports
//
// A session runs over any net.Conn that carries the frame stream: a KCP session (kcp-go; the
// KCP tuning is applied where it is accepted), or a WebSocket of binary messages wrapped by
// websocket.NetConn (docs/wire.md §2: the stream is the concatenation of the payloads). Both
// share the session table, id space, limits and metrics.
//
// # Concurrency
//
// Each session has one reader goroutine (decodes client frames and calls the Backend) and one
// writer goroutine (drains the session's outbound queue into the transport). Deliveries
// (SendSnapshot, SendControl, Disconnect) copy into the queue and never block on the network:
// when a client cannot keep up its newest snapshot replaces the unsent one (a snapshot is a
// delta against an acknowledged baseline, so skipping one loses nothing).
//
// In the gateway process every event runs under Server.mu, calls the Router and performs its
// whole output before unlocking: session events (from session reader goroutines), peer
// messages (on each link's reader goroutine), a broken link, the 50 ms tick (on the map's
// grid) and a new map. Session events do not wait for the lock: a reader that finds it held
// queues its event (Server.qmu) and returns, and the holder runs the queue, in order, before
// it unlocks; so a burst of acks from every session is forwarded by whoever holds the lock,
// instead of each reader parking and waiting to be scheduled again. Output is encoded
// straight into the links' bounded queues (byte buffers each link's writer swaps out and
// writes in one system call) and copied into the sessions' queues, so a frame is forwarded the
// moment it is read, and nothing under the lock waits on a socket or allocates.
// meridian_gateway_forward_seconds (read → output queued) is split into waiting for Server.mu
// (…_forward_lock_wait_seconds) and the work under it (…_forward_work_seconds).
//
// Lock order: Server.mu → Server.qmu (also taken alone, only to append to or swap the event
// queue); Server.mu → Listener.mu → Session.mu; Server.mu → peerLinks.mu → link.mu (a link's
// address and queue, appended to or swapped, never waited on). The edge never holds its locks
// while calling the Backend, and the links never hold theirs while calling the Server, so
// Backend calls may take Server.mu freely. The Server never calls Listener.Close under
// Server.mu (Close waits for session goroutines that call the Backend).
package gateway

package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Peer links of the gateway process: one TCP connection to every cell server in the map that
// has a peer address, dialled by the gateway. The gateway opens it with a wire.PeerHelloMsg
// naming itself (Server = its Home, wire.GatewayIDBase + id); the cell server answers on the
// same connection with its own PeerHelloMsg (its map id and the same PeerProtocolVersion, or
// the gateway closes the link and retries), then both directions carry peer frames: joins,
// inputs, interactions, acks and leaves to the server; frames and refusals back.
//
// Each link has one goroutine that dials (backoff 50 ms doubling to 1 s), says hello and then
// writes its bounded queue, and, while connected, one reader goroutine that decodes frames and
// hands them to the Server. Frames queued while the link is down wait for it; a full queue
// drops (counted): the Router resends inputs and joins. But if the server's hello on the new
// connection shows another incarnation than on the last one, the server restarted: what was
// queued for its previous process (joins, inputs, leaves of entities it no longer has) is
// discarded (counted as dropped, reason server_restarted) and the reset makes the Router
// resend what matters to the new one.
//
// At shutdown (close) every link gets linkFlushOnClose to deliver its queue (the leaves of
// the sessions that ended): a connected link writes until its queue is empty; a link that is
// down tries to connect at once and then every linkBackoffMin, and writes its queue if it gets
// through in time. Best effort: what is left at the deadline is lost, and the servers drop
// the entities when the gateway's connection ends or the entity goes stale.
//
// The queue is a byte buffer, not a channel of frames: the Server encodes each message
// straight into it (under link.mu, no allocation), and the writer swaps it for its own buffer
// and writes everything queued in one Write, so a burst costs one system call, not one a frame,
// and nothing waits for a batch to fill.

const (
	linkQueue        = 8192    // frames waiting for one link
	linkQueueBytes   = 4 << 20 // bytes waiting for one link (a bound on memory besides linkQueue)
	linkKeepBuffer   = 1 << 20 // a queue buffer grown past this is not kept after it was written
	linkHelloTimeout = 5 * time.Second
	linkWriteTimeout = 2 * time.Second
	linkBackoffMin   = 50 * time.Millisecond
	linkBackoffMax   = time.Second
	linkFlushOnClose = 500 * time.Millisecond // at shutdown (or when a server leaves the map), queued frames (leaves) get this long
)

// peerLinks holds the gateway's links, keyed by cell server id.
type peerLinks struct {
	home, inc uint64
	log       *slog.Logger
	met       *serverMetrics

	// onMessage is called on a link's reader goroutine for every decoded frame after the
	// hello, with the time it was read (msg, and the bytes in it, only valid during the call);
	// onReset when a connection that completed its hello ends, and again when it is back if
	// frames were dropped meanwhile or the server restarted (its queue discarded). Both may
	// block briefly (they take the Server's lock); neither is called with peerLinks.mu held.
	onMessage func(from raftmeta.ServerID, msg wire.PeerMessage, at time.Time)
	onReset   func(server raftmeta.ServerID)

	dropNoLink, dropFull, dropRestarted prometheus.Counter // met.linkDropped by reason, resolved once

	mu    sync.Mutex // guards links, done
	links map[raftmeta.ServerID]*link
	done  bool

	// draining is closed by close: the links deliver their queues by drainBy (set before),
	// then end.
	draining chan struct{}
	drainBy  time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// link is the connection to one cell server.
type link struct {
	to   raftmeta.ServerID
	wake chan struct{} // cap 1: something was queued
	kick chan struct{} // the address changed: reconnect
	// ctx ends when the server left the map or at shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex // guards addr and the queue
	addr string
	q    []byte // encoded frames waiting for the writer
	qn   int    // frames in q

	up      atomic.Bool
	dropped atomic.Int64 // frames dropped since the last connection ended

	// The incarnation in the server's hello on the last connection (helloed: there was one);
	// only the link's run goroutine uses them.
	lastInc uint64
	helloed bool
}

func newPeerLinks(ctx context.Context, home, inc uint64, met *serverMetrics, log *slog.Logger) *peerLinks {
	ctx, cancel := context.WithCancel(ctx)
	return &peerLinks{home: home, inc: inc, log: log, met: met,
		dropNoLink:    met.linkDropped.WithLabelValues("no_link"),
		dropFull:      met.linkDropped.WithLabelValues("queue_full"),
		dropRestarted: met.linkDropped.WithLabelValues("server_restarted"),
		links:         map[raftmeta.ServerID]*link{}, draining: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// setServers makes the links follow the map: a link for every server with a peer address
// (reconnecting where the address changed), none for servers that left.
func (p *peerLinks) setServers(servers []raftmeta.Server) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	keep := make(map[raftmeta.ServerID]bool, len(servers))
	for _, s := range servers {
		if s.Addr == "" || s.ID == 0 {
			continue
		}
		keep[s.ID] = true
		l, ok := p.links[s.ID]
		if !ok {
			l = &link{to: s.ID, wake: make(chan struct{}, 1), kick: make(chan struct{}, 1), addr: s.Addr}
			l.ctx, l.cancel = context.WithCancel(p.ctx)
			p.links[s.ID] = l
			p.wg.Add(1)
			go p.run(l)
			continue
		}
		l.mu.Lock()
		changed := l.addr != s.Addr
		l.addr = s.Addr
		l.mu.Unlock()
		if changed {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
	for id, l := range p.links {
		if !keep[id] {
			delete(p.links, id)
			l.end()
		}
	}
}

func (l *link) end() { l.cancel() }

// sendMsg encodes m straight into a server's queue; it never blocks. It reports false (and
// counts) when there is no link to that server or its queue is full, and returns the encoding
// error of an invalid message (nothing queued).
func (p *peerLinks) sendMsg(to raftmeta.ServerID, m wire.PeerMessage) (bool, error) {
	l := p.queueFor(to)
	if l == nil {
		return false, nil
	}
	n := len(l.q)
	q, err := m.AppendFrame(l.q)
	if err != nil {
		l.q = q[:n]
		l.mu.Unlock()
		return false, err
	}
	l.q = q
	return l.queued(), nil
}

// queueFor returns the link to a server with its mu held, or nil (counted) if there is none
// or its queue is full.
func (p *peerLinks) queueFor(to raftmeta.ServerID) *link {
	p.mu.Lock()
	l := p.links[to]
	p.mu.Unlock()
	if l == nil {
		p.dropNoLink.Inc()
		return nil
	}
	l.mu.Lock()
	if l.qn >= linkQueue || len(l.q) >= linkQueueBytes {
		l.mu.Unlock()
		l.dropped.Add(1)
		p.dropFull.Inc()
		return nil
	}
	return l
}

// queued counts the frame just appended to q, unlocks and wakes the writer.
func (l *link) queued() bool {
	l.qn++
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// take swaps the queue for buf (emptied) and returns what was queued and how many frames.
func (l *link) take(buf []byte) ([]byte, int) {
	if cap(buf) > linkKeepBuffer { // do not keep a burst's buffer for the link's life
		buf = nil
	}
	l.mu.Lock()
	q, n := l.q, l.qn
	l.q, l.qn = buf[:0], 0
	l.mu.Unlock()
	return q, n
}

// discard empties the queue and returns how many frames were in it.
func (l *link) discard() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.qn
	if cap(l.q) > linkKeepBuffer {
		l.q = nil
	}
	l.q, l.qn = l.q[:0], 0
	return n
}

// empty reports whether nothing is queued.
func (l *link) empty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.qn == 0
}

// up is the number of links whose hello exchange completed and that are still connected.
func (p *peerLinks) up() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.links {
		if l.up.Load() {
			n++
		}
	}
	return n
}

// close ends every link and waits for their goroutines. First the links deliver what is
// queued (the leaves of the sessions that ended) for up to linkFlushOnClose, those that are
// down included (they try to connect at once): best effort, see the top of this file. Frames
// queued meanwhile (by the readers' messages) go out too if there is time; after close, none
// is queued.
func (p *peerLinks) close() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		p.wg.Wait()
		return
	}
	p.done = true
	p.drainBy = time.Now().Add(linkFlushOnClose)
	close(p.draining)
	p.mu.Unlock()
	deadline := time.AfterFunc(linkFlushOnClose, p.cancel) // every link ends by then
	p.wg.Wait()
	deadline.Stop()
	p.cancel()
	p.mu.Lock()
	clear(p.links)
	p.mu.Unlock()
}

// isDraining reports whether close began.
func (p *peerLinks) isDraining() bool {
	select {
	case <-p.draining:
		return true
	default:
		return false
	}
}

// flushBy is the deadline of a last flush starting now: the shutdown's, or linkFlushOnClose
// from now for a link whose server left the map.
func (p *peerLinks) flushBy() time.Time {
	if p.isDraining() {
		return p.drainBy
	}
	return time.Now().Add(linkFlushOnClose)
}

// run keeps a link connected until it is stopped, or at shutdown until its queue is delivered.
func (p *peerLinks) run(l *link) {
	defer p.wg.Done()
	backoff := linkBackoffMin
	draining := p.draining // nil once seen
	for l.ctx.Err() == nil {
		if p.isDraining() && l.empty() {
			return // shutting down with nothing left to deliver
		}
		l.mu.Lock()
		addr := l.addr
		l.mu.Unlock()
		c, err := p.connect(l, addr)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				p.log.Debug("gateway: peer link not up", "server", l.to, "addr", addr, "err", err)
			}
			select {
			case <-l.ctx.Done():
				return
			case <-l.kick:
			case <-draining: // shutdown: try again at once to deliver the queue
				draining = nil
			case <-time.After(backoff):
			}
			if p.isDraining() {
				backoff = linkBackoffMin // the drain's deadline bounds the attempts
			} else {
				backoff = min(backoff*2, linkBackoffMax)
			}
			continue
		}
		backoff = linkBackoffMin
		if p.serve(l, c) {
			return
		}
	}
}

// linkConn is a connection whose hellos were exchanged.
type linkConn struct {
	net.Conn
	r   *wire.PeerReader // positioned after the server's hello
	inc uint64           // the incarnation in the server's hello
}

// connect dials addr, says hello and checks the server's answer.
func (p *peerLinks) connect(l *link, addr string) (*linkConn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, linkHelloTimeout)
	defer cancel()
	d := net.Dialer{Timeout: linkHelloTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	fail := func(reason string, err error) (*linkConn, error) {
		c.Close()
		p.met.linkErrors.WithLabelValues(reason).Inc()
		return nil, err
	}
	unblock := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer unblock()
	_ = c.SetDeadline(time.Now().Add(linkHelloTimeout))
	hello := wire.PeerHelloMsg{Server: p.home, Incarnation: p.inc, Version: wire.PeerProtocolVersion}
	b, err := hello.AppendFrame(nil)
	if err != nil {
		return fail("hello", err)
	}
	if _, err := c.Write(b); err != nil {
		return fail("hello", err)
	}
	r := wire.NewPeerReader(bufio.NewReaderSize(c, 64<<10))
	t, payload, err := r.Next()
	if err != nil {
		return fail("hello", fmt.Errorf("waiting for the server's hello: %w", err))
	}
	if t != wire.PeerHello {
		return fail("bad_hello", fmt.Errorf("first frame %v, want a hello", t))
	}
	h, err := wire.DecodePeerHelloMsg(payload)
	switch {
	case err != nil:
		return fail("bad_hello", err)
	case h.Version != wire.PeerProtocolVersion:
		return fail("version", fmt.Errorf("server speaks peer protocol %d, this gateway %d", h.Version, wire.PeerProtocolVersion))
	case raftmeta.ServerID(h.Server) != l.to:
		return fail("wrong_server", fmt.Errorf("server at %s says it is %d, the map says %d", addr, h.Server, l.to))
	}
	if !unblock() { // ctx ended while we were at it
		c.Close()
		return nil, ctx.Err()
	}
	_ = c.SetDeadline(time.Time{})
	return &linkConn{Conn: c, r: r, inc: h.Incarnation}, nil
}

// serve runs a connected link: the reader on its own goroutine, the writer here, until either
// fails, the address changes or the link is stopped (reported: stopped, the link ends).
//
// If the server restarted since the last connection (another incarnation in its hello), what
// was queued before this connection came up was meant for the previous process: it is
// discarded (counted), and the reset makes the Router resend what matters.
func (p *peerLinks) serve(l *link, c *linkConn) (stopped bool) {
	restarted := l.helloed && c.inc != l.lastInc
	if restarted {
		n := l.discard()
		p.dropRestarted.Add(float64(n))
		p.log.Info("gateway: cell server restarted: frames queued for its previous process discarded",
			"server", l.to, "incarnation", c.inc, "previous", l.lastInc, "discarded", n)
	}
	l.lastInc, l.helloed = c.inc, true
	l.up.Store(true)
	p.met.linksUp.Inc()
	p.log.Info("gateway: peer link up", "server", l.to, "addr", c.RemoteAddr().String())
	if l.dropped.Swap(0) > 0 || restarted {
		p.onReset(l.to) // frames were dropped (or discarded) while it was down: resend what matters
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.read(l, c)
	}()
	stopped = p.write(l, c, readerDone)
	c.Close()
	<-readerDone
	l.up.Store(false)
	p.met.linksUp.Dec()
	if stopped {
		p.log.Info("gateway: peer link closed", "server", l.to)
		return true
	}
	p.log.Warn("gateway: peer link down", "server", l.to)
	p.onReset(l.to)
	return false
}

// read decodes the server's frames until the connection ends. A FrameMsg (nearly all the
// traffic) is decoded into one reused value whose Frame aliases the reader's buffer: onMessage
// must not keep it past the call (the Router's output is drained, and copied, under the same
// call; the Router copies what it keeps).
func (p *peerLinks) read(l *link, c *linkConn) {
	var fm wire.FrameMsg
	for {
		t, payload, err := c.r.Next()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				p.log.Debug("gateway: peer link read", "server", l.to, "err", err)
			}
			return
		}
		at := time.Now()
		var msg wire.PeerMessage
		if t == wire.PeerFrame {
			if fm, err = wire.DecodeFrameMsg(payload); err == nil {
				msg = &fm
			}
		} else {
			msg, err = wire.DecodePeer(t, append([]byte(nil), payload...))
		}
		if err != nil {
			p.met.linkErrors.WithLabelValues("bad_frame").Inc()
			p.log.Warn("gateway: malformed peer frame: closing the link", "server", l.to, "type", t, "err", err)
			c.Close()
			return
		}
		if t == wire.PeerHello {
			continue // a repeated hello says nothing new
		}
		p.onMessage(l.to, msg, at)
	}
}

// write sends the queue until an error, a new address or a stop; it reports whether the link
// was stopped (shutdown or the server left the map), after a last flush. Everything queued
// goes out in one Write. Frames taken from the queue when a write fails are lost with the
// connection (as frames in flight are): the reset that follows makes the Router resend what
// matters.
func (p *peerLinks) write(l *link, c *linkConn, readerDone <-chan struct{}) (stopped bool) {
	var buf []byte
	for {
		select {
		case <-l.ctx.Done():
			p.flush(l, c, buf, p.flushBy())
			return true
		case <-p.draining:
			p.flush(l, c, buf, p.drainBy)
			return true
		case <-l.kick:
			return false // reconnect to the new address
		case <-readerDone:
			return false
		case <-l.wake:
		}
		var n int
		if buf, n = l.take(buf); n == 0 {
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
		if _, err := c.Write(buf); err != nil {
			p.log.Debug("gateway: peer link write", "server", l.to, "err", err)
			return false
		}
		p.met.linkSent.Add(float64(n))
	}
}

// flush writes what is queued (the leaves of closing sessions, at shutdown) until the queue
// is empty, a write fails or the deadline passes.
func (p *peerLinks) flush(l *link, c *linkConn, buf []byte, deadline time.Time) {
	_ = c.SetWriteDeadline(deadline)
	for time.Now().Before(deadline) {
		var n int
		if buf, n = l.take(buf); n == 0 {
			return
		}
		if _, err := c.Write(buf); err != nil {
			p.log.Debug("gateway: peer link flush", "server", l.to, "err", err)
			return
		}
		p.met.linkSent.Add(float64(n))
	}
}

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
// drops (counted): the Router resends inputs and joins.

const (
	linkQueue        = 8192 // frames waiting for one link
	linkHelloTimeout = 5 * time.Second
	linkWriteTimeout = 2 * time.Second
	linkBackoffMin   = 50 * time.Millisecond
	linkBackoffMax   = time.Second
	linkFlushOnClose = 500 * time.Millisecond // at shutdown, queued frames (leaves) get this long
)

// peerLinks holds the gateway's links, keyed by cell server id.
type peerLinks struct {
	home, inc uint64
	log       *slog.Logger
	met       *serverMetrics

	// onMessage is called on a link's reader goroutine for every decoded frame after the
	// hello, with the time it was read; onReset when a connection that completed its hello
	// ends, and again when it is back if frames were dropped meanwhile. Both may block briefly
	// (they take the Server's lock); neither is called with peerLinks.mu held.
	onMessage func(from raftmeta.ServerID, msg wire.PeerMessage, at time.Time)
	onReset   func(server raftmeta.ServerID)

	mu    sync.Mutex // guards links, done
	links map[raftmeta.ServerID]*link
	done  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// link is the connection to one cell server.
type link struct {
	to   raftmeta.ServerID
	q    chan []byte
	kick chan struct{} // the address changed: reconnect
	// ctx ends when the server left the map or at shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex // guards addr
	addr string

	up      atomic.Bool
	dropped atomic.Int64 // frames dropped since the last connection ended
}

func newPeerLinks(ctx context.Context, home, inc uint64, met *serverMetrics, log *slog.Logger) *peerLinks {
	ctx, cancel := context.WithCancel(ctx)
	return &peerLinks{home: home, inc: inc, log: log, met: met,
		links: map[raftmeta.ServerID]*link{}, ctx: ctx, cancel: cancel}
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
			l = &link{to: s.ID, q: make(chan []byte, linkQueue), kick: make(chan struct{}, 1), addr: s.Addr}
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

// send queues an encoded frame for a server; it never blocks. It reports false (and counts)
// when there is no link to that server or its queue is full.
func (p *peerLinks) send(to raftmeta.ServerID, frame []byte) bool {
	p.mu.Lock()
	l := p.links[to]
	p.mu.Unlock()
	if l == nil {
		p.met.linkDropped.WithLabelValues("no_link").Inc()
		return false
	}
	select {
	case l.q <- frame:
		return true
	default:
		l.dropped.Add(1)
		p.met.linkDropped.WithLabelValues("queue_full").Inc()
		return false
	}
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

// close ends every link (after a short flush of what is queued) and waits for their
// goroutines.
func (p *peerLinks) close() {
	p.mu.Lock()
	p.done = true
	for id, l := range p.links {
		delete(p.links, id)
		l.end()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.cancel()
}

// run keeps a link connected until it is stopped.
func (p *peerLinks) run(l *link) {
	defer p.wg.Done()
	backoff := linkBackoffMin
	for l.ctx.Err() == nil {
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
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, linkBackoffMax)
			continue
		}
		backoff = linkBackoffMin
		p.serve(l, c)
	}
}

// linkConn is a connection whose hellos were exchanged.
type linkConn struct {
	net.Conn
	r *wire.PeerReader // positioned after the server's hello
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
	return &linkConn{Conn: c, r: r}, nil
}

// serve runs a connected link: the reader on its own goroutine, the writer here, until either
// fails, the address changes or the link is stopped.
func (p *peerLinks) serve(l *link, c *linkConn) {
	l.up.Store(true)
	p.met.linksUp.Inc()
	p.log.Info("gateway: peer link up", "server", l.to, "addr", c.RemoteAddr().String())
	if l.dropped.Swap(0) > 0 {
		p.onReset(l.to) // frames were dropped while it was down: resend what matters
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.read(l, c)
	}()
	stopped := p.write(l, c, readerDone)
	c.Close()
	<-readerDone
	l.up.Store(false)
	p.met.linksUp.Dec()
	if stopped {
		p.log.Info("gateway: peer link closed", "server", l.to)
		return
	}
	p.log.Warn("gateway: peer link down", "server", l.to)
	p.onReset(l.to)
}

// read decodes the server's frames until the connection ends.
func (p *peerLinks) read(l *link, c *linkConn) {
	for {
		t, payload, err := c.r.Next()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				p.log.Debug("gateway: peer link read", "server", l.to, "err", err)
			}
			return
		}
		at := time.Now()
		msg, err := wire.DecodePeer(t, append([]byte(nil), payload...))
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
// was stopped (shutdown or the server left the map).
func (p *peerLinks) write(l *link, c *linkConn, readerDone <-chan struct{}) (stopped bool) {
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		var f []byte
		select {
		case <-l.ctx.Done():
			p.flush(l, c, w)
			return true
		case <-l.kick:
			return false // reconnect to the new address
		case <-readerDone:
			return false
		case f = <-l.q:
		}
		_ = c.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
		for f != nil {
			if _, err := w.Write(f); err != nil {
				p.log.Debug("gateway: peer link write", "server", l.to, "err", err)
				return false
			}
			p.met.linkSent.Inc()
			select {
			case f = <-l.q:
			default:
				f = nil
			}
		}
		if err := w.Flush(); err != nil {
			p.log.Debug("gateway: peer link flush", "server", l.to, "err", err)
			return false
		}
	}
}

// flush writes what is queued (the leaves of closing sessions, at shutdown), briefly.
func (p *peerLinks) flush(l *link, c *linkConn, w *bufio.Writer) {
	_ = c.SetWriteDeadline(time.Now().Add(linkFlushOnClose))
	for {
		select {
		case f := <-l.q:
			if _, err := w.Write(f); err != nil {
				return
			}
			p.met.linkSent.Inc()
		default:
			_ = w.Flush()
			return
		}
	}
}

package cellserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Peer links (the I/O edge of member.go's peer messages). Every cell server listens on its
// peer address; to send to a peer it keeps one outgoing TCP connection per peer, which opens
// with a wire.PeerHelloMsg naming the sender, then carries wire peer frames one way. A
// gateway (an id ≥ wire.GatewayIDBase) has no peer address: it dials in, and the server
// answers over that same connection (its hello, then the gateway's frames). Frames to a
// peer wait in a bounded queue while its link (re)connects; when the queue is full the frame is
// dropped and counted: handoffs and migrations are retried by the Member, inputs are not (a
// dropped input is counted; the client's next input supersedes it).

// peerQueue is how many frames may wait for one peer; maxInbox how many received messages
// may wait for the next tick.
const (
	peerQueue = 8192
	maxInbox  = 1 << 16
)

type peerNet struct {
	self raftmeta.ServerID
	inc  uint64
	log  *slog.Logger
	met  *peerMetrics
	ln   net.Listener

	mu    sync.Mutex // guards inbox, links, conns, gwConns, gwIncs, closed
	inbox []PeerIn
	links map[raftmeta.ServerID]*peerLink
	conns map[net.Conn]struct{}
	// gwConns and gwIncs: each gateway's current inbound connection and incarnation.
	gwConns map[raftmeta.ServerID]net.Conn
	gwIncs  map[raftmeta.ServerID]uint64
	done    bool

	// early, if set, sees every message as it arrives, on the reader's goroutine, once it is in
	// the inbox (so any tick that could observe what early causes also takes the message).
	early func(from raftmeta.ServerID, msg wire.PeerMessage)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type peerLink struct {
	to   raftmeta.ServerID
	q    chan []byte
	mu   sync.Mutex // guards addr
	addr string
	kick chan struct{} // the address changed
}

type peerMetrics struct {
	sent, recv, dropped, bad prometheus.Counter
	sentBytes                *prometheus.CounterVec // by message type
	byType                   [256]prometheus.Counter
}

func newPeerMetrics(reg prometheus.Registerer) *peerMetrics {
	c := func(name, help string) prometheus.Counter {
		return promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	return &peerMetrics{
		sent: c("meridian_peer_frames_sent_total", "Peer frames written to other cell servers."),
		sentBytes: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_peer_bytes_sent_total",
			Help: "Bytes of peer frames written to other cell servers and gateways, by message type."}, []string{"type"})),
		recv:    c("meridian_peer_frames_received_total", "Peer frames received and decoded."),
		dropped: c("meridian_peer_frames_dropped_total", "Peer frames dropped because a peer's send queue or the inbox was full."),
		bad:     c("meridian_peer_frames_rejected_total", "Peer frames or connections rejected as malformed."),
	}
}

// bytes counts a frame's bytes under its message type.
func (m *peerMetrics) bytes(f []byte) {
	if len(f) <= wire.PeerFrameHeaderSize-1 {
		return
	}
	t := f[wire.PeerFrameHeaderSize-1]
	if c := m.byType[t]; c != nil {
		c.Add(float64(len(f)))
	} else {
		m.sentBytes.WithLabelValues(wire.PeerType(t).String()).Add(float64(len(f)))
	}
}

func (m *peerMetrics) init() *peerMetrics {
	for t := wire.PeerHello; t <= wire.PeerDrop; t++ {
		m.byType[t] = m.sentBytes.WithLabelValues(t.String())
	}
	return m
}

func listenPeers(ctx context.Context, addr string, self raftmeta.ServerID, inc uint64, reg prometheus.Registerer, log *slog.Logger) (*peerNet, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cellserver: peer listener: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &peerNet{self: self, inc: inc, log: log, met: newPeerMetrics(reg).init(), ln: ln,
		links: map[raftmeta.ServerID]*peerLink{}, conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel,
		gwConns: map[raftmeta.ServerID]net.Conn{}, gwIncs: map[raftmeta.ServerID]uint64{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the bound peer address.
func (p *peerNet) Addr() string { return p.ln.Addr().String() }

// close stops every link and connection and waits for their goroutines.
func (p *peerNet) close() {
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cancel()
	p.ln.Close()
	p.wg.Wait()
}

func (p *peerNet) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.read(c)
	}
}

// read receives one peer's frames into the inbox until the connection ends.
func (p *peerNet) read(c net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.Close()
	}()
	r := wire.NewPeerReader(bufio.NewReaderSize(c, 64<<10))
	t, payload, err := r.Next()
	if err != nil || t != wire.PeerHello {
		p.met.bad.Inc()
		return
	}
	hello, err := wire.DecodePeerHelloMsg(payload)
	if err == nil && hello.Version != wire.PeerProtocolVersion {
		err = fmt.Errorf("peer protocol version %d, this server speaks %d", hello.Version, wire.PeerProtocolVersion)
	}
	if err != nil || hello.Server == 0 {
		p.met.bad.Inc()
		p.log.Warn("peer connection rejected: bad hello", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	from := raftmeta.ServerID(hello.Server)
	if wire.IsGatewayID(hello.Server) {
		// The Member learns the gateway's incarnation: a restarted gateway's old sessions are
		// gone (its session ids start again). A newer connection replaces an older one (which
		// may be half-open); frames queued for a previous process of the gateway are dropped.
		p.mu.Lock()
		p.inbox = append(p.inbox, PeerIn{From: from, Msg: &hello})
		old := p.gwConns[from]
		p.gwConns[from] = c
		restarted := p.gwIncs[from] != 0 && p.gwIncs[from] != hello.Incarnation
		p.gwIncs[from] = hello.Incarnation
		p.mu.Unlock()
		if old != nil {
			old.Close()
		}
		if restarted {
			l := p.link(from)
			for drained := false; !drained; {
				select {
				case <-l.q:
					p.met.dropped.Inc()
				default:
					drained = true
				}
			}
		}
		defer func() {
			p.mu.Lock()
			if p.gwConns[from] == c {
				delete(p.gwConns, from)
			}
			p.mu.Unlock()
		}()
		// A gateway dials in and is answered over the same connection: this server's hello,
		// then the frames for its sessions (it has no peer address of its own).
		done := make(chan struct{})
		defer close(done)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.write(p.link(from), c, done)
			c.Close() // a failed write ends the reader too
		}()
	}
	for {
		t, payload, err := r.Next()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && p.ctx.Err() == nil {
				p.log.Debug("peer connection ended", "from", from, "err", err)
			}
			return
		}
		msg, err := wire.DecodePeer(t, append([]byte(nil), payload...))
		if err != nil {
			p.met.bad.Inc()
			p.log.Warn("malformed peer frame: closing the connection", "from", from, "type", t, "err", err)
			return
		}
		p.met.recv.Inc()
		p.mu.Lock()
		full := len(p.inbox) >= maxInbox
		if !full {
			p.inbox = append(p.inbox, PeerIn{From: from, Msg: msg})
		}
		p.mu.Unlock()
		if full {
			// The tick loop is not keeping up: drop (handoffs and migrations are retried).
			p.met.dropped.Inc()
			continue
		}
		if p.early != nil {
			// After the append: the tick that sees the effect (a commit) finds the message.
			p.early(from, msg)
		}
	}
}

// take moves the inbox's messages to dst.
func (p *peerNet) take(dst []PeerIn) []PeerIn {
	p.mu.Lock()
	dst = append(dst, p.inbox...)
	clear(p.inbox)
	p.inbox = p.inbox[:0]
	p.mu.Unlock()
	return dst
}

// setAddrs tells the links where the peers are (from the map).
func (p *peerNet) setAddrs(servers []raftmeta.Server) {
	for _, s := range servers {
		if s.ID == p.self || s.Addr == "" {
			continue
		}
		l := p.link(s.ID)
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
}

func (p *peerNet) link(to raftmeta.ServerID) *peerLink {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.links[to]
	if !ok {
		l = &peerLink{to: to, q: make(chan []byte, peerQueue), kick: make(chan struct{}, 1)}
		p.links[to] = l
		if !p.done {
			p.wg.Add(1)
			go p.run(l)
		}
	}
	return l
}

// send queues an encoded frame for a peer; it never blocks.
func (p *peerNet) send(to raftmeta.ServerID, frame []byte) {
	select {
	case p.link(to).q <- frame:
	default:
		p.met.dropped.Inc()
	}
}

// run keeps a link's connection up and writes its queue.
func (p *peerNet) run(l *peerLink) {
	defer p.wg.Done()
	backoff := 50 * time.Millisecond
	for p.ctx.Err() == nil {
		l.mu.Lock()
		addr := l.addr
		l.mu.Unlock()
		if addr == "" {
			select {
			case <-p.ctx.Done():
				return
			case <-l.kick:
			}
			continue
		}
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(p.ctx, "tcp", addr)
		if err != nil {
			p.log.Debug("peer dial failed", "to", l.to, "addr", addr, "err", err)
			select {
			case <-p.ctx.Done():
				return
			case <-l.kick:
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		p.write(l, c, nil)
		c.Close()
	}
}

// write sends the hello, then the queue, until an error, a new address, done (an inbound
// connection ended) or shutdown.
func (p *peerNet) write(l *peerLink, c net.Conn, done <-chan struct{}) {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	w := bufio.NewWriterSize(c, 64<<10)
	hello := wire.PeerHelloMsg{Server: uint64(p.self), Incarnation: p.inc, Version: wire.PeerProtocolVersion}
	b, err := hello.AppendFrame(nil)
	if err != nil {
		return
	}
	if _, err := w.Write(b); err != nil {
		return
	}
	if w.Flush() != nil {
		return
	}
	for {
		var f []byte
		select {
		case <-p.ctx.Done():
			return
		case <-l.kick:
			return // reconnect to the new address
		case <-done:
			return
		case f = <-l.q:
		}
		for f != nil {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := w.Write(f); err != nil {
				p.log.Debug("peer write failed", "to", l.to, "err", err)
				return
			}
			p.met.sent.Inc()
			p.met.bytes(f)
			select {
			case f = <-l.q:
			default:
				f = nil
			}
		}
		if err := w.Flush(); err != nil {
			p.log.Debug("peer flush failed", "to", l.to, "err", err)
			return
		}
	}
}

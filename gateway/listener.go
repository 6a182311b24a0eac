package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/meridian-mmo/meridian/wire"
)

// SessionID names a client session on one edge. An edge hands them out counting up from
// Config.FirstSessionID, wrapping from 2^32 − 1 to 1 (0 is never an id, and an id still open is
// skipped): it reuses none before 2^32 − 1 sessions were opened, that is never in practice.
type SessionID uint32

// Backend is what the edge serves: the cell server in standalone mode, the router of the
// gateway process (Server). Calls come from session reader goroutines, concurrently (one
// session's calls in the order its frames arrived); an implementation queues or forwards them
// and returns quickly.
type Backend interface {
	// Open is called once per session after a valid hello whose token authenticated player
	// (Config.Authenticate). The backend answers with Listener.SendControl(id, welcome frame)
	// or Listener.Disconnect.
	Open(id SessionID, player wire.PlayerID)
	Input(id SessionID, in wire.Input)
	// Interact is a valid client Interact (in.Data is the caller's copy: the backend may keep
	// it). It counts against the session's input rate like an Input.
	Interact(id SessionID, in wire.Interact)
	Ack(id SessionID, t wire.Tick)
	// Close is called once for every session Open was called for.
	Close(id SessionID)
	// Tick is the backend's current tick, stamped into pongs.
	Tick() wire.Tick
}

// Listener accepts client sessions over KCP (and, after ListenWebSocket, over WebSocket) and
// runs them: both transports share one session table, one id space, the limits and the
// metrics.
type Listener struct {
	cfg     Config
	backend Backend
	metrics *Metrics
	log     *slog.Logger
	ln      *kcp.Listener

	mu       sync.Mutex // guards the fields below; taken before Session.mu
	sessions map[SessionID]*Session
	perIP    map[string]int
	players  map[wire.PlayerID]*Session // the newest open session of each player (≠ 0), nil until the first: see claim
	nextID   SessionID                  // the id the next session gets (unless it is still open)
	closed   bool
	ws       *wsServer // nil until ListenWebSocket
	// wg counts session goroutines and WebSocket handlers past their upgrade; Add only under
	// mu while !closed, so Close's Wait never races an Add.
	wg sync.WaitGroup
}

// transport is an accepted connection, before it becomes a session.
type transport struct {
	conn   net.Conn
	name   string        // metric label: "kcp", "websocket"
	ip     string        // the client's address, for the per-IP limit
	linger time.Duration // time the transport needs to send the last write before Close
}

// Listen binds the KCP listener. Serve must be called to accept sessions.
func Listen(cfg Config, backend Backend, reg prometheus.Registerer, log *slog.Logger) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	ln, err := kcp.ListenWithOptions(cfg.Listen, nil, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", cfg.Listen, err)
	}
	_ = ln.SetReadBuffer(8 << 20)
	_ = ln.SetWriteBuffer(8 << 20)
	return &Listener{
		cfg:      cfg,
		backend:  backend,
		metrics:  NewMetrics(reg),
		log:      log,
		ln:       ln,
		sessions: make(map[SessionID]*Session),
		perIP:    make(map[string]int),
		nextID:   cfg.firstSessionID(),
	}, nil
}

// Addr is the bound UDP address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Metrics returns the edge's collectors.
func (l *Listener) Metrics() *Metrics { return l.metrics }

// Serve accepts sessions until ctx ends or Close is called, then closes every session.
func (l *Listener) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		conn, err := l.ln.AcceptKCP()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || ctx.Err() != nil {
				l.wg.Wait()
				return nil
			}
			return fmt.Errorf("gateway: accept: %w", err)
		}
		l.acceptKCP(conn)
	}
}

func (l *Listener) acceptKCP(conn *kcp.UDPSession) {
	conn.SetNoDelay(l.cfg.KCPNoDelay, l.cfg.KCPInterval, l.cfg.KCPResend, l.cfg.KCPNoCongestion)
	conn.SetWindowSize(l.cfg.KCPWindow, l.cfg.KCPWindow)
	conn.SetWriteDelay(false)
	conn.SetACKNoDelay(true)
	l.accept(transport{
		conn: conn, name: "kcp", ip: hostOf(conn.RemoteAddr()),
		// KCP sends from its own update loop: give it two intervals to put a disconnect on
		// the wire before the session is closed.
		linger: 2 * time.Duration(l.cfg.KCPInterval) * time.Millisecond,
	})
}

// accept admits a connection as a session (or refuses it with a disconnect frame) and starts
// its reader and writer. Every transport goes through here.
func (l *Listener) accept(t transport) {
	conn, ip := t.conn, t.ip
	l.metrics.Connections.WithLabelValues(t.name).Inc()
	l.mu.Lock()
	reason, code := "", wire.ReasonServerFull
	switch {
	case l.closed:
		reason, code = "shutdown", wire.ReasonShutdown
	case len(l.sessions) >= l.cfg.MaxSessions:
		reason = "server_full"
	case l.cfg.MaxSessionsPerIP > 0 && l.perIP[ip] >= l.cfg.MaxSessionsPerIP:
		reason = "per_ip_limit"
	}
	if reason != "" {
		l.mu.Unlock()
		l.metrics.SessionsRejected.WithLabelValues(reason).Inc()
		frame := (&wire.Disconnect{Reason: code, Message: reason}).AppendFrame(nil)
		_, _ = conn.Write(frame)
		_ = conn.Close()
		return
	}
	s := newSession(l, l.newID(), t)
	l.sessions[s.id] = s
	l.perIP[ip]++
	l.wg.Add(2)
	l.mu.Unlock()
	l.metrics.Sessions.Inc()
	go s.readLoop()
	go s.writeLoop()
}

// newID draws the next session id (l.mu held): counting up, wrapping to 1 after 2^32 − 1,
// skipping ids still open (there are fewer than 2^32 − 1 sessions).
func (l *Listener) newID() SessionID {
	for {
		id := l.nextID
		if l.nextID++; l.nextID == 0 {
			l.nextID = 1
		}
		if _, open := l.sessions[id]; !open && id != 0 {
			return id
		}
	}
}

// One session per player. Two sessions of one player would make two entities of that player,
// whose PostgreSQL writes fence each other: when a session authenticates as player P (≠ 0)
// while another session of this edge is open as P, the older one is disconnected with
// wire.ReasonKicked (meridian_gateway_sessions_kicked_total) and the new one proceeds. The
// order is the order of claims under Listener.mu, which the gateway Server follows (Holder).
// Player 0 (no player) is never kicked. This holds within one edge only: two gateways (or a
// gateway and a cell server's own edge) each take a session of P without knowing of the
// other; the cell servers' PostgreSQL fencing is what remains between them.

// kickMessage is the disconnect message of a session kicked by a newer one of its player.
const kickMessage = "signed in elsewhere"

// claim makes s, having authenticated as player, the player's session, and kicks the one it
// replaces. It reports false, claiming nothing, if s is already ending (the listener is
// shutting down, say): it must not be opened.
func (l *Listener) claim(s *Session, player wire.PlayerID) bool {
	l.mu.Lock()
	s.mu.Lock()
	gone := s.ended || s.closing
	s.mu.Unlock()
	if gone {
		l.mu.Unlock()
		return false
	}
	var old *Session
	if player != 0 {
		if l.players == nil {
			l.players = map[wire.PlayerID]*Session{}
		}
		old = l.players[player]
		l.players[player] = s
		s.player = player
	}
	l.mu.Unlock()
	if old != nil && old != s && old.kick() {
		l.metrics.SessionsKicked.Inc()
	}
	return true
}

// kick disconnects session id, if it is open, with wire.ReasonKicked: a newer session signed
// in as its player.
func (l *Listener) kick(id SessionID) {
	if s := l.session(id); s != nil && s.kick() {
		l.metrics.SessionsKicked.Inc()
	}
}

// Holder is the session the edge holds open as player (the newest to sign in as it), 0 if
// none or player is 0.
func (l *Listener) Holder(player wire.PlayerID) SessionID {
	if player == 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.players[player]; s != nil {
		return s.id
	}
	return 0
}

// remove forgets a session; called once by the session when it ends.
func (l *Listener) remove(s *Session) {
	l.mu.Lock()
	delete(l.sessions, s.id)
	if s.player != 0 && l.players[s.player] == s {
		delete(l.players, s.player)
	}
	if l.perIP[s.ip]--; l.perIP[s.ip] <= 0 {
		delete(l.perIP, s.ip)
	}
	l.mu.Unlock()
	l.metrics.Sessions.Dec()
}

func (l *Listener) session(id SessionID) *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions[id]
}

// SendSnapshot queues a snapshot frame for a session, replacing one that was not sent yet.
// The frame is copied; the caller may reuse it. Unknown sessions are ignored (they closed).
func (l *Listener) SendSnapshot(id SessionID, frame []byte) {
	if s := l.session(id); s != nil {
		s.queueSnapshot(frame)
	}
}

// SendControl queues a frame that must not be dropped (welcome, pong, disconnect).
func (l *Listener) SendControl(id SessionID, frame []byte) {
	if s := l.session(id); s != nil {
		s.queueControl(frame)
	}
}

// Disconnect sends a disconnect frame and closes the session once it is written.
func (l *Listener) Disconnect(id SessionID, reason wire.DisconnectReason, msg string) {
	if s := l.session(id); s != nil {
		s.disconnect(reason, msg)
	}
}

// Sessions is the number of open sessions.
func (l *Listener) Sessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}

// Close stops accepting (KCP and WebSocket), disconnects every session and waits for their
// goroutines.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	all := make([]*Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		all = append(all, s)
	}
	ws := l.ws
	l.mu.Unlock()
	if ws != nil {
		ws.close() // no new upgrades; upgraded connections are sessions, closed below
	}
	for _, s := range all {
		s.disconnect(wire.ReasonShutdown, "server shutting down")
	}
	// Sessions share the listener's socket: let them write their disconnects and end before
	// closing it (a stuck writer gives up after writeTimeout).
	l.wg.Wait()
	err := l.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if ws != nil {
		ws.wait()
	}
	return err
}

func hostOf(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

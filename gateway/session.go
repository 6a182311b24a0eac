package gateway

import (
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/meridian-mmo/meridian/auth"
	"github.com/meridian-mmo/meridian/wire"
)

const (
	maxControlQueue = 64              // queued control frames before a session is judged stuck
	writeTimeout    = 3 * time.Second // a write blocked this long (window full) ends the session
)

// Session is one client connection on the edge, over any transport that is a reliable,
// ordered byte stream carrying the frame stream (a KCP session, a WebSocket wrapped by
// websocket.NetConn).
type Session struct {
	l         *Listener
	id        SessionID
	conn      net.Conn
	transport string        // "kcp" or "websocket" (a metric label)
	linger    time.Duration // how long the transport needs to put the last write on the wire before it is closed
	ip        string
	player    wire.PlayerID // the authenticated player, set by Listener.claim (guarded by Listener.mu)

	wake chan struct{} // cap 1: the writer has something to do
	done chan struct{} // closed when the session ends
	once sync.Once

	mu        sync.Mutex // guards the fields below
	control   [][]byte   // frames that must be sent, in order
	snap      []byte     // newest snapshot frame not yet handed to the writer
	hasSnap   bool
	writerBuf []byte // the buffer the writer currently owns; swapped with snap
	joined    []byte // the writer's scratch for transports without WriteBuffers
	closing   bool   // a disconnect is queued: write what is queued, then end
	ended     bool   // end has run

	// reader-goroutine state
	inputs bucket // inputs
	frames bucket // every frame after the hello
	bad    int
}

// bucket is a token bucket refilled at rate tokens a second up to burst.
type bucket struct {
	tokens, rate, burst float64
	last                time.Time
}

func newBucket(rate, burst int) bucket {
	return bucket{tokens: float64(burst), rate: float64(rate), burst: float64(burst), last: time.Now()}
}

func (b *bucket) take(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// buffersWriter is a transport that writes several buffers in one call (kcp-go's UDPSession):
// they go out in as few packets as fit.
type buffersWriter interface {
	WriteBuffers(v [][]byte) (int, error)
}

func newSession(l *Listener, id SessionID, t transport) *Session {
	return &Session{
		l: l, id: id, conn: t.conn, transport: t.name, linger: t.linger, ip: t.ip,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		inputs: newBucket(l.cfg.InputsPerSecond, l.cfg.InputBurst),
		frames: newBucket(l.cfg.FramesPerSecond, l.cfg.FrameBurst),
	}
}

func (s *Session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Session) queueSnapshot(frame []byte) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if s.hasSnap {
		s.l.metrics.SnapshotsDropped.Inc()
	}
	s.snap = append(s.snap[:0], frame...)
	s.hasSnap = true
	s.mu.Unlock()
	s.signal()
}

func (s *Session) queueControl(frame []byte) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if len(s.control) >= maxControlQueue {
		s.closing = true // the client is not draining its stream: give up on it
		s.mu.Unlock()
		s.l.metrics.SessionsRejected.WithLabelValues("stuck").Inc()
		s.signal()
		return
	}
	s.control = append(s.control, append([]byte(nil), frame...))
	s.mu.Unlock()
	s.signal()
}

// disconnect queues a disconnect frame; the writer sends what is queued, then ends the session.
func (s *Session) disconnect(reason wire.DisconnectReason, msg string) {
	s.closed(reasonLabel(reason))
	s.queueDisconnect(reason, msg, false)
}

// queueDisconnect queues a disconnect frame unless one is queued already (or, with
// unlessEnded, the session has ended); it reports whether it did.
func (s *Session) queueDisconnect(reason wire.DisconnectReason, msg string, unlessEnded bool) bool {
	frame := (&wire.Disconnect{Reason: reason, Message: msg}).AppendFrame(nil)
	s.mu.Lock()
	if s.closing || (unlessEnded && s.ended) {
		s.mu.Unlock()
		return false
	}
	s.control = append(s.control, frame)
	s.hasSnap = false
	s.closing = true
	s.mu.Unlock()
	s.signal()
	return true
}

// kick disconnects the session with wire.ReasonKicked because a newer session signed in as
// its player; it reports false if the session was ending anyway.
func (s *Session) kick() bool {
	if !s.queueDisconnect(wire.ReasonKicked, kickMessage, true) {
		return false
	}
	s.closed(reasonLabel(wire.ReasonKicked))
	return true
}

// reasonLabel is a disconnect reason as a metric label.
func reasonLabel(r wire.DisconnectReason) string {
	return strings.ReplaceAll(r.String(), " ", "_")
}

// end closes the session exactly once: transport and listener bookkeeping. The reader
// goroutine, unblocked by the closed transport, tells the backend (it alone calls Open and
// Close, so they can never be reordered or unpaired).
func (s *Session) end() {
	s.once.Do(func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		close(s.done)
		_ = s.conn.Close()
		s.l.remove(s)
	})
}

// closed counts why a session ended (reasons are metric labels).
func (s *Session) closed(reason string) {
	s.l.metrics.SessionsClosed.WithLabelValues(reason).Inc()
}

func (s *Session) writeLoop() {
	defer s.l.wg.Done()
	var bufs [][]byte
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		s.mu.Lock()
		bufs = append(bufs[:0], s.control...)
		s.control = s.control[:0]
		if s.hasSnap {
			s.snap, s.writerBuf = s.writerBuf[:0], s.snap
			s.hasSnap = false
			bufs = append(bufs, s.writerBuf)
		}
		closing := s.closing
		s.mu.Unlock()
		if len(bufs) > 0 {
			_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			n, err := s.write(bufs)
			s.l.metrics.BytesSent.Add(float64(n))
			if err != nil {
				s.end()
				return
			}
		}
		if closing {
			// Give the transport a moment to put the disconnect on the wire before closing.
			if s.linger > 0 {
				time.Sleep(s.linger)
			}
			s.end()
			return
		}
	}
}

// write hands bufs to the transport in one call: one WriteBuffers for KCP, one Write of their
// concatenation otherwise (over WebSocket: one binary message holding whole frames).
func (s *Session) write(bufs [][]byte) (int, error) {
	if bw, ok := s.conn.(buffersWriter); ok {
		return bw.WriteBuffers(bufs)
	}
	if len(bufs) == 1 {
		return s.conn.Write(bufs[0])
	}
	s.joined = s.joined[:0]
	for _, b := range bufs {
		s.joined = append(s.joined, b...)
	}
	n, err := s.conn.Write(s.joined)
	if cap(s.joined) > 256<<10 { // do not keep a burst's buffer for the session's life
		s.joined = nil
	}
	return n, err
}

func (s *Session) readLoop() {
	defer s.l.wg.Done()
	if s.hello() {
		s.l.backend.Close(s.id)
	}
}

// hello runs the session's reading side; it reports whether Backend.Open was called.
func (s *Session) hello() (opened bool) {
	fr := wire.NewFrameReaderLimit(s.conn, wire.MaxClientFrameSize)
	_ = s.conn.SetReadDeadline(time.Now().Add(s.l.cfg.HelloTimeout))
	t, payload, err := fr.Next()
	if err != nil {
		s.frameError(err, "hello")
		return false
	}
	if t != wire.MsgHello {
		s.l.metrics.BadFrames.WithLabelValues("expected_hello").Inc()
		s.disconnect(wire.ReasonProtocolError, "first frame must be a hello")
		return false
	}
	hello, err := wire.DecodeHello(payload)
	switch {
	case err != nil:
		s.l.metrics.BadFrames.WithLabelValues("malformed").Inc()
		s.disconnect(wire.ReasonProtocolError, "malformed hello")
		return false
	case hello.Version != wire.ProtocolVersion:
		s.l.metrics.SessionsRejected.WithLabelValues("bad_version").Inc()
		s.disconnect(wire.ReasonBadVersion, "unsupported protocol version")
		return false
	}
	player, err := s.authenticate(hello.Token)
	if err != nil {
		s.l.metrics.SessionsRejected.WithLabelValues("bad_token").Inc()
		s.disconnect(wire.ReasonBadToken, "invalid session token")
		return false
	}
	if !s.l.claim(s, player) { // the listener is shutting down: never open what is already closed
		return false
	}
	s.l.metrics.SessionsOpened.Inc()
	s.l.backend.Open(s.id, player)

	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.l.cfg.IdleTimeout))
		t, payload, err := fr.Next()
		if err != nil {
			s.frameError(err, "")
			return true
		}
		s.l.metrics.BytesReceived.Add(float64(len(payload) + wire.FrameHeaderSize))
		if !s.frames.take(time.Now()) {
			s.l.metrics.BadFrames.WithLabelValues("rate_limit").Inc()
			continue
		}
		if !s.handle(t, payload) {
			return true
		}
	}
}

// handle processes one frame after the hello; false ends the read loop.
func (s *Session) handle(t wire.MsgType, payload []byte) bool {
	switch t {
	case wire.MsgInput:
		in, err := wire.DecodeInput(payload)
		if err != nil {
			return s.badFrame("malformed")
		}
		if !s.inputs.take(time.Now()) {
			s.l.metrics.RejectedInputs.WithLabelValues("rate_limit").Inc()
			return true
		}
		s.l.backend.Input(s.id, in)
	case wire.MsgInteract:
		in, err := wire.DecodeInteract(payload)
		if err != nil {
			return s.badFrame("malformed")
		}
		// Interactions share the input sequence, and the input rate: a client cannot flood
		// the world with chat or attacks faster than it may move.
		if !s.inputs.take(time.Now()) {
			s.l.metrics.RejectedInputs.WithLabelValues("rate_limit").Inc()
			return true
		}
		s.l.backend.Interact(s.id, in)
	case wire.MsgAck:
		a, err := wire.DecodeAck(payload)
		if err != nil {
			return s.badFrame("malformed")
		}
		s.l.backend.Ack(s.id, a.Tick)
	case wire.MsgPing:
		p, err := wire.DecodePing(payload)
		if err != nil {
			return s.badFrame("malformed")
		}
		pong := wire.Pong{ClientTimeMicros: p.ClientTimeMicros, ServerTimeMicros: uint64(time.Now().UnixMicro()), ServerTick: s.l.backend.Tick()}
		s.queueControl(pong.AppendFrame(nil))
	case wire.MsgDisconnect:
		s.closed("client_disconnect")
		s.end()
		return false
	case wire.MsgHello:
		return s.badFrame("duplicate_hello")
	default:
		return s.badFrame("unknown_type")
	}
	return true
}

func (s *Session) badFrame(reason string) bool {
	s.l.metrics.BadFrames.WithLabelValues(reason).Inc()
	s.bad++
	if s.bad > s.l.cfg.MaxBadFrames {
		s.disconnect(wire.ReasonProtocolError, "too many bad frames: "+reason)
		return false
	}
	return true
}

// frameError ends the session after a transport or framing error.
func (s *Session) frameError(err error, phase string) {
	var nerr net.Error
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		s.l.metrics.BadFrames.WithLabelValues("oversized").Inc()
		s.disconnect(wire.ReasonProtocolError, "frame too large")
	case errors.Is(err, wire.ErrFrameEmpty):
		s.l.metrics.BadFrames.WithLabelValues("framing").Inc()
		s.disconnect(wire.ReasonProtocolError, "bad framing")
	default:
		switch {
		case phase == "hello":
			s.l.metrics.SessionsRejected.WithLabelValues("no_hello").Inc()
		case errors.As(err, &nerr) && nerr.Timeout():
			s.closed("idle_timeout")
		default:
			s.mu.Lock()
			ended := s.ended
			s.mu.Unlock()
			if !ended { // not our own close
				s.closed("transport_error")
			}
		}
		s.end()
	}
}

func (s *Session) authenticate(tok []byte) (wire.PlayerID, error) {
	if s.l.cfg.Authenticate != nil {
		return s.l.cfg.Authenticate(tok)
	}
	return auth.DevPlayer(tok)
}

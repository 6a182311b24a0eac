package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/meridian-mmo/meridian/auth"
	"github.com/meridian-mmo/meridian/wire"
)

// recordingBackend is a Backend that records what the edge hands it and welcomes every session.
type recordingBackend struct {
	l      *Listener
	mu     sync.Mutex
	opened []SessionID
	player []wire.PlayerID
	inputs []wire.Input
	inter  []wire.Interact
	acks   []wire.Tick
	closed []SessionID
}

func (b *recordingBackend) Open(id SessionID, p wire.PlayerID) {
	b.mu.Lock()
	b.opened = append(b.opened, id)
	b.player = append(b.player, p)
	b.mu.Unlock()
	b.l.SendControl(id, (&wire.Welcome{Version: wire.ProtocolVersion, Entity: wire.EntityID(id), ServerTick: 1, TickHz: 20}).AppendFrame(nil))
}
func (b *recordingBackend) Input(_ SessionID, in wire.Input) {
	b.mu.Lock()
	b.inputs = append(b.inputs, in)
	b.mu.Unlock()
}
func (b *recordingBackend) Interact(_ SessionID, in wire.Interact) {
	b.mu.Lock()
	b.inter = append(b.inter, in)
	b.mu.Unlock()
}
func (b *recordingBackend) Ack(_ SessionID, t wire.Tick) {
	b.mu.Lock()
	b.acks = append(b.acks, t)
	b.mu.Unlock()
}
func (b *recordingBackend) Close(id SessionID) {
	b.mu.Lock()
	b.closed = append(b.closed, id)
	b.mu.Unlock()
}
func (b *recordingBackend) Tick() wire.Tick { return 42 }

func (b *recordingBackend) counts() (opened, inputs, closed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.opened), len(b.inputs), len(b.closed)
}

func startEdge(t *testing.T, mutate func(*Config)) (*Listener, *recordingBackend) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HelloTimeout = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	b := &recordingBackend{}
	l, err := Listen(cfg, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.l = l
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l, b
}

// rawConn is a KCP session that writes whatever bytes a test gives it.
type rawConn struct {
	t    *testing.T
	conn *kcp.UDPSession
	fr   *wire.FrameReader
}

func dialRaw(t *testing.T, l *Listener) *rawConn {
	t.Helper()
	conn, err := kcp.DialWithOptions(l.Addr().String(), nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetNoDelay(1, 10, 2, 1)
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, fr: wire.NewFrameReader(conn)}
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// next reads frames until one of type want arrives (skipping others), or fails.
func (c *rawConn) next(want wire.MsgType) []byte {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, payload, err := c.fr.Next()
		if err != nil {
			c.t.Fatalf("waiting for message type %d: %v", want, err)
		}
		if typ == want {
			return append([]byte(nil), payload...)
		}
	}
}

func (c *rawConn) expectDisconnect(reason wire.DisconnectReason) {
	c.t.Helper()
	d, err := wire.DecodeDisconnect(c.next(wire.MsgDisconnect))
	if err != nil {
		c.t.Fatal(err)
	}
	if d.Reason != reason {
		c.t.Fatalf("disconnect reason %d (%q), want %d", d.Reason, d.Message, reason)
	}
}

func hello(version uint16, token string) []byte {
	return (&wire.Hello{Version: version, Token: []byte(token)}).AppendFrame(nil)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHelloRejections(t *testing.T) {
	l, b := startEdge(t, func(c *Config) {
		c.Authenticate = func(tok []byte) (wire.PlayerID, error) {
			if string(tok) == "good" {
				return 7, nil
			}
			return 0, errors.New("forged")
		}
	})
	cases := []struct {
		name   string
		frame  []byte
		reason wire.DisconnectReason
		metric func() float64
	}{
		{"bad version", hello(wire.ProtocolVersion+1, "good"), wire.ReasonBadVersion,
			func() float64 { return testutil.ToFloat64(l.metrics.SessionsRejected.WithLabelValues("bad_version")) }},
		{"bad token", hello(wire.ProtocolVersion, "forged"), wire.ReasonBadToken,
			func() float64 { return testutil.ToFloat64(l.metrics.SessionsRejected.WithLabelValues("bad_token")) }},
		{"input before hello", (&wire.Input{Seq: 1, ClientTick: 1}).AppendFrame(nil), wire.ReasonProtocolError,
			func() float64 { return testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("expected_hello")) }},
		{"malformed hello", []byte{2, 0, byte(wire.MsgHello), 1}, wire.ReasonProtocolError,
			func() float64 { return testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("malformed")) }},
		{"empty frame", []byte{0, 0}, wire.ReasonProtocolError,
			func() float64 { return testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("framing")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.metric()
			c := dialRaw(t, l)
			c.write(tc.frame)
			c.expectDisconnect(tc.reason)
			eventually(t, "the rejection metric", func() bool { return tc.metric() == before+1 })
		})
	}
	if opened, _, _ := b.counts(); opened != 0 {
		t.Fatalf("backend saw %d sessions; rejected hellos must never reach it", opened)
	}
	eventually(t, "all sessions gone", func() bool { return l.Sessions() == 0 })
}

func TestSessionForwardsAndRejects(t *testing.T) {
	l, b := startEdge(t, func(c *Config) {
		c.InputsPerSecond = 1
		c.InputBurst = 5
		c.MaxBadFrames = 3
	})
	c := dialRaw(t, l)
	c.write(hello(wire.ProtocolVersion, "any"))
	if _, err := wire.DecodeWelcome(c.next(wire.MsgWelcome)); err != nil {
		t.Fatal(err)
	}

	// Ping → pong stamped with the backend's tick.
	c.write((&wire.Ping{ClientTimeMicros: 123}).AppendFrame(nil))
	p, err := wire.DecodePong(c.next(wire.MsgPong))
	if err != nil || p.ClientTimeMicros != 123 || p.ServerTick != 42 {
		t.Fatalf("pong %+v, %v", p, err)
	}

	// A flood of 20 inputs: the burst of 5 passes, the rest are rejected and counted.
	for i := 1; i <= 20; i++ {
		c.write((&wire.Input{Seq: uint32(i), ClientTick: 1}).AppendFrame(nil))
	}
	eventually(t, "rate-limited inputs counted", func() bool {
		_, n, _ := b.counts()
		return n >= 5 && testutil.ToFloat64(l.metrics.RejectedInputs.WithLabelValues("rate_limit")) >= 14
	})
	if _, n, _ := b.counts(); n > 6 {
		t.Fatalf("backend got %d inputs, the bucket allows 5 (+1 refill)", n)
	}

	// Unknown message types and malformed messages are counted; past MaxBadFrames the
	// session is closed with a protocol error, and the backend hears of it exactly once.
	var lenBuf [2]byte
	binary.LittleEndian.PutUint16(lenBuf[:], 1)
	unknown := append(lenBuf[:], 200)
	for range 4 {
		c.write(unknown)
	}
	c.expectDisconnect(wire.ReasonProtocolError)
	eventually(t, "the session closed", func() bool { _, _, closed := b.counts(); return closed == 1 })
	if got := testutil.ToFloat64(l.metrics.SessionsClosed.WithLabelValues("protocol_error")); got != 1 {
		t.Fatalf("sessions closed for protocol_error = %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("unknown_type")); got != 4 {
		t.Fatalf("unknown_type bad frames = %v, want 4", got)
	}
}

// TestOversizedFrameRejected: a client frame longer than wire.MaxClientFrameSize is refused
// from its length prefix alone (the edge never buffers it), counted, and ends the session.
func TestOversizedFrameRejected(t *testing.T) {
	l, b := startEdge(t, nil)
	c := dialRaw(t, l)
	c.write(hello(wire.ProtocolVersion, "any"))
	c.next(wire.MsgWelcome)
	c.write([]byte{0xff, 0xff, byte(wire.MsgInput), 1, 2, 3})
	c.expectDisconnect(wire.ReasonProtocolError)
	eventually(t, "the session closed", func() bool { _, _, closed := b.counts(); return closed == 1 })
	if got := testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("oversized")); got != 1 {
		t.Fatalf("oversized bad frames = %v, want 1", got)
	}
}

// TestFrameFloodRateLimited: acks and pings are rate limited like inputs, so one client
// cannot flood the tick's queues.
func TestFrameFloodRateLimited(t *testing.T) {
	l, b := startEdge(t, func(c *Config) {
		c.FramesPerSecond = 60
		c.FrameBurst = 20
	})
	c := dialRaw(t, l)
	c.write(hello(wire.ProtocolVersion, "any"))
	c.next(wire.MsgWelcome)
	var flood []byte
	for range 500 {
		flood = (&wire.Ack{Tick: 5}).AppendFrame(flood)
	}
	c.write(flood)
	eventually(t, "the flood counted", func() bool {
		b.mu.Lock()
		n := len(b.acks)
		b.mu.Unlock()
		return n >= 20 && float64(n)+testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("rate_limit")) == 500
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.acks) > 60 {
		t.Fatalf("backend got %d of 500 acks sent at once; the bucket allows a burst of 20", len(b.acks))
	}
}

// TestOpenClosePairedOnShutdown: sessions saying hello while the listener shuts down are
// either never opened or opened and then closed: the backend never keeps a session.
func TestOpenClosePairedOnShutdown(t *testing.T) {
	for iter := range 5 {
		cfg := DefaultConfig()
		cfg.Listen = "127.0.0.1:0"
		b := &recordingBackend{}
		l, err := Listen(cfg, b, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.l = l
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Serve(ctx) }()
		for range 40 {
			c := dialRaw(t, l)
			c.write(hello(wire.ProtocolVersion, "x"))
		}
		time.Sleep(time.Duration(iter) * 5 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		opened, _, closed := b.counts()
		if opened != closed {
			t.Fatalf("iteration %d: %d sessions opened, %d closed", iter, opened, closed)
		}
	}
}

func TestServerFull(t *testing.T) {
	l, _ := startEdge(t, func(c *Config) { c.MaxSessions = 1 })
	a := dialRaw(t, l)
	a.write(hello(wire.ProtocolVersion, "a"))
	a.next(wire.MsgWelcome)
	b := dialRaw(t, l)
	b.write(hello(wire.ProtocolVersion, "b"))
	b.expectDisconnect(wire.ReasonServerFull)
	// ≥ 1: the refused client's KCP may retransmit its hello, which is refused again.
	if got := testutil.ToFloat64(l.metrics.SessionsRejected.WithLabelValues("server_full")); got < 1 {
		t.Fatalf("server_full rejections = %v, want ≥ 1", got)
	}
}

// TestSessionIDs: an edge numbers its sessions from Config.FirstSessionID (0: 1), counting up.
func TestSessionIDs(t *testing.T) {
	for _, tc := range []struct{ first, want SessionID }{{0, 1}, {1, 1}, {1 << 20, 1 << 20}, {MaxFirstSessionID, MaxFirstSessionID}} {
		l, b := startEdge(t, func(c *Config) { c.FirstSessionID = tc.first })
		for i := range 2 {
			c := dialRaw(t, l)
			c.write(hello(wire.ProtocolVersion, "x"))
			c.next(wire.MsgWelcome)
			b.mu.Lock()
			got := b.opened[i]
			b.mu.Unlock()
			if got != tc.want+SessionID(i) {
				t.Fatalf("FirstSessionID %d: session %d got id %d, want %d", tc.first, i, got, tc.want+SessionID(i))
			}
		}
	}
}

// TestSessionIDWrap: after 2^32 − 1 the ids go on from 1 (never 0), skipping ids still open.
func TestSessionIDWrap(t *testing.T) {
	l := &Listener{nextID: ^SessionID(0) - 1, sessions: map[SessionID]*Session{1: nil, 3: nil}}
	var got []SessionID
	for range 4 {
		got = append(got, l.newID())
	}
	if want := []SessionID{^SessionID(0) - 1, ^SessionID(0), 2, 4}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
}

func TestConfigFirstSessionID(t *testing.T) {
	c := DefaultConfig()
	c.FirstSessionID = MaxFirstSessionID
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.FirstSessionID++
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "FirstSessionID") {
		t.Fatalf("FirstSessionID %d: error %v", c.FirstSessionID, err)
	}
}

// TestFirstSessionIDFor: a gateway's first session id is a function of its incarnation, in
// [1, MaxFirstSessionID] (room for 2^31 sessions before the ids wrap), and incarnations that
// differ by little (start times in ns) get ids far apart.
func TestFirstSessionIDFor(t *testing.T) {
	base := uint64(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	seen := map[SessionID]bool{}
	lo, hi := MaxFirstSessionID, SessionID(0)
	for _, inc := range []uint64{0, 1, 2, ^uint64(0)} {
		if id := FirstSessionIDFor(inc); id < 1 || id > MaxFirstSessionID {
			t.Fatalf("incarnation %d: first id %d", inc, id)
		}
	}
	const n = 1000
	for i := range uint64(n) {
		id := FirstSessionIDFor(base + i)
		if id != FirstSessionIDFor(base+i) {
			t.Fatal("not a function of the incarnation")
		}
		if id < 1 || id > MaxFirstSessionID {
			t.Fatalf("incarnation %d: first id %d", base+i, id)
		}
		seen[id] = true
		lo, hi = min(lo, id), max(hi, id)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct first ids for %d incarnations", len(seen), n)
	}
	if lo > MaxFirstSessionID/64 || hi < MaxFirstSessionID-MaxFirstSessionID/64 {
		t.Fatalf("first ids of %d consecutive incarnations only span [%d, %d]", n, lo, hi)
	}
}

// TestHelloAuthenticates: the backend opens each session as the player its token names —
// in development mode (no Authenticate) the token "player-N" names N; with a signer only a
// token it minted is accepted, for the player it was minted for.
func TestHelloAuthenticates(t *testing.T) {
	l, b := startEdge(t, nil)
	signer, err := auth.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	l2, b2 := startEdge(t, func(c *Config) {
		c.Authenticate = func(tok []byte) (wire.PlayerID, error) { return signer.Verify(tok, time.Now()) }
	})
	c := dialRaw(t, l)
	c.write(hello(wire.ProtocolVersion, "player-42"))
	c.next(wire.MsgWelcome)
	tok, err := signer.Mint(9001, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c2 := dialRaw(t, l2)
	c2.write(hello(wire.ProtocolVersion, string(tok)))
	c2.next(wire.MsgWelcome)
	other, _ := auth.NewSigner([]byte("another secret of at least 32 bytes!"))
	forged, _ := other.Mint(9001, time.Now().Add(time.Hour))
	c3 := dialRaw(t, l2)
	c3.write(hello(wire.ProtocolVersion, string(forged)))
	c3.next(wire.MsgDisconnect)
	for _, x := range []struct {
		b    *recordingBackend
		want []wire.PlayerID
	}{{b, []wire.PlayerID{42}}, {b2, []wire.PlayerID{9001}}} {
		x.b.mu.Lock()
		got := slices.Clone(x.b.player)
		x.b.mu.Unlock()
		if !slices.Equal(got, x.want) {
			t.Errorf("opened as players %v, want %v", got, x.want)
		}
	}
}

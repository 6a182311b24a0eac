package gateway

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meridian-mmo/meridian/wire"
)

// wsClient is a real WebSocket client (coder/websocket) speaking the frame stream.
type wsClient struct {
	t    *testing.T
	ws   *websocket.Conn
	conn net.Conn // NetConn over ws: reads see the concatenated message payloads
	fr   *wire.FrameReader
}

func dialWS(t *testing.T, addr net.Addr, path string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { ws.CloseNow() })
	return &wsClient{t: t, ws: ws, conn: conn, fr: wire.NewFrameReader(conn)}
}

// send writes b as one binary message.
func (c *wsClient) send(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) next(want wire.MsgType) []byte {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, payload, err := c.fr.Next()
		if err != nil {
			c.t.Fatalf("waiting for message type %v: %v", want, err)
		}
		if typ == want {
			return append([]byte(nil), payload...)
		}
	}
}

func (c *wsClient) expectDisconnect(reason wire.DisconnectReason) {
	c.t.Helper()
	d, err := wire.DecodeDisconnect(c.next(wire.MsgDisconnect))
	if err != nil {
		c.t.Fatal(err)
	}
	if d.Reason != reason {
		c.t.Fatalf("disconnect reason %v (%q), want %v", d.Reason, d.Message, reason)
	}
}

func startWSEdge(t *testing.T, mutate func(*Config)) (*Listener, *recordingBackend, net.Addr) {
	t.Helper()
	l, b := startEdge(t, mutate)
	addr, err := l.ListenWebSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if l.WSAddr().String() != addr.String() {
		t.Fatalf("WSAddr %v, ListenWebSocket returned %v", l.WSAddr(), addr)
	}
	return l, b, addr
}

// TestWebSocketSession: a browser-style client goes through the same session path as KCP:
// hello → welcome from the backend, inputs, interactions and acks reach it, frames may be split
// across or packed into messages, malformed frames are counted, and the close reaches
// Backend.Close exactly once.
func TestWebSocketSession(t *testing.T) {
	l, b, addr := startWSEdge(t, nil)
	c := dialWS(t, addr, "/ws")

	// The hello split over two messages: the frame stream is the concatenation of payloads.
	h := hello(wire.ProtocolVersion, "tok")
	c.send(h[:2])
	c.send(h[2:])
	w, err := wire.DecodeWelcome(c.next(wire.MsgWelcome))
	if err != nil || w.Version != wire.ProtocolVersion {
		t.Fatalf("welcome %+v, %v", w, err)
	}

	// Several frames in one message.
	var batch []byte
	batch = (&wire.Input{Seq: 1, ClientTick: 3}).AppendFrame(batch)
	batch = (&wire.Input{Seq: 2, ClientTick: 4}).AppendFrame(batch)
	batch = (&wire.Interact{Seq: 3, Target: 77, Kind: wire.InteractChat, Data: []byte("hi")}).AppendFrame(batch)
	batch = (&wire.Ack{Tick: 9}).AppendFrame(batch)
	c.send(batch)
	eventually(t, "inputs, interaction and ack", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.inputs) == 2 && len(b.inter) == 1 && len(b.acks) == 1
	})
	b.mu.Lock()
	got := b.inter[0]
	b.mu.Unlock()
	if got.Seq != 3 || got.Target != 77 || got.Kind != wire.InteractChat || string(got.Data) != "hi" {
		t.Fatalf("interaction %+v", got)
	}

	// Ping → pong over WebSocket.
	c.send((&wire.Ping{ClientTimeMicros: 5}).AppendFrame(nil))
	if p, err := wire.DecodePong(c.next(wire.MsgPong)); err != nil || p.ServerTick != 42 {
		t.Fatalf("pong %+v, %v", p, err)
	}

	// A malformed interaction (target 0) is a bad frame, counted, not forwarded.
	before := testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("malformed"))
	bad := (&wire.Interact{Seq: 4, Target: 0, Kind: wire.InteractAttack}).AppendFrame(nil)
	c.send(bad)
	eventually(t, "the malformed interaction counted", func() bool {
		return testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("malformed")) == before+1
	})
	if got := testutil.ToFloat64(l.metrics.Connections.WithLabelValues("websocket")); got != 1 {
		t.Fatalf("websocket connections = %v, want 1", got)
	}

	// The client closes the WebSocket: the backend hears of it once.
	if err := c.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session closed", func() bool { _, _, closed := b.counts(); return closed == 1 })
	eventually(t, "no sessions", func() bool { return l.Sessions() == 0 })
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.inter) != 1 {
		t.Fatalf("backend got %d interactions, want 1", len(b.inter))
	}
}

// TestWebSocketRejectsBadFrames: past MaxBadFrames a WebSocket session is disconnected with a
// protocol error like a KCP one, and the backend hears of it.
func TestWebSocketRejectsBadFrames(t *testing.T) {
	l, b, addr := startWSEdge(t, func(c *Config) { c.MaxBadFrames = 1 })
	c := dialWS(t, addr, "/")
	c.send(hello(wire.ProtocolVersion, "tok"))
	c.next(wire.MsgWelcome)
	c.send([]byte{1, 0, 200}) // unknown type
	c.send([]byte{3, 0, byte(wire.MsgInput), 1, 2})
	c.expectDisconnect(wire.ReasonProtocolError)
	eventually(t, "the session closed", func() bool { _, _, closed := b.counts(); return closed == 1 })
	if got := testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("unknown_type")); got != 1 {
		t.Fatalf("unknown_type = %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.metrics.BadFrames.WithLabelValues("malformed")); got != 1 {
		t.Fatalf("malformed = %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.metrics.SessionsClosed.WithLabelValues("protocol_error")); got != 1 {
		t.Fatalf("closed for protocol_error = %v, want 1", got)
	}
	// The server ends the WebSocket after its disconnect frame.
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.fr.Next(); err == nil {
		t.Fatal("the connection is still open after the disconnect")
	}
}

// TestWebSocketHelloRejected: a bad version over WebSocket gets the same disconnect and
// metric as over KCP, and never reaches the backend.
func TestWebSocketHelloRejected(t *testing.T) {
	l, b, addr := startWSEdge(t, nil)
	c := dialWS(t, addr, "/ws")
	c.send(hello(wire.ProtocolVersion+1, "tok"))
	c.expectDisconnect(wire.ReasonBadVersion)
	if got := testutil.ToFloat64(l.metrics.SessionsRejected.WithLabelValues("bad_version")); got != 1 {
		t.Fatalf("bad_version = %v", got)
	}
	if opened, _, _ := b.counts(); opened != 0 {
		t.Fatalf("backend opened %d sessions", opened)
	}
}

// TestWebSocketCrossOriginRefused: a browser page from another origin cannot open a session
// unless the origin is configured.
func TestWebSocketCrossOriginRefused(t *testing.T) {
	_, _, addr := startWSEdge(t, func(c *Config) { c.WSOriginPatterns = []string{"game.example"} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hdr := http.Header{"Origin": {"http://evil.example"}}
	if ws, _, err := websocket.Dial(ctx, "ws://"+addr.String()+"/ws", &websocket.DialOptions{HTTPHeader: hdr}); err == nil {
		ws.CloseNow()
		t.Fatal("cross-origin upgrade accepted")
	}
	hdr = http.Header{"Origin": {"https://game.example"}}
	ws, _, err := websocket.Dial(ctx, "ws://"+addr.String()+"/ws", &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatalf("configured origin refused: %v", err)
	}
	ws.CloseNow()
}

// TestWebSocketShutdown: closing the listener disconnects WebSocket sessions with a shutdown
// reason, pairs every Open with a Close, and does not wait on clients that never answer the
// closing handshake longer than the grace.
func TestWebSocketShutdown(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	b := &recordingBackend{}
	l, err := Listen(cfg, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.l = l
	addr, err := l.ListenWebSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reading := dialWS(t, addr, "/ws")
	reading.send(hello(wire.ProtocolVersion, "a"))
	reading.next(wire.MsgWelcome)
	silent := dialWS(t, addr, "/ws") // never reads again after the welcome
	silent.send(hello(wire.ProtocolVersion, "b"))
	silent.next(wire.MsgWelcome)

	got := make(chan wire.DisconnectReason, 1)
	go func() {
		_ = reading.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			typ, payload, err := reading.fr.Next()
			if err != nil {
				close(got)
				return
			}
			if typ == wire.MsgDisconnect {
				d, _ := wire.DecodeDisconnect(payload)
				got <- d.Reason
				return
			}
		}
	}()
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > wsCloseGrace+2*time.Second {
		t.Fatalf("Close took %v", took)
	}
	if r, ok := <-got; !ok || r != wire.ReasonShutdown {
		t.Fatalf("reading client got reason %v (ok %v), want shutdown", r, ok)
	}
	opened, _, closed := b.counts()
	if opened != 2 || closed != 2 {
		t.Fatalf("opened %d closed %d, want 2 and 2", opened, closed)
	}
	if _, err := l.ListenWebSocket("127.0.0.1:0"); err == nil {
		t.Fatal("ListenWebSocket after Close succeeded")
	}
}

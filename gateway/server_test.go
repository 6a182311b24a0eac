package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/meridian-mmo/meridian/auth"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// The tests here run the gateway against a real one-node metadata service and, for the cell
// server, a plain TCP listener speaking the peer protocol as a cell server does: it answers
// the gateway's hello on the same connection, then exchanges peer frames.

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fakeCell is the peer side of a cell server.
type fakeCell struct {
	t     *testing.T
	id    raftmeta.ServerID
	ln    net.Listener
	conns chan *fakeConn
	stop  chan struct{} // closed when the test ends: connections stop delivering messages

	mu      sync.Mutex
	answers []wire.PeerHelloMsg // hellos for the next connections (then the right one)
	inc     uint64              // the incarnation in the right hello (0: 1)
	paused  bool                // hang up on new connections before the hello
}

// fakeConn is one accepted gateway connection.
type fakeConn struct {
	t     *testing.T
	c     net.Conn
	hello wire.PeerHelloMsg // the gateway's
	msgs  chan wire.PeerMessage
	ended chan struct{} // the gateway closed it
}

func newFakeCell(t *testing.T, id raftmeta.ServerID) *fakeCell {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCell{t: t, id: id, ln: ln, conns: make(chan *fakeConn, 16), stop: make(chan struct{})}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		close(f.stop) // nobody reads the connections' messages any more
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return f
}

func (f *fakeCell) addr() string { return f.ln.Addr().String() }

// setIncarnation makes the next connections' hellos carry incarnation inc (a restart).
func (f *fakeCell) setIncarnation(inc uint64) {
	f.mu.Lock()
	f.inc = inc
	f.mu.Unlock()
}

// pause makes the fake server hang up on new connections before its hello (while paused).
func (f *fakeCell) pause(paused bool) {
	f.mu.Lock()
	f.paused = paused
	f.mu.Unlock()
}

// answerNext makes the next connections get these hellos instead of the right one.
func (f *fakeCell) answerNext(h ...wire.PeerHelloMsg) {
	f.mu.Lock()
	f.answers = append(f.answers, h...)
	f.mu.Unlock()
}

func (f *fakeCell) serve(c net.Conn) {
	r := wire.NewPeerReader(c)
	typ, payload, err := r.Next()
	if err != nil || typ != wire.PeerHello {
		c.Close()
		return
	}
	h, err := wire.DecodePeerHelloMsg(payload)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	answer := wire.PeerHelloMsg{Server: uint64(f.id), Incarnation: max(f.inc, 1), Version: wire.PeerProtocolVersion}
	if f.paused {
		f.mu.Unlock()
		c.Close()
		return
	}
	wrong := len(f.answers) > 0
	if wrong {
		answer, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	b, _ := answer.AppendFrame(nil)
	if _, err := c.Write(b); err != nil {
		c.Close()
		return
	}
	if wrong { // the gateway must hang up
		_, _ = io.Copy(io.Discard, c)
		return
	}
	fc := &fakeConn{t: f.t, c: c, hello: h, msgs: make(chan wire.PeerMessage, 1024), ended: make(chan struct{})}
	f.conns <- fc
	defer close(fc.ended)
	for {
		typ, payload, err := r.Next()
		if err != nil {
			return
		}
		m, err := wire.DecodePeer(typ, append([]byte(nil), payload...))
		if err != nil {
			f.t.Errorf("the gateway sent a malformed %v: %v", typ, err)
			return
		}
		select {
		case fc.msgs <- m:
		case <-f.stop:
			return
		}
	}
}

// conn waits for the next gateway connection past the hello exchange.
func (f *fakeCell) conn() *fakeConn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(10 * time.Second):
		f.t.Fatal("the gateway did not connect")
		return nil
	}
}

func (c *fakeConn) send(m wire.PeerMessage) {
	c.t.Helper()
	b, err := m.AppendFrame(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// expect returns the next message of type T, skipping others.
func expectPeer[T any, PT interface {
	*T
	wire.PeerMessage
}](c *fakeConn) *T {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			if v, ok := m.(PT); ok {
				return (*T)(v)
			}
		case <-deadline:
			var zero T
			c.t.Fatalf("no %T from the gateway", zero)
			return nil
		}
	}
}

// startMeta starts a real one-node metadata service with a 256 m world.
func startMeta(t *testing.T) *raftmeta.Node {
	t.Helper()
	return startMetaAt(t, freeTCP(t))
}

// register registers f with the metadata service (a long lease: no heartbeats needed) and
// waits until it owns the world's cell.
func register(t *testing.T, node *raftmeta.Node, f *fakeCell) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := raftmeta.NewClient([]string{node.HTTPAddr()}, nil).Register(ctx, raftmeta.RegisterRequest{
		ID: f.id, Addr: f.addr(), ClientAddr: "127.0.0.1:1", Capacity: 1000, LeaseTTL: raftmeta.Duration(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	eventuallyWithin(t, 10*time.Second, "the fake cell server owns the cell", func() bool {
		m := node.FSM().Map()
		return len(m.Cells) == 1 && m.Cells[0].Owner == f.id
	})
}

func eventuallyWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startGateway runs a gateway Server until the test ends.
func startGateway(t *testing.T, meta string, mutate func(*ServerConfig)) (*Server, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultServerConfig()
	cfg.ID = 3
	cfg.Incarnation = 9
	cfg.Meta = []string{meta}
	cfg.Edge.Listen = "127.0.0.1:0"
	cfg.WSListen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewServer(ctx, cfg, reg, quietLog)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return s, reg
}

// histCount is the sample count of histogram name{direction=dir}.
func histCount(t *testing.T, reg *prometheus.Registry, name, dir string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "direction", dir) {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func gwWelcome(entity wire.EntityID) []byte {
	return (&wire.Welcome{Version: wire.ProtocolVersion, Entity: entity, ServerTick: 1, TickHz: 20}).AppendFrame(nil)
}

// gwSnapshot is an empty full-state snapshot of tick n.
func gwSnapshot(t *testing.T, n wire.Tick) []byte {
	t.Helper()
	f, err := wire.AppendSnapshot(nil, wire.SnapshotHeader{ServerTick: n}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// snapshotTick is the server tick of a snapshot payload.
func snapshotTick(t *testing.T, payload []byte) wire.Tick {
	t.Helper()
	h, err := wire.PeekSnapshotHeader(payload)
	if err != nil {
		t.Fatal(err)
	}
	return h.ServerTick
}

// TestServerRoutesThroughLink: a client that says hello before the gateway has any map waits;
// once the map names a cell server, the gateway links to it (hello both ways), sends the
// session's join, forwards the welcome and snapshots to the client and the client's inputs,
// interactions, acks and finally its leave to the server. WebSocket clients go the same way.
func TestServerRoutesThroughLink(t *testing.T) {
	metaAddr := freeTCP(t)
	srv, reg := startGateway(t, metaAddr, nil)
	if srv.Tick() != 0 {
		t.Fatalf("tick %d before any map", srv.Tick())
	}

	// A KCP client before the metadata service is even up: its session waits.
	c := dialRaw(t, srv.Listener())
	c.write(hello(wire.ProtocolVersion, "tok"))
	eventually(t, "the session open", func() bool { return srv.Listener().Sessions() == 1 })

	// The metadata service comes up on the address the gateway was given.
	mcfgNode := startMetaAt(t, metaAddr)
	cell := newFakeCell(t, 7)
	register(t, mcfgNode, cell)

	fc := cell.conn()
	if fc.hello.Server != wire.GatewayIDBase+3 || fc.hello.Version != wire.PeerProtocolVersion || fc.hello.Incarnation != 9 {
		t.Fatalf("gateway hello %+v", fc.hello)
	}
	eventually(t, "the link up", func() bool { return srv.LinksUp() == 1 })
	if got := testutil.ToFloat64(srv.met.linksUp); got != 1 {
		t.Fatalf("links_up = %v", got)
	}

	j := expectPeer[wire.JoinMsg](fc)
	if j.Home != srv.Home() || j.Client == 0 || j.Resume != 0 {
		t.Fatalf("join %+v", j)
	}
	if j.Client != uint32(FirstSessionIDFor(9)) {
		t.Fatalf("first session id %d, want %d (from incarnation 9)", j.Client, FirstSessionIDFor(9))
	}
	if j.X < 0 || j.X > wire.QuantisePos(256) || j.Z < 0 || j.Z > wire.QuantisePos(256) {
		t.Fatalf("spawn (%d, %d) outside the 256 m world", j.X, j.Z)
	}
	if srv.Tick() == 0 {
		t.Fatal("no tick once the map came")
	}
	const entity = 1000
	fc.send(&wire.FrameMsg{Client: j.Client, Entity: entity, AuthEpoch: 1, X: j.X, Z: j.Z, Frame: gwWelcome(entity)})
	w, err := wire.DecodeWelcome(c.next(wire.MsgWelcome))
	if err != nil || w.Entity != entity {
		t.Fatalf("welcome %+v, %v", w, err)
	}

	// Client → server.
	c.write((&wire.Input{Seq: 1, ClientTick: srv.Tick()}).AppendFrame(nil))
	in := expectPeer[wire.InputMsg](fc)
	if in.Home != srv.Home() || in.Client != j.Client || in.Entity != entity || in.Input.Seq != 1 {
		t.Fatalf("input %+v", in)
	}
	c.write((&wire.Interact{Seq: 2, Target: 55, Kind: wire.InteractChat, Data: []byte("hello")}).AppendFrame(nil))
	ia := expectPeer[wire.InteractMsg](fc)
	if ia.Origin != srv.Home() || ia.Actor != entity || ia.Seq != 2 || ia.Target != 55 || string(ia.Data) != "hello" {
		t.Fatalf("interact %+v", ia)
	}
	c.write((&wire.Ack{Tick: 4}).AppendFrame(nil))
	if a := expectPeer[wire.AckMsg](fc); a.Entity != entity || a.Tick != 4 || a.Client != j.Client {
		t.Fatalf("ack %+v", a)
	}

	// Server → client: a snapshot is written to the client as it is.
	fc.send(&wire.FrameMsg{Client: j.Client, Entity: entity, AuthEpoch: 1, LastSeq: 2, X: j.X, Z: j.Z, Frame: gwSnapshot(t, 7)})
	if n := snapshotTick(t, c.next(wire.MsgSnapshot)); n != 7 {
		t.Fatalf("snapshot of tick %d, want 7", n)
	}

	// A WebSocket client goes the same way.
	ws := dialWS(t, srv.WSAddr(), "/ws")
	ws.send(hello(wire.ProtocolVersion, "tok-ws")) // another player: one session per player
	j2 := expectPeer[wire.JoinMsg](fc)
	if j2.Client == j.Client {
		t.Fatalf("two sessions with client id %d", j.Client)
	}
	fc.send(&wire.FrameMsg{Client: j2.Client, Entity: entity + 1, AuthEpoch: 1, X: j2.X, Z: j2.Z, Frame: gwWelcome(entity + 1)})
	if w, err := wire.DecodeWelcome(ws.next(wire.MsgWelcome)); err != nil || w.Entity != entity+1 {
		t.Fatalf("websocket welcome %+v, %v", w, err)
	}
	ws.send((&wire.Input{Seq: 1, ClientTick: 1}).AppendFrame(nil))
	if in := expectPeer[wire.InputMsg](fc); in.Client != j2.Client || in.Entity != entity+1 {
		t.Fatalf("websocket input %+v", in)
	}

	// The KCP client leaves: the owner hears of it.
	c.write((&wire.Disconnect{Reason: wire.ReasonNone}).AppendFrame(nil))
	if l := expectPeer[wire.LeaveMsg](fc); l.Client != j.Client || l.Entity != entity || l.Home != srv.Home() {
		t.Fatalf("leave %+v", l)
	}

	if got := testutil.ToFloat64(srv.met.toClient); got < 3 {
		t.Fatalf("frames forwarded to clients = %v, want ≥ 3", got)
	}
	if got := testutil.ToFloat64(srv.met.toServer); got < 6 {
		t.Fatalf("frames forwarded to servers = %v, want ≥ 6", got)
	}
	if n := histCount(t, reg, "meridian_gateway_forward_seconds", "to_client"); n < 3 {
		t.Fatalf("forward_seconds{to_client} count %d, want ≥ 3", n)
	}
	if n := histCount(t, reg, "meridian_gateway_forward_seconds", "to_server"); n < 4 {
		t.Fatalf("forward_seconds{to_server} count %d, want ≥ 4", n)
	}
	if got := testutil.ToFloat64(srv.met.mapVersion); got == 0 {
		t.Fatal("map_version not set")
	}
	eventually(t, "the join counted", func() bool {
		return testutil.ToFloat64(srv.met.events.WithLabelValues("join")) == 2
	})
}

// startMetaAt starts the one-node metadata service on a given HTTP address.
func startMetaAt(t *testing.T, httpAddr string) *raftmeta.Node {
	t.Helper()
	mcfg := raftmeta.DefaultConfig()
	mcfg.ID, mcfg.Bootstrap = 1, true
	mcfg.RaftAddr, mcfg.HTTPAddr, mcfg.DataDir = freeTCP(t), httpAddr, t.TempDir()
	mcfg.World = raftmeta.World{Max: [2]float64{256, 256}}
	mcfg.MinCellSize = 16
	mcfg.Planner = nil
	node, err := raftmeta.Start(mcfg, quietLog, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	eventuallyWithin(t, 10*time.Second, "the meta node leads with a world", func() bool {
		return node.IsLeader() && len(node.FSM().Map().Cells) > 0
	})
	return node
}

// TestServerLinkReconnect: when the cell server's connection breaks, the gateway redials,
// says hello again and resends the inputs the server had not confirmed; frames on the new
// connection reach the client.
func TestServerLinkReconnect(t *testing.T) {
	node := startMeta(t)
	cell := newFakeCell(t, 7)
	register(t, node, cell)
	srv, _ := startGateway(t, node.HTTPAddr(), nil)
	fc := cell.conn()

	c := dialRaw(t, srv.Listener())
	c.write(hello(wire.ProtocolVersion, "tok"))
	j := expectPeer[wire.JoinMsg](fc)
	const entity = 2000
	fc.send(&wire.FrameMsg{Client: j.Client, Entity: entity, AuthEpoch: 1, X: j.X, Z: j.Z, Frame: gwWelcome(entity)})
	c.next(wire.MsgWelcome)
	c.write((&wire.Input{Seq: 1, ClientTick: 1}).AppendFrame(nil))
	if in := expectPeer[wire.InputMsg](fc); in.Input.Seq != 1 {
		t.Fatalf("input %+v", in)
	}

	// The connection breaks before the server confirmed input 1 (no frame with LastSeq 1).
	fc.c.Close()
	fc2 := cell.conn()
	if fc2.hello.Server != srv.Home() {
		t.Fatalf("second hello %+v", fc2.hello)
	}
	if in := expectPeer[wire.InputMsg](fc2); in.Input.Seq != 1 || in.Entity != entity {
		t.Fatalf("resent input %+v", in)
	}
	eventually(t, "the link back up", func() bool { return srv.LinksUp() == 1 })
	eventually(t, "inputs_resent counted", func() bool { return testutil.ToFloat64(srv.met.inputsResent) >= 1 })

	fc2.send(&wire.FrameMsg{Client: j.Client, Entity: entity, AuthEpoch: 1, LastSeq: 1, X: j.X, Z: j.Z, Frame: gwSnapshot(t, 9)})
	if n := snapshotTick(t, c.next(wire.MsgSnapshot)); n != 9 {
		t.Fatalf("snapshot of tick %d, want 9", n)
	}
}

// TestPeerLinkHello: a link whose server answers with the wrong id or the wrong protocol
// version is closed, counted and retried; frames queued meanwhile wait and go out once a
// connection passes the hello; a server that leaves the map has its link closed.
func TestPeerLinkHello(t *testing.T) {
	cell := newFakeCell(t, 7)
	cell.answerNext(
		wire.PeerHelloMsg{Server: 8, Incarnation: 1, Version: wire.PeerProtocolVersion},
		wire.PeerHelloMsg{Server: 7, Incarnation: 1, Version: wire.PeerProtocolVersion + 1},
	)
	met := newServerMetrics(prometheus.NewRegistry())
	links := newPeerLinks(context.Background(), wire.GatewayIDBase+5, 77, met, quietLog)
	var mu sync.Mutex
	var got []wire.PeerMessage
	resets := 0
	links.onMessage = func(from raftmeta.ServerID, m wire.PeerMessage, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if from == 7 {
			got = append(got, m)
		}
	}
	links.onReset = func(raftmeta.ServerID) { mu.Lock(); resets++; mu.Unlock() }
	defer links.close()

	links.setServers([]raftmeta.Server{{ID: 7, Addr: cell.addr()}, {ID: 9}}) // 9: no address, no link
	leave := wire.LeaveMsg{Home: wire.GatewayIDBase + 5, Client: 1, Entity: 3}
	if ok, err := links.sendMsg(7, &leave); !ok || err != nil {
		t.Fatalf("frame for a known server not queued: %v", err)
	}
	if ok, err := links.sendMsg(9, &leave); ok || err != nil {
		t.Fatalf("frame for a server without a link queued: %v", err)
	}

	fc := cell.conn() // the third connection, past two bad hellos
	if fc.hello.Server != wire.GatewayIDBase+5 || fc.hello.Incarnation != 77 {
		t.Fatalf("hello %+v", fc.hello)
	}
	if l := expectPeer[wire.LeaveMsg](fc); *l != leave {
		t.Fatalf("queued leave %+v", l)
	}
	if n := testutil.ToFloat64(met.linkErrors.WithLabelValues("wrong_server")); n != 1 {
		t.Fatalf("wrong_server = %v", n)
	}
	if n := testutil.ToFloat64(met.linkErrors.WithLabelValues("version")); n != 1 {
		t.Fatalf("version = %v", n)
	}
	if n := testutil.ToFloat64(met.linkDropped.WithLabelValues("no_link")); n != 1 {
		t.Fatalf("no_link drops = %v", n)
	}
	eventually(t, "the link up", func() bool { return links.up() == 1 })

	// The server's frames reach onMessage.
	fc.send(&wire.RefuseMsg{Client: 4, Reason: wire.ReasonServerFull})
	eventually(t, "the refusal delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})

	// A malformed frame closes the connection (counted); the link comes back.
	if _, err := fc.c.Write([]byte{1, 0, 0, 0, 200}); err != nil {
		t.Fatal(err)
	}
	<-fc.ended
	fc = cell.conn()
	if n := testutil.ToFloat64(met.linkErrors.WithLabelValues("bad_frame")); n != 1 {
		t.Fatalf("bad_frame = %v", n)
	}
	eventually(t, "reset reported", func() bool { mu.Lock(); defer mu.Unlock(); return resets >= 1 })

	// The server leaves the map: its link is closed and not redialled.
	links.setServers(nil)
	select {
	case <-fc.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the link of a server that left the map is still open")
	}
	eventually(t, "no link up", func() bool { return links.up() == 0 })
	select {
	case <-cell.conns:
		t.Fatal("redialled a server that left the map")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestServerConfigValidate(t *testing.T) {
	ok := DefaultServerConfig()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field  string
		mutate func(*ServerConfig)
	}{
		{"ServerConfig.ID", func(c *ServerConfig) { c.ID = 0 }},
		{"ServerConfig.Meta", func(c *ServerConfig) { c.Meta = nil }},
		{"ServerConfig.Meta[0]", func(c *ServerConfig) { c.Meta = []string{"nope"} }},
		{"MaxSessions", func(c *ServerConfig) { c.Edge.MaxSessions = 0 }},
		{"RouterConfig.RetryTicks", func(c *ServerConfig) { c.Router.RetryTicks = 0 }},
	} {
		c := DefaultServerConfig()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v", tc.field, err)
		}
	}
	if _, err := NewServer(context.Background(), ServerConfig{}, nil, nil); err == nil {
		t.Fatal("NewServer accepted a zero config")
	}
}

// TestServerFirstSessionID: the gateway numbers its sessions from an id derived from its
// incarnation, so a restarted gateway (same ID) does not reuse the previous process's ids;
// an explicit Edge.FirstSessionID is kept.
func TestServerFirstSessionID(t *testing.T) {
	for _, tc := range []struct {
		inc   uint64
		first SessionID
		want  SessionID
	}{
		{inc: 1, want: FirstSessionIDFor(1)},
		{inc: 2, want: FirstSessionIDFor(2)},
		{inc: 2, first: 5, want: 5},
	} {
		cfg := DefaultServerConfig()
		cfg.Incarnation = tc.inc
		cfg.Edge.Listen = "127.0.0.1:0"
		cfg.Edge.FirstSessionID = tc.first
		s, err := NewServer(context.Background(), cfg, nil, quietLog)
		if err != nil {
			t.Fatal(err)
		}
		s.edge.mu.Lock()
		got := s.edge.nextID
		s.edge.mu.Unlock()
		s.edge.Close()
		if got != tc.want {
			t.Errorf("incarnation %d, Edge.FirstSessionID %d: first id %d, want %d", tc.inc, tc.first, got, tc.want)
		}
	}
	if FirstSessionIDFor(1) == FirstSessionIDFor(2) {
		t.Fatal("incarnations 1 and 2 start at the same session id")
	}
}

// TestServerOneSessionPerPlayer: a session signing in as a player another session of the
// gateway holds kicks the older one (ReasonKicked, counted), whose entity's Leave goes to its
// cell server before the new session's join; the new session proceeds. Sessions of player 0
// (no player) are never kicked.
func TestServerOneSessionPerPlayer(t *testing.T) {
	node := startMeta(t)
	cell := newFakeCell(t, 7)
	register(t, node, cell)
	srv, _ := startGateway(t, node.HTTPAddr(), func(c *ServerConfig) {
		c.Edge.Authenticate = func(tok []byte) (wire.PlayerID, error) {
			if strings.HasPrefix(string(tok), "anon") {
				return 0, nil
			}
			return auth.DevPlayer(tok)
		}
	})
	fc := cell.conn()
	kicked := srv.Listener().Metrics().SessionsKicked

	// welcome answers a session's join with entity e, and returns the join.
	welcome := func(c *rawConn, e wire.EntityID) *wire.JoinMsg {
		t.Helper()
		j := expectPeer[wire.JoinMsg](fc)
		fc.send(&wire.FrameMsg{Client: j.Client, Entity: e, AuthEpoch: 1, X: j.X, Z: j.Z, Frame: gwWelcome(e)})
		if w, err := wire.DecodeWelcome(c.next(wire.MsgWelcome)); err != nil || w.Entity != e {
			t.Fatalf("welcome %+v, %v", w, err)
		}
		return j
	}
	first := dialRaw(t, srv.Listener())
	first.write(hello(wire.ProtocolVersion, "player-5"))
	j1 := welcome(first, 3001)
	if j1.PlayerID != 5 {
		t.Fatalf("join as player %d, want 5", j1.PlayerID)
	}
	other := dialRaw(t, srv.Listener()) // another player: untouched
	other.write(hello(wire.ProtocolVersion, "player-6"))
	welcome(other, 3002)

	// Player 5 signs in again: the first session is kicked; its Leave precedes the new join.
	second := dialRaw(t, srv.Listener())
	second.write(hello(wire.ProtocolVersion, "player-5"))
	d, err := wire.DecodeDisconnect(first.next(wire.MsgDisconnect))
	if err != nil || d.Reason != wire.ReasonKicked || d.Message != "signed in elsewhere" {
		t.Fatalf("the first session got %+v, %v; want kicked, signed in elsewhere", d, err)
	}
	if l := expectPeer[wire.LeaveMsg](fc); l.Client != j1.Client || l.Entity != 3001 {
		t.Fatalf("leave %+v, want the first session's", l)
	}
	j2 := welcome(second, 3003)
	if j2.PlayerID != 5 || j2.Client == j1.Client {
		t.Fatalf("second join %+v", j2)
	}
	second.write((&wire.Input{Seq: 1, ClientTick: 1}).AppendFrame(nil))
	if in := expectPeer[wire.InputMsg](fc); in.Client != j2.Client || in.Entity != 3003 {
		t.Fatalf("input %+v, want the second session's", in)
	}
	if n := testutil.ToFloat64(kicked); n != 1 {
		t.Fatalf("sessions_kicked_total = %v, want 1", n)
	}
	eventually(t, "the kicked session gone", func() bool { return srv.Listener().Sessions() == 2 })

	// Two sessions without a player both proceed.
	anon1, anon2 := dialRaw(t, srv.Listener()), dialRaw(t, srv.Listener())
	anon1.write(hello(wire.ProtocolVersion, "anon-1"))
	welcome(anon1, 3004)
	anon2.write(hello(wire.ProtocolVersion, "anon-2"))
	welcome(anon2, 3005)
	if n := testutil.ToFloat64(kicked); n != 1 || srv.Listener().Sessions() != 4 {
		t.Fatalf("sessions_kicked_total = %v, %d sessions; want 1, 4", n, srv.Listener().Sessions())
	}
	// The gateway still routes every one of them.
	for _, x := range []struct {
		c *rawConn
		e wire.EntityID
	}{{other, 3002}, {anon1, 3004}, {anon2, 3005}} {
		x.c.write((&wire.Input{Seq: 1, ClientTick: 1}).AppendFrame(nil))
		if in := expectPeer[wire.InputMsg](fc); in.Entity != x.e {
			t.Fatalf("input %+v, want entity %d's", in, x.e)
		}
	}
}

// TestServerKickedSessionNotOpened: the edge decides which of two sessions of a player is the
// newer (the order they signed in); when the older one's Open reaches the Server after the
// newer one's (two reader goroutines), it is not opened on the Router (it is being kicked),
// and the newer one is not closed for it.
func TestServerKickedSessionNotOpened(t *testing.T) {
	s := newSocketlessServer(t)
	defer s.links.close()
	add := func(id SessionID) *Session {
		ss := newSession(s.edge, id, transport{name: "kcp", ip: "127.0.0.1"})
		s.edge.mu.Lock()
		s.edge.sessions[id] = ss
		s.edge.mu.Unlock()
		return ss
	}
	older, newer := add(10), add(11)
	if !s.edge.claim(older, 8) || !s.edge.claim(newer, 8) {
		t.Fatal("claim refused an open session")
	}
	older.mu.Lock()
	closing := older.closing
	older.mu.Unlock()
	if !closing || testutil.ToFloat64(s.edge.metrics.SessionsKicked) != 1 || s.edge.Holder(8) != 11 {
		t.Fatalf("older closing %v, kicked %v, holder %d", closing, testutil.ToFloat64(s.edge.metrics.SessionsKicked), s.edge.Holder(8))
	}
	s.Open(11, 8)
	s.Open(10, 8) // late
	s.lock()
	_, o10 := s.early[10]
	_, o11 := s.early[11]
	s.unlock()
	if o10 || !o11 {
		t.Fatalf("opened: older %v, newer %v; want only the newer", o10, o11)
	}
	s.Close(10)
	s.Close(11)
	s.lock()
	n, players := len(s.early), len(s.players)
	s.unlock()
	if n != 0 || players != 0 {
		t.Fatalf("%d sessions, %d players left", n, players)
	}
}

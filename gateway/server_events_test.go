package gateway

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// newLinkedServer is a gateway Server without client sockets or a metadata service (the
// edge's sessions are made by hand, as in newBenchServer), but with real peer links to two
// fake cell servers over TCP: west owns the west half of testMap's world, east the east half.
// Run is not called: no ticks, so the Router resends nothing by itself.
func newLinkedServer(t *testing.T, west, east *fakeCell) *Server {
	t.Helper()
	s := newSocketlessServer(t)
	t.Cleanup(s.links.close)

	mp := testMap(1, west.id, east.id)
	mp.World.Epoch = time.Now().Add(-time.Hour).UnixNano()
	s.epoch.Store(mp.World.Epoch)
	s.links.setServers([]raftmeta.Server{{ID: west.id, Addr: west.addr()}, {ID: east.id, Addr: east.addr()}})
	s.lock()
	s.mp = mp
	s.router.SetMap(mp, s.tickAt(time.Now()))
	s.drain(nil, time.Time{}, time.Time{})
	s.unlock()
	return s
}

// cellRecorder plays the cell servers' side for TestServerSessionEventQueue: it welcomes every
// join, answers every input and interaction with a snapshot whose LastSeq applies it (so the
// link readers deliver frames all along), and records what arrived, by client.
type cellRecorder struct {
	t     *testing.T
	snaps [][]byte // snaps[n]: a snapshot of tick n

	mu   sync.Mutex
	seqs map[uint32][]uint32    // inputs' and interactions' Seq, in arrival order
	acks map[uint32][]wire.Tick // acks' ticks, in arrival order
	left map[uint32]int         // leaves
	pos  map[uint32][2]int32    // the join's spawn
	n    int                    // inputs, interactions and acks recorded
}

func newCellRecorder(t *testing.T) *cellRecorder {
	return &cellRecorder{t: t, seqs: map[uint32][]uint32{}, acks: map[uint32][]wire.Tick{},
		left: map[uint32]int{}, pos: map[uint32][2]int32{}, snaps: [][]byte{nil}}
}

const recorderEntityBase = 1000 // a client's entity is recorderEntityBase + its id

func (r *cellRecorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// serve answers one gateway connection until it ends.
func (r *cellRecorder) serve(fc *fakeConn) {
	var buf []byte
	reply := func(m wire.PeerMessage) { // a failed write: the connection ends (fc.ended)
		var err error
		if buf, err = m.AppendFrame(buf[:0]); err != nil {
			r.t.Errorf("reply %T: %v", m, err)
			return
		}
		_, _ = fc.c.Write(buf)
	}
	frame := func(client, lastSeq uint32, f []byte) *wire.FrameMsg {
		r.mu.Lock()
		p := r.pos[client]
		r.mu.Unlock()
		return &wire.FrameMsg{Client: client, Entity: wire.EntityID(recorderEntityBase + client), AuthEpoch: 1,
			LastSeq: lastSeq, X: p[0], Z: p[1], Frame: f}
	}
	for {
		var m wire.PeerMessage
		select {
		case m = <-fc.msgs:
		case <-fc.ended: // every message it got is in fc.msgs
			select {
			case m = <-fc.msgs:
			default:
				return
			}
		}
		switch m := m.(type) {
		case *wire.JoinMsg:
			r.mu.Lock()
			r.pos[m.Client] = [2]int32{m.X, m.Z}
			r.mu.Unlock()
			reply(frame(m.Client, 0, gwWelcome(wire.EntityID(recorderEntityBase+m.Client))))
		case *wire.InputMsg:
			r.record(m.Client, m.Input.Seq, 0)
			reply(frame(m.Client, m.Input.Seq, r.snaps[m.Input.Seq]))
		case *wire.InteractMsg:
			client := uint32(m.Actor - recorderEntityBase)
			r.record(client, m.Seq, 0)
			reply(frame(client, m.Seq, r.snaps[m.Seq]))
		case *wire.AckMsg:
			r.record(m.Client, 0, m.Tick)
		case *wire.LeaveMsg:
			r.mu.Lock()
			r.left[m.Client]++
			r.mu.Unlock()
		default:
			r.t.Errorf("unexpected %T from the gateway", m)
		}
	}
}

func (r *cellRecorder) record(client, seq uint32, ack wire.Tick) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq != 0 {
		r.seqs[client] = append(r.seqs[client], seq)
	} else {
		r.acks[client] = append(r.acks[client], ack)
	}
	r.n++
}

// TestServerSessionEventQueue hammers the Server's Backend methods from one goroutine per
// session (as session readers call them: inputs and interactions with increasing Seq, acks),
// all at once, while the link readers deliver a frame for every input (contending for
// Server.mu, so most session events are queued and run by whoever holds it). What reaches
// the cell servers over the links must be every event exactly once, each session's in order.
func TestServerSessionEventQueue(t *testing.T) {
	const sessions = 48
	const perSession = 250 // inputs and interactions (every 7th seq) per session, and as many acks
	west, east := newFakeCell(t, srvA), newFakeCell(t, srvB)
	rec := newCellRecorder(t)
	for n := 1; n <= perSession; n++ {
		rec.snaps = append(rec.snaps, gwSnapshot(t, wire.Tick(n)))
	}
	rec.snaps[0] = nil
	s := newLinkedServer(t, west, east)
	var serving sync.WaitGroup
	defer serving.Wait()
	for _, cell := range []*fakeCell{west, east} {
		fc := cell.conn()
		serving.Go(func() { rec.serve(fc) })
	}
	defer s.links.close() // before serving.Wait: the connections end

	ids := make([]SessionID, sessions)
	for i := range ids {
		ids[i] = SessionID(FirstSessionIDFor(uint64(i)))
		s.edge.mu.Lock()
		s.edge.sessions[ids[i]] = newSession(s.edge, ids[i], transport{name: "kcp", ip: "127.0.0.1"})
		s.edge.mu.Unlock()
		s.Open(ids[i], wire.PlayerID(i+1))
	}
	eventuallyWithin(t, 10*time.Second, "every session welcomed", func() bool {
		for _, id := range ids {
			ss := s.edge.session(id)
			ss.mu.Lock()
			n := len(ss.control)
			ss.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})

	start := make(chan struct{})
	var hammer sync.WaitGroup
	for _, id := range ids {
		hammer.Go(func() {
			<-start
			for k := uint32(1); k <= perSession; k++ {
				if k%7 == 0 {
					s.Interact(id, wire.Interact{Seq: k, Target: 55, Kind: wire.InteractChat, Data: []byte(fmt.Sprint("hi ", k))})
				} else {
					s.Input(id, wire.Input{Seq: k, ClientTick: wire.Tick(k), MoveX: int8(k % 100), Yaw: uint16(k)})
				}
				s.Ack(id, wire.Tick(k))
			}
		})
	}
	close(start)
	hammer.Wait()
	eventuallyWithin(t, 30*time.Second, "every event at the cell servers", func() bool { return rec.total() >= 2*sessions*perSession })
	time.Sleep(50 * time.Millisecond) // anything extra (a duplicate) would show up now

	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := make([]uint32, perSession)
	wantAcks := make([]wire.Tick, perSession)
	for i := range want {
		want[i], wantAcks[i] = uint32(i+1), wire.Tick(i+1)
	}
	for _, id := range ids {
		if got := rec.seqs[uint32(id)]; !slices.Equal(got, want) {
			t.Errorf("session %d: %d inputs and interactions arrived, in order %v…, want 1..%d once each in order",
				id, len(got), got[:min(len(got), 20)], perSession)
		}
		if got := rec.acks[uint32(id)]; !slices.Equal(got, wantAcks) {
			t.Errorf("session %d: %d acks arrived, in order %v…, want 1..%d once each in order",
				id, len(got), got[:min(len(got), 20)], perSession)
		}
	}
	if rec.n != 2*sessions*perSession {
		t.Errorf("%d events at the cell servers, want %d", rec.n, 2*sessions*perSession)
	}
	s.qmu.Lock()
	queued := len(s.queue)
	s.qmu.Unlock()
	if queued != 0 {
		t.Errorf("%d session events still queued", queued)
	}
	st := s.Stats()
	if st.InputsResent != 0 || st.ReplayedInputs != 0 || st.Rejected != 0 || st.Unrouted != 0 {
		t.Errorf("router stats %+v", st)
	}
}

// TestServerShutdownDeliversLeaves: when the gateway stops, every session's Leave reaches its
// cell server, even while a link reader keeps the routing lock busy (so the sessions' Close
// events are queued and run by the reader) — here with frames of a session the gateway does
// not have, each answered with an orphan Leave of its own.
func TestServerShutdownDeliversLeaves(t *testing.T) {
	node := startMeta(t)
	cell := newFakeCell(t, 7)
	register(t, node, cell)
	cfg := DefaultServerConfig()
	cfg.ID, cfg.Incarnation = 3, 9
	cfg.Meta = []string{node.HTTPAddr()}
	cfg.Edge.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := NewServer(ctx, cfg, prometheus.NewRegistry(), quietLog)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	fc := cell.conn()

	const sessions = 24
	conns := make([]*rawConn, sessions)
	for i := range conns {
		conns[i] = dialRaw(t, s.Listener())
		conns[i].write(hello(wire.ProtocolVersion, fmt.Sprint("player-", i+1))) // one session per player
	}
	clients := map[uint32]bool{}
	for range sessions {
		j := expectPeer[wire.JoinMsg](fc)
		clients[j.Client] = true
		fc.send(&wire.FrameMsg{Client: j.Client, Entity: wire.EntityID(recorderEntityBase + j.Client), AuthEpoch: 1,
			X: j.X, Z: j.Z, Frame: gwWelcome(wire.EntityID(recorderEntityBase + j.Client))})
	}
	for _, c := range conns {
		c.next(wire.MsgWelcome) // the Router knows its entity
	}

	got, stopCollecting := collectLeaves(fc)
	defer stopCollecting()
	stranger := uint32(FirstSessionIDFor(9)) + 1000 // no such session
	flood, _ := (&wire.FrameMsg{Client: stranger, Entity: 5, AuthEpoch: 1, Frame: gwSnapshot(t, 3)}).AppendFrame(nil)
	var flooding sync.WaitGroup
	stopFlood := make(chan struct{})
	flooding.Go(func() { // ~10,000 frames a second: no backlog behind which the leaves would wait
		burst := bytes.Repeat(flood, 10)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopFlood:
				return
			case <-tick.C:
			}
			if _, err := fc.c.Write(burst); err != nil {
				return
			}
		}
	})
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	close(stopFlood)
	flooding.Wait()
	eventuallyWithin(t, 5*time.Second, "a Leave for every session", func() bool {
		g := got()
		for c := range clients {
			if g[c] == 0 {
				return false
			}
		}
		return true
	})
	for c, n := range got() {
		if clients[c] && n != 1 {
			t.Errorf("session %d: %d leaves", c, n)
		}
	}
}

// TestCountStatsExportsEveryField: every RouterStats counter is mirrored into exactly one
// metric series of its own (a dedicated counter or a meridian_gateway_router_events_total
// label), so a counter added to the Router must be exported too.
func TestCountStatsExportsEveryField(t *testing.T) {
	reg := prometheus.NewRegistry()
	router, err := NewRouter(DefaultRouterConfig(wire.GatewayIDBase + 1))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{router: router, met: newServerMetrics(reg), early: map[SessionID]wire.PlayerID{}}
	counters := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetCounter() == nil {
					continue
				}
				key := mf.GetName()
				for _, l := range m.GetLabel() {
					key += fmt.Sprintf("{%s=%s}", l.GetName(), l.GetValue())
				}
				out[key] = m.GetCounter().GetValue()
			}
		}
		return out
	}
	st := reflect.ValueOf(&router.stats).Elem()
	owner := map[string]string{} // series → field
	for i := range st.NumField() {
		f := st.Type().Field(i)
		if f.Type.Kind() != reflect.Int {
			t.Fatalf("RouterStats.%s is a %v, not a counter", f.Name, f.Type)
		}
		before := counters()
		st.Field(i).SetInt(st.Field(i).Int() + 3)
		s.countStats()
		var moved []string
		for k, v := range counters() {
			if v != before[k] {
				moved = append(moved, k)
				if v-before[k] != 3 {
					t.Errorf("RouterStats.%s +3 moved %s by %v", f.Name, k, v-before[k])
				}
			}
		}
		switch {
		case len(moved) == 0:
			t.Errorf("RouterStats.%s is not exported (countStats)", f.Name)
		case len(moved) > 1:
			t.Errorf("RouterStats.%s moved %v", f.Name, moved)
		case owner[moved[0]] != "":
			t.Errorf("RouterStats.%s and .%s share %s", owner[moved[0]], f.Name, moved[0])
		default:
			owner[moved[0]] = f.Name
		}
	}
}

// TestServerCloseLinksRunsQueuedEvents: at shutdown, a session's Close still queued behind the
// holder of the routing lock (a link reader, which runs the queue only as it unlocks) has its
// Leave made before the links flush and end, not after, into a link that is gone.
func TestServerCloseLinksRunsQueuedEvents(t *testing.T) {
	west, east := newFakeCell(t, srvA), newFakeCell(t, srvB)
	rec := newCellRecorder(t)
	s := newLinkedServer(t, west, east)
	var serving sync.WaitGroup
	defer serving.Wait()
	for _, cell := range []*fakeCell{west, east} {
		fc := cell.conn()
		serving.Go(func() { rec.serve(fc) })
	}
	defer s.links.close()
	const id = SessionID(77)
	s.edge.mu.Lock()
	s.edge.sessions[id] = newSession(s.edge, id, transport{name: "kcp", ip: "127.0.0.1"})
	s.edge.mu.Unlock()
	s.Open(id, 1)
	eventually(t, "the session welcomed", func() bool {
		ss := s.edge.session(id)
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return len(ss.control) > 0
	})

	held := make(chan struct{})
	var holder sync.WaitGroup
	holder.Go(func() { // a link reader in the middle of a long peer message
		s.lock()
		close(held)
		time.Sleep(200 * time.Millisecond)
		s.unlock()
	})
	<-held
	s.Close(id) // queued: mu is held
	s.closeLinks()
	holder.Wait()
	serving.Wait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.left[uint32(id)] != 1 {
		t.Fatalf("%d leaves for the session, want 1", rec.left[uint32(id)])
	}
}

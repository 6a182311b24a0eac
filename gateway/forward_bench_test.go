package gateway

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// benchServer is a gateway Server without sockets: the real Router, edge session queues and
// link queues, with nothing draining them but the benchmark (no session writers, no link
// goroutines). It measures the gateway's own cost per forwarded message, apart from KCP and
// TCP.
type benchServer struct {
	s        *Server
	sessions []SessionID
	entity   []wire.EntityID     // by session id
	owner    []raftmeta.ServerID // by session id
	seq      []uint32            // by session id: the last input sent
	links    []*link
	snaps    [][]byte // snaps[t]: a snapshot frame of tick t (built when first needed)
	drained  []byte
}

// benchSnapshotSlots is the entities in each benchmark snapshot (≈ a bot's view in
// sim-tests/gatewaycluster): the frame is a few hundred bytes, as forwarded there.
const benchSnapshotSlots = 30

// newSocketlessServer is a gateway Server without client sockets, a metadata service or
// connections: the edge's sessions are made by hand, the links have no address yet, Run is not
// called (no ticks, so the Router resends nothing by itself).
func newSocketlessServer(tb testing.TB) *Server {
	tb.Helper()
	cfg := DefaultServerConfig()
	cfg.Router.Home = cfg.Home()
	router, err := NewRouter(cfg.Router)
	if err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	met := newServerMetrics(reg)
	edge := &Listener{cfg: cfg.Edge, metrics: NewMetrics(reg), log: quietLog,
		sessions: map[SessionID]*Session{}, perIP: map[string]int{}}
	s := &Server{cfg: cfg, home: cfg.Home(), log: quietLog, edge: edge, met: met,
		ready: make(chan struct{}), router: router, early: map[SessionID]wire.PlayerID{},
		rng: rand.New(rand.NewPCG(1, 2))}
	s.links = newPeerLinks(context.Background(), s.home, 1, met, quietLog)
	s.links.onMessage, s.links.onReset = s.peer, s.linkReset
	return s
}

func newBenchServer(b *testing.B, n int) *benchServer {
	b.Helper()
	s := newSocketlessServer(b)
	bs := &benchServer{s: s, entity: make([]wire.EntityID, n+1), owner: make([]raftmeta.ServerID, n+1),
		seq: make([]uint32, n+1), snaps: make([][]byte, 1)}
	// Two cell servers (testMap: west 1, east 2), linked without connections.
	for _, id := range []raftmeta.ServerID{srvA, srvB} {
		l := &link{to: id, wake: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
		l.ctx, l.cancel = context.WithCancel(context.Background())
		s.links.links[id] = l
		bs.links = append(bs.links, l)
	}
	mp := testMap(1, srvA, srvB)
	mp.World.Epoch = time.Now().Add(-time.Hour).UnixNano()
	s.epoch.Store(mp.World.Epoch)
	s.mu.Lock()
	s.mp = mp
	s.router.SetMap(mp, s.tickAt(time.Now()))
	s.drain(nil, time.Time{}, time.Time{})
	s.mu.Unlock()

	for i := 1; i <= n; i++ {
		id := SessionID(i)
		s.edge.sessions[id] = newSession(s.edge, id, transport{name: "kcp", ip: "127.0.0.1"})
		bs.sessions = append(bs.sessions, id)
		s.Open(id, 1)
	}
	// Every session's join answered: the welcome from the owner of its spawn point.
	for _, l := range bs.links {
		q, _ := l.take(nil)
		r := wire.NewPeerReader(bytes.NewReader(q))
		for {
			t, payload, err := r.Next()
			if err != nil {
				break
			}
			if t != wire.PeerJoin {
				b.Fatalf("%v queued at open, want joins", t)
			}
			j, err := wire.DecodeJoinMsg(payload)
			if err != nil {
				b.Fatal(err)
			}
			id, e := SessionID(j.Client), wire.EntityID(1000+j.Client)
			bs.entity[id], bs.owner[id] = e, l.to
			s.peer(l.to, &wire.FrameMsg{Client: j.Client, Entity: e, AuthEpoch: 1, X: j.X, Z: j.Z, Frame: gwWelcome(e)}, time.Now())
		}
	}
	if st := s.router.Stats(); st.Joins != n {
		b.Fatalf("%d joins for %d sessions", st.Joins, n)
	}
	bs.drainQueues()
	return bs
}

// drainQueues empties the link queues as the links' writers do (the sessions' snapshot slots
// are overwritten in place; their control queues get nothing in these benchmarks).
func (bs *benchServer) drainQueues() {
	for _, l := range bs.links {
		bs.drained, _ = l.take(bs.drained)
	}
}

// snapshot returns a snapshot frame of tick t acknowledging input seq (it is a view of
// benchSnapshotSlots moving entities; the gateway reads only its header).
func (bs *benchServer) snapshot(b *testing.B, t wire.Tick) []byte {
	for wire.Tick(len(bs.snaps)) <= t {
		tick := wire.Tick(len(bs.snaps))
		cur := make([]wire.ViewSlot, benchSnapshotSlots)
		for i := range cur {
			cur[i] = wire.ViewSlot{ID: wire.EntityID(1000 + i), State: wire.EntityState{
				X: int32(i*400) + int32(tick), Z: int32(i * 300), VX: 3, VZ: -2, Yaw: uint16(i), Kind: 4}}
		}
		f, err := wire.AppendSnapshot(nil, wire.SnapshotHeader{ServerTick: tick, SlotCount: len(cur)}, nil, cur)
		if err != nil {
			b.Fatal(err)
		}
		bs.snaps = append(bs.snaps, f)
	}
	return bs.snaps[t]
}

// BenchmarkServerForward is the gateway process's own cost per forwarded message (no sockets,
// no KCP): Server event → Router → peer messages encoded into the link queues, client frames
// copied into the sessions' queues, the forwarding metrics observed. ns/op and allocs/op are
// per message, over 1000 sessions round-robin on two cell servers, one goroutine (so Server.mu
// is never contended).
//
//   - msg=ack: a client's snapshot ack → an AckMsg queued for the owner (to_server).
//   - msg=snapshot: a FrameMsg from the owner → the snapshot queued for its session
//     (to_client), a frame of benchSnapshotSlots entities.
//   - msg=mix: what a session costs each tick, as in sim-tests/gatewaycluster: a snapshot in
//     (applying its last input), an input out, an ack out; ns/op is per message of the three.
func BenchmarkServerForward(b *testing.B) {
	const sessions = 1000
	const drainEvery = 256 // the link writers' share: swap the queues out every so often
	b.Run("msg=ack", func(b *testing.B) {
		bs := newBenchServer(b, sessions)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			id := bs.sessions[i%sessions]
			bs.s.Ack(id, wire.Tick(1+i/sessions))
			if i%drainEvery == 0 {
				bs.drainQueues()
			}
		}
	})
	b.Run("msg=snapshot", func(b *testing.B) {
		bs := newBenchServer(b, sessions)
		bs.snapshot(b, 64)
		msg := wire.FrameMsg{AuthEpoch: 1} // as the link reader decodes: one reused value
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			id := bs.sessions[i%sessions]
			t := wire.Tick(2 + i/sessions)
			msg.Client, msg.Entity, msg.Frame = uint32(id), bs.entity[id], bs.snapshot(b, t)
			bs.s.peer(bs.owner[id], &msg, time.Now())
			if i%drainEvery == 0 {
				bs.drainQueues()
			}
		}
	})
	b.Run("msg=mix", func(b *testing.B) {
		bs := newBenchServer(b, sessions)
		bs.snapshot(b, 64)
		msg := wire.FrameMsg{AuthEpoch: 1}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			k := i / 3
			id := bs.sessions[k%sessions]
			t := wire.Tick(2 + k/sessions)
			switch i % 3 {
			case 0:
				msg.Client, msg.Entity, msg.LastSeq, msg.Frame = uint32(id), bs.entity[id], bs.seq[id], bs.snapshot(b, t)
				bs.s.peer(bs.owner[id], &msg, time.Now())
			case 1:
				bs.seq[id]++
				bs.s.Input(id, wire.Input{Seq: bs.seq[id], ClientTick: t, MoveX: 100, Yaw: 7})
			case 2:
				bs.s.Ack(id, t)
			}
			if i%drainEvery == 0 {
				bs.drainQueues()
			}
		}
		b.StopTimer()
		if st := bs.s.router.Stats(); st.PendingOverflow != 0 || st.InputsResent != 0 || st.LateSnapshots != 0 {
			b.Fatalf("the traffic is not steady: %+v", st)
		}
	})
}

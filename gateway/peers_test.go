package gateway

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// testLinks is a gateway's peerLinks without a Server: messages are ignored, resets counted.
func testLinks(t *testing.T) (*peerLinks, *serverMetrics, *atomic.Int32) {
	t.Helper()
	met := newServerMetrics(prometheus.NewRegistry())
	links := newPeerLinks(context.Background(), wire.GatewayIDBase+5, 77, met, quietLog)
	var resets atomic.Int32
	links.onMessage = func(raftmeta.ServerID, wire.PeerMessage, time.Time) {}
	links.onReset = func(raftmeta.ServerID) { resets.Add(1) }
	return links, met, &resets
}

func queueLeave(t *testing.T, links *peerLinks, to raftmeta.ServerID, client uint32) {
	t.Helper()
	m := wire.LeaveMsg{Home: wire.GatewayIDBase + 5, Client: client, Entity: wire.EntityID(100 + client)}
	if ok, err := links.sendMsg(to, &m); !ok || err != nil {
		t.Fatalf("leave %d for server %d not queued: %v", client, to, err)
	}
}

// takeDown breaks the connection of cell's link and keeps it down (the server hangs up on
// redials) until cell.pause(false).
func takeDown(t *testing.T, links *peerLinks, cell *fakeCell, fc *fakeConn) {
	t.Helper()
	cell.pause(true)
	fc.c.Close()
	links.mu.Lock()
	l := links.links[cell.id]
	links.mu.Unlock()
	eventually(t, "the link down", func() bool { return !l.up.Load() })
}

// TestPeerLinkServerRestart: frames queued while a link is down are delivered when it is back
// to the same server process; if the server restarted meanwhile (another incarnation in its
// hello) they are discarded (dropped, reason server_restarted) and the link is reset, so the
// Router resends what matters to the new process. Frames queued after it is up go out.
func TestPeerLinkServerRestart(t *testing.T) {
	cell := newFakeCell(t, 7)
	links, met, resets := testLinks(t)
	defer links.close()
	restartDrops := met.linkDropped.WithLabelValues("server_restarted")

	links.setServers([]raftmeta.Server{{ID: 7, Addr: cell.addr()}})
	fc := cell.conn()
	eventually(t, "the link up", func() bool { return links.up() == 1 })

	// Down and back to the same process: the queued leave is delivered.
	takeDown(t, links, cell, fc)
	queueLeave(t, links, 7, 1)
	cell.pause(false)
	fc = cell.conn()
	if l := expectPeer[wire.LeaveMsg](fc); l.Client != 1 {
		t.Fatalf("leave %+v, want client 1's", l)
	}
	eventually(t, "one reset (the break)", func() bool { return resets.Load() == 1 })

	// Down, and the server restarts meanwhile: what was queued is for its previous process.
	takeDown(t, links, cell, fc)
	eventually(t, "the break reset", func() bool { return resets.Load() == 2 })
	queueLeave(t, links, 7, 2)
	queueLeave(t, links, 7, 3)
	cell.setIncarnation(2)
	cell.pause(false)
	fc = cell.conn()
	eventually(t, "the link up", func() bool { return links.up() == 1 })
	eventually(t, "the restart reset", func() bool { return resets.Load() == 3 })
	if n := testutil.ToFloat64(restartDrops); n != 2 {
		t.Fatalf("server_restarted drops = %v, want 2", n)
	}
	queueLeave(t, links, 7, 4)
	if l := expectPeer[wire.LeaveMsg](fc); l.Client != 4 {
		t.Fatalf("leave %+v delivered to the restarted server, want client 4's", l)
	}

	// Down and back to that (new) process: nothing discarded.
	takeDown(t, links, cell, fc)
	queueLeave(t, links, 7, 5)
	cell.pause(false)
	fc = cell.conn()
	if l := expectPeer[wire.LeaveMsg](fc); l.Client != 5 {
		t.Fatalf("leave %+v, want client 5's", l)
	}
	if n := testutil.ToFloat64(restartDrops); n != 2 {
		t.Fatalf("server_restarted drops = %v, want still 2", n)
	}
}

// collectLeaves counts the leaves a fake connection receives, by client.
func collectLeaves(fc *fakeConn) (func() map[uint32]int, func()) {
	var mu sync.Mutex
	got := map[uint32]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-fc.msgs:
				if l, ok := m.(*wire.LeaveMsg); ok {
					mu.Lock()
					got[l.Client]++
					mu.Unlock()
				}
			case <-stop:
				return
			}
		}
	}()
	return func() map[uint32]int {
			mu.Lock()
			defer mu.Unlock()
			return maps.Clone(got)
		}, func() {
			close(stop)
			<-done
		}
}

// TestPeerLinksCloseFlushes: at shutdown a connected link writes its whole queue, and a link
// that is down (backing off after failed dials) tries again at once and delivers its queue,
// all within linkFlushOnClose (best effort).
func TestPeerLinksCloseFlushes(t *testing.T) {
	up, down := newFakeCell(t, 7), newFakeCell(t, 8)
	links, met, _ := testLinks(t)
	links.setServers([]raftmeta.Server{{ID: 7, Addr: up.addr()}, {ID: 8, Addr: down.addr()}})
	fcUp := up.conn()
	fcDown := down.conn()
	eventually(t, "both links up", func() bool { return links.up() == 2 })

	// Server 8's link goes down and backs off (50, 100, 200, 400, 800 ms) while its server
	// hangs up on every dial.
	takeDown(t, links, down, fcDown)
	helloErrs := met.linkErrors.WithLabelValues("hello")
	eventuallyWithin(t, 10*time.Second, "five failed dials", func() bool { return testutil.ToFloat64(helloErrs) >= 5 })
	const queuedDown = 5
	for i := range queuedDown {
		queueLeave(t, links, 8, uint32(1+i))
	}
	down.pause(false)

	gotUp, stopUp := collectLeaves(fcUp)
	defer stopUp()
	const queuedUp = 3000
	for i := range queuedUp {
		queueLeave(t, links, 7, uint32(1+i))
	}
	start := time.Now()
	links.close()
	if d := time.Since(start); d > linkFlushOnClose+time.Second {
		t.Fatalf("close took %v", d)
	}
	eventually(t, "every leave queued for the connected server delivered", func() bool { return len(gotUp()) == queuedUp })
	for c, n := range gotUp() {
		if n != 1 {
			t.Fatalf("leave %d delivered %d times", c, n)
		}
	}

	fc := down.conn() // the redial at shutdown
	for i := range queuedDown {
		if l := expectPeer[wire.LeaveMsg](fc); l.Client != uint32(1+i) {
			t.Fatalf("leave %+v, want client %d's", l, 1+i)
		}
	}
	if ok, _ := links.sendMsg(7, &wire.LeaveMsg{Home: wire.GatewayIDBase + 5, Client: 1, Entity: 1}); ok {
		t.Fatal("a frame queued after close")
	}
}

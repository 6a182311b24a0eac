package cellserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meridian-mmo/meridian/raftmeta"
)

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterSelfFencing: a cell server registered with a real one-node metadata service
// simulates while it can renew its lease; when the metadata service goes away it stops
// simulating before its lease ends (meridian_cell_fenced = 1) and the tick count stalls.
// startMetaNode runs a one-node metadata service (no partitioner) over a 256 m world until it
// leads with the world's one cell; the test closes it when it ends (closing it twice is fine).
func startMetaNode(t *testing.T, log *slog.Logger) *raftmeta.Node {
	t.Helper()
	mcfg := raftmeta.DefaultConfig()
	mcfg.ID, mcfg.Bootstrap = 1, true
	mcfg.RaftAddr, mcfg.HTTPAddr, mcfg.DataDir = freeTCP(t), freeTCP(t), t.TempDir()
	mcfg.World = raftmeta.World{Max: [2]float64{256, 256}}
	mcfg.MinCellSize = 16
	mcfg.Planner = nil
	node, err := raftmeta.Start(mcfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	eventually(t, 10*time.Second, "the meta node leads with a world", func() bool {
		return node.IsLeader() && len(node.FSM().Map().Cells) > 0
	})
	return node
}

func TestClusterSelfFencing(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := startMetaNode(t, log)

	cfg := DefaultClusterConfig(7, 1)
	cfg.Meta = []string{node.HTTPAddr()}
	cfg.Edge.Listen = "127.0.0.1:0"
	cfg.LeaseTTL, cfg.HeartbeatInterval, cfg.FenceMargin = 900*time.Millisecond, 150*time.Millisecond, 300*time.Millisecond
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := NewCluster(ctx, cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	eventually(t, 10*time.Second, "the server owns the world's cell and ticks", func() bool {
		m := node.FSM().Map()
		return len(m.Cells) == 1 && m.Cells[0].Owner == 7 && c.Tick() > 0
	})
	if v := testutil.ToFloat64(c.cm.fenced); v != 0 {
		t.Fatalf("fenced = %v while renewing", v)
	}
	time.Sleep(500 * time.Millisecond) // several renewals: still simulating
	if testutil.ToFloat64(c.cm.fenceEvents) != 0 {
		t.Fatal("fenced while the metadata service was up")
	}

	lostAt := time.Now()
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the server fences itself", func() bool { return testutil.ToFloat64(c.cm.fenced) == 1 })
	fencedAfter := time.Since(lostAt)
	// The lease ran at most LeaseTTL from the last renewal sent before the loss; fencing must
	// come FenceMargin before that (a little scheduling slack aside, it cannot come later than
	// the lease itself).
	if fencedAfter > cfg.LeaseTTL+100*time.Millisecond {
		t.Fatalf("fenced %v after the last possible renewal; the lease was %v", fencedAfter, cfg.LeaseTTL)
	}
	h1, err := c.Holdings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	h2, err := c.Holdings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !h1.Fenced || !h2.Fenced || h2.Tick <= h1.Tick {
		t.Fatalf("holdings %+v then %+v: want fenced, ticks going on", h1, h2)
	}
	if h2.WorldTick != h1.WorldTick || h1.WorldTick >= h1.Tick {
		t.Fatalf("the World stepped while fenced: world tick %d then %d (driver ticks %d, %d)", h1.WorldTick, h2.WorldTick, h1.Tick, h2.Tick)
	}
	cancel()
	if err := <-done; err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Run: %v", err)
	}
}

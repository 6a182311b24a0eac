package cellcluster

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
	"github.com/meridian-mmo/meridian/sim-tests/procs"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
	"github.com/meridian-mmo/meridian/wire"
)

var logDir = flag.String("cellcluster.logs", "", "keep the processes' logs and data in this directory (default: a temporary one, removed after the test)")

// cell is one `meridian cell` process.
type cell struct {
	*procs.Process
	id raftmeta.ServerID
}

// startCells starts n cell servers in cluster mode. Without --listen they have no client
// edge: clients come through the gateway.
func startCells(t *testing.T, launch procs.Launcher, n int, meta []string) []*cell {
	var cells []*cell
	for i := 1; i <= n; i++ {
		cells = append(cells, &cell{id: raftmeta.ServerID(i), Process: launch.StartCell(t, i, meta, "--capacity", "1000")})
	}
	return cells
}

// waitFor polls cond every 200 ms until it holds, or fails the test with cond's last word
// after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	procs.WaitFor(t, within, 200*time.Millisecond, what, cond)
}

// TestHotspotSplitAndServerKill: a crowd of 150 bots, all connected through one gateway,
// gathers; the partitioner splits the map and spreads the load over the three cell servers; the
// busiest cell server is SIGKILLed and its cells go to the others. The gateway keeps every
// session open and re-creates the dead server's entities on the new owners (a resume): no bot
// is disconnected, and at the end every bot's entity is real on exactly one live server and
// nothing else is held anywhere.
func TestHotspotSplitAndServerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 7 processes")
	}
	const nBots = 150
	launch := procs.Launcher{Dir: procs.TestDir(t, *logDir), Args: []string{"--log-level", "debug"}, KillAtEnd: true}
	mc := metacluster.StartArgs(t, 3, "--world", "512", "--min-cell-size", "32", "--dead-margin", "1s",
		"--merge-load", "10", "--min-transfer", "3") // thresholds scaled to 150 bots
	meta := raftmeta.NewClient(mc.HTTPAddrs(), nil)
	cells := startCells(t, launch, 3, mc.HTTPAddrs())
	var gw *procs.Process
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			for _, c := range cells {
				procs.LogTails(t, c.Process)
			}
			procs.LogTails(t, gw)
		}
	}()

	var mp *raftmeta.Map
	waitFor(t, 30*time.Second, "3 cell servers registered", procs.CellsAlive(ctx, meta, 3, &mp, func(m *raftmeta.Map) (bool, string) {
		for _, s := range m.Servers {
			if s.ClientAddr != "" {
				t.Fatalf("cell server %d advertises a client edge (%s) though started without --listen", s.ID, s.ClientAddr)
			}
		}
		return true, ""
	}))

	// The gateway, once it routes by this map and is linked to every cell server.
	gw, gwAddr := launch.StartGateway(t, mc.HTTPAddrs())
	waitFor(t, 30*time.Second, "the gateway linked to the 3 cell servers", procs.GatewayLinked(ctx, gw, 3, mp.Version))

	// 150 bots through the gateway, all heading for the world's centre.
	cfg := bots.DefaultConfig(gwAddr, nBots)
	cfg.Behavior = "hotspot:120" // a crowd 240 m across in the 512 m world
	r, err := bots.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("bots: %v", err)
	}
	defer r.Close()
	clients := r.Clients()
	runCtx, stopBots := context.WithCancel(ctx)
	defer stopBots()
	go r.Run(runCtx)

	// The crowd forms; the map splits and the load spreads over at least two servers.
	waitFor(t, 60*time.Second, "the map splits and the load spreads", func() (bool, string) {
		m, err := meta.Map(ctx, raftmeta.ReadOptions{Stale: true})
		if err != nil {
			return false, err.Error()
		}
		mp = m
		loaded := 0
		var loads []string
		for _, s := range m.Servers {
			loads = append(loads, fmt.Sprintf("%d:%d", s.ID, s.Load.Entities))
			if s.Load.Entities >= 20 {
				loaded++
			}
		}
		return len(m.Cells) >= 3 && loaded >= 2, fmt.Sprintf("%d cells, loads %v", len(m.Cells), loads)
	})
	t.Logf("split: %d cells, map version %d", len(mp.Cells), mp.Version)

	// The migration pause so far: ticks the moving entities were not simulated.
	for _, kind := range []string{"migration", "handoff"} {
		var frozen promscrape.Histogram
		for _, c := range cells {
			sc, err := c.Scrape(ctx)
			if err != nil {
				t.Fatal(err)
			}
			frozen = frozen.Add(sc.Histogram("meridian_transfer_frozen_ticks", "kind", kind))
		}
		le0, le1, n := frozen.AtMost(0), frozen.AtMost(1), frozen.Count
		t.Logf("%s: %.0f entities moved; frozen 0 ticks: %.0f, ≤ 1 tick: %.0f", kind, n, le0, le1)
		if kind == "migration" && n == 0 {
			t.Fatal("the split and spread migrated no entity between servers")
		}
	}

	// SIGKILL the server with the most entities.
	if mp, err = meta.Map(ctx, raftmeta.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	var victim *cell
	most := -1
	for _, s := range mp.Servers {
		if s.Load.Entities > most {
			most, victim = s.Load.Entities, cells[s.ID-1]
		}
	}
	var live []*procs.Process
	for _, c := range cells {
		if c != victim {
			live = append(live, c.Process)
		}
	}
	onVictim := -1
	if h, err := victim.Holdings(ctx); err == nil {
		onVictim = len(h.Real)
	}
	gwBefore, err := gw.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resumes0 := gwBefore.Sum("meridian_gateway_resumes_total")
	t.Logf("SIGKILL cell server %d (%d entities in the map's load report, %d real a moment before)", victim.id, most, onVictim)
	killed := time.Now()
	victim.Kill(t)

	// liveEntities samples the live servers one after the other: the servers each entity is
	// real or in flight on, and how many are in flight.
	liveEntities := func() (map[wire.EntityID][]string, int, error) {
		held, err := procs.AskCells(ctx, live)
		if err != nil {
			return nil, 0, err
		}
		return held.RealOrInFlight(), held.InFlightCount(), nil
	}
	// A session the gateway (or the network) ended does not come back: fail at once, with why.
	allConnected := func() {
		t.Helper()
		if tot := r.Totals(); tot.Disconnected != 0 || tot.Connected != nBots {
			t.Fatalf("%d of %d bots connected, %d sessions ended by the gateway or network: %v", tot.Connected, nBots, tot.Disconnected, tot.Ended)
		}
	}

	// The dead server's cells go to the others; the gateway resumes its sessions' entities on
	// the new owners while the bots keep walking. The bot entities missing from the live
	// servers are counted at every sample until none is (the last one has reappeared).
	var reassignedAfter, backAfter time.Duration
	missingFirst, missingMax := -1, 0
	waitFor(t, 30*time.Second, "the dead server's cells reassigned and every bot's entity back on a live server", func() (bool, string) {
		allConnected()
		why := ""
		if backAfter == 0 {
			held, _, err := liveEntities()
			if err != nil {
				return false, err.Error()
			}
			missing := 0
			for _, c := range clients {
				if len(held[c.Entity()]) == 0 {
					missing++
				}
			}
			if missingFirst < 0 {
				missingFirst = missing
			}
			missingMax = max(missingMax, missing)
			if missing == 0 {
				backAfter = time.Since(killed)
			}
			why = fmt.Sprintf("%d bot entities on no live server; ", missing)
		}
		if reassignedAfter == 0 {
			m, err := meta.Map(ctx, raftmeta.ReadOptions{})
			if err != nil {
				return false, why + err.Error()
			}
			for _, s := range m.Servers {
				if s.ID == victim.id && s.Alive {
					return false, why + "the killed server still alive in the map"
				}
			}
			for _, c := range m.Cells {
				if c.Owner == victim.id || c.Owner == 0 {
					return false, why + fmt.Sprintf("cell %d owned by %d", c.ID, c.Owner)
				}
			}
			if len(m.Changes) > 0 {
				return false, why + fmt.Sprintf("%d changes pending", len(m.Changes))
			}
			mp, reassignedAfter = m, time.Since(killed)
		}
		return backAfter > 0, why
	})
	t.Logf("after the SIGKILL: the dead server's cells reassigned within %v (map version %d, %d cells); %d bot entities on no live server at the first sample, %d at most; the last back within %v",
		reassignedAfter.Round(time.Millisecond), mp.Version, len(mp.Cells), missingFirst, missingMax, backAfter.Round(time.Millisecond))

	// Stop every bot where it stands, let handoffs settle, then compare what the live servers
	// hold with the bots: a state counts only when two consecutive rounds of samples agree and
	// nothing is in flight (a migration the partitioner starts between two samples could show
	// an entity on both: see procs.OneCopyEach).
	stopBots()
	for _, c := range clients {
		_, _ = c.SendInput(0, 0, 0, 0)
	}
	oneCopy := procs.OneCopyEach{Bots: map[wire.EntityID]bool{}}
	for _, c := range clients {
		oneCopy.Bots[c.Entity()] = true
	}
	if len(oneCopy.Bots) != nBots {
		t.Fatalf("%d distinct entities for %d bots", len(oneCopy.Bots), nBots)
	}
	waitFor(t, 30*time.Second, "every bot connected and its entity real on exactly one live server", func() (bool, string) {
		allConnected()
		held, inFlight, err := liveEntities()
		if err != nil {
			return false, err.Error()
		}
		return oneCopy.Check(t, held, inFlight)
	})

	allConnected()
	tot := r.Totals()
	gwAfter, err := gw.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resumes := gwAfter.Sum("meridian_gateway_resumes_total") - resumes0
	lost := gwAfter.Sum("meridian_gateway_entities_lost_total")
	switches := gwAfter.Sum("meridian_gateway_route_switches_total")
	if resumes == 0 {
		t.Fatalf("the gateway counted no resume (meridian_gateway_resumes_total) though %d bot entities were on the killed server", missingFirst)
	}
	if lost != 0 {
		t.Errorf("the gateway lost %v entities (meridian_gateway_entities_lost_total)", lost)
	}
	t.Logf("after the kill: %d of %d bots connected (0 disconnected), each real on exactly one of the %d live servers, nothing else held; gateway: %.0f resumes, %.0f route switches in all; the last entity back %v after the SIGKILL",
		tot.Connected, nBots, len(live), resumes, switches, backAfter.Round(time.Millisecond))
}

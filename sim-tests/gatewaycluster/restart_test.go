package gatewaycluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
	"github.com/meridian-mmo/meridian/sim-tests/procs"
	"github.com/meridian-mmo/meridian/wire"
)

// TestCellRestartRestoresEntities: a cell server checkpoints its cells to its local Pebble
// store every 10 ticks. It is SIGKILLed under 40 bots and started again at once with the same
// --data, within its lease, so the map still gives it its cells: it restores every entity from
// its checkpoints (same ids, their sessions, their input sequences), the gateway follows the
// restored copies, and no bot is disconnected or loses its entity.
func TestCellRestartRestoresEntities(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 processes")
	}
	const nBots = 40
	launch := procs.Launcher{Dir: procs.TestDir(t, *logDir)}
	mc := metacluster.StartArgs(t, 3, "--world", strconv.Itoa(world), "--partitioner=false")
	meta := raftmeta.NewClient(mc.HTTPAddrs(), nil)
	args := []string{"cell", "--id", "1", "--meta", strings.Join(mc.HTTPAddrs(), ","),
		"--data", filepath.Join(launch.Dir, "cell1"), "--peer", "127.0.0.1:0", "--checkpoint-every", "10"}
	cell := launch.Start(t, "cell1", args...)
	var gw *procs.Process
	defer func() {
		if t.Failed() {
			procs.LogTails(t, gw, cell)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mp *raftmeta.Map
	waitFor(t, 30*time.Second, "the cell server registered", procs.CellsAlive(ctx, meta, 1, &mp, func(m *raftmeta.Map) (bool, string) {
		return len(m.Cells) == 1 && m.Cells[0].Owner == 1, fmt.Sprintf("cells %+v", m.Cells)
	}))
	gw, gwAddr := launch.StartGateway(t, mc.HTTPAddrs())
	waitFor(t, 30*time.Second, "the gateway linked", procs.GatewayLinked(ctx, gw, 1, mp.Version))

	r, err := bots.Connect(ctx, bots.DefaultConfig(gwAddr, nBots))
	if err != nil {
		t.Fatalf("bots: %v", err)
	}
	defer r.Close()
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(runCtx) }()
	defer func() { stopRun(); <-ran }()
	var want []wire.EntityID
	for _, c := range r.Clients() {
		want = append(want, c.Entity())
	}
	slices.Sort(want)
	time.Sleep(2 * time.Second) // a few checkpoints

	cell.Kill(t)
	cell.Proc.Start(t, append(slices.Clone(args), "--metrics-addr", cell.MetricsAddr)...)
	restarted := time.Now()
	waitFor(t, 30*time.Second, "every bot's entity back on the restarted server", func() (bool, string) {
		h, err := cell.Holdings(ctx)
		if err != nil {
			return false, err.Error()
		}
		missing := 0
		for _, e := range want {
			if _, ok := slices.BinarySearch(h.Real, e); !ok {
				missing++
			}
		}
		return missing == 0 && len(h.Real) == nBots, fmt.Sprintf("%d of %d missing, %d real", missing, nBots, len(h.Real))
	})
	t.Logf("every entity back %v after the restart", time.Since(restarted).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // the bots play on
	stopRun()
	<-ran

	sc, err := cell.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restored := sc.Sum("meridian_checkpoint_restored_entities_total")
	written := sc.Sum("meridian_checkpoints_total", "result", "written")
	gs, err := gw.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resumes := gs.Sum("meridian_gateway_resumes_total")
	tot := r.Totals()
	t.Logf("restored %v entities from the checkpoints; %v checkpoints written since; gateway resumes %v; bots %+v", restored, written, resumes, tot)
	if restored != nBots || resumes != 0 {
		t.Fatalf("restored %v of %d entities from the checkpoints, %v re-created by the gateway: want all from the checkpoints", restored, nBots, resumes)
	}
	if tot.Disconnected != 0 || tot.Connected != nBots {
		t.Fatalf("bots: %d connected, %d disconnected (%v)", tot.Connected, tot.Disconnected, tot.Ended)
	}
	if written == 0 {
		t.Fatal("the restarted server wrote no checkpoint")
	}
}

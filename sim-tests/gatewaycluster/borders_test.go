package gatewaycluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
	"github.com/meridian-mmo/meridian/sim-tests/procs"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
	"github.com/meridian-mmo/meridian/wire"
)

var (
	duration = flag.Duration("gateway.duration", 60*time.Second, "how long the bots patrol in TestGatewayBorders")
	nBots    = flag.Int("gateway.bots", 200, "bots in TestGatewayBorders")
	logDir   = flag.String("gateway.logs", "", "keep the processes' logs and data in this directory (default: a temporary one, removed after the test)")
)

const (
	world = 200.0 // side of the square world, metres; the border is x = world/2
	// ghostDistance is the cell servers' ghost distance (cellserver.DefaultMemberConfig): an
	// entity this near the border is ghosted on the other server.
	ghostDistance = 60.0
	// ghostRecordSize is the bytes of one entity in a Ghosts message (docs/wire.md §12.3.1).
	ghostRecordSize = 70
)

// waitFor polls cond every 100 ms until it holds, or fails the test with cond's last word
// after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	procs.WaitFor(t, within, 100*time.Millisecond, what, cond)
}

// Measurements is what TestGatewayBorders measured (one JSON line appended to the file named
// by $MERIDIAN_MEASURE_OUT; a quantile of a histogram without observations is −1 there).
type Measurements struct {
	Bots      int     `json:"bots"`
	Seconds   float64 `json:"duration_s"`
	Handoffs  float64 `json:"handoffs"`
	Snapshots uint64  `json:"snapshots"`
	// Handoff latency: ticks from crossing until the new owner simulates the entity
	// (meridian_transfer_frozen_ticks{kind="handoff"}), bucket bounds: p50 ≤ x, p99 ≤ y.
	HandoffTicksP50  float64 `json:"handoff_frozen_ticks_p50"`
	HandoffTicksP99  float64 `json:"handoff_frozen_ticks_p99"`
	HandoffTicksMax  float64 `json:"handoff_frozen_ticks_max"`
	HandoffWithin1   float64 `json:"handoff_within_1_tick"` // fraction frozen ≤ 1 tick
	HandoffMeanTicks float64 `json:"handoff_frozen_ticks_mean"`
	// The gateway's added latency, seconds (meridian_gateway_forward_seconds by direction).
	ForwardToClientP50 float64 `json:"gateway_forward_to_client_p50_s"`
	ForwardToClientP99 float64 `json:"gateway_forward_to_client_p99_s"`
	ForwardToServerP50 float64 `json:"gateway_forward_to_server_p50_s"`
	ForwardToServerP99 float64 `json:"gateway_forward_to_server_p99_s"`
	// Gateway CPU: cores busy per 1000 sessions (process_cpu_seconds_total over the run).
	GatewayCPUSeconds      float64 `json:"gateway_cpu_s"`
	GatewayCoresPer1000    float64 `json:"gateway_cores_per_1000_sessions"`
	CellCPUSeconds         float64 `json:"cell_cpu_s"`
	GhostBytes             float64 `json:"ghost_bytes"`
	MeanBorderEntities     float64 `json:"mean_border_entities"`
	GhostBytesPerEntitySec float64 `json:"ghost_bytes_per_border_entity_s"`
	InteractionsSent       uint64  `json:"interactions_sent"`
	InteractionsReceived   uint64  `json:"interactions_received"`
	RouteSwitches          float64 `json:"gateway_route_switches"`
	InputsResent           float64 `json:"gateway_inputs_resent"`
}

// TestGatewayBorders: 200 bots patrol across the border between two cell servers for a
// minute, all through one gateway, chatting to each other. No player notices a border: no
// reconnect, no entity flickering in and out of a view, ticks only forward, every snapshot
// decodes, every input and interaction is acknowledged, every chat arrives exactly once. At the
// end every bot's entity is real on exactly one server, nothing else is held, no input sequence
// was skipped, and hundreds of handoffs happened. The test logs (and writes to
// $MERIDIAN_MEASURE_OUT) the handoff pause, the gateway's added latency and CPU, and the ghost
// traffic per border entity.
func TestGatewayBorders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	launch := procs.Launcher{Dir: procs.TestDir(t, *logDir)}
	mc := metacluster.StartArgs(t, 3, "--world", strconv.Itoa(world), "--partitioner=false")
	meta := raftmeta.NewClient(mc.HTTPAddrs(), nil)
	var cells []*procs.Process
	for i := 1; i <= 2; i++ {
		cells = append(cells, launch.StartCell(t, i, mc.HTTPAddrs(), "--listen", "127.0.0.1:0"))
	}
	var gw *procs.Process
	defer func() {
		if t.Failed() {
			procs.LogTails(t, append([]*procs.Process{gw}, cells...)...)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), *duration+2*time.Minute)
	defer cancel()

	// Both cell servers registered, the world cell owned by one of them.
	var mp *raftmeta.Map
	waitFor(t, 30*time.Second, "2 cell servers registered", procs.CellsAlive(ctx, meta, 2, &mp, func(m *raftmeta.Map) (bool, string) {
		return len(m.Cells) == 1 && m.Cells[0].Owner != 0, fmt.Sprintf("cells %+v", m.Cells)
	}))
	// Split the world at x = centre; the high half goes to the other server.
	whole := mp.Cells[0]
	other := raftmeta.ServerID(1)
	if whole.Owner == 1 {
		other = 2
	}
	if _, err := meta.Split(ctx, raftmeta.Split{Cell: whole.ID, Epoch: whole.Epoch, Axis: raftmeta.AxisX, At: world / 2, NewOwner: other}); err != nil {
		t.Fatalf("split: %v", err)
	}
	waitFor(t, 30*time.Second, "the split and move committed", func() (bool, string) {
		var err error
		if mp, err = meta.Map(ctx, raftmeta.ReadOptions{}); err != nil {
			return false, err.Error()
		}
		owners := map[raftmeta.ServerID]bool{}
		for _, c := range mp.Cells {
			owners[c.Owner] = true
		}
		return len(mp.Cells) == 2 && len(mp.Changes) == 0 && len(owners) == 2 && !owners[0],
			fmt.Sprintf("cells %+v, %d changes pending", mp.Cells, len(mp.Changes))
	})
	t.Logf("map version %d: cells %+v", mp.Version, mp.Cells)

	// The gateway, once it routes by this map and is linked to both servers.
	gw, gwAddr := launch.StartGateway(t, mc.HTTPAddrs())
	waitFor(t, 30*time.Second, "the gateway linked to both cell servers", procs.GatewayLinked(ctx, gw, 2, mp.Version))

	cfg := bots.DefaultConfig(gwAddr, *nBots)
	cfg.Behavior = "patrol"
	cfg.InteractEvery = 2 * time.Second
	connectStart := time.Now()
	r, err := bots.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("bots: %v", err)
	}
	defer r.Close()
	t.Logf("%d bots connected through the gateway in %v", *nBots, time.Since(connectStart).Round(time.Millisecond))

	scrapeAll := func() (g promscrape.Scrape, c []promscrape.Scrape) {
		t.Helper()
		var err error
		if g, err = gw.Scrape(ctx); err != nil {
			t.Fatal(err)
		}
		for _, p := range cells {
			sc, err := p.Scrape(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c = append(c, sc)
		}
		return g, c
	}
	gw0, cells0 := scrapeAll()
	runStart := time.Now()
	runCtx, stopRun := context.WithTimeout(ctx, *duration)
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(runCtx) }()

	// Once a second: how many bots are within the ghost distance of the border (the ghosted
	// entities), and a progress line every 10 s.
	var borderSum, borderSamples float64
	sec := time.NewTicker(time.Second)
sampling:
	for {
		select {
		case <-ran:
			break sampling
		case <-sec.C:
		}
		n := 0
		for _, c := range r.Clients() {
			if self, ok := c.Self(); ok && math.Abs(wire.DequantisePos(self.X)-world/2) <= ghostDistance {
				n++
			}
		}
		borderSum += float64(n)
		borderSamples++
		if el := time.Since(runStart); int(el.Seconds())%10 == 0 {
			tot := r.Totals()
			t.Logf("t=%2.0fs: %d/%d connected, %d near the border, %d flickers, %d tick regressions, %d baseline misses, %d/%d interactions received",
				el.Seconds(), tot.Connected, tot.Bots, n, tot.Flickers, tot.TickRegressions, tot.BaselineMisses, tot.InteractionsReceived, tot.InteractionsSent)
		}
	}
	sec.Stop()
	stopRun()
	elapsed := time.Since(runStart)
	gw1, cells1 := scrapeAll()

	// Stop every bot where it stands; let the last inputs and chats arrive.
	for _, c := range r.Clients() {
		_, _ = c.SendInput(0, 0, 0, 0)
	}
	if !r.Settle(ctx, 5*time.Second) {
		t.Errorf("inputs still unacknowledged 5 s after the bots stopped: %d", r.Totals().InputsUnacked)
	}
	tot := r.Totals()
	for deadline := time.Now().Add(5 * time.Second); tot.InteractionsReceived < tot.InteractionsSent && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		tot = r.Totals()
	}
	t.Logf("bots: %+v", tot)

	// Every bot's entity is real on exactly one server and nothing else is held (in two agreeing
	// rounds of samples with nothing in flight: see procs.OneCopyEach).
	oneCopy := procs.OneCopyEach{Bots: map[wire.EntityID]bool{}}
	for _, c := range r.Clients() {
		oneCopy.Bots[c.Entity()] = true
	}
	waitFor(t, 15*time.Second, "every bot's entity real on exactly one server", func() (bool, string) {
		held, err := procs.AskCells(ctx, cells)
		if err != nil {
			return false, err.Error()
		}
		return oneCopy.Check(t, held.Real, held.InFlightCount())
	})
	_, cellsEnd := scrapeAll()

	// What a player would notice.
	if tot.Disconnected != 0 || tot.Connected != *nBots {
		t.Errorf("%d of %d bots connected, %d sessions ended by the server or network: %v", tot.Connected, *nBots, tot.Disconnected, tot.Ended)
	}
	if tot.Flickers != 0 || tot.TickRegressions != 0 || tot.BaselineMisses != 0 || tot.DecodeErrors != 0 || tot.AckRegressions != 0 {
		t.Errorf("seams: %d flickers, %d tick regressions, %d baseline misses, %d decode errors, %d acknowledgements backwards",
			tot.Flickers, tot.TickRegressions, tot.BaselineMisses, tot.DecodeErrors, tot.AckRegressions)
	}
	if tot.Flickers != 0 {
		logFlickers(t, r)
	}
	if tot.InputsUnacked != 0 || tot.SendErrors != 0 {
		t.Errorf("%d input sequences never acknowledged, %d sends failed", tot.InputsUnacked, tot.SendErrors)
	}
	if tot.InteractionsSent == 0 || tot.InteractionsReceived != tot.InteractionsSent || tot.DuplicateInteractions != 0 {
		t.Errorf("interactions: %d sent, %d received (%d duplicates); every target is a live bot, so each must arrive once",
			tot.InteractionsSent, tot.InteractionsReceived, tot.DuplicateInteractions)
	}
	// The cluster's side.
	skipped, handoffs := 0.0, 0.0
	for i := range cells {
		skipped += cellsEnd[i].Sum("meridian_input_seqs_skipped_total")
		handoffs += cells1[i].Sum("meridian_handoffs_total", "direction", "in") - cells0[i].Sum("meridian_handoffs_total", "direction", "in")
	}
	if skipped != 0 {
		t.Errorf("the cell servers skipped %v input sequences (meridian_input_seqs_skipped_total)", skipped)
	}
	// A patrolling bot crosses every 5–12 s once it has walked in: 200 bots cross well over
	// 300 times a minute (≈ 1 400 measured); shorter or smaller runs scale the bar.
	minHandoffs := 300 * elapsed.Seconds() / 60 * float64(*nBots) / 200
	if handoffs < minHandoffs {
		t.Errorf("%v handoffs in %v, want ≥ %.0f", handoffs, elapsed.Round(time.Second), minHandoffs)
	}

	// The measurements.
	m := Measurements{Bots: *nBots, Seconds: elapsed.Seconds(), Handoffs: handoffs, Snapshots: tot.SnapshotsReceived,
		InteractionsSent: tot.InteractionsSent, InteractionsReceived: tot.InteractionsReceived}
	var frozen promscrape.Histogram
	for i := range cells {
		h := cells1[i].Histogram("meridian_transfer_frozen_ticks", "kind", "handoff").Sub(cells0[i].Histogram("meridian_transfer_frozen_ticks", "kind", "handoff"))
		frozen = frozen.Add(h)
		m.CellCPUSeconds += cells1[i].Sum("process_cpu_seconds_total") - cells0[i].Sum("process_cpu_seconds_total")
		for _, typ := range []string{"ghosts", "ghost-gone"} {
			m.GhostBytes += cells1[i].Sum("meridian_peer_bytes_sent_total", "type", typ) - cells0[i].Sum("meridian_peer_bytes_sent_total", "type", typ)
		}
	}
	for i, p := range cells {
		ticks := cells1[i].Sum("meridian_tick") - cells0[i].Sum("meridian_tick")
		g := cells1[i].Sum("meridian_peer_bytes_sent_total", "type", "ghosts") - cells0[i].Sum("meridian_peer_bytes_sent_total", "type", "ghosts")
		gg := cells1[i].Sum("meridian_peer_bytes_sent_total", "type", "ghost-gone") - cells0[i].Sum("meridian_peer_bytes_sent_total", "type", "ghost-gone")
		t.Logf("%s: %.0f ticks, %.0f bytes of ghosts (%.0f a tick, %.1f fixed-layout records of %d bytes), %.0f of ghost-gone; %.0f entities real at the end",
			p.Name, ticks, g, g/ticks, g/ticks/ghostRecordSize, ghostRecordSize, gg, cellsEnd[i].Sum("meridian_entities"))
	}
	m.HandoffTicksP50, m.HandoffTicksP99, m.HandoffTicksMax = frozen.Bound(0.5), frozen.Bound(0.99), frozen.Bound(1)
	m.HandoffWithin1 = frozen.Fraction(1)
	if frozen.Count > 0 {
		m.HandoffMeanTicks = frozen.Sum / frozen.Count
	}
	fwd := func(dir string) promscrape.Histogram {
		return gw1.Histogram("meridian_gateway_forward_seconds", "direction", dir).Sub(gw0.Histogram("meridian_gateway_forward_seconds", "direction", dir))
	}
	toClient, toServer := fwd("to_client"), fwd("to_server")
	m.ForwardToClientP50, m.ForwardToClientP99 = toClient.Quantile(0.5), toClient.Quantile(0.99)
	m.ForwardToServerP50, m.ForwardToServerP99 = toServer.Quantile(0.5), toServer.Quantile(0.99)
	m.GatewayCPUSeconds = gw1.Sum("process_cpu_seconds_total") - gw0.Sum("process_cpu_seconds_total")
	m.GatewayCoresPer1000 = m.GatewayCPUSeconds / m.Seconds / (float64(*nBots) / 1000)
	m.RouteSwitches = gw1.Sum("meridian_gateway_route_switches_total") - gw0.Sum("meridian_gateway_route_switches_total")
	m.InputsResent = gw1.Sum("meridian_gateway_inputs_resent_total") - gw0.Sum("meridian_gateway_inputs_resent_total")
	if borderSamples > 0 {
		m.MeanBorderEntities = borderSum / borderSamples
	}
	if m.MeanBorderEntities > 0 {
		m.GhostBytesPerEntitySec = m.GhostBytes / m.Seconds / m.MeanBorderEntities
	}
	t.Logf("handoffs: %.0f in %.0fs (%.0f gateway route switches, %.0f inputs resent); frozen ticks p50 ≤ %v, p99 ≤ %v, max ≤ %v, mean %.2f, %.1f%% within 1 tick",
		m.Handoffs, m.Seconds, m.RouteSwitches, m.InputsResent, m.HandoffTicksP50, m.HandoffTicksP99, m.HandoffTicksMax, m.HandoffMeanTicks, 100*m.HandoffWithin1)
	t.Logf("gateway added latency: to clients p50 %s p99 %s (%.0f frames); to servers p50 %s p99 %s (%.0f messages)",
		us(m.ForwardToClientP50), us(m.ForwardToClientP99), toClient.Count, us(m.ForwardToServerP50), us(m.ForwardToServerP99), toServer.Count)
	t.Logf("gateway CPU: %.2f s over %.0f s for %d sessions = %.3f cores per 1000 sessions (cell servers together: %.2f s)",
		m.GatewayCPUSeconds, m.Seconds, *nBots, m.GatewayCoresPer1000, m.CellCPUSeconds)
	t.Logf("ghost traffic: %.0f bytes (ghosts + ghost-gone, both servers) over %.0f s for %.1f entities within %.0f m of the border on average = %.0f bytes/s per border entity",
		m.GhostBytes, m.Seconds, m.MeanBorderEntities, ghostDistance, m.GhostBytesPerEntitySec)
	t.Logf("interactions: %d sent, %d received", m.InteractionsSent, m.InteractionsReceived)
	if out := os.Getenv("MERIDIAN_MEASURE_OUT"); out != "" {
		for _, f := range []*float64{&m.HandoffTicksP50, &m.HandoffTicksP99, &m.HandoffTicksMax, &m.HandoffWithin1,
			&m.ForwardToClientP50, &m.ForwardToClientP99, &m.ForwardToServerP50, &m.ForwardToServerP99} {
			*f = finite(*f)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write(append(b, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// us formats seconds as microseconds.
func us(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return strconv.FormatFloat(s*1e6, 'f', 0, 64) + "µs"
}

// finite returns x, or −1 for NaN and infinities (no observations), which JSON cannot carry.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return -1
	}
	return x
}

// logFlickers describes the flickers the bots recorded: who saw which entity vanish, for how
// long, and where both were (which side of the border, how far apart) when it came back.
func logFlickers(t *testing.T, r *bots.Runner) {
	for i, c := range r.Clients() {
		for _, f := range c.RecentFlickers() {
			x, z := wire.DequantisePos(f.At.X), wire.DequantisePos(f.At.Z)
			where := fmt.Sprintf("entity at (%.1f, %.1f)", x, z)
			if f.SelfInView {
				sx, sz := wire.DequantisePos(f.Self.X), wire.DequantisePos(f.Self.Z)
				// Where the viewer was when the entity left, from its velocity (whole units a tick).
				lx := wire.DequantisePos(f.Self.X - f.Self.VX*int32(f.Back-f.Left))
				where += fmt.Sprintf(", viewer at (%.1f, %.1f), %.1f m apart; the viewer was at x=%.1f when it left", sx, sz, math.Hypot(x-sx, z-sz), lx)
			} else {
				where += ", the viewer not in its own view"
			}
			self := ""
			if f.Entity == c.Entity() {
				self = " (its own entity)"
			}
			t.Logf("flicker: bot %d (entity %d) lost entity %d%s at tick %d, back at tick %d; %s",
				i, c.Entity(), f.Entity, self, f.Left, f.Back, where)
		}
	}
}

package scenario

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/harness"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
	"github.com/meridian-mmo/meridian/wire"
)

// Options configure one run.
type Options struct {
	Scenario     string
	Seed         uint64
	Bots         int
	Servers      int
	Duration     time.Duration // the scenario's phases; joining comes before
	Partitioning string        // "dynamic" or "static"
	PGURL        string        // "" = Pebble alone
	World        float64       // side of the square world, metres
	Binary       string        // the meridian binary ("" = this process's executable)
	Dir          string        // the cluster's data and logs (required)
	// Progress gets a line a second (nil: none). OnSecond, if set, is called every second with
	// the sample, the map and the phase (the demo draws the map with it).
	Progress io.Writer
	OnSecond func(s Sample, mp *raftmeta.Map, phase string)
	Log      *slog.Logger
}

// DefaultOptions returns a hotspot of 200 bots on 3 servers for 60 s.
func DefaultOptions() Options {
	return Options{Scenario: "hotspot", Seed: 1, Bots: 200, Servers: 3, Duration: 60 * time.Second,
		Partitioning: "dynamic", World: 512}
}

// Validate names the first option out of bounds.
func (o Options) Validate() error {
	switch {
	case o.Bots < 1 || o.Bots > 20000:
		return fmt.Errorf("scenario: Bots (%d) must be in [1, 20000]", o.Bots)
	case o.Servers < 1 || o.Servers > 64:
		return fmt.Errorf("scenario: Servers (%d) must be in [1, 64]", o.Servers)
	case o.Duration < 5*time.Second:
		return fmt.Errorf("scenario: Duration (%v) must be ≥ 5s", o.Duration)
	case o.Partitioning != "dynamic" && o.Partitioning != "static":
		return fmt.Errorf("scenario: Partitioning %q must be dynamic or static", o.Partitioning)
	case !(o.World >= 64 && o.World <= 65536):
		return fmt.Errorf("scenario: World (%v) must be in [64, 65536] metres", o.World)
	case o.Dir == "":
		return errors.New("scenario: Dir must be set")
	}
	_, err := Lookup(o.Scenario)
	return err
}

// tickSeconds is the length of a tick on the cluster's 20 Hz grid.
const tickSeconds = 0.05

// Run starts a local cluster, plays the scenario with the bots, checks the invariants, stops
// everything it started and returns the report (written by WriteReport).
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sc, _ := Lookup(o.Scenario)
	var err error
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The harness picks free ports by binding and releasing them; another process may take one
	// before a child binds it. Such a start is retried with new ports (a fresh directory).
	var cl *harness.Cluster
	for attempt := 1; ; attempt++ {
		dir := o.Dir
		if attempt > 1 {
			dir = filepath.Join(o.Dir, fmt.Sprintf("attempt-%d", attempt))
		}
		cl, err = harness.Start(ctx, harness.Config{Binary: o.Binary, Dir: dir, Cells: o.Servers, World: o.World,
			Partitioning: o.Partitioning, PGURL: o.PGURL, Log: log, MetaArgs: partitionerArgs(o)})
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("scenario: starting the cluster: %w", err)
		}
		log.Warn("a port was taken before a process bound it: starting the cluster again", "err", err)
	}
	defer cl.Close()

	rep := &Report{Scenario: sc.Name, Seed: o.Seed, Bots: o.Bots, Servers: o.Servers,
		DurationS: o.Duration.Seconds(), Partitioning: o.Partitioning, PGURL: o.PGURL != ""}
	first := sc.Phases[0]
	bc := bots.DefaultConfig(cl.GatewayAddr, o.Bots)
	bc.Seed, bc.PlayerBase = o.Seed, 1
	bc.Behavior, bc.InteractEvery, bc.InteractKind = first.Behavior, first.InteractEvery, first.InteractKind
	if sc.FlashJoin {
		bc.DialWorkers = o.Bots
	}
	joinStart := time.Now()
	r, err := bots.Connect(ctx, bc)
	if err != nil {
		return nil, fmt.Errorf("scenario: connecting %d bots: %w", o.Bots, err)
	}
	defer r.Close()
	joined := time.Since(joinStart)
	log.Info("bots connected", "bots", o.Bots, "in", joined.Round(time.Millisecond))

	s := &sampler{cl: cl, r: r, o: o, rep: rep, start: time.Now(), log: log, last: map[string]promscrape.Scrape{},
		first: map[string]promscrape.Scrape{}, planned: map[string]float64{}, cpu0: map[string]float64{}, cpu: map[string]float64{}}
	if err := s.baseline(ctx); err != nil {
		return nil, err
	}
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(runCtx) }()
	stopBots := sync.OnceFunc(func() { stopRun(); <-ran })
	defer stopBots()

	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); s.loop(sampleCtx) }()
	stopSampler := sync.OnceFunc(func() { stopSampling(); <-sampled })
	defer stopSampler()

	// The fault, at its time.
	var faultDone chan struct{}
	if sc.Fault != NoFault {
		faultDone = make(chan struct{})
		at := time.Duration(sc.FaultAt * float64(o.Duration))
		go func() {
			defer close(faultDone)
			select {
			case <-ctx.Done():
				return
			case <-time.After(at):
			}
			s.fault(ctx, sc.Fault)
		}()
	}

	formedAt := 0.0
	for i, ph := range sc.Phases {
		if i > 0 {
			if err := r.SetBehavior(ph.Behavior); err != nil {
				return nil, err
			}
			r.SetInteractEvery(ph.InteractEvery, ph.InteractKind)
		}
		start := s.now()
		s.setPhase(ph.Name)
		if ph.Name == sc.Formed {
			formedAt = start
		}
		s.moment(ctx, ph.Name+" begins")
		d := time.Duration(ph.Share * float64(o.Duration))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
		rep.Phases = append(rep.Phases, Phase{Name: ph.Name, StartS: start, EndS: s.now()})
	}
	s.moment(ctx, "end")
	if faultDone != nil {
		<-faultDone
	}
	stopSampler()
	stopBots()
	// The bots stand still (an entity keeps walking on its last intent), so that the servers'
	// holdings settle, and their last inputs are acknowledged.
	for _, c := range r.Clients() {
		_, _ = c.SendInput(0, 0, 0, 0)
	}
	r.Settle(ctx, 5*time.Second)
	if err := s.finish(ctx, formedAt, joined); err != nil {
		return nil, err
	}
	return rep, nil
}

// partitionerArgs scale the partitioner's absolute thresholds to the crowd, so that a sim of a
// few hundred bots exercises the same splits, shifts and merges as a full world does (its
// defaults are sized for thousands of entities per server).
func partitionerArgs(o Options) []string {
	share := o.Bots / o.Servers
	return []string{
		"--merge-load", strconv.Itoa(max(2, share/8)),
		"--min-transfer", strconv.Itoa(max(2, share/25)),
		// A world-boss crowd is a few tens of metres across: cells must be allowed smaller
		// than that (the default 64 m keeps it in one indivisible cell).
		"--min-cell-size", "16",
	}
}

// sampler measures the cluster every second and keeps what the report needs.
type sampler struct {
	cl    *harness.Cluster
	r     *bots.Runner
	o     Options
	rep   *Report
	start time.Time
	log   *slog.Logger

	mu      sync.Mutex
	phase   string
	first   map[string]promscrape.Scrape // each cell server's scrape when the bots started
	last    map[string]promscrape.Scrape // its latest scrape (a dead server keeps its last)
	prev    map[string]promscrape.Scrape // the scrape before, for per-second figures
	planned map[string]float64           // the highest meridian_meta_planned_ops_total seen, by node and labels
	bytes0  []uint64                     // each bot's bytes received when the bots started
	seams0  bots.Totals                  // the bots' totals when the bots started
	mp      *raftmeta.Map
	// CPU seconds by process name when the bots started (cpu0) and at its latest scrape (cpu);
	// self0 is this process's when the bots started.
	cpu0, cpu map[string]float64
	self0     float64
}

// cpuSeconds is a scrape's process_cpu_seconds_total (-1 if it has none).
func cpuSeconds(sc promscrape.Scrape) float64 {
	for _, x := range sc {
		if x.Name == "process_cpu_seconds_total" {
			return x.Value
		}
	}
	return -1
}

// noteCPU records a process's CPU seconds from a scrape (the caller holds s.mu, or is alone).
func (s *sampler) noteCPU(p *harness.Proc, sc promscrape.Scrape, first bool) {
	v := cpuSeconds(sc)
	if v < 0 {
		return
	}
	if first {
		s.cpu0[p.Name] = v
	}
	s.cpu[p.Name] = v
}

// scrapeCPU scrapes the gateway's and the meta nodes' CPU seconds (the cell servers' come with
// their other figures).
func (s *sampler) scrapeCPU(ctx context.Context, first bool) {
	for _, p := range append([]*harness.Proc{s.cl.Gateway}, s.cl.Metas...) {
		if p == nil || !p.Alive() {
			continue
		}
		if sc, err := p.Scrape(ctx); err == nil {
			s.mu.Lock()
			s.noteCPU(p, sc, first)
			s.mu.Unlock()
		}
	}
}

func (s *sampler) now() float64 { return time.Since(s.start).Seconds() }

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func cellKey(p *harness.Proc) string { return strconv.Itoa(p.ID) }

// baseline records the counters the run's figures are differences from.
func (s *sampler) baseline(ctx context.Context) error {
	for _, c := range s.cl.Cells {
		sc, err := c.Scrape(ctx)
		if err != nil {
			return fmt.Errorf("scenario: scraping %s: %w", c.Name, err)
		}
		s.first[cellKey(c)], s.last[cellKey(c)] = sc, sc
		s.noteCPU(c, sc, true)
	}
	s.prev = maps(s.last)
	s.scrapeCPU(ctx, true)
	s.self0 = selfCPUSeconds()
	for _, c := range s.r.Clients() {
		s.bytes0 = append(s.bytes0, c.Stats().BytesReceived)
	}
	s.seams0 = s.r.Totals()
	return nil
}

func maps(m map[string]promscrape.Scrape) map[string]promscrape.Scrape {
	out := make(map[string]promscrape.Scrape, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *sampler) loop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sample(ctx)
	}
}

// sample takes one second's sample.
func (s *sampler) sample(ctx context.Context) {
	sm := Sample{T: s.now(), Servers: map[string]ServerSample{}, MaxOverMean: -1}
	mp, err := s.cl.Map(ctx)
	if err == nil {
		sm.MapVersion = mp.Version
	}
	cells := map[raftmeta.ServerID]int{}
	if mp != nil {
		for _, c := range mp.Cells {
			cells[c.Owner]++
		}
	}
	var loads []float64
	for _, c := range s.cl.Cells {
		k := cellKey(c)
		ss := ServerSample{Cells: cells[raftmeta.ServerID(c.ID)], Alive: c.Alive(), TickP50MS: -1, TickP99MS: -1}
		if ss.Alive {
			if sc, err := c.Scrape(ctx); err != nil {
				s.log.Debug("scrape failed", "server", c.Name, "err", err)
			} else {
				s.mu.Lock()
				h := sc.Histogram("meridian_tick_duration_seconds").Sub(s.last[k].Histogram("meridian_tick_duration_seconds"))
				s.prev[k], s.last[k] = s.last[k], sc
				s.noteCPU(c, sc, false)
				s.mu.Unlock()
				ss.TickP50MS, ss.TickP99MS = ms(h.Quantile(0.5)), ms(h.Quantile(0.99))
				ss.Entities = int(sc.Sum("meridian_entities"))
				loads = append(loads, float64(ss.Entities))
			}
		}
		sm.Servers[k] = ss
	}
	if len(loads) > 0 {
		sum := 0.0
		for _, l := range loads {
			sum += l
		}
		if mean := sum / float64(len(loads)); mean > 0 {
			sm.MaxOverMean = slices.Max(loads) / mean
		}
	}
	tot := s.r.Totals()
	sm.Bots = tot.Connected
	if g := s.cl.Gateway; g != nil && g.Alive() {
		if sc, err := g.Scrape(ctx); err == nil {
			s.mu.Lock()
			s.noteCPU(g, sc, false)
			s.mu.Unlock()
		}
	}
	for _, m := range s.cl.Metas {
		if !m.Alive() {
			continue
		}
		if sc, err := m.Scrape(ctx); err == nil {
			s.mu.Lock()
			s.noteCPU(m, sc, false)
			for _, x := range sc {
				if x.Name == "meridian_meta_planned_ops_total" {
					key := m.Name + "/" + x.Labels["op"] + "/" + x.Labels["result"]
					s.planned[key] = max(s.planned[key], x.Value)
				}
			}
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	s.rep.Series = append(s.rep.Series, sm)
	s.mp = mp
	phase := s.phase
	s.mu.Unlock()
	if s.o.Progress != nil {
		fmt.Fprintln(s.o.Progress, ProgressLine(sm, phase, mp))
	}
	if s.o.OnSecond != nil {
		s.o.OnSecond(sm, mp, phase)
	}
}

// ms converts seconds to milliseconds; unknown (NaN, or beyond a histogram's largest finite
// bucket) is -1.
func ms(sec float64) float64 {
	if math.IsNaN(sec) || math.IsInf(sec, 0) {
		return -1
	}
	return sec * 1000
}

// ProgressLine is the line a second a person watches.
func ProgressLine(sm Sample, phase string, mp *raftmeta.Map) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.0fs  %-11s bots %-5d", sm.T, phase, sm.Bots)
	ids := make([]string, 0, len(sm.Servers))
	for k := range sm.Servers {
		ids = append(ids, k)
	}
	slices.SortFunc(ids, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	for _, k := range ids {
		ss := sm.Servers[k]
		if !ss.Alive {
			fmt.Fprintf(&b, " | s%s dead", k)
			continue
		}
		fmt.Fprintf(&b, " | s%s %4d ent %2d cells p99 %5.1f ms", k, ss.Entities, ss.Cells, ss.TickP99MS)
	}
	if sm.MaxOverMean >= 0 {
		fmt.Fprintf(&b, " | max/mean %.2f", sm.MaxOverMean)
	}
	if mp != nil {
		fmt.Fprintf(&b, " | map v%d, %d cells", mp.Version, len(mp.Cells))
	}
	return b.String()
}

// moment records the map and the crowd now.
func (s *sampler) moment(ctx context.Context, label string) {
	mp, err := s.cl.Map(ctx)
	if err != nil {
		s.log.Warn("moment without a map", "label", label, "err", err)
		return
	}
	m := Moment{Label: label, T: s.now(), World: [4]float64{mp.World.Min[0], mp.World.Min[1], mp.World.Max[0], mp.World.Max[1]}}
	for _, c := range mp.Cells {
		m.Cells = append(m.Cells, MomentCell{ID: uint64(c.ID), Bounds: [4]float64(c.Bounds), Owner: uint64(c.Owner)})
	}
	for _, c := range s.r.Clients() {
		if st, ok := c.Self(); ok {
			m.Crowd = append(m.Crowd, [2]float64{wire.DequantisePos(st.X), wire.DequantisePos(st.Z)})
		}
	}
	s.mu.Lock()
	s.rep.Moments = append(s.rep.Moments, m)
	s.mu.Unlock()
}

// fault breaks what the scenario says and measures the recovery.
func (s *sampler) fault(ctx context.Context, kind FaultKind) {
	f := Fault{AtS: s.now(), RecoveredS: -1}
	switch kind {
	case KillServer:
		victim, most := -1, -1
		s.mu.Lock()
		if n := len(s.rep.Series); n > 0 {
			for k, ss := range s.rep.Series[n-1].Servers {
				if id, _ := strconv.Atoi(k); ss.Alive && ss.Entities > most {
					victim, most = id, ss.Entities
				}
			}
		}
		s.mu.Unlock()
		if victim < 0 {
			victim = s.cl.Cells[0].ID
		}
		if err := s.cl.KillCell(victim); err != nil {
			f.What = fmt.Sprintf("SIGKILL cell server %d failed: %v", victim, err)
			break
		}
		f.What = fmt.Sprintf("SIGKILL cell server %d (%d entities)", victim, most)
		s.moment(ctx, "cell server killed")
		for ctx.Err() == nil {
			if lost, _, _ := s.holdings(ctx); lost == 0 {
				f.RecoveredS = s.now() - f.AtS
				break
			}
			sleep(ctx, 100*time.Millisecond)
		}
		s.moment(ctx, "recovered")
	case KillLeader:
		commits := func() map[string]float64 {
			out := map[string]float64{}
			for _, m := range s.cl.Metas {
				if m.Alive() {
					if sc, err := m.Scrape(ctx); err == nil {
						out[m.Name] = sc.Sum("meridian_raft_commits_total")
					}
				}
			}
			return out
		}
		before := commits()
		id, err := s.cl.KillLeader(ctx)
		if err != nil {
			f.What = fmt.Sprintf("SIGKILL meta leader failed: %v", err)
			break
		}
		f.What = fmt.Sprintf("SIGKILL meta leader %d", id)
		// Writes are accepted again when a surviving node commits what it proposed as leader
		// (the cell servers' heartbeats are writes, one a second each).
		for ctx.Err() == nil {
			now := commits()
			if slices.ContainsFunc(s.cl.Metas, func(m *harness.Proc) bool { return m.Alive() && now[m.Name] > before[m.Name] }) {
				f.RecoveredS = s.now() - f.AtS
				break
			}
			sleep(ctx, 20*time.Millisecond)
		}
	}
	s.mu.Lock()
	s.rep.Faults = append(s.rep.Faults, f)
	s.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// holdings counts the open sessions' entities no live server holds (lost) and those real on
// more than one (duplicated), with notes on the first few.
func (s *sampler) holdings(ctx context.Context) (lost, dup int, notes []string) {
	real := map[wire.EntityID][]int{}
	inFlight := map[wire.EntityID]bool{}
	for _, c := range s.cl.Cells {
		if !c.Alive() {
			continue
		}
		h, err := s.cl.Holdings(ctx, c)
		if err != nil {
			return -1, -1, []string{fmt.Sprintf("%s: %v", c.Name, err)}
		}
		for _, e := range h.Real {
			real[e] = append(real[e], c.ID)
		}
		for _, e := range h.InFlight {
			inFlight[e] = true
		}
	}
	for i, c := range s.r.Clients() {
		select {
		case <-c.Done():
			continue // its session ended: counted as a reconnect
		default:
		}
		e := c.Entity()
		switch on := real[e]; {
		case len(on) == 0 && !inFlight[e]:
			lost++
			if len(notes) < 5 {
				notes = append(notes, fmt.Sprintf("bot %d: entity %d is on no live server", i, e))
			}
		case len(on) > 1:
			dup++
			if len(notes) < 5 {
				notes = append(notes, fmt.Sprintf("bot %d: entity %d is real on servers %v", i, e, on))
			}
		}
	}
	return lost, dup, notes
}

// settledHoldings counts lost and duplicated entities in a state that counts: the servers are
// asked one after the other, so a handoff between two answers could show an entity on both or
// on neither; a state counts when two consecutive rounds agree. After 20 rounds without that,
// the last round counts (and says so).
func (s *sampler) settledHoldings(ctx context.Context) (lost, dup int, notes []string) {
	var prev string
	for round := 0; round < 20 && ctx.Err() == nil; round++ {
		lost, dup, notes = s.holdings(ctx)
		cur := fmt.Sprint(lost, dup, notes)
		if round > 0 && cur == prev {
			return lost, dup, notes
		}
		prev = cur
		sleep(ctx, 250*time.Millisecond)
	}
	return lost, dup, append(notes, "the servers' holdings did not settle in 20 rounds: the last round counts")
}

// finish computes the report's figures and checks the invariants.
func (s *sampler) finish(ctx context.Context, formedAt float64, joined time.Duration) error {
	rep := s.rep
	// A final scrape of the live servers.
	for _, c := range s.cl.Cells {
		if c.Alive() {
			if sc, err := c.Scrape(ctx); err == nil {
				s.last[cellKey(c)] = sc
				s.noteCPU(c, sc, false)
			}
		}
	}
	s.scrapeCPU(ctx, false)
	elapsed := s.now()
	rep.CPU = s.cpuStats(elapsed)
	// Ticks.
	rep.TickMS.PerServer = map[string]TickStat{}
	var all promscrape.Histogram
	var handoffs float64
	var frozen promscrape.Histogram
	var skipped float64
	for _, c := range s.cl.Cells {
		k := cellKey(c)
		last, first := s.last[k], s.first[k]
		h := last.Histogram("meridian_tick_duration_seconds").Sub(first.Histogram("meridian_tick_duration_seconds"))
		all = all.Add(h)
		rep.TickMS.PerServer[k] = TickStat{P50: ms(h.Quantile(0.5)), P99: ms(h.Quantile(0.99)), Max: ms(h.Bound(1)), Ticks: int64(h.Count)}
		handoffs += last.Sum("meridian_handoffs_total", "direction", "out") - first.Sum("meridian_handoffs_total", "direction", "out")
		frozen = frozen.Add(last.Histogram("meridian_transfer_frozen_ticks", "kind", "handoff").Sub(first.Histogram("meridian_transfer_frozen_ticks", "kind", "handoff")))
		skipped += last.Sum("meridian_input_seqs_skipped_total") - first.Sum("meridian_input_seqs_skipped_total")
	}
	rep.TickMS.P50, rep.TickMS.P99, rep.TickMS.Max = ms(all.Quantile(0.5)), ms(all.Quantile(0.99)), ms(all.Bound(1))
	rep.Handoffs = HandoffStats{Count: int64(handoffs), LatencyMSP99: -1}
	if b := frozen.Bound(0.99); !math.IsNaN(b) {
		rep.Handoffs.LatencyMSP99 = b * tickSeconds * 1000
	}
	// Load, after the crowd formed.
	var ratios []float64
	rep.Load.SecondsToBalance = -1
	inARow := 0
	for _, sm := range rep.Series {
		if sm.T < formedAt || sm.MaxOverMean < 0 {
			continue
		}
		ratios = append(ratios, sm.MaxOverMean)
		if sm.MaxOverMean <= 1.10 {
			inARow++
			if inARow == 3 && rep.Load.SecondsToBalance < 0 {
				rep.Load.SecondsToBalance = max(0, sm.T-2-formedAt)
			}
		} else {
			inARow = 0
		}
	}
	rep.Load.MaxOverMeanP50, rep.Load.MaxOverMeanMax = -1, -1
	if len(ratios) > 0 {
		slices.Sort(ratios)
		rep.Load.MaxOverMeanP50, rep.Load.MaxOverMeanMax = ratios[len(ratios)/2], ratios[len(ratios)-1]
	}
	// Bandwidth per client.
	var kbit []float64
	for i, c := range s.r.Clients() {
		if i < len(s.bytes0) && elapsed > 0 {
			kbit = append(kbit, float64(c.Stats().BytesReceived-s.bytes0[i])*8/1000/elapsed)
		}
	}
	rep.Bandwidth = BandwidthStats{KbitPerClientP50: -1, KbitPerClientP99: -1}
	if len(kbit) > 0 {
		slices.Sort(kbit)
		rep.Bandwidth.KbitPerClientP50 = kbit[len(kbit)/2]
		rep.Bandwidth.KbitPerClientP99 = kbit[min(len(kbit)-1, len(kbit)*99/100)]
	}
	// Map changes.
	for key, v := range s.planned {
		parts := strings.Split(key, "/")
		if len(parts) != 3 || (parts[2] != "applied" && parts[2] != "prepared") {
			continue
		}
		switch parts[1] {
		case "split":
			rep.MapChanges.Splits += int64(v)
		case "merge":
			rep.MapChanges.Merges += int64(v)
		case "shift":
			rep.MapChanges.Shifts += int64(v)
		case "move", "drain_move":
			rep.MapChanges.Moves += int64(v)
		}
	}
	// Seams.
	tot := s.r.Totals()
	rep.Seams = SeamStats{Flickers: tot.Flickers - s.seams0.Flickers, TickRegressions: tot.TickRegressions - s.seams0.TickRegressions,
		BaselineMisses: tot.BaselineMisses - s.seams0.BaselineMisses, Snapshots: tot.SnapshotsReceived - s.seams0.SnapshotsReceived,
		FullSnapshots: tot.FullSnapshots - s.seams0.FullSnapshots}
	if elapsed > 0 && s.o.Bots > 0 {
		rep.Seams.FlickersPerClientMinute = float64(rep.Seams.Flickers) / float64(s.o.Bots) / (elapsed / 60)
	}
	// Invariants.
	lost, dup, notes := s.settledHoldings(ctx)
	inv := Invariants{EntitiesLost: lost, EntitiesDuplicated: dup, ClientReconnects: tot.Disconnected,
		InputsDropped: int64(skipped) + int64(tot.InputsUnacked), Notes: notes}
	if tot.Disconnected > 0 {
		for why, n := range tot.Ended {
			inv.Notes = append(inv.Notes, fmt.Sprintf("%d sessions ended: %q", n, why))
		}
	}
	if skipped > 0 {
		inv.Notes = append(inv.Notes, fmt.Sprintf("servers skipped %v input sequence numbers", skipped))
	}
	if tot.InputsUnacked > 0 {
		inv.Notes = append(inv.Notes, fmt.Sprintf("%d inputs never acknowledged", tot.InputsUnacked))
	}
	inv.OK = lost == 0 && dup == 0 && tot.Disconnected == 0 && inv.InputsDropped == 0
	rep.Invariants = inv
	rep.Limits = s.limits(joined)
	return nil
}

// cpuStats turns the CPU seconds recorded into cores used over elapsed wall seconds.
func (s *sampler) cpuStats(elapsed float64) CPUStats {
	st := CPUStats{MachineCores: runtime.NumCPU(), Bots: -1, Gateway: -1, Cells: -1, Meta: -1, Total: -1,
		PerCell: map[string]float64{}}
	if elapsed <= 0 {
		return st
	}
	used := func(p *harness.Proc) float64 {
		if p == nil {
			return -1
		}
		a, okA := s.cpu0[p.Name]
		b, okB := s.cpu[p.Name]
		if !okA || !okB {
			return -1
		}
		return (b - a) / elapsed
	}
	sum := func(ps []*harness.Proc, each func(*harness.Proc, float64)) float64 {
		tot := 0.0
		for _, p := range ps {
			v := used(p)
			if v < 0 {
				return -1
			}
			if each != nil {
				each(p, v)
			}
			tot += v
		}
		return tot
	}
	if self := selfCPUSeconds(); self >= 0 && s.self0 >= 0 {
		st.Bots = (self - s.self0) / elapsed
	}
	if s.cl.Gateway != nil {
		st.Gateway = used(s.cl.Gateway)
	}
	st.Cells = sum(s.cl.Cells, func(p *harness.Proc, v float64) { st.PerCell[cellKey(p)] = v })
	st.Meta = sum(s.cl.Metas, nil)
	if st.Bots >= 0 && st.Gateway >= 0 && st.Cells >= 0 && st.Meta >= 0 {
		st.Total = st.Bots + st.Gateway + st.Cells + st.Meta
	}
	return st
}

// cpuLimit says, for a person, where the cores went and whether the machine ran out.
func cpuLimit(c CPUStats) string {
	if c.Total < 0 {
		return ""
	}
	type part struct {
		name  string
		cores float64
	}
	parts := []part{{"the bots (the sim process)", c.Bots}, {"the gateway", c.Gateway}, {"the cell servers", c.Cells}, {"the meta nodes", c.Meta}}
	top := slices.MaxFunc(parts, func(a, b part) int { return cmp.Compare(a.cores, b.cores) })
	line := fmt.Sprintf("CPU, cores used on average: bots %.2f, gateway %.2f, cell servers %.2f, meta nodes %.2f; %.2f of %d",
		c.Bots, c.Gateway, c.Cells, c.Meta, c.Total, c.MachineCores)
	if c.Total >= 0.9*float64(c.MachineCores) {
		return line + fmt.Sprintf(": the machine was saturated, and %s used the most (%.0f %%)", top.name, 100*top.cores/c.Total)
	}
	return line + fmt.Sprintf(": the machine had room (%s used the most)", top.name)
}

// limits says what limited the run, from what was measured.
func (s *sampler) limits(joined time.Duration) []string {
	rep := s.rep
	var out []string
	for k, ts := range rep.TickMS.PerServer {
		if ts.P99 > 50 {
			out = append(out, fmt.Sprintf("cell server %s: tick p99 %.1f ms, over the 50 ms budget", k, ts.P99))
		}
	}
	slices.Sort(out)
	if la := loadAverage(); la > float64(runtime.NumCPU()) {
		out = append(out, fmt.Sprintf("the machine: load average %.1f on %d cores at the end (the bots, the servers and the gateway share it)", la, runtime.NumCPU()))
	}
	if l := cpuLimit(rep.CPU); l != "" {
		out = append(out, l)
	}
	tot := s.r.Totals()
	if tot.SendErrors > 0 {
		out = append(out, fmt.Sprintf("the bots: %d sends failed", tot.SendErrors))
	}
	out = append(out, fmt.Sprintf("the bots joined in %v", joined.Round(time.Millisecond)))
	return out
}

// loadAverage is the 1-minute load average (0 where unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

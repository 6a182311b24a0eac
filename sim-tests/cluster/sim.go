package cluster

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/partitioner"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// Options describe one simulated run. Times are in ticks (50 ms).
type Options struct {
	Seed    uint64
	Servers int
	Bots    int
	Ticks   int
	// World is the side of the square world (metres); MinCellSize the map's minimum cell side.
	World, MinCellSize float64
	// MaxSpeed of the bots, m/s.
	MaxSpeed float64
	// Network faults on peer messages: each is lost with probability Drop, and delivered
	// after a delay drawn uniformly from [1, MaxDelay] ticks (so messages reorder).
	Drop     float64
	MaxDelay int
	// Reorder lets messages on one link overtake each other. Off, each link delivers in the
	// order sent (TCP's order; the peer links are TCP), and messages still reorder across links
	// (two servers' frames to the gateway, an input forwarded through the old owner).
	Reorder bool
	// MapDelay: each server sees each new map version after 0..MapDelay ticks.
	MapDelay int
	// Static: no partitioner; the world is cut at the start into a StaticGrid × StaticGrid grid
	// dealt to the servers. Otherwise the partitioner runs every PlanEvery ticks.
	Static     bool
	StaticGrid int
	PlanEvery  int
	Planner    partitioner.Config
	// Scenario moves the bots (default: Hotspot).
	Scenario Scenario
	// Reconnect is the probability per bot and tick that it closes its session and opens a new
	// one (a new client id, a new entity) on the next tick: exercises leaves in every state.
	Reconnect float64
	// KillServer (0: none) is stopped at tick KillAt, like a SIGKILL: it sends and applies
	// nothing more; its lease lapses and its cells go to the others.
	KillServer raftmeta.ServerID
	KillAt     int
	// Lease timing (ticks): a heartbeat every HeartbeatEvery, a lease of LeaseTicks, declared
	// dead DeadMargin after it ends; changes abort after ChangeTimeout.
	HeartbeatEvery, LeaseTicks, DeadMargin, ChangeTimeout int
	// Trace, if set, receives one line per notable event.
	Trace func(string)
	// TimeSteps records each server's Step wall time (a measurement, never asserted).
	TimeSteps bool
	// Gateway: the bots are sessions of a gateway (gateway.Router) on the same network,
	// instead of being homed on the servers; they check their snapshot streams, views and
	// input sequences (gateway.go), spread over Gateways gateways. Interact is then the
	// probability per bot and tick of an interaction (a chat message) aimed at a random bot
	// within interactRange.
	Gateway  bool
	Gateways int
	Interact float64
	// InputGapTicks is the servers' World.InputGapTicks (0: the default).
	InputGapTicks int
}

// DefaultOptions is a small hotspot run under a lossy, reordering network. The partitioner's
// thresholds are scaled down to the small crowd (the defaults are sized for thousands).
func DefaultOptions(seed uint64) Options {
	pc := partitioner.DefaultConfig()
	pc.MergeLoad = 8
	pc.MinTransfer = 2
	return Options{
		Seed: seed, Servers: 3, Bots: 120, Ticks: 600,
		World: 512, MinCellSize: 32, MaxSpeed: 14,
		Drop: 0.05, MaxDelay: 4, MapDelay: 4, Reconnect: 0.001,
		Gateway: true, Gateways: 2, Interact: 0.02, InputGapTicks: 60,
		StaticGrid: 3, PlanEvery: 10, Planner: pc,
		HeartbeatEvery: 10, LeaseTicks: 60, DeadMargin: 40, ChangeTimeout: 60,
	}
}

// Scenario gives each bot's target point at a tick (metres), or ok=false to wander.
type Scenario func(bot int, tick int, world float64, rng *rand.Rand) (target [2]float64, ok bool)

// CrowdRadius is the radius (as a fraction of the world's side) of the disc a crowd fills:
// every bot has its own spot in it (a fixed low-discrepancy point per bot), as players around
// a world boss spread out rather than stack on one point.
const CrowdRadius = 0.08

// spot is bot i's offset inside a crowd of radius r: a golden-ratio sequence, even and
// deterministic, drawing nothing from the run's generator.
func spot(i int, r float64) (float64, float64) {
	u := math.Mod(float64(i)*0.6180339887498949+0.5, 1)
	v := math.Mod(float64(i)*0.7548776662466927+0.5, 1)
	d, a := r*math.Sqrt(u), 2*math.Pi*v
	return d * math.Cos(a), d * math.Sin(a)
}

// Hotspot: everyone walks to their spot around a point a fifth of the way in from the low
// corner.
func Hotspot(bot int, _ int, world float64, _ *rand.Rand) ([2]float64, bool) {
	dx, dz := spot(bot, world*CrowdRadius)
	return [2]float64{world*0.2 + dx, world*0.2 + dz}, true
}

// Migration: the crowd forms in one corner during the first formTicks, then walks to the
// opposite corner over walkTicks.
func Migration(formTicks, walkTicks int) Scenario {
	return func(bot int, tick int, world float64, _ *rand.Rand) ([2]float64, bool) {
		a, b := world*0.2, world*0.8
		f := min(max(float64(tick-formTicks)/float64(walkTicks), 0), 1)
		p := a + (b-a)*f
		dx, dz := spot(bot, world*CrowdRadius)
		return [2]float64{p + dx, p + dz}, true
	}
}

// Report is what a run measured.
type Report struct {
	Ticks int
	// Load is max/mean real entities over the live servers at every tick.
	MaxOverMean []float64
	Cells       []int // number of cells at every tick
	// Map changes applied, by kind; Aborted changes.
	Splits, Merges, Shifts, Moves, Aborted int
	Handoffs, Migrated                     int
	// Entities by ticks frozen in transit (index k: k ticks; the last: more), by kind.
	FrozenHandoff, FrozenMigration [8]int
	FrozenMax                      int
	// EntitiesLost: entities that were on the killed server and are on no server at the end.
	// Homed on servers, their sessions end with it; through a gateway, each open session's
	// entity is re-created on a live server (without persistence, at its last position).
	EntitiesLost int
	// Trace is a hash of every server's entities at every tick: same seed, same trace.
	Trace uint64
	// StepTimes[i] are server i+1's Step wall times (only with Options.TimeSteps).
	StepTimes [][]time.Duration
	// GhostTicks sums the ghosts held over all ticks and servers.
	GhostTicks int
	// Formed is the first tick at which 90 % of the bots were within 60 m of their target
	// (0: never).
	Formed int
	// Gateway mode: sessions the gateway disconnected; inputs (and interactions) sent and
	// applied; interactions sent and delivered; snapshots the bots decoded; entities that
	// left a bot's view and came back within flickerTicks; input sequence numbers the
	// servers gave up waiting for; the gateway's counters.
	Reconnects, InputsSent, InputsApplied, InteractsSent, InteractsDelivered, Snapshots, Flickers, SkippedSeqs int
	InputsLostToKill                                                                                           int // inputs of entities on the killed server, sent while it was dead
	Gateways                                                                                                   []gateway.RouterStats
}

type envelope struct {
	at    int
	seq   uint64
	from  raftmeta.ServerID
	to    raftmeta.ServerID
	frame []byte
}

type server struct {
	id     raftmeta.ServerID
	member *cellserver.Member
	dead   bool
	maps   []pendingMap
	inbox  []cellserver.PeerIn
}

type pendingMap struct {
	at int
	m  *raftmeta.Map
}

type bot struct {
	gw     *gwBot  // gateway mode
	home   *server // otherwise: the server it is homed on
	client cellserver.ClientID
	entity wire.EntityID
	seq    uint32
	gone   bool // its home died: the session ended
}

// closed is the entity of a session a bot closed (before reconnecting as a new session).
type closed struct {
	entity wire.EntityID
	at     int
}

// Sim is the whole cluster in one goroutine: servers (cellserver.Member), the partition map
// (the raftmeta FSM, applied directly: Raft's replication is tested elsewhere), the
// partitioner on a period, leases, and a simulated network. Everything random comes from one
// seeded generator, so a seed names a run.
type Sim struct {
	o       Options
	rng     *rand.Rand
	fsm     *raftmeta.FSM
	index   uint64
	planner *partitioner.Planner
	servers []*server
	bots    []*bot
	net     []envelope
	seq     uint64
	tick    int
	lastVer uint64
	killed  map[wire.EntityID]bool // entities the killed server held when it died
	closed  []closed               // entities of sessions the bots closed
	nextCID cellserver.ClientID
	rep     Report
	hash    uint64
	enc     []byte

	// Gateway mode.
	gws          []*simGateway
	bySession    map[gateway.SessionID]*bot
	byEntity     map[wire.EntityID]*bot
	interactions map[interactionKey]*interaction
	nextSID      gateway.SessionID
	applied      []appliedRec
	linkAt       map[[2]raftmeta.ServerID]int // the last delivery tick on each link (FIFO)
}

const epoch = int64(1_700_000_000) * int64(time.Second)

// ghostExpire is the members' GhostExpireTicks (the default).
var ghostExpire = cellserver.DefaultMemberConfig(1, 1).GhostExpireTicks

func (s *Sim) now() int64 { return epoch + int64(s.tick)*int64(50*time.Millisecond) }

// New builds the cluster: the world, the servers registered, the bots connected.
func New(o Options) (*Sim, error) {
	if o.Scenario == nil {
		o.Scenario = Hotspot
	}
	s := &Sim{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x636c7573746572)), fsm: raftmeta.NewFSM(), killed: map[wire.EntityID]bool{}, linkAt: map[[2]raftmeta.ServerID]int{}}
	h := fnv.New64a()
	s.hash = h.Sum64()
	if !o.Static {
		p, err := partitioner.New(o.Planner)
		if err != nil {
			return nil, err
		}
		s.planner = p
	}
	if err := s.apply(raftmeta.InitWorld{World: raftmeta.World{Max: [2]float64{o.World, o.World}, Epoch: epoch}, MinCellSize: o.MinCellSize}); err != nil {
		return nil, err
	}
	if o.Static {
		if err := s.cutGrid(o.StaticGrid); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= o.Servers; i++ {
		cfg := cellserver.DefaultMemberConfig(raftmeta.ServerID(i), 1)
		cfg.World.WorldMax = [2]float64{o.World, o.World}
		cfg.World.MaxSpeed = o.MaxSpeed
		if o.InputGapTicks > 0 {
			cfg.World.InputGapTicks = o.InputGapTicks
		}
		cfg.World.RecordInputs = o.Gateway
		m, err := cellserver.NewMember(cfg)
		if err != nil {
			return nil, err
		}
		s.servers = append(s.servers, &server{id: raftmeta.ServerID(i), member: m})
		if err := s.apply(raftmeta.Register{Server: raftmeta.ServerID(i), Addr: fmt.Sprintf("sim:%d", i), Capacity: 1000,
			Now: s.now(), LeaseTTL: s.ticks(o.LeaseTicks)}); err != nil {
			return nil, err
		}
	}
	if o.Static { // deal the grid's cells round-robin (the first server got them all)
		mp := s.fsm.Map()
		for i, c := range mp.Cells {
			to := raftmeta.ServerID(i%o.Servers + 1)
			if c.Owner != to {
				if err := s.apply(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: to}); err != nil {
					return nil, err
				}
			}
		}
	}
	mp := s.fsm.Map()
	for _, sv := range s.servers {
		sv.maps = append(sv.maps, pendingMap{at: 0, m: &mp})
	}
	s.lastVer = mp.Version
	if o.Gateway {
		for i := range max(o.Gateways, 1) {
			id := raftmeta.ServerID(wire.GatewayIDBase + uint64(i) + 1)
			r, err := gateway.NewRouter(gateway.DefaultRouterConfig(uint64(id)))
			if err != nil {
				return nil, err
			}
			s.gws = append(s.gws, &simGateway{id: id, r: r, maps: []pendingMap{{at: 0, m: &mp}}})
		}
		s.bySession = map[gateway.SessionID]*bot{}
		s.byEntity = map[wire.EntityID]*bot{}
		s.interactions = map[interactionKey]*interaction{}
		for i := range o.Bots {
			b := &bot{client: cellserver.ClientID(i + 1), gw: newGWBot(gateway.SessionID(i+1), s.gws[i%len(s.gws)])}
			s.bots = append(s.bots, b)
			s.bySession[b.gw.session] = b
		}
		s.nextSID = gateway.SessionID(o.Bots)
		return s, nil
	}
	for i := range o.Bots {
		s.bots = append(s.bots, &bot{home: s.servers[i%len(s.servers)], client: cellserver.ClientID(i + 1)})
	}
	s.nextCID = cellserver.ClientID(o.Bots + 1)
	return s, nil
}

func (s *Sim) ticks(n int) int64 { return int64(n) * int64(50*time.Millisecond) }

func (s *Sim) tracef(format string, args ...any) {
	if s.o.Trace != nil {
		s.o.Trace(fmt.Sprintf("t=%d ", s.tick) + fmt.Sprintf(format, args...))
	}
}

// apply commits a command to the map.
func (s *Sim) apply(c raftmeta.Command) error {
	data, err := raftmeta.EncodeCommand(c)
	if err != nil {
		return err
	}
	s.index++
	res, ok := s.fsm.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: data}).(*raftmeta.ApplyResult)
	if !ok {
		return fmt.Errorf("sim: FSM returned no result for %T", c)
	}
	return res.Err
}

// cutGrid splits the world into n × n cells of equal size (the static partitioning).
func (s *Sim) cutGrid(n int) error {
	side := s.o.World / float64(n)
	for i := 1; i < n; i++ { // columns
		mp := s.fsm.Map()
		c := findCell(&mp, side*float64(i)+side/2, side/2)
		if err := s.apply(raftmeta.Split{Cell: c.ID, Epoch: c.Epoch, Axis: raftmeta.AxisX, At: c.Bounds[0] + side}); err != nil {
			return err
		}
	}
	for col := range n {
		for j := 1; j < n; j++ {
			mp := s.fsm.Map()
			c := findCell(&mp, side*float64(col)+side/2, side*float64(j)+side/2)
			if err := s.apply(raftmeta.Split{Cell: c.ID, Epoch: c.Epoch, Axis: raftmeta.AxisZ, At: c.Bounds[1] + side}); err != nil {
				return err
			}
		}
	}
	return nil
}

func findCell(mp *raftmeta.Map, x, z float64) *raftmeta.Cell {
	for i := range mp.Cells {
		b := mp.Cells[i].Bounds
		if x >= b[0] && x < b[2] && z >= b[1] && z < b[3] {
			return &mp.Cells[i]
		}
	}
	return nil
}

// Run runs every tick, checking the invariants after each; the first violation ends it.
func (s *Sim) Run() (*Report, error) {
	for s.tick < s.o.Ticks {
		if err := s.Step(); err != nil {
			return &s.rep, fmt.Errorf("seed %d, tick %d: %w", s.o.Seed, s.tick, err)
		}
	}
	lost := 0
	for e := range s.killed {
		if len(s.gws) > 0 && s.byEntity[e] == nil {
			continue // its session closed: it would have left anyway
		}
		if !s.present(e) {
			lost++
		}
	}
	// A closed session's entity goes (its leave may chase it through transfers and retries).
	for _, c := range s.closed {
		if s.tick-c.at > 200 && s.present(c.entity) {
			return &s.rep, fmt.Errorf("seed %d: entity %d of a session closed at tick %d is still held at tick %d", s.o.Seed, c.entity, c.at, s.tick)
		}
	}
	// A session that ended (its home died) must not leave its entity behind for good.
	if s.o.KillServer != 0 && s.tick > s.o.KillAt+s.o.LeaseTicks+s.o.DeadMargin+20 {
		for _, b := range s.bots {
			if b.gone && b.entity != 0 && s.present(b.entity) {
				return &s.rep, fmt.Errorf("seed %d: entity %d of bot %d, whose session ended, is still held", s.o.Seed, b.entity, b.client)
			}
		}
	}
	if len(s.gws) > 0 {
		if err := s.finalGatewayChecks(); err != nil {
			return &s.rep, fmt.Errorf("seed %d: %w", s.o.Seed, err)
		}
		for _, g := range s.gws {
			s.rep.Gateways = append(s.rep.Gateways, g.r.Stats())
		}
	}
	s.rep.EntitiesLost = lost
	s.rep.Ticks = s.tick
	s.rep.Trace = s.hash
	for _, sv := range s.servers {
		st := sv.member.Stats()
		s.rep.Handoffs += st.HandoffsIn
		s.rep.Migrated += st.MigratedIn
		for k := range st.FrozenHandoff {
			s.rep.FrozenHandoff[k] += st.FrozenHandoff[k]
			s.rep.FrozenMigration[k] += st.FrozenMigration[k]
		}
		s.rep.FrozenMax = max(s.rep.FrozenMax, st.FrozenMax)
	}
	return &s.rep, nil
}

func (s *Sim) present(e wire.EntityID) bool {
	for _, sv := range s.servers {
		if sv.dead {
			continue
		}
		real, fl := sv.member.Holdings()
		if _, ok := slices.BinarySearch(real, e); ok {
			return true
		}
		if _, ok := slices.BinarySearch(fl, e); ok {
			return true
		}
	}
	return false
}

// Step runs one tick of the whole cluster.
func (s *Sim) Step() error {
	s.tick++
	t := s.tick
	if s.o.KillServer != 0 && t == s.o.KillAt {
		s.kill(s.o.KillServer)
	}
	// The metadata service: leases, dead servers, change deadlines, the partitioner.
	if err := s.metaService(); err != nil {
		return err
	}
	// Deliver the network's due messages (in (due tick, send order), so delays reorder them).
	sort.SliceStable(s.net, func(i, j int) bool {
		if s.net[i].at != s.net[j].at {
			return s.net[i].at < s.net[j].at
		}
		return s.net[i].seq < s.net[j].seq
	})
	n := 0
	for n < len(s.net) && s.net[n].at <= t {
		e := s.net[n]
		n++
		to := s.server(e.to)
		gw := s.gateway(e.to)
		if gw == nil && (to == nil || to.dead) {
			continue
		}
		pt, payload, rest, err := wire.SplitPeerFrame(e.frame)
		if err != nil || len(rest) != 0 {
			return fmt.Errorf("a peer frame from %d does not split: %v", e.from, err)
		}
		msg, err := wire.DecodePeer(pt, payload)
		if err != nil {
			return fmt.Errorf("a peer frame from %d does not decode: %w", e.from, err)
		}
		if gw != nil {
			gw.inbox = append(gw.inbox, envelopeMsg{e.from, msg})
			continue
		}
		to.inbox = append(to.inbox, cellserver.PeerIn{From: e.from, Msg: msg})
	}
	s.net = s.net[n:]
	if len(s.gws) > 0 {
		if err := s.gatewayStep(); err != nil {
			return err
		}
	}

	for _, sv := range s.servers {
		if sv.dead {
			continue
		}
		in := &cellserver.MemberInput{Tick: wire.Tick(t), Peer: sv.inbox}
		for len(sv.maps) > 0 && sv.maps[0].at <= t {
			in.Map = sv.maps[0].m
			sv.maps = sv.maps[1:]
		}
		s.botInputs(sv, in)
		start := time.Now()
		out := sv.member.Step(in)
		if s.o.TimeSteps {
			for len(s.rep.StepTimes) < int(sv.id) {
				s.rep.StepTimes = append(s.rep.StepTimes, nil)
			}
			s.rep.StepTimes[sv.id-1] = append(s.rep.StepTimes[sv.id-1], time.Since(start))
		}
		sv.inbox = nil
		if err := s.handle(sv, out); err != nil {
			return err
		}
		if len(s.gws) > 0 && out.World != nil {
			s.applied = s.applied[:0]
			for _, a := range out.World.Applied {
				s.applied = append(s.applied, appliedRec{a.Entity, a.Seq})
			}
			s.rep.SkippedSeqs += out.World.SkippedSeqs
			if err := s.checkApplied(sv, s.applied); err != nil {
				return err
			}
		}
	}
	return s.check()
}

func (s *Sim) server(id raftmeta.ServerID) *server {
	if id < 1 || int(id) > len(s.servers) {
		return nil
	}
	return s.servers[id-1]
}

func (s *Sim) kill(id raftmeta.ServerID) {
	sv := s.server(id)
	sv.dead = true
	real, fl := sv.member.Holdings()
	for _, e := range real {
		s.killed[e] = true
	}
	for _, e := range fl {
		s.killed[e] = true
	}
	for _, b := range s.bots {
		if b.home == sv && sv != nil {
			b.gone = true
			if b.entity != 0 {
				s.killed[b.entity] = true
			}
		}
	}
	s.tracef("killed server %d holding %d real, %d in flight", id, len(real), len(fl))
}

// metaService plays the leader: heartbeats arrive, dead servers are reaped, changes time out,
// the partitioner proposes; every new map version is published to the servers with a delay.
func (s *Sim) metaService() error {
	t := s.tick
	now := s.now()
	for _, sv := range s.servers {
		if sv.dead || (t+int(sv.id))%s.o.HeartbeatEvery != 0 {
			continue
		}
		err := s.apply(raftmeta.Heartbeat{Server: sv.id, Now: now, LeaseTTL: s.ticks(s.o.LeaseTicks), Load: sv.member.Load()})
		if err != nil {
			s.tracef("heartbeat of %d rejected: %v", sv.id, err)
		}
	}
	mp := s.fsm.Map()
	for _, srv := range mp.Servers {
		if srv.Alive && now > srv.LeaseExpires+s.ticks(s.o.DeadMargin) {
			if err := s.apply(raftmeta.MarkDead{Server: srv.ID, Now: now}); err != nil {
				return fmt.Errorf("markdead %d: %w", srv.ID, err)
			}
			s.tracef("server %d marked dead", srv.ID)
		}
	}
	mp = s.fsm.Map()
	for _, ch := range mp.Changes {
		if now > ch.Deadline {
			if err := s.apply(raftmeta.Abort{Change: ch.ID, Reason: "deadline passed"}); err != nil {
				return fmt.Errorf("abort %d: %w", ch.ID, err)
			}
			s.rep.Aborted++
			s.tracef("change %d aborted", ch.ID)
		}
	}
	if s.planner != nil && t%s.o.PlanEvery == 0 {
		mp = s.fsm.Map()
		for _, op := range s.planner.Plan(&mp) {
			data, err := raftmeta.EncodeCommand(op)
			if err != nil {
				return err
			}
			err = s.apply(raftmeta.Prepare{Op: data, Now: now, Timeout: s.ticks(s.o.ChangeTimeout)})
			if err != nil {
				s.tracef("planned %T rejected: %v", op, err)
				continue
			}
			switch op.(type) {
			case raftmeta.Split:
				s.rep.Splits++
			case raftmeta.Merge:
				s.rep.Merges++
			case raftmeta.Shift:
				s.rep.Shifts++
			case raftmeta.Move:
				s.rep.Moves++
			}
			s.tracef("planned %T %+v", op, op)
		}
	}
	if v := s.fsm.Version(); v != s.lastVer {
		s.lastVer = v
		mp := s.fsm.Map()
		if err := checkMap(&mp); err != nil {
			return err
		}
		for _, sv := range s.servers {
			at := t + 1 + s.rng.IntN(s.o.MapDelay+1)
			if n := len(sv.maps); n > 0 && sv.maps[n-1].at > at {
				at = sv.maps[n-1].at // versions arrive in order
			}
			sv.maps = append(sv.maps, pendingMap{at: at, m: &mp})
		}
		for _, g := range s.gws {
			at := t + 1 + s.rng.IntN(s.o.MapDelay+1)
			if n := len(g.maps); n > 0 && g.maps[n-1].at > at {
				at = g.maps[n-1].at
			}
			g.maps = append(g.maps, pendingMap{at: at, m: &mp})
		}
	}
	return nil
}

// checkMap: every cell has exactly one owner, a live one, whenever a server is alive.
func checkMap(mp *raftmeta.Map) error {
	alive := map[raftmeta.ServerID]bool{}
	for _, s := range mp.Servers {
		if s.Alive {
			alive[s.ID] = true
		}
	}
	if len(alive) == 0 {
		return nil
	}
	for _, c := range mp.Cells {
		if !alive[c.Owner] {
			return fmt.Errorf("map v%d: cell %d owned by %d, not a live server", mp.Version, c.ID, c.Owner)
		}
	}
	return nil
}

// botInputs adds the bots homed on sv: their connection (first tick) and an input a tick.
func (s *Sim) botInputs(sv *server, in *cellserver.MemberInput) {
	for i, b := range s.bots {
		if b.home != sv || b.gone {
			continue
		}
		if b.entity != 0 && s.o.Reconnect > 0 && s.rng.Float64() < s.o.Reconnect {
			in.Closes = append(in.Closes, b.client)
			s.closed = append(s.closed, closed{entity: b.entity, at: s.tick})
			b.client, b.entity, b.seq = s.nextCID, 0, 0
			s.nextCID++
			continue
		}
		if b.entity == 0 {
			if b.seq == 0 {
				b.seq = 1
				p := [2]float64{s.rng.Float64() * s.o.World, s.rng.Float64() * s.o.World}
				in.Opens = append(in.Opens, cellserver.SessionOpen{Client: b.client, Spawn: p})
			}
			continue
		}
		if _, ok := s.entityState(b.entity); !ok {
			continue // in flight: the bot keeps its last intent
		}
		mx, mz, _ := s.intent(i, b)
		b.seq++
		in.Inputs = append(in.Inputs, cellserver.ClientInput{Client: b.client,
			Input: wire.Input{Seq: b.seq, ClientTick: wire.Tick(s.tick), MoveX: mx, MoveZ: mz}})
	}
}

// intent is bot i's move intent toward its scenario's target (or a random stroll); ok is
// false while its entity is in flight between servers.
func (s *Sim) intent(i int, b *bot) (mx, mz int8, ok bool) {
	st, ok := s.entityState(b.entity)
	target, aim := s.o.Scenario(i, s.tick, s.o.World, s.rng)
	if !ok {
		return 0, 0, false
	}
	x, z := wire.DequantisePos(st.X), wire.DequantisePos(st.Z)
	dx, dz := target[0]-x, target[1]-z
	if d := math.Hypot(dx, dz); aim && d > 3 {
		return int8(math.Round(dx / d * 127)), int8(math.Round(dz / d * 127)), true
	}
	a := s.rng.Float64() * 2 * math.Pi
	return int8(math.Round(math.Cos(a) * 50)), int8(math.Round(math.Sin(a) * 50)), true
}

// post encodes a message onto the network: lost with probability Drop, else delivered after
// 1..MaxDelay ticks.
func (s *Sim) post(from, to raftmeta.ServerID, msg wire.PeerMessage) error {
	var err error
	if s.enc, err = msg.AppendFrame(s.enc[:0]); err != nil {
		return fmt.Errorf("%d: encode %T: %w", from, msg, err)
	}
	if s.rng.Float64() < s.o.Drop {
		return nil
	}
	s.seq++
	at := s.tick + 1 + s.rng.IntN(s.o.MaxDelay)
	if !s.o.Reorder {
		k := [2]raftmeta.ServerID{from, to}
		at = max(at, s.linkAt[k])
		s.linkAt[k] = at
	}
	s.net = append(s.net, envelope{at: at, seq: s.seq, from: from, to: to, frame: slices.Clone(s.enc)})
	return nil
}

// entityState finds an entity's state on whichever live server holds it (the bots are
// omniscient: they stand in for a client reading its own snapshots).
func (s *Sim) entityState(e wire.EntityID) (wire.EntityState, bool) {
	for _, sv := range s.servers {
		if sv.dead {
			continue
		}
		if st, ok := sv.member.World().Entity(e); ok {
			return st, true
		}
	}
	return wire.EntityState{}, false
}

// handle performs a server's output: peer messages onto the network, Staged proposals into
// the map, welcomes to its bots.
func (s *Sim) handle(sv *server, out *cellserver.MemberOutput) error {
	for _, w := range out.Welcomes {
		for _, b := range s.bots {
			if b.home == sv && b.client == w.Client {
				b.entity = w.Entity
			}
		}
	}
	for _, l := range out.Lost {
		for _, b := range s.bots {
			if b.home == sv && b.client == l {
				b.gone = true
				if !s.killed[b.entity] {
					return fmt.Errorf("server %d dropped bot %d's session as lost, but its entity %d was not on the dead server", sv.id, b.client, b.entity)
				}
			}
		}
	}
	for _, p := range out.Send {
		if err := s.post(sv.id, p.To, p.Msg); err != nil {
			return fmt.Errorf("server %w", err)
		}
	}
	for _, st := range out.Staged {
		if s.rng.Float64() < s.o.Drop {
			continue // the proposal was lost; the member retries
		}
		if err := s.apply(st); err != nil {
			s.tracef("staged %+v rejected: %v", st, err)
		}
	}
	return nil
}

// check verifies the invariants after a tick: no entity real on two servers; every entity
// that ever existed is real or in flight somewhere, unless the killed server held it; and it
// folds the tick's state into the trace hash.
func (s *Sim) check() error {
	owner := map[wire.EntityID]raftmeta.ServerID{}
	held := map[wire.EntityID]bool{}
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], s.hash)
	h.Write(b[:])
	var loads []int
	for _, sv := range s.servers {
		if sv.dead {
			continue
		}
		real, fl := sv.member.Holdings()
		loads = append(loads, len(real))
		for _, e := range real {
			if o, dup := owner[e]; dup {
				return fmt.Errorf("entity %d is real on servers %d and %d", e, o, sv.id)
			}
			owner[e] = sv.id
			held[e] = true
			st, _ := sv.member.World().Entity(e)
			binary.LittleEndian.PutUint64(b[:], uint64(e)^uint64(sv.id)<<56)
			h.Write(b[:])
			binary.LittleEndian.PutUint64(b[:], uint64(uint32(st.X))<<32|uint64(uint32(st.Z)))
			h.Write(b[:])
		}
		for _, e := range fl {
			held[e] = true
		}
	}
	s.hash = h.Sum64()
	// Ghosts: never newer than the real entity, never held past their expiry.
	for _, sv := range s.servers {
		if sv.dead {
			continue
		}
		for _, g := range sv.member.Ghosts() {
			if r, ok := owner[g.ID]; ok {
				if r == sv.id {
					return fmt.Errorf("entity %d is real and a ghost on server %d", g.ID, sv.id)
				}
				if a, _ := s.server(r).member.AuthOf(g.ID); g.Auth > a {
					return fmt.Errorf("server %d's ghost of entity %d has authority %d, newer than its real copy's %d on server %d", sv.id, g.ID, g.Auth, a, r)
				}
			}
			if int(wire.Tick(s.tick)-g.Seen) > ghostExpire+1 {
				return fmt.Errorf("server %d holds ghost %d last updated at tick %d", sv.id, g.ID, g.Seen)
			}
			s.rep.GhostTicks++
		}
	}
	for _, bt := range s.bots {
		if bt.entity != 0 && !held[bt.entity] && !s.killed[bt.entity] {
			return fmt.Errorf("entity %d (bot %d) is on no server", bt.entity, bt.client)
		}
	}
	sum, mx := 0, 0
	for _, l := range loads {
		sum += l
		mx = max(mx, l)
	}
	r := 1.0
	if sum > 0 {
		r = float64(mx) / (float64(sum) / float64(len(loads)))
	}
	s.rep.MaxOverMean = append(s.rep.MaxOverMean, r)
	if s.rep.Formed == 0 && len(s.bots) > 0 {
		near := 0
		for i, bt := range s.bots {
			if bt.entity == 0 || bt.gone {
				continue
			}
			st, ok := s.entityState(bt.entity)
			target, aim := s.o.Scenario(i, s.tick, s.o.World, s.rng)
			if ok && aim && math.Hypot(wire.DequantisePos(st.X)-target[0], wire.DequantisePos(st.Z)-target[1]) < 10 {
				near++
			}
		}
		if near*10 >= len(s.bots)*9 {
			s.rep.Formed = s.tick
		}
	}
	s.rep.Cells = append(s.rep.Cells, len(s.fsm.Map().Cells))
	return nil
}

// Quantile returns the q-quantile of xs (nearest rank), without changing xs.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	c := slices.Clone(xs)
	slices.SortFunc(c, cmp.Compare)
	i := int(math.Ceil(q*float64(len(c)))) - 1
	return c[max(0, min(i, len(c)-1))]
}

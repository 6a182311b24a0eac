package partitioner

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/internal/datadriven"
	"github.com/meridian-mmo/meridian/raftmeta"
)

// Data-driven scenarios: every testdata/*.txt file is a script in internal/datadriven's
// format (command line, ----, what happened up to a blank line), run from DefaultConfig and no
// world. The commands:
//
//	config FIELD=VALUE ...           set Config fields (by name) on DefaultConfig; a new planner
//	world X0,Z0,X1,Z1 min=M          InitWorld (the planner starts afresh)
//	server id=N [cap=C]              register (join) a cell server; alias: join
//	crowd [name=G] x=X z=Z r=R n=N   add N entities evenly over a disc (a sunflower spiral)
//	uniform [name=G] n=N [rect=X0,Z0,X1,Z1]   add N entities evenly (Halton) over the world or rect
//	walk [name=G] dx=DX dz=DZ        move a group (clamped to the world)
//	disperse [name=G]                spread a group evenly over the world
//	clear [name=G]                   remove a group's entities
//	kill server=N                    the planner sees N dead while it still owns its cells; N stops
//	                                 reporting (the FSM marks it dead once it owns nothing)
//	drain server=N                   the planner sees N draining (likewise)
//	markdead server=N                MarkDead through the FSM (which reassigns the cells itself)
//	silence server=N / resume server=N   N stops / resumes sending load reports
//	round [n=K]                      K rounds: report loads, Plan, apply the ops to the FSM
//	settle [max=K]                   rounds until CooldownRounds+1 rounds in a row propose nothing
//	show                             the map: tree, cells (bounds, owner, entities), servers
//
// The default group name is "crowd" for crowd, walk and disperse, "bg" for uniform. A round
// prints "round R: max/mean B → A" (true entity counts before and after its operations), each
// operation as a raftmeta datadriven command, and its reason; rounds without operations are
// collapsed. round and settle end with the map as show prints it.
//
// go test ./partitioner -run TestDataDriven -rewrite regenerates the expected outputs (the
// flag is internal/datadriven's); review every change before keeping it (the operations must
// make sense).
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		h := &scenario{cfg: DefaultConfig()}
		datadriven.RunFile(t, path, h.run)
	})
}

type scenario struct {
	cfg Config
	s   *sim
}

// rect parses X0,Z0,X1,Z1.
func rect(p *datadriven.Args, s string) raftmeta.Rect {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		p.Fail("%q: want X0,Z0,X1,Z1", s)
	}
	return raftmeta.Rect{p.ParseFloat(f[0]), p.ParseFloat(f[1]), p.ParseFloat(f[2]), p.ParseFloat(f[3])}
}

func (h *scenario) run(t *testing.T, d *datadriven.TestData) string {
	name, cmdArgs := d.Cmd, slices.Clone(d.CmdArgs)
	if len(cmdArgs) > 0 && cmdArgs[0].Key == "" {
		cmdArgs[0].Key = "_" // a positional first argument (world X0,Z0,X1,Z1)
	}
	p := datadriven.NewArgs(t, d.Pos, cmdArgs)
	p.Alias("id", "server")
	if name == "config" {
		for _, a := range p.Rest() {
			if err := setField(&h.cfg, a.Key, a.Val); err != nil {
				p.Fail("%v", err)
			}
		}
		if err := h.cfg.Validate(); err != nil {
			return "error: " + err.Error()
		}
		if h.s != nil {
			if err := h.s.setConfig(h.cfg); err != nil {
				p.Fail("%v", err)
			}
		}
		return "ok"
	}
	if name != "world" && h.s == nil {
		p.Fail("run world first")
	}
	s := h.s
	server := func() raftmeta.ServerID { return raftmeta.ServerID(p.Int("server")) }
	switch name {
	case "world":
		// handled below
	case "server", "join":
		id := server()
		capacity := p.ParseInt(p.Opt("cap", "0"))
		p.Done()
		s.join(id, capacity)
		return s.show()
	case "crowd":
		g := p.Opt("name", "crowd")
		x, z, r, n := p.Float("x"), p.Float("z"), p.Float("r"), p.Int("n")
		p.Done()
		s.crowd(g, x, z, r, n)
		return fmt.Sprintf("%d entities\n%s", s.entities(), s.summary())
	case "uniform":
		g := p.Opt("name", "bg")
		n := p.Int("n")
		r := s.world
		if v := p.Opt("rect", ""); v != "" {
			r = rect(p, v)
		}
		p.Done()
		s.uniform(g, n, r)
		return fmt.Sprintf("%d entities\n%s", s.entities(), s.summary())
	case "walk":
		g := p.Opt("name", "crowd")
		dx, dz := p.ParseFloat(p.Opt("dx", "0")), p.ParseFloat(p.Opt("dz", "0"))
		p.Done()
		s.walk(g, dx, dz)
		return s.summary()
	case "disperse":
		g := p.Opt("name", "crowd")
		p.Done()
		s.disperse(g)
		return s.summary()
	case "clear":
		g := p.Opt("name", "crowd")
		p.Done()
		s.clear(g)
		return s.summary()
	case "kill":
		id := server()
		p.Done()
		s.dead[id] = true
		return s.summary()
	case "drain":
		id := server()
		p.Done()
		s.draining[id] = true
		return s.summary()
	case "markdead":
		id := server()
		p.Done()
		var lease int64
		for _, srv := range s.f.Map().Servers {
			if srv.ID == id {
				lease = srv.LeaseExpires
			}
		}
		if res := s.apply(raftmeta.MarkDead{Server: id, Now: lease}); res.Err != nil {
			return "error: " + res.Err.Error()
		}
		s.silent[id] = true
		return s.show()
	case "silence", "resume":
		id := server()
		p.Done()
		s.silent[id] = name == "silence"
		return "ok"
	case "round", "settle":
		n := p.ParseInt(p.Opt("n", "1"))
		limit := p.ParseInt(p.Opt("max", "50"))
		p.Done()
		return h.rounds(name == "settle", n, limit)
	case "show":
		p.Done()
		return s.show()
	default:
		p.Fail("unknown command %q", name)
	}
	// world
	r, minSize := rect(p, p.Str("_")), p.Float("min")
	p.Done()
	h.s = newSim(t, r, minSize, h.cfg)
	return h.s.show()
}

// rounds runs n rounds (or, when settle, until CooldownRounds+1 rounds in a row propose
// nothing, at most limit) and renders them.
func (h *scenario) rounds(settle bool, n, limit int) string {
	s := h.s
	var b strings.Builder
	quietFrom, quiet := 0, 0
	var quietRatio float64
	flushQuiet := func() {
		if quiet == 0 {
			return
		}
		if quiet == 1 {
			fmt.Fprintf(&b, "round %d: no ops, max/mean %.2f\n", quietFrom, quietRatio)
		} else {
			fmt.Fprintf(&b, "rounds %d-%d: no ops, max/mean %.2f\n", quietFrom, quietFrom+quiet-1, quietRatio)
		}
		quiet = 0
	}
	empty := 0
	for i := 0; ; i++ {
		if settle {
			if empty > s.cfg.CooldownRounds || i >= limit {
				break
			}
		} else if i >= n {
			break
		}
		_, before := s.balance()
		s.round()
		_, after := s.balance()
		if len(s.ops) == 0 {
			if quiet == 0 {
				quietFrom = s.rounds
			}
			quiet++
			quietRatio = after
			empty++
			continue
		}
		empty = 0
		flushQuiet()
		fmt.Fprintf(&b, "round %d: max/mean %.2f → %.2f\n", s.rounds, before, after)
		for j, op := range s.ops {
			fmt.Fprintf(&b, "  %s\n    %s\n", fmtOp(op), s.reasons[j])
		}
	}
	flushQuiet()
	if settle {
		if empty > s.cfg.CooldownRounds {
			fmt.Fprintf(&b, "settled at round %d\n", s.rounds)
		} else {
			fmt.Fprintf(&b, "not settled after %d rounds\n", limit)
		}
	}
	b.WriteString(s.show())
	return b.String()
}

// setField sets the Config field named k (its Go name) from v.
func setField(c *Config, k, v string) error {
	atoi := func() (int, error) { return strconv.Atoi(v) }
	atof := func() (float64, error) { return strconv.ParseFloat(v, 64) }
	var err error
	switch k {
	case "SplitLoad":
		c.SplitLoad, err = atoi()
	case "SplitFraction":
		c.SplitFraction, err = atof()
	case "MergeLoad":
		c.MergeLoad, err = atoi()
	case "MinCells":
		c.MinCells, err = atoi()
	case "Imbalance":
		c.Imbalance, err = atof()
	case "MaxShiftFraction":
		c.MaxShiftFraction, err = atof()
	case "MinTransfer":
		c.MinTransfer, err = atoi()
	case "MinSplitShare":
		c.MinSplitShare, err = atof()
	case "CooldownRounds":
		c.CooldownRounds, err = atoi()
	case "SplitCooldownRounds":
		c.SplitCooldownRounds, err = atoi()
	case "MaxOpsPerRound":
		c.MaxOpsPerRound, err = atoi()
	case "AggressionRecoveryRounds":
		c.AggressionRecoveryRounds, err = atoi()
	case "Quantum":
		c.Quantum, err = atof()
	default:
		return fmt.Errorf("unknown config field %q", k)
	}
	return err
}

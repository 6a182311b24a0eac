package partitioner

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// Data-driven scenarios in the style of cockroachdb/pebble's datadriven package (and of
// raftmeta/datadriven_test.go): every testdata/*.txt file is a script of blocks
//
//	# comments and blank lines are kept as they are
//	round n=3
//	----
//	<what happened>
//
// each block ending at a blank line. The commands:
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
// go test ./partitioner -run TestDataDriven -rewrite regenerates the expected outputs; review
// every change before keeping it (the operations must make sense).
var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt")

func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) { runScript(t, file) })
	}
}

func runScript(t *testing.T, file string) {
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(src), "\n"), "\n")
	var out strings.Builder
	h := &scenario{t: t, cfg: DefaultConfig()}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			out.WriteString(line + "\n")
			continue
		}
		cmdLine, pos := line, fmt.Sprintf("%s:%d", file, i+1)
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s: %q must be followed by ----", pos, cmdLine)
		}
		var want []string
		for i+1 < len(lines) && lines[i+1] != "" {
			i++
			want = append(want, lines[i])
		}
		if i+1 < len(lines) {
			i++ // the blank line that ends the block
		}
		got := h.run(pos, cmdLine)
		if !*rewrite && strings.Join(want, "\n") != got {
			t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", pos, cmdLine, got, strings.Join(want, "\n"))
		}
		out.WriteString(cmdLine + "\n----\n" + got + "\n\n")
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type scenario struct {
	t   *testing.T
	cfg Config
	s   *sim
}

type args struct {
	t    *testing.T
	pos  string
	args map[string]string
}

func (p *args) fail(format string, a ...any) {
	p.t.Helper()
	p.t.Fatalf("%s: %s", p.pos, fmt.Sprintf(format, a...))
}

func (p *args) opt(k, def string) string {
	v, ok := p.args[k]
	delete(p.args, k)
	if !ok {
		return def
	}
	return v
}

func (p *args) str(k string) string {
	v, ok := p.args[k]
	if !ok {
		p.fail("missing argument %s", k)
	}
	delete(p.args, k)
	return v
}

func (p *args) float(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.fail("%v", err)
	}
	return f
}

func (p *args) int(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		p.fail("%v", err)
	}
	return n
}

func (p *args) rect(s string) raftmeta.Rect {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		p.fail("%q: want X0,Z0,X1,Z1", s)
	}
	return raftmeta.Rect{p.float(f[0]), p.float(f[1]), p.float(f[2]), p.float(f[3])}
}

func (p *args) done() {
	for k := range p.args {
		p.fail("unknown argument %s", k)
	}
}

func (h *scenario) run(pos, line string) string {
	t := h.t
	fields := strings.Fields(line)
	name := fields[0]
	p := &args{t: t, pos: pos, args: map[string]string{}}
	for i, kv := range fields[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok && i == 0 {
			k, v, ok = "_", kv, true // a positional first argument (world X0,Z0,X1,Z1)
		}
		if !ok {
			p.fail("argument %q is not key=value", kv)
		}
		if k == "id" {
			k = "server"
		}
		p.args[k] = v
	}
	if name == "config" {
		for k, v := range p.args {
			if err := setField(&h.cfg, k, v); err != nil {
				p.fail("%v", err)
			}
		}
		if err := h.cfg.Validate(); err != nil {
			return "error: " + err.Error()
		}
		if h.s != nil {
			if err := h.s.setConfig(h.cfg); err != nil {
				p.fail("%v", err)
			}
		}
		return "ok"
	}
	if name != "world" && h.s == nil {
		p.fail("run world first")
	}
	s := h.s
	server := func() raftmeta.ServerID { return raftmeta.ServerID(p.int(p.str("server"))) }
	switch name {
	case "world":
		// handled below
	case "server", "join":
		id := server()
		capacity := p.int(p.opt("cap", "0"))
		p.done()
		s.join(id, capacity)
		return s.show()
	case "crowd":
		g := p.opt("name", "crowd")
		x, z, r, n := p.float(p.str("x")), p.float(p.str("z")), p.float(p.str("r")), p.int(p.str("n"))
		p.done()
		s.crowd(g, x, z, r, n)
		return fmt.Sprintf("%d entities\n%s", s.entities(), s.summary())
	case "uniform":
		g := p.opt("name", "bg")
		n := p.int(p.str("n"))
		r := s.world
		if v := p.opt("rect", ""); v != "" {
			r = p.rect(v)
		}
		p.done()
		s.uniform(g, n, r)
		return fmt.Sprintf("%d entities\n%s", s.entities(), s.summary())
	case "walk":
		g := p.opt("name", "crowd")
		dx, dz := p.float(p.opt("dx", "0")), p.float(p.opt("dz", "0"))
		p.done()
		s.walk(g, dx, dz)
		return s.summary()
	case "disperse":
		g := p.opt("name", "crowd")
		p.done()
		s.disperse(g)
		return s.summary()
	case "clear":
		g := p.opt("name", "crowd")
		p.done()
		s.clear(g)
		return s.summary()
	case "kill":
		id := server()
		p.done()
		s.dead[id] = true
		return s.summary()
	case "drain":
		id := server()
		p.done()
		s.draining[id] = true
		return s.summary()
	case "markdead":
		id := server()
		p.done()
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
		p.done()
		s.silent[id] = name == "silence"
		return "ok"
	case "round", "settle":
		n := p.int(p.opt("n", "1"))
		limit := p.int(p.opt("max", "50"))
		p.done()
		return h.rounds(name == "settle", n, limit)
	case "show":
		p.done()
		return s.show()
	default:
		p.fail("unknown command %q", name)
	}
	// world
	r, minSize := p.rect(p.str("_")), p.float(p.str("min"))
	p.done()
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

package partitioner

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.SplitLoad = 0 }, "partitioner: SplitLoad (0) must be ≥ 1"},
		{func(c *Config) { c.SplitFraction = -1 }, "partitioner: SplitFraction (-1) must be finite and ≥ 0"},
		{func(c *Config) { c.SplitFraction = math.NaN() }, "partitioner: SplitFraction (NaN) must be finite and ≥ 0"},
		{func(c *Config) { c.MergeLoad = -1 }, "partitioner: MergeLoad (-1) must be ≥ 0"},
		{func(c *Config) { c.MergeLoad = 1001 }, "partitioner: MergeLoad (1001) must be ≤ SplitLoad/2 (1000)"},
		{func(c *Config) { c.MinCells = -2 }, "partitioner: MinCells (-2) must be ≥ 0"},
		{func(c *Config) { c.Imbalance = 0 }, "partitioner: Imbalance (0) must be > 0 and ≤ 1"},
		{func(c *Config) { c.Imbalance = 1.5 }, "partitioner: Imbalance (1.5) must be > 0 and ≤ 1"},
		{func(c *Config) { c.MaxShiftFraction = 0 }, "partitioner: MaxShiftFraction (0) must be > 0 and ≤ 1"},
		{func(c *Config) { c.MinTransfer = 0 }, "partitioner: MinTransfer (0) must be ≥ 1"},
		{func(c *Config) { c.MinSplitShare = 0.6 }, "partitioner: MinSplitShare (0.6) must be ≥ 0 and ≤ 0.5"},
		{func(c *Config) { c.CooldownRounds = -1 }, "partitioner: CooldownRounds (-1) must be ≥ 0"},
		{func(c *Config) { c.SplitCooldownRounds = 3 }, "partitioner: SplitCooldownRounds (3) must be ≥ 0 and ≤ CooldownRounds (2)"},
		{func(c *Config) { c.MaxOpsPerRound = 0 }, "partitioner: MaxOpsPerRound (0) must be ≥ 1"},
		{func(c *Config) { c.AggressionRecoveryRounds = 0 }, "partitioner: AggressionRecoveryRounds (0) must be ≥ 1"},
		{func(c *Config) { c.Quantum = math.Inf(1) }, "partitioner: Quantum (+Inf) must be finite and ≥ 0"},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate() = %v, want %q wrapping ErrInvalidConfig", err, tc.want)
		}
		if p, err := New(c); p != nil || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, %v", c, p, err)
		}
	}
	// Several bad fields: each is named.
	c := DefaultConfig()
	c.SplitLoad, c.MaxOpsPerRound = 0, 0
	err := c.Validate()
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "SplitLoad (0)") || !strings.Contains(err.Error(), "MaxOpsPerRound (0)") {
		t.Errorf("Validate() = %v", err)
	}
}

func mkHist(t *testing.T, bins []int32, lo, hi float64) hist {
	t.Helper()
	n := 0
	for _, b := range bins {
		n += int(b)
	}
	h, ok := newHist(bins, lo, hi, n)
	if !ok {
		t.Fatalf("newHist(%v) not ok", bins)
	}
	return h
}

func TestHist(t *testing.T) {
	uniform := make([]int32, raftmeta.LoadBins)
	for i := range uniform {
		uniform[i] = 10
	}
	h := mkHist(t, uniform, 0, 160)
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if m := h.median(); !near(m, 80) {
		t.Errorf("uniform median %v, want 80", m)
	}
	if b := h.below(25); !near(b, 25) {
		t.Errorf("below(25) = %v, want 25", b)
	}
	if x := h.fromLow(35); !near(x, 35) {
		t.Errorf("fromLow(35) = %v", x)
	}
	if x := h.fromHigh(35); !near(x, 125) {
		t.Errorf("fromHigh(35) = %v", x)
	}
	if n := h.atMostAbove(125); !near(n, 40) { // bins [120,130) .. [150,160)
		t.Errorf("atMostAbove(125) = %v, want 40", n)
	}
	if n := h.atMostBelow(25); !near(n, 30) {
		t.Errorf("atMostBelow(25) = %v, want 30", n)
	}
	if c := h.cuts(35, true); len(c) != 2 || !near(c[0], 125) || !near(c[1], 130) {
		t.Errorf("cuts(35, top) = %v, want [125 130]", c)
	}
	if c := h.cuts(35, false); len(c) != 2 || !near(c[0], 35) || !near(c[1], 30) {
		t.Errorf("cuts(35, bottom) = %v, want [35 30]", c)
	}

	// Two clusters: the median is the middle of the gap between them.
	two := make([]int32, raftmeta.LoadBins)
	two[1], two[14] = 50, 50
	h = mkHist(t, two, 0, 160)
	if m := h.median(); !near(m, 80) {
		t.Errorf("two-cluster median %v, want 80 (between 20 and 140)", m)
	}
	// One dense bin: interpolated inside it.
	one := make([]int32, raftmeta.LoadBins)
	one[3] = 100
	h = mkHist(t, one, 0, 160)
	if m := h.median(); !near(m, 35) {
		t.Errorf("one-bin median %v, want 35", m)
	}

	// Unusable reports.
	if _, ok := newHist(uniform[:5], 0, 1, 50); ok {
		t.Error("short histogram accepted")
	}
	if _, ok := newHist(make([]int32, raftmeta.LoadBins), 0, 1, 50); ok {
		t.Error("empty histogram accepted")
	}
	neg := make([]int32, raftmeta.LoadBins)
	neg[0], neg[1] = 5, -1
	if _, ok := newHist(neg, 0, 1, 4); ok {
		t.Error("negative bin accepted")
	}
}

func TestPlanOnEmptyMaps(t *testing.T) {
	p, _ := New(DefaultConfig())
	if ops := p.Plan(nil); ops != nil || len(p.Reasons()) != 0 {
		t.Fatalf("Plan(nil) = %v", ops)
	}
	if ops := p.Plan(&raftmeta.Map{}); len(ops) != 0 {
		t.Fatalf("Plan(empty) = %v", ops)
	}
	// A world, no servers: the one cell is unowned and nothing can take it.
	s := newSim(t, raftmeta.Rect{0, 0, 100, 100}, 10, DefaultConfig())
	m := s.plannerMap()
	if ops := p.Plan(&m); len(ops) != 0 {
		t.Fatalf("Plan(no servers) = %v", ops)
	}
}

// hotSim is one server, then a second, with a crowd making cell 1 hot (one round has run, so
// the loads are reported).
func hotSim(t *testing.T) *sim {
	cfg := DefaultConfig()
	cfg.SplitLoad, cfg.MergeLoad = 400, 100
	s := newSim(t, raftmeta.Rect{0, 0, 1000, 1000}, 10, cfg)
	s.join(1, 1000)
	s.join(2, 1000)
	s.crowd("c", 300, 300, 50, 1000)
	s.report()
	return s
}

func TestLockedCellsAreLeftAlone(t *testing.T) {
	s := hotSim(t)
	m := s.plannerMap()
	p, _ := New(s.cfg)
	if ops := p.Plan(&m); len(ops) == 0 {
		t.Fatal("the hot cell is not split")
	}

	m = s.plannerMap()
	m.Cells[0].State = raftmeta.CellMigrating
	p, _ = New(s.cfg)
	if ops := p.Plan(&m); len(ops) != 0 {
		t.Fatalf("a migrating cell was touched: %v", ops)
	}

	m = s.plannerMap()
	m.Changes = []raftmeta.Change{{ID: 7, Cells: []raftmeta.CellID{1}}}
	p, _ = New(s.cfg)
	if ops := p.Plan(&m); len(ops) != 0 {
		t.Fatalf("a cell locked by a pending change was touched: %v", ops)
	}

	// Locked cells of a dead server wait too.
	m = s.plannerMap()
	m.Servers[0].Alive = false
	m.Changes = []raftmeta.Change{{ID: 7, Cells: []raftmeta.CellID{1}}}
	p, _ = New(s.cfg)
	if ops := p.Plan(&m); len(ops) != 0 {
		t.Fatalf("a locked cell was evacuated: %v", ops)
	}
}

func TestStaleOrForeignReportIsUnknown(t *testing.T) {
	s := hotSim(t)
	for name, spoil := range map[string]func(m *raftmeta.Map){
		"older epoch": func(m *raftmeta.Map) { m.Servers[0].Load.Cells[0].Epoch-- },
		"newer epoch": func(m *raftmeta.Map) { m.Servers[0].Load.Cells[0].Epoch++ },
		"no report":   func(m *raftmeta.Map) { m.Servers[0].Load.Cells = nil },
		"reported by another server": func(m *raftmeta.Map) {
			m.Servers[1].Load.Cells, m.Servers[0].Load.Cells = m.Servers[0].Load.Cells, nil
		},
	} {
		m := s.plannerMap()
		spoil(&m)
		p, _ := New(s.cfg)
		if ops := p.Plan(&m); len(ops) != 0 {
			t.Errorf("%s: the cell's load should be unknown, got %v %q", name, ops, p.Reasons())
		}
	}
}

func TestSplitAtMedianWithNewOwner(t *testing.T) {
	s := hotSim(t)
	m := s.plannerMap()
	p, _ := New(s.cfg)
	ops := p.Plan(&m)
	if len(ops) != 1 {
		t.Fatalf("ops %v %q", ops, p.Reasons())
	}
	sp, ok := ops[0].(raftmeta.Split)
	if !ok || sp.Cell != 1 || sp.Epoch != m.Cells[0].Epoch || sp.NewOwner != 2 {
		t.Fatalf("op %#v", ops[0])
	}
	// The crowd is a disc at (300, 300): the median is near its centre on either axis.
	if math.Abs(sp.At-300) > 10 {
		t.Fatalf("split at %v, want ≈ 300 (the crowd's median)", sp.At)
	}
	if r := p.Reasons()[0]; !strings.Contains(r, "median") || !strings.Contains(r, "split cell 1") {
		t.Fatalf("reason %q", r)
	}
}

func TestCooldownAfterExternalChange(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CooldownRounds = 3
	cfg.MergeLoad = 0 // the empty cells would be merged
	s := newSim(t, raftmeta.Rect{0, 0, 1000, 1000}, 10, cfg)
	s.join(1, 0)
	s.mustApply(raftmeta.Split{Cell: 1, Epoch: 2, Axis: raftmeta.AxisX, At: 500})
	s.report()
	p, _ := New(cfg)
	m := s.plannerMap()
	p.Plan(&m)
	if p.cooling(1, cfg.CooldownRounds) || p.cooling(2, cfg.CooldownRounds) {
		t.Fatal("cells seen in the first round must not be cooling")
	}
	// An admin moves cell 2: it cools down for CooldownRounds rounds, then not.
	s.join(2, 0)
	c2 := s.f.Map().Cells[1]
	s.mustApply(raftmeta.Move{Cell: 2, Epoch: c2.Epoch, To: 2})
	for i := 1; i <= cfg.CooldownRounds+1; i++ {
		s.report()
		m := s.plannerMap()
		p.Plan(&m)
		if got, want := p.cooling(2, cfg.CooldownRounds), i <= cfg.CooldownRounds; got != want {
			t.Fatalf("%d rounds after the change: cooling %v, want %v", i-1, got, want)
		}
		if p.cooling(1, cfg.CooldownRounds) {
			t.Fatal("cell 1 did not change")
		}
	}
}

func TestAggressionHalvesOnReversalAndRecovers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AggressionRecoveryRounds = 2
	p, _ := New(cfg)
	tree := &raftmeta.TreeNode{ID: 1, Axis: raftmeta.AxisX, At: 5, Low: &raftmeta.TreeNode{ID: 2, Cell: 1}, High: &raftmeta.TreeNode{ID: 3, Cell: 2}}
	m := &raftmeta.Map{Tree: tree, Cells: []raftmeta.Cell{{ID: 1, Node: 2, Epoch: 1}, {ID: 2, Node: 3, Epoch: 1}}}
	step := func(dir int) {
		p.round++
		p.observe(m)
		if dir != 0 {
			p.remember(&roundState{shifts: []shiftRec{{node: 1, dir: dir}}})
		}
	}
	step(+1)
	if a := p.aggression(1); a != 1 {
		t.Fatalf("aggression %v after one shift", a)
	}
	step(-1)
	step(+1)
	if a := p.aggression(1); a != 0.25 {
		t.Fatalf("aggression %v after two reversals, want 0.25", a)
	}
	for range 5 {
		step(+1)
		step(-1)
	}
	if a := p.aggression(1); a != 1.0/16 {
		t.Fatalf("aggression %v after many reversals, want the floor 1/16", a)
	}
	step(0)
	step(0)
	if a := p.aggression(1); a != 1.0/8 {
		t.Fatalf("aggression %v after %d calm rounds, want 1/8", a, cfg.AggressionRecoveryRounds)
	}
	for range 10 {
		step(0)
	}
	if a := p.aggression(1); a != 1 {
		t.Fatalf("aggression %v after a long calm, want 1", a)
	}
}

// TestBalancedStableLoadNoOps: a uniform world, settled, stays without operations.
func TestBalancedStableLoadNoOps(t *testing.T) {
	cfg := DefaultConfig()
	s := newSim(t, raftmeta.Rect{0, 0, 4096, 4096}, 32, cfg)
	s.shadow, _ = New(cfg)
	for id := raftmeta.ServerID(1); id <= 4; id++ {
		s.join(id, 5000)
	}
	s.uniform("u", 8000, s.world)
	quiet := 0
	for quiet <= cfg.CooldownRounds {
		if s.rounds > 50 {
			t.Fatalf("not settled after %d rounds: %q", s.rounds, s.reasons)
		}
		s.round()
		if len(s.ops) == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	if _, r := s.balance(); r > 1+cfg.Imbalance+0.01 {
		t.Fatalf("settled at max/mean %.3f\n%s", r, s.show())
	}
	for range 30 {
		s.round()
		if len(s.ops) != 0 {
			t.Fatalf("round %d: %v %q", s.rounds, s.ops, s.reasons)
		}
	}
	t.Logf("settled by round %d: %s", s.rounds-30, s.summary())
}

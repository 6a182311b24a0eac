package raftmeta

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// applyAll applies cmds to a fresh state at indexes 1, 2, ... and fails on any error or broken
// invariant.
func applyAll(t *testing.T, cmds ...Command) *state {
	t.Helper()
	s := newState()
	for i, c := range cmds {
		if res := s.apply(uint64(i+1), c); res.Err != nil {
			t.Fatalf("command %d %#v: %v", i+1, c, res.Err)
		}
		if err := s.check(); err != nil {
			t.Fatalf("after command %d %#v: %v", i+1, c, err)
		}
	}
	return s
}

const nsSec = int64(1e9)

// fourCells: a 1024² world cut into four 512² cells (1, 3 on the left; 2, 4 on the right)
// owned by servers 1 and 2.
func fourCells(t *testing.T) *state {
	return applyAll(t,
		InitWorld{World: World{Max: [2]float64{1024, 1024}}, MinCellSize: 16},
		Register{Server: 1, Addr: "a:1", Now: 0, LeaseTTL: 3 * nsSec},
		Register{Server: 2, Addr: "b:1", Now: 0, LeaseTTL: 3 * nsSec},
		Split{Cell: 1, Epoch: 2, Axis: AxisX, At: 512, NewOwner: 2},
		Split{Cell: 1, Epoch: 3, Axis: AxisZ, At: 512},
		Split{Cell: 2, Epoch: 3, Axis: AxisZ, At: 512},
	)
}

func TestErrorCodes(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]error{}
	for _, e := range errorCodes {
		if !strings.HasPrefix(e.err.Error(), "raftmeta: ") {
			continue // raft's and context's errors map onto the package's codes
		}
		if !snake.MatchString(e.code) {
			t.Errorf("code %q of %v is not snake_case", e.code, e.err)
		}
		if prev, dup := seen[e.code]; dup {
			t.Errorf("code %q used by %v and %v", e.code, prev, e.err)
		}
		seen[e.code] = e.err
		wrapped := fmt.Errorf("%w: detail", e.err)
		if got := ErrorCode(wrapped); got != e.code {
			t.Errorf("ErrorCode(%v) = %q, want %q", wrapped, got, e.code)
		}
		if got := ErrorForCode(e.code); got != e.err {
			t.Errorf("ErrorForCode(%q) = %v, want %v", e.code, got, e.err)
		}
	}
	for err, want := range map[error]string{
		nil:                                "",
		errors.New("boom"):                 "internal",
		raft.ErrNotLeader:                  "not_leader",
		raft.ErrLeadershipLost:             "leadership_lost",
		raft.ErrEnqueueTimeout:             "timeout",
		raft.ErrRaftShutdown:               "shutdown",
		fmt.Errorf("x: %w", ErrStaleEpoch): "stale_epoch",
	} {
		if got := ErrorCode(err); got != want {
			t.Errorf("ErrorCode(%v) = %q, want %q", err, got, want)
		}
	}
	if ErrorForCode("internal") != nil || ErrorForCode("nope") != nil {
		t.Error("ErrorForCode of a code that names no sentinel is not nil")
	}
}

func TestInitWorldAssignsRootToLeastLoaded(t *testing.T) {
	s := applyAll(t,
		Register{Server: 7, Addr: "x", LeaseTTL: nsSec},
		Register{Server: 3, Addr: "y", LeaseTTL: nsSec},
		InitWorld{World: World{Min: [2]float64{-100, -50}, Max: [2]float64{100, 50}}, MinCellSize: 1},
	)
	c := s.cells[1]
	if c.Owner != 3 || c.Epoch != 2 || c.Bounds != (Rect{-100, -50, 100, 50}) || c.Node != 1 {
		t.Fatalf("root cell %+v, want owner 3 (lowest ID), epoch 2, the whole world, node 1", *c)
	}
	if s.version != 3 {
		t.Fatalf("version %d, want 3", s.version)
	}
}

func TestSplitFencesBothHalves(t *testing.T) {
	s := fourCells(t)
	// Every cell was once part of a cell at epoch ≤ 3; all four are now past it.
	for id, c := range s.cells {
		if c.Epoch != 4 {
			t.Errorf("cell %d epoch %d, want 4", id, c.Epoch)
		}
	}
	res := s.apply(7, Split{Cell: 4, Epoch: 4, Axis: AxisX, At: 700})
	if res.Err != nil || !reflect.DeepEqual(res.Cells, []CellID{5}) || res.Version != 7 {
		t.Fatalf("split result %+v", res)
	}
	if s.cells[4].Epoch != 5 || s.cells[5].Epoch != 5 || s.cells[5].Owner != s.cells[4].Owner {
		t.Fatalf("halves %+v %+v", *s.cells[4], *s.cells[5])
	}
}

func TestMigratingCellIsFrozen(t *testing.T) {
	s := fourCells(t)
	s.cells[3].State = CellMigrating
	before := s.toMap()
	for _, c := range []Command{
		Split{Cell: 3, Epoch: 4, Axis: AxisX, At: 100},
		Move{Cell: 3, Epoch: 4, To: 2},
		Merge{Low: 1, LowEpoch: 4, High: 3, HighEpoch: 4},
		Shift{Node: 2, At: 500, Epochs: map[CellID]Epoch{1: 4, 3: 4}},
	} {
		res := s.apply(before.Index, c)
		if !errors.Is(res.Err, ErrCellMigrating) {
			t.Errorf("%#v: %v, want ErrCellMigrating", c, res.Err)
		}
		if after := s.toMap(); !reflect.DeepEqual(before, after) {
			t.Errorf("%#v changed the map", c)
		}
	}
	// A shift that does not move the migrating cell's bounds is fine.
	if res := s.apply(8, Shift{Node: 3, At: 600, Epochs: map[CellID]Epoch{2: 4, 4: 4}}); res.Err != nil {
		t.Fatal(res.Err)
	}
}

type bogusCommand struct{}

func (bogusCommand) Type() CommandType { return 200 }

func TestApplyUnknownCommandValue(t *testing.T) {
	s := newState()
	res := s.apply(1, bogusCommand{})
	if !errors.Is(res.Err, ErrUnknownCommand) || res.Index != 1 || res.Version != 0 {
		t.Fatalf("%+v", res)
	}
	if _, err := EncodeCommand(bogusCommand{}); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("EncodeCommand(bogus): %v", err)
	}
}

func TestHeartbeatKeepsVersionAndCopiesLoad(t *testing.T) {
	s := fourCells(t)
	load := Load{Entities: 5, Cells: []CellLoad{{Cell: 1, Entities: 5}}}
	res := s.apply(7, Heartbeat{Server: 1, Now: nsSec, LeaseTTL: 3 * nsSec, Load: load})
	if res.Err != nil || res.Version != 6 || res.Index != 7 {
		t.Fatalf("%+v", res)
	}
	load.Cells[0].Entities = 99 // the proposer's slice is not retained
	if got := s.servers[1].Load.Cells[0].Entities; got != 5 {
		t.Fatalf("stored load aliases the command: %d", got)
	}
	if s.servers[1].LeaseExpires != 4*nsSec {
		t.Fatalf("lease %d", s.servers[1].LeaseExpires)
	}
	if res := s.apply(8, Heartbeat{Server: 1, Now: nsSec, LeaseTTL: nsSec, Load: Load{Entities: -1}}); !errors.Is(res.Err, ErrBadRequest) {
		t.Fatalf("negative load: %v", res.Err)
	}
	m := s.toMap()
	m.Servers[0].Load.Cells[0].Entities = 42 // nor is the map's
	if got := s.servers[1].Load.Cells[0].Entities; got != 5 {
		t.Fatalf("Map aliases the state: %d", got)
	}
}

func TestMapIsSortedDeepCopy(t *testing.T) {
	s := fourCells(t)
	m := s.toMap()
	for i := 1; i < len(m.Cells); i++ {
		if m.Cells[i-1].ID >= m.Cells[i].ID {
			t.Fatalf("cells not sorted: %v", m.Cells)
		}
	}
	if len(m.Servers) != 2 || m.Servers[0].ID != 1 || m.Servers[1].ID != 2 {
		t.Fatalf("servers %v", m.Servers)
	}
	want := &TreeNode{ID: 1, Axis: AxisX, At: 512,
		Low:  &TreeNode{ID: 2, Axis: AxisZ, At: 512, Low: &TreeNode{ID: 4, Cell: 1}, High: &TreeNode{ID: 5, Cell: 3}},
		High: &TreeNode{ID: 3, Axis: AxisZ, At: 512, Low: &TreeNode{ID: 6, Cell: 2}, High: &TreeNode{ID: 7, Cell: 4}},
	}
	if !reflect.DeepEqual(m.Tree, want) {
		t.Fatalf("tree %+v", m.Tree)
	}
	m.Cells[0].Owner = 99
	m.Tree.Low.Low.Cell = 99
	if s.cells[1].Owner == 99 || s.nodes[4].cell == 99 {
		t.Fatal("Map aliases the state")
	}
	if e := newState().toMap(); e.Cells == nil || e.Servers == nil || e.Tree != nil {
		t.Fatalf("empty map %+v: want empty (not nil) lists and no tree", e)
	}
}

// TestCheckDetectsCorruption breaks each invariant by hand and expects check to notice.
func TestCheckDetectsCorruption(t *testing.T) {
	for name, corrupt := range map[string]func(s *state){
		"bounds off the tree":    func(s *state) { s.cells[1].Bounds[2] = 500 },
		"dead owner":             func(s *state) { s.servers[1].Alive = false },
		"unknown owner":          func(s *state) { s.cells[2].Owner = 9 },
		"epoch zero":             func(s *state) { s.cells[3].Epoch = 0 },
		"bad state":              func(s *state) { s.cells[3].State = "frozen" },
		"orphan node":            func(s *state) { s.nodes[99] = &node{id: 99, cell: 1} },
		"extra cell":             func(s *state) { s.cells[9] = &Cell{ID: 9, Node: 4, Epoch: 1, State: CellActive} },
		"missing cell":           func(s *state) { delete(s.cells, 4) },
		"split outside its node": func(s *state) { s.nodes[2].at = 600 },
		"bad axis":               func(s *state) { s.nodes[1].axis = "y" },
		"cell id reused":         func(s *state) { s.nextCell = 3 },
		"node id reused":         func(s *state) { s.nextNode = 5 },
		"migrating, not locked":  func(s *state) { s.cells[2].State = CellMigrating },
		"unowned with a taker":   func(s *state) { s.cells[1].Owner = 0 },
		"version past index":     func(s *state) { s.version = s.index + 1 },
		"cell narrower than min": func(s *state) { s.minCellSize = 600 },
		"wrong parent":           func(s *state) { s.nodes[4].parent = 3 },
		"shared child": func(s *state) {
			s.nodes[3].low = 4
			delete(s.nodes, 6)
			delete(s.cells, 2)
		},
		"cell on wrong leaf": func(s *state) { s.cells[1].Node, s.cells[3].Node = 5, 4 },
		"no world but cells": func(s *state) { s.root = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			s := fourCells(t)
			corrupt(s)
			if err := s.check(); err == nil {
				t.Fatal("check passed")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestCommandsNeverReuseIDs(t *testing.T) {
	s := fourCells(t)
	for i, c := range []Command{
		Merge{Low: 2, LowEpoch: 4, High: 4, HighEpoch: 4},
		Split{Cell: 2, Epoch: 5, Axis: AxisX, At: 768},
	} {
		if res := s.apply(uint64(7+i), c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if _, ok := s.cells[4]; ok {
		t.Fatal("merged-away cell 4 came back")
	}
	if _, ok := s.cells[5]; !ok || s.cells[5].Node != 9 {
		t.Fatalf("split after merge: want new cell 5 on new node 9, cells %v", s.toMap().Cells)
	}
}

// withChange is fourCells with a pending change 7: cell 2 (server 2) moving to server 1, and
// a pending split (change 8) of cell 3 (server 1) with its high half to server 2.
func withChange(t *testing.T) *state {
	s := fourCells(t)
	for i, op := range []Command{
		Move{Cell: 2, Epoch: 4, To: 1},
		Split{Cell: 3, Epoch: 4, Axis: AxisX, At: 256, NewOwner: 2},
	} {
		res := s.apply(uint64(7+i), Prepare{Op: mustEncodeCommand(t, op), Now: 0, Timeout: 5 * nsSec})
		if res.Err != nil || res.Change != ChangeID(7+i) {
			t.Fatalf("prepare %#v: %+v", op, res)
		}
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckDetectsChangeCorruption(t *testing.T) {
	for name, corrupt := range map[string]func(s *state){
		"locked cell active":      func(s *state) { s.cells[2].State = CellActive },
		"cell locked twice":       func(s *state) { s.changes[8].Cells = []CellID{2, 3} },
		"unsorted cells":          func(s *state) { s.changes[7].Cells = []CellID{2, 2} },
		"missing locked cell":     func(s *state) { s.changes[7].Cells = []CellID{2, 9} },
		"no transfers":            func(s *state) { s.changes[7].Transfers = nil },
		"transfer to dead":        func(s *state) { s.changes[7].Transfers[0].To = 9 },
		"transfer to itself":      func(s *state) { s.changes[7].Transfers[0].To = 2 },
		"transfer to draining":    func(s *state) { s.servers[1].Draining = true },
		"empty region":            func(s *state) { s.changes[7].Transfers[0].Region = Rect{1, 1, 1, 2} },
		"change past the index":   func(s *state) { s.index, s.version = 7, 7 },
		"bad op":                  func(s *state) { s.changes[7].Op = []byte("\x08{") },
		"op of the wrong kind":    func(s *state) { s.changes[7].Op = mustEncodeCommand(t, Drain{Server: 1}) },
		"op type mismatch":        func(s *state) { s.changes[7].OpType = CmdSplit },
		"reserved cell past next": func(s *state) { s.nextCell-- },
		"reserved node past next": func(s *state) { s.changes[8].NodeCount = 9 },
		"change key":              func(s *state) { s.changes[9] = s.changes[8] },
		"too many resolved":       func(s *state) { s.resolved = make([]ResolvedChange, MaxResolved+1) },
	} {
		t.Run(name, func(t *testing.T) {
			s := withChange(t)
			corrupt(s)
			if err := s.check(); err == nil {
				t.Fatal("check passed")
			} else {
				t.Log(err)
			}
		})
	}
}

// TestChangeReservesIDs: a pending split's new cell ID is reserved, so the cells created
// meanwhile skip it and the commit creates the cell its transfer names.
func TestChangeReservesIDs(t *testing.T) {
	s := withChange(t)
	want := s.changes[8].Transfers[0]
	if want.Cell != 5 || want.Epoch != 5 || want.Region != (Rect{256, 512, 512, 1024}) || want.From != 1 || want.To != 2 {
		t.Fatalf("split transfer %+v", want)
	}
	if res := s.apply(9, Split{Cell: 1, Epoch: 4, Axis: AxisZ, At: 100}); res.Err != nil || !reflect.DeepEqual(res.Cells, []CellID{6}) {
		t.Fatalf("split meanwhile: %+v", res)
	}
	res := s.apply(10, Staged{Change: 8, Transfer: 0, Server: 2})
	if res.Err != nil || !reflect.DeepEqual(res.Cells, []CellID{5}) || res.Version != 10 {
		t.Fatalf("commit: %+v", res)
	}
	if c := s.cells[5]; c.Owner != 2 || c.Epoch != 5 || c.Bounds != want.Region || c.State != CellActive {
		t.Fatalf("cell 5 %+v", *c)
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}

func TestResolvedKeepsTheLast(t *testing.T) {
	s := fourCells(t)
	idx := uint64(7)
	move := mustEncodeCommand(t, Move{Cell: 2, Epoch: 4, To: 1})
	for i := range MaxResolved + 6 {
		if res := s.apply(idx, Prepare{Op: move, Timeout: nsSec}); res.Err != nil || res.Change != ChangeID(idx) {
			t.Fatalf("round %d: %+v", i, res)
		}
		if res := s.apply(idx+1, Abort{Change: ChangeID(idx), Reason: fmt.Sprint(i)}); res.Err != nil {
			t.Fatal(res.Err)
		}
		idx += 2
	}
	m := s.toMap()
	if len(m.Resolved) != MaxResolved || m.Resolved[0].Reason != "6" || m.Resolved[MaxResolved-1].Reason != fmt.Sprint(MaxResolved+5) {
		t.Fatalf("resolved: %d, first %+v last %+v", len(m.Resolved), m.Resolved[0], m.Resolved[len(m.Resolved)-1])
	}
	if s.cells[2].Epoch != 4 || s.cells[2].Owner != 2 || s.cells[2].State != CellActive {
		t.Fatalf("cell 2 after %d aborts: %+v", MaxResolved+6, *s.cells[2])
	}
	if res := s.apply(idx, Abort{Change: 7, Reason: strings.Repeat("x", MaxReasonLen+1)}); !errors.Is(res.Err, ErrUnknownChange) {
		t.Fatalf("abort of a resolved change: %v", res.Err)
	}
	if res := s.apply(idx, Prepare{Op: move, Timeout: nsSec}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := s.apply(idx+1, Abort{Change: ChangeID(idx), Reason: strings.Repeat("x", MaxReasonLen+1)}); !errors.Is(res.Err, ErrBadRequest) {
		t.Fatalf("long reason: %v", res.Err)
	}
}

// TestMapChangesAreDeepCopies: the changes Map returns do not alias the state.
func TestMapChangesAreDeepCopies(t *testing.T) {
	s := withChange(t)
	m := s.toMap()
	if len(m.Changes) != 2 || m.Changes[0].ID != 7 || m.Changes[1].ID != 8 {
		t.Fatalf("changes %+v", m.Changes)
	}
	m.Changes[0].Transfers[0].Staged = true
	m.Changes[0].Cells[0] = 99
	m.Changes[0].Op[0] = 0
	if p := s.changes[7]; p.Transfers[0].Staged || p.Cells[0] != 2 || p.Op[0] != byte(CmdMove) {
		t.Fatalf("Map aliases the state: %+v", p.Change)
	}
}

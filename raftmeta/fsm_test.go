package raftmeta

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"
)

func applyEntry(f *FSM, index uint64, data []byte) *ApplyResult {
	r, _ := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult)
	return r
}

func mustEncodeCommand(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMApplyIgnoresOtherLogTypes(t *testing.T) {
	f := NewFSM()
	data := mustEncodeCommand(t, Register{Server: 1, Addr: "a", LeaseTTL: nsSec})
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogConfiguration, raft.LogBarrier, raft.LogAddPeerDeprecated} {
		if r := f.Apply(&raft.Log{Index: 1, Type: typ, Data: data}); r != nil {
			t.Errorf("%v: Apply returned %#v, want nil", typ, r)
		}
	}
	if f.Apply(nil) != nil {
		t.Error("Apply(nil) != nil")
	}
	if m := f.Map(); len(m.Servers) != 0 || m.Index != 0 {
		t.Fatalf("non-command entries changed the map: %+v", m)
	}
	r := applyEntry(f, 5, data)
	if r == nil || r.Err != nil || r.Index != 5 || r.Version != 5 || f.Index() != 5 || f.Version() != 5 {
		t.Fatalf("result %+v, index %d, version %d", r, f.Index(), f.Version())
	}
	r = applyEntry(f, 6, []byte{0x63})
	if !errors.Is(r.Err, ErrUnknownCommand) || r.Index != 6 || r.Version != 5 || f.Index() != 6 {
		t.Fatalf("undecodable entry: %+v", r)
	}
}

func TestFSMWaitVersion(t *testing.T) {
	f := NewFSM()
	applyEntry(f, 1, mustEncodeCommand(t, Register{Server: 1, Addr: "a", LeaseTTL: 10 * nsSec}))

	// Already past: returns at once.
	m, err := f.WaitVersion(context.Background(), 0)
	if err != nil || m.Version != 1 {
		t.Fatalf("WaitVersion(0) = %d, %v", m.Version, err)
	}

	type result struct {
		m   Map
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := f.WaitVersion(context.Background(), 1)
		done <- result{m, err}
	}()
	// A heartbeat advances the index, not the version: the waiter stays blocked.
	applyEntry(f, 2, mustEncodeCommand(t, Heartbeat{Server: 1, Now: nsSec, LeaseTTL: 10 * nsSec}))
	select {
	case r := <-done:
		t.Fatalf("woke on a heartbeat: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	applyEntry(f, 3, mustEncodeCommand(t, Register{Server: 2, Addr: "b", LeaseTTL: 10 * nsSec}))
	select {
	case r := <-done:
		if r.err != nil || r.m.Version != 3 || len(r.m.Servers) != 2 {
			t.Fatalf("woke with %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitVersion did not wake on a map change")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	m, err = f.WaitVersion(ctx, 3)
	if !errors.Is(err, context.DeadlineExceeded) || m.Version != 3 || m.Index != 3 {
		t.Fatalf("timed out WaitVersion = %d, %v; want the current map and DeadlineExceeded", m.Version, err)
	}
}

func TestFSMWaitIndex(t *testing.T) {
	f := NewFSM()
	done := make(chan error, 1)
	go func() { done <- f.WaitIndex(context.Background(), 1) }()
	applyEntry(f, 1, []byte{0xEE}) // rejected entries still advance the index
	select {
	case err := <-done:
		t.Fatalf("woke at index 1: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	applyEntry(f, 2, []byte{0xEE})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitIndex did not wake")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitIndex(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled WaitIndex: %v", err)
	}
}

func TestFSMRestoreWakesWaiters(t *testing.T) {
	src := NewFSM()
	applyEntry(src, 7, mustEncodeCommand(t, Register{Server: 1, Addr: "a", LeaseTTL: nsSec}))
	snap, _ := src.Snapshot()
	sink := &memSnapshotSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}

	f := NewFSM()
	done := make(chan Map, 1)
	go func() {
		m, _ := f.WaitVersion(context.Background(), 0)
		done <- m
	}()
	time.Sleep(10 * time.Millisecond)
	if err := f.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-done:
		if m.Version != 7 || len(m.Servers) != 1 {
			t.Fatalf("woke with %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Restore did not wake WaitVersion")
	}
}

func TestFSMSnapshotIsAPointInTime(t *testing.T) {
	f := NewFSM()
	applyEntry(f, 1, mustEncodeCommand(t, InitWorld{World: World{Max: [2]float64{100, 100}}, MinCellSize: 10}))
	applyEntry(f, 2, mustEncodeCommand(t, Register{Server: 1, Addr: "a", LeaseTTL: nsSec}))
	want := f.Map()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after Snapshot (raft runs them concurrently with Persist) do not leak into it.
	applyEntry(f, 3, mustEncodeCommand(t, Split{Cell: 1, Epoch: 2, Axis: AxisX, At: 50}))
	applyEntry(f, 4, mustEncodeCommand(t, Heartbeat{Server: 1, Now: nsSec, LeaseTTL: nsSec, Load: Load{Cells: []CellLoad{{Cell: 1}}}}))
	sink := &memSnapshotSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := NewFSM()
	rc := sink.reader()
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if !rc.closed {
		t.Error("Restore did not close the snapshot reader")
	}
	if got := g.Map(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %+v\nwant %+v", got, want)
	}
}

func TestFSMPersistCancelsOnError(t *testing.T) {
	f := NewFSM()
	snap, _ := f.Snapshot()
	sink := &memSnapshotSink{failWrite: true}
	if err := snap.Persist(sink); err == nil || !sink.cancelled || sink.closed {
		t.Fatalf("Persist to a failing sink: err %v, cancelled %v, closed %v", err, sink.cancelled, sink.closed)
	}
}

func TestFSMRestoreRejectsCorruptSnapshots(t *testing.T) {
	good := NewFSM()
	applyEntry(good, 1, mustEncodeCommand(t, InitWorld{World: World{Max: [2]float64{100, 100}}, MinCellSize: 10}))
	applyEntry(good, 2, mustEncodeCommand(t, Register{Server: 1, Addr: "a", LeaseTTL: nsSec}))
	applyEntry(good, 3, mustEncodeCommand(t, Split{Cell: 1, Epoch: 2, Axis: AxisX, At: 50}))
	snap, _ := good.Snapshot()
	sink := &memSnapshotSink{}
	_ = snap.Persist(sink)
	valid := sink.String()

	for name, data := range map[string]string{
		"empty":          "",
		"garbage":        "\x00\x01",
		"truncated":      valid[:len(valid)/2],
		"trailing":       valid + "{}",
		"unknown field":  strings.Replace(valid, `"format":1`, `"format":1,"extra":2`, 1),
		"future format":  strings.Replace(valid, `"format":1`, `"format":2`, 1),
		"overlap":        strings.Replace(valid, `"bounds":[0,0,50,100]`, `"bounds":[0,0,60,100]`, 1),
		"dangling child": strings.Replace(valid, `"low":2`, `"low":9`, 1),
		"repeated cell":  strings.Replace(valid, `{"id":2,"node":3`, `{"id":1,"node":3`, 1),
		"dead owner":     strings.Replace(valid, `"alive":true`, `"alive":false`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if name != "empty" && name != "garbage" && data == valid {
				t.Fatal("the corruption did not apply; update the test to the snapshot encoding")
			}
			f := NewFSM()
			applyEntry(f, 1, mustEncodeCommand(t, Register{Server: 5, Addr: "e", LeaseTTL: nsSec}))
			before := f.Map()
			rc := &snapReader{Reader: bytes.NewReader([]byte(data))}
			err := f.Restore(rc)
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: %v, want ErrCorruptSnapshot", err)
			}
			if !rc.closed {
				t.Error("reader not closed")
			}
			if after := f.Map(); !reflect.DeepEqual(before, after) {
				t.Fatal("a failed Restore changed the state")
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		err := NewFSM().Restore(io.NopCloser(failingReader{}))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatal(err)
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk gone") }

// ---- the property test ----

// genCommand draws a command that is often valid for s (cells, nodes and epochs taken from it)
// and often not (stale epochs, coordinates outside or too close, unknown IDs, dead servers).
// rapid biases integer draws towards small values, so the common cases come first in every
// list and rare ones are drawn as the top of a range.
func genCommand(t *rapid.T, s *state, now int64) Command {
	kind := rapid.SampledFrom([]string{
		"split", "prepare", "staged", "shift", "merge", "move", "prepare", "staged", "split", "heartbeat", "register",
		"shift", "merge", "abort", "markdead", "drain", "move", "deregister", "split", "init",
	}).Draw(t, "kind")
	return genCommandOf(t, s, now, kind)
}

// genCommandOf draws a command of the given kind (see genCommand).
func genCommandOf(t *rapid.T, s *state, now int64, kind string) Command {
	rare := func(label string) bool { return rapid.IntRange(0, 9).Draw(t, label) == 9 }
	var live []ServerID // registered servers that can take cells, then the others
	for _, pass := range []bool{true, false} {
		for _, id := range slices.Sorted(func(yield func(ServerID) bool) {
			for id := range s.servers {
				if !yield(id) {
					return
				}
			}
		}) {
			if canTake(s.servers[id]) == pass {
				live = append(live, id)
			}
		}
	}
	server := func(label string) ServerID {
		if len(live) == 0 || rare(label+"_any") {
			return ServerID(rapid.SampledFrom([]uint64{1, 2, 3, 4, 0, 9}).Draw(t, label))
		}
		return rapid.SampledFrom(live).Draw(t, label)
	}
	epoch := func(e Epoch, label string) Epoch {
		if rare(label + "_stale") {
			return e + Epoch(rapid.SampledFrom([]int{-1, 1}).Draw(t, label))
		}
		return e
	}
	// frac is a fraction of a range: mostly near the middle, sometimes at or past the ends.
	frac := func(label string) float64 {
		if rare(label + "_edge") {
			return rapid.SampledFrom([]float64{0, 1, 0.001, 0.999, -0.1, 1.1}).Draw(t, label)
		}
		return 0.5 + float64(rapid.IntRange(-499, 499).Draw(t, label))/1000
	}
	ttl := func() int64 {
		if rare("bad_ttl") {
			return 0
		}
		return rapid.SampledFrom([]int64{3 * nsSec, nsSec}).Draw(t, "ttl")
	}
	cellIDs := slices.Sorted(func(yield func(CellID) bool) {
		for id := range s.cells {
			if !yield(id) {
				return
			}
		}
	})
	pickCell := func() *Cell {
		if len(cellIDs) == 0 || rare("unknown_cell") {
			return &Cell{ID: CellID(rapid.Uint64Range(0, 20).Draw(t, "cell_id")), Epoch: 1, Bounds: Rect{0, 0, 100, 100}}
		}
		return s.cells[rapid.SampledFrom(cellIDs).Draw(t, "cell")]
	}
	var internal []*node
	for _, id := range slices.Sorted(func(yield func(NodeID) bool) {
		for id := range s.nodes {
			if !yield(id) {
				return
			}
		}
	}) {
		if n := s.nodes[id]; !n.leaf() {
			internal = append(internal, n)
		}
	}

	changeIDs := s.sortedChangeIDs()
	pickChange := func() *pendingChange {
		if len(changeIDs) == 0 || rare("unknown_change") {
			return &pendingChange{Change: Change{ID: ChangeID(rapid.Uint64Range(0, 200).Draw(t, "change_id")),
				Transfers: []Transfer{{To: server("to")}}}}
		}
		return s.changes[rapid.SampledFrom(changeIDs).Draw(t, "change")]
	}

	switch kind {
	case "prepare":
		inner := rapid.SampledFrom([]string{"move", "split", "shift", "merge", "drain", "prepare"}).Draw(t, "op")
		if inner == "prepare" || inner == "drain" {
			if !rare("other_op") {
				inner = "move"
			}
		}
		op := genCommandOf(t, s, now, inner)
		b, err := EncodeCommand(op)
		if err != nil {
			t.Fatalf("encoding %#v: %v", op, err)
		}
		timeout := rapid.SampledFrom([]int64{5 * nsSec, nsSec}).Draw(t, "timeout")
		if rare("bad_timeout") {
			timeout = rapid.SampledFrom([]int64{0, -1, int64(MaxChangeTimeout) + 1}).Draw(t, "timeout")
		}
		return Prepare{Op: b, Now: now, Timeout: timeout}
	case "staged":
		p := pickChange()
		i := 0
		for i < len(p.Transfers)-1 && p.Transfers[i].Staged {
			i++
		}
		if len(p.Transfers) > 1 && rare("any_transfer") {
			i = rapid.IntRange(0, len(p.Transfers)-1).Draw(t, "transfer")
		}
		to := p.Transfers[i].To
		if rare("bad_staged") {
			i = rapid.SampledFrom([]int{-1, len(p.Transfers), i}).Draw(t, "bad_transfer")
			to = server("wrong_server")
		}
		return Staged{Change: p.ID, Transfer: i, Server: to}
	case "abort":
		return Abort{Change: pickChange().ID, Reason: rapid.SampledFrom([]string{"deadline passed", "", "x"}).Draw(t, "reason")}
	case "init":
		w := World{Max: [2]float64{rapid.SampledFrom([]float64{1000, 100, 0}).Draw(t, "wx"), rapid.SampledFrom([]float64{1000, 100}).Draw(t, "wz")}}
		return InitWorld{World: w, MinCellSize: rapid.SampledFrom([]float64{10, 40, 0, -1, 2000}).Draw(t, "min")}
	case "register":
		r := Register{
			Server: server("server"), Addr: rapid.SampledFrom([]string{"a:1", "b:1"}).Draw(t, "addr"),
			ClientAddr: "c:1", Capacity: rapid.IntRange(0, 100).Draw(t, "cap"), Now: now, LeaseTTL: ttl(),
		}
		if rare("bad_register") {
			r.Addr, r.Capacity = rapid.SampledFrom([]string{"", "a:1"}).Draw(t, "bad_addr"), rapid.IntRange(-1, 0).Draw(t, "bad_cap")
		}
		return r
	case "heartbeat":
		h := Heartbeat{Server: server("server"), Now: now + rapid.Int64Range(-nsSec, 0).Draw(t, "skew"), LeaseTTL: ttl()}
		h.Load.Entities = rapid.IntRange(0, 100).Draw(t, "entities")
		if rare("bad_load") {
			h.Load.Entities = -1
		}
		for _, id := range cellIDs {
			if rapid.Bool().Draw(t, "report") {
				h.Load.Cells = append(h.Load.Cells, CellLoad{Cell: id, Entities: rapid.IntRange(0, 50).Draw(t, "cell_entities")})
			}
		}
		return h
	case "deregister":
		return Deregister{Server: server("server")}
	case "split":
		c := pickCell()
		axis := rapid.SampledFrom([]Axis{AxisX, AxisZ}).Draw(t, "axis")
		if rare("bad_axis") {
			axis = "y"
		}
		i, _ := axisIndex(axis)
		lo, hi := c.Bounds[i], c.Bounds[i+2]
		owner := ServerID(0)
		if rapid.Bool().Draw(t, "new_owner") {
			owner = server("owner")
		}
		return Split{Cell: c.ID, Epoch: epoch(c.Epoch, "epoch"), Axis: axis, At: lo + frac("at")*(hi-lo), NewOwner: owner}
	case "merge":
		var pairs [][2]*Cell
		for _, n := range internal {
			if s.nodes[n.low].leaf() && s.nodes[n.high].leaf() {
				pairs = append(pairs, [2]*Cell{s.cells[s.nodes[n.low].cell], s.cells[s.nodes[n.high].cell]})
			}
		}
		var low, high *Cell
		if len(pairs) == 0 || rare("random_pair") {
			low, high = pickCell(), pickCell()
		} else {
			p := rapid.SampledFrom(pairs).Draw(t, "pair")
			low, high = p[0], p[1]
		}
		if rare("swap") {
			low, high = high, low
		}
		return Merge{Low: low.ID, LowEpoch: epoch(low.Epoch, "low_epoch"), High: high.ID, HighEpoch: epoch(high.Epoch, "high_epoch")}
	case "shift":
		if len(internal) == 0 || rare("unknown_node") {
			return Shift{Node: NodeID(rapid.Uint64Range(0, 12).Draw(t, "node_id")), At: 1}
		}
		n := rapid.SampledFrom(internal).Draw(t, "node")
		r := s.nodeRect(n.id)
		i, _ := axisIndex(n.axis)
		// Mostly small moves of the line, as the partitioner makes them.
		at := n.at + float64(rapid.IntRange(-300, 300).Draw(t, "delta"))/1000*(r[i+2]-r[i])
		if rare("anywhere") {
			at = r[i] + frac("at")*(r[i+2]-r[i])
		}
		ids, _ := s.shiftPlan(n, at)
		epochs := map[CellID]Epoch{}
		for _, id := range ids {
			epochs[id] = epoch(s.cells[id].Epoch, "epoch")
		}
		if len(ids) > 0 && rare("drop") {
			delete(epochs, ids[0])
		}
		if rare("extra") {
			c := pickCell()
			epochs[c.ID] = c.Epoch
		}
		return Shift{Node: n.id, At: at, Epochs: epochs}
	case "move":
		c := pickCell()
		return Move{Cell: c.ID, Epoch: epoch(c.Epoch, "epoch"), To: server("to")}
	case "drain":
		return Drain{Server: server("server"), Migrate: rapid.Bool().Draw(t, "migrate")}
	default:
		return MarkDead{Server: server("server"), Now: now + rapid.Int64Range(-nsSec, 4*nsSec).Draw(t, "ahead")}
	}
}

// genPrologue draws a world and a few servers, so most runs exercise the map rather than
// commands on an empty one (InitWorld stays in genCommand's mix, mostly as a rejection).
func genPrologue(t *rapid.T) []Command {
	var cmds []Command
	if rapid.IntRange(0, 9).Draw(t, "no_world") != 9 {
		side := rapid.SampledFrom([]float64{1000, 4096, 100}).Draw(t, "side")
		cmds = append(cmds, InitWorld{
			World:       World{Min: [2]float64{-side / 2, 0}, Max: [2]float64{side / 2, side}},
			MinCellSize: side / rapid.SampledFrom([]float64{32, 16, 8, 4}).Draw(t, "cells_across"),
		})
	}
	for i := range rapid.SampledFrom([]int{3, 2, 4, 1, 0}).Draw(t, "servers") {
		cmds = append(cmds, Register{Server: ServerID(i + 1), Addr: "s:1", LeaseTTL: 3 * nsSec})
	}
	return cmds
}

// structural is the map without what heartbeats change (index, version, leases, loads).
func structural(m Map) Map {
	m.Index, m.Version = 0, 0
	m.Servers = slices.Clone(m.Servers)
	for i := range m.Servers {
		m.Servers[i].LeaseExpires = 0
		m.Servers[i].Load = Load{}
	}
	return m
}

func sameResult(a, b *ApplyResult) bool {
	if a == nil || b == nil {
		return a == b
	}
	if (a.Err == nil) != (b.Err == nil) || (a.Err != nil && a.Err.Error() != b.Err.Error()) {
		return false
	}
	return a.Index == b.Index && a.Version == b.Version && slices.Equal(a.Cells, b.Cells)
}

// TestFSMProperties applies random command sequences (valid and invalid mixed) through
// FSM.Apply and checks after every entry: the invariants hold; a rejected command changes
// nothing but the index; the version moves (to the entry's index) exactly when the map as the
// API shows it changes; epochs never decrease and grow whenever a cell's owner or bounds change;
// cell IDs are never reused. At random points the FSM is snapshotted, persisted and restored
// into a fresh FSM, which must hold the same map and then give the same results and maps for
// every later entry (determinism).
func TestFSMProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f := NewFSM()
		var shadow *FSM
		var now int64
		seenCells := map[CellID]bool{} // every cell ID that ever existed (a split's reserved ID may come after higher ones)
		prologue := genPrologue(t)
		steps := len(prologue) + rapid.IntRange(10, 150).Draw(t, "steps")
		for idx := uint64(1); idx <= uint64(steps); idx++ {
			var c Command
			if int(idx) <= len(prologue) {
				c = prologue[idx-1]
			} else {
				now += rapid.Int64Range(0, nsSec).Draw(t, "dt")
				c = genCommand(t, f.s, now)
			}
			data, err := EncodeCommand(c)
			if err != nil {
				t.Fatalf("encoding %#v: %v", c, err)
			}
			switch rapid.IntRange(0, 29).Draw(t, "garble") {
			case 0:
				data = data[:rapid.IntRange(0, len(data)-1).Draw(t, "cut")]
			case 1:
				data = slices.Clone(data)
				data[rapid.IntRange(0, len(data)-1).Draw(t, "flip_at")] ^= byte(rapid.IntRange(1, 255).Draw(t, "flip"))
			}

			before := f.Map()
			var plain *FSM // for a Prepare: the FSM before it, to apply the plain operation to
			if _, ok := c.(Prepare); ok {
				plain = snapshotRestore(t, f)
			}
			res := applyEntry(f, idx, data)
			after := f.Map()
			if err := f.s.check(); err != nil {
				t.Fatalf("entry %d %#v: invariant broken: %v", idx, c, err)
			}
			if res == nil || res.Index != idx || after.Index != idx || res.Version != after.Version {
				t.Fatalf("entry %d: result %+v, map index %d version %d", idx, res, after.Index, after.Version)
			}
			if res.Err != nil {
				if ErrorCode(res.Err) == "internal" {
					t.Fatalf("entry %d %#v: error without a code: %v", idx, c, res.Err)
				}
				before.Index = idx
				if !reflect.DeepEqual(before, after) {
					t.Fatalf("entry %d %#v rejected (%v) but changed the map", idx, c, res.Err)
				}
			} else {
				changed := !reflect.DeepEqual(structural(before), structural(after))
				if changed && after.Version != idx || !changed && after.Version != before.Version {
					t.Fatalf("entry %d %#v: map changed %v, version %d → %d", idx, c, changed, before.Version, after.Version)
				}
				old := map[CellID]Cell{}
				for _, cl := range before.Cells {
					old[cl.ID] = cl
				}
				for _, cl := range after.Cells {
					o, existed := old[cl.ID]
					switch {
					case !existed && seenCells[cl.ID]:
						t.Fatalf("entry %d: cell ID %d reused", idx, cl.ID)
					case existed && cl.Epoch < o.Epoch:
						t.Fatalf("entry %d: cell %d epoch went back %d → %d", idx, cl.ID, o.Epoch, cl.Epoch)
					case existed && (cl.Owner != o.Owner || cl.Bounds != o.Bounds) && cl.Epoch == o.Epoch:
						t.Fatalf("entry %d %#v: cell %d changed (%+v → %+v) without a new epoch", idx, c, cl.ID, o, cl)
					}
				}
			}
			for _, cl := range after.Cells {
				seenCells[cl.ID] = true
			}
			checkChangeProperties(t, idx, c, before, after, res, plain, data)

			if shadow != nil {
				sres := applyEntry(shadow, idx, data)
				if !sameResult(res, sres) {
					t.Fatalf("entry %d: the restored FSM gave %+v, the original %+v", idx, sres, res)
				}
				if sm := shadow.Map(); !reflect.DeepEqual(sm, after) {
					t.Fatalf("entry %d: the restored FSM diverged:\n%s\nvs\n%s", idx, renderMap(sm), renderMap(after))
				}
			}
			if rapid.IntRange(0, 9).Draw(t, "snapshot") == 0 {
				shadow = snapshotRestore(t, f)
				if sm := shadow.Map(); !reflect.DeepEqual(sm, after) {
					t.Fatalf("entry %d: restored\n%s\nnot\n%s", idx, renderMap(sm), renderMap(after))
				}
			}
		}
	})
}

// checkChangeProperties checks what one entry did to the two-phase changes:
//   - a pending change's locked cells keep their owner, bounds and epoch while it stays pending;
//   - a change resolved committed by this entry left every transfer's cell owned by the
//     transfer's target at exactly the epoch the transfer named, its region inside the cell;
//   - a change resolved aborted by an Abort left its cells as they were (owner, bounds, epoch);
//   - a Prepare that started no change did exactly what its plain operation does (same result,
//     same map), unless Prepare's own rules rejected it.
func checkChangeProperties(t *rapid.T, idx uint64, c Command, before, after Map, res *ApplyResult, plain *FSM, data []byte) {
	cellsOf := func(m Map) map[CellID]Cell {
		out := map[CellID]Cell{}
		for _, cl := range m.Cells {
			out[cl.ID] = cl
		}
		return out
	}
	bc, ac := cellsOf(before), cellsOf(after)
	pendingAfter := map[ChangeID]bool{}
	for _, ch := range after.Changes {
		pendingAfter[ch.ID] = true
	}
	resolved := map[ChangeID]ResolvedChange{}
	for _, r := range after.Resolved {
		resolved[r.ID] = r
	}
	for _, ch := range before.Changes {
		r, wasResolved := resolved[ch.ID]
		switch {
		case !pendingAfter[ch.ID] && !wasResolved:
			t.Fatalf("entry %d: change %d vanished without an outcome", idx, ch.ID)
		case pendingAfter[ch.ID] || !r.Committed:
			if _, isAbort := c.(Abort); !pendingAfter[ch.ID] && !isAbort {
				continue // aborted by MarkDead, Deregister or Drain, which may then move the cells
			}
			for _, id := range ch.Cells {
				b, a := bc[id], ac[id]
				if b.Owner != a.Owner || b.Bounds != a.Bounds || b.Epoch != a.Epoch {
					t.Fatalf("entry %d %#v: cell %d locked by change %d (pending or aborted) changed: %+v → %+v", idx, c, id, ch.ID, b, a)
				}
			}
		default: // committed by this entry
			for i, tr := range ch.Transfers {
				a, ok := ac[tr.Cell]
				if !ok || a.Owner != tr.To || a.Epoch != tr.Epoch {
					t.Fatalf("entry %d: change %d committed, transfer %d names cell %d → %d at epoch %d, the map has %+v", idx, ch.ID, i, tr.Cell, tr.To, tr.Epoch, a)
				}
				if r, ok := intersect(a.Bounds, tr.Region); !ok || r != tr.Region {
					t.Fatalf("entry %d: change %d transfer %d region %v outside cell %+v", idx, ch.ID, i, tr.Region, a)
				}
			}
		}
	}
	if plain == nil || res.Err != nil && (ErrorCode(res.Err) == "bad_request" || ErrorCode(res.Err) == "server_draining") {
		return // Prepare's own rules: its timeout, its operation's type, no region to a draining server
	}
	p, ok := c.(Prepare)
	if !ok || res.Change != 0 || !bytes.Equal(data, mustEncodeCommandRapid(t, p)) {
		return // a garbled entry is not the Prepare drawn
	}
	op, err := DecodeCommand(p.Op)
	if err != nil {
		return
	}
	pres := applyEntry(plain, idx, mustEncodeCommandRapid(t, op))
	if !sameResult(res, pres) {
		t.Fatalf("entry %d: prepare of %#v gave %+v, the plain operation %+v", idx, op, res, pres)
	}
	if pm := plain.Map(); !reflect.DeepEqual(pm, after) {
		t.Fatalf("entry %d: prepare of %#v left\n%s\nthe plain operation\n%s", idx, op, renderMap(after), renderMap(pm))
	}
}

func mustEncodeCommandRapid(t *rapid.T, c Command) []byte {
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatalf("encoding %#v: %v", c, err)
	}
	return b
}

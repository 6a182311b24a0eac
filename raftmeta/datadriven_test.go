package raftmeta

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meridian-mmo/meridian/internal/datadriven"
)

// Data-driven FSM tests: every testdata/*.txt file is a script in internal/datadriven's format
// (command line, ----, expected output up to a blank line), run on a fresh FSM. A command's
// output is the map after it, or "error: <code>: <message>". The commands (one log entry each,
// at index 1, 2, ...):
//
//	init world=X0,Z0,X1,Z1 min=M
//	register server=ID addr=A client=A cap=N now=D ttl=D
//	heartbeat server=ID now=D ttl=D [entities=N] [cells=CELL:ENTITIES,...]
//	deregister server=ID
//	split cell=ID epoch=E axis=x|z at=F [owner=ID]
//	merge low=ID:EPOCH high=ID:EPOCH
//	shift node=ID at=F epochs=CELL:EPOCH,...
//	move cell=ID epoch=E to=ID
//	drain server=ID [migrate=true]
//	markdead server=ID now=D
//	prepare op=split|merge|shift|move <that command's arguments> now=D timeout=D
//	staged change=ID transfer=N server=ID
//	abort change=ID [reason=WORD]
//	raw hex=HEX            (an arbitrary log entry)
//	restore                (snapshot → persist → restore into a fresh FSM, which the script goes on with)
//
// D is a Go duration ("10s") or integer nanoseconds; id= is accepted for server=. After every
// command the harness checks the invariants (state.check), that a rejected command changed
// nothing but the index, and that a snapshot of the state restores to the same map.
//
// go test ./raftmeta -run TestDataDriven -rewrite regenerates the expected outputs (the flag
// is internal/datadriven's); review every change before keeping it.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		h := &scriptHarness{f: NewFSM()}
		datadriven.RunFile(t, path, h.run)
	})
}

type scriptHarness struct {
	f     *FSM
	index uint64
}

// run applies one script command and renders the outcome.
func (h *scriptHarness) run(t *testing.T, d *datadriven.TestData) string {
	pos, line, name := d.Pos, d.Line, d.Cmd
	p := scriptArgs{d.Args(t)}
	p.Alias("id", "server")
	var data []byte
	switch name {
	case "restore":
		p.Done()
		h.f = snapshotRestore(t, h.f)
		if err := h.f.s.check(); err != nil {
			t.Fatalf("%s: restored state: %v", pos, err)
		}
		return renderMap(h.f.Map())
	case "raw":
		var err error
		if data, err = hex.DecodeString(p.Str("hex")); err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
	default:
		c := p.command(name)
		var err error
		if data, err = EncodeCommand(c); err != nil {
			t.Fatalf("%s: encoding %#v: %v", pos, c, err)
		}
	}
	p.Done()

	before := h.f.Map()
	h.index++
	res, ok := h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data}).(*ApplyResult)
	if !ok || res == nil {
		t.Fatalf("%s: Apply returned %#v", pos, res)
	}
	after := h.f.Map()
	if res.Index != h.index || after.Index != h.index || res.Version != after.Version {
		t.Fatalf("%s: result index %d version %d, map index %d version %d, log index %d",
			pos, res.Index, res.Version, after.Index, after.Version, h.index)
	}
	if err := h.f.s.check(); err != nil {
		t.Fatalf("%s: invariant broken after %q: %v", pos, line, err)
	}
	if restored := snapshotRestore(t, h.f).Map(); !reflect.DeepEqual(restored, after) {
		t.Fatalf("%s: snapshot restores to\n%s\nnot\n%s", pos, renderMap(restored), renderMap(after))
	}
	if res.Err != nil {
		before.Index = after.Index
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%s: rejected command changed the map:\n%s\n→\n%s", pos, renderMap(before), renderMap(after))
		}
		return fmt.Sprintf("error: %s: %v", ErrorCode(res.Err), res.Err)
	}
	out := renderMap(after)
	if len(res.Cells) > 0 {
		out = fmt.Sprintf("created %v\n%s", res.Cells, out)
	}
	if res.Change != 0 {
		out = fmt.Sprintf("started change %d\n%s", res.Change, out)
	}
	return out
}

// fataler is what testing.TB and *rapid.T have in common.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// snapshotRestore snapshots f, persists the snapshot and restores it into a fresh FSM.
func snapshotRestore(t fataler, f *FSM) *FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSnapshotSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Fatal("Persist did not close the sink")
	}
	g := NewFSM()
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	return g
}

// memSnapshotSink is a raft.SnapshotSink in memory.
type memSnapshotSink struct {
	bytes.Buffer
	closed, cancelled bool
	failWrite         bool
}

func (s *memSnapshotSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, fmt.Errorf("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSnapshotSink) ID() string    { return "mem" }
func (s *memSnapshotSink) Close() error  { s.closed = true; return nil }
func (s *memSnapshotSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSnapshotSink) reader() *snapReader {
	return &snapReader{Reader: bytes.NewReader(s.Bytes())}
}

type snapReader struct {
	*bytes.Reader
	closed bool
}

func (r *snapReader) Close() error { r.closed = true; return nil }

// scriptArgs adds the raftmeta scripts' argument types to datadriven.Args.
type scriptArgs struct{ *datadriven.Args }

func (p scriptArgs) optUint(k string) uint64 {
	if !p.Has(k) {
		return 0
	}
	return p.Uint(k)
}

// dur reads a Go duration ("10s") or integer nanoseconds.
func (p scriptArgs) dur(k string) int64 {
	v := p.Str(k)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.Fail("%s: %v", k, err)
	}
	return int64(d)
}

// pairs parses "A:B,C:D" (empty: none).
func (p scriptArgs) pairs(s string) [][2]uint64 {
	var out [][2]uint64
	if s == "" {
		return out
	}
	for _, pair := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(pair, ":")
		x, err1 := strconv.ParseUint(a, 10, 64)
		y, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			p.Fail("bad pair %q", pair)
		}
		out = append(out, [2]uint64{x, y})
	}
	return out
}

func (p scriptArgs) pair(k string) (uint64, uint64) {
	ps := p.pairs(p.Str(k))
	if len(ps) != 1 {
		p.Fail("%s wants one ID:EPOCH", k)
	}
	return ps[0][0], ps[0][1]
}

func (p scriptArgs) command(name string) Command {
	switch name {
	case "init":
		w := strings.Split(p.Str("world"), ",")
		if len(w) != 4 {
			p.Fail("world wants X0,Z0,X1,Z1")
		}
		return InitWorld{
			World:       World{Min: [2]float64{p.ParseFloat(w[0]), p.ParseFloat(w[1])}, Max: [2]float64{p.ParseFloat(w[2]), p.ParseFloat(w[3])}},
			MinCellSize: p.Float("min"),
		}
	case "register":
		c := Register{Server: ServerID(p.Uint("server")), Addr: p.Str("addr"), Now: p.dur("now"), LeaseTTL: p.dur("ttl")}
		c.ClientAddr, _ = p.Lookup("client")
		if v, ok := p.Lookup("cap"); ok {
			c.Capacity = int(p.ParseFloat(v))
		}
		return c
	case "heartbeat":
		c := Heartbeat{Server: ServerID(p.Uint("server")), Now: p.dur("now"), LeaseTTL: p.dur("ttl")}
		if v, ok := p.Lookup("entities"); ok {
			c.Load.Entities = int(p.ParseFloat(v))
		}
		if v, ok := p.Lookup("cells"); ok {
			for _, pr := range p.pairs(v) {
				c.Load.Cells = append(c.Load.Cells, CellLoad{Cell: CellID(pr[0]), Entities: int(pr[1])})
			}
		}
		return c
	case "deregister":
		return Deregister{Server: ServerID(p.Uint("server"))}
	case "split":
		return Split{
			Cell: CellID(p.Uint("cell")), Epoch: Epoch(p.Uint("epoch")), Axis: Axis(p.Str("axis")),
			At: p.Float("at"), NewOwner: ServerID(p.optUint("owner")),
		}
	case "merge":
		lo, le := p.pair("low")
		hi, he := p.pair("high")
		return Merge{Low: CellID(lo), LowEpoch: Epoch(le), High: CellID(hi), HighEpoch: Epoch(he)}
	case "shift":
		c := Shift{Node: NodeID(p.Uint("node")), At: p.Float("at"), Epochs: map[CellID]Epoch{}}
		for _, pr := range p.pairs(p.Str("epochs")) {
			c.Epochs[CellID(pr[0])] = Epoch(pr[1])
		}
		return c
	case "move":
		return Move{Cell: CellID(p.Uint("cell")), Epoch: Epoch(p.Uint("epoch")), To: ServerID(p.Uint("to"))}
	case "drain":
		c := Drain{Server: ServerID(p.Uint("server"))}
		if v, ok := p.Lookup("migrate"); ok {
			c.Migrate = v == "true"
		}
		return c
	case "prepare":
		name := p.Str("op")
		if name == "prepare" {
			p.Fail("prepare op=prepare")
		}
		op := p.command(name)
		b, err := EncodeCommand(op)
		if err != nil {
			p.Fail("encoding %#v: %v", op, err)
		}
		return Prepare{Op: b, Now: p.dur("now"), Timeout: p.dur("timeout")}
	case "staged":
		return Staged{Change: ChangeID(p.Uint("change")), Transfer: int(p.Uint("transfer")), Server: ServerID(p.Uint("server"))}
	case "abort":
		c := Abort{Change: ChangeID(p.Uint("change"))}
		c.Reason, _ = p.Lookup("reason")
		return c
	case "markdead":
		return MarkDead{Server: ServerID(p.Uint("server")), Now: p.dur("now")}
	}
	p.Fail("unknown command %q", name)
	return nil
}

// renderMap renders a map compactly for the scripts:
//
//	version=V index=I
//	tree NODE:AXIS@AT(LOW, HIGH) with leaves NODE:cCELL
//	cell ID x[X0,X1) z[Z0,Z1) owner=S epoch=E STATE
//	server ID addr=A client=A cap=N alive|dead [draining] lease=D [entities=N]
//	change ID OP cells=[...] created=D deadline=D
//	  transfer I: FROM→TO x[X0,X1) z[Z0,Z1) cell=C epoch=E [staged]
//	resolved ID committed|aborted: REASON ...
func renderMap(m Map) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version=%d index=%d", m.Version, m.Index)
	if m.Tree != nil {
		b.WriteString("\ntree ")
		renderTree(&b, m.Tree)
	}
	for _, c := range m.Cells {
		fmt.Fprintf(&b, "\ncell %d x[%g,%g) z[%g,%g) owner=%d epoch=%d %s",
			c.ID, c.Bounds[0], c.Bounds[2], c.Bounds[1], c.Bounds[3], c.Owner, c.Epoch, c.State)
	}
	for _, s := range m.Servers {
		life := "alive"
		if !s.Alive {
			life = "dead"
		}
		if s.Draining {
			life += " draining"
		}
		fmt.Fprintf(&b, "\nserver %d addr=%s client=%s cap=%d %s lease=%v", s.ID, s.Addr, s.ClientAddr, s.Capacity, life, time.Duration(s.LeaseExpires))
		if s.Load.Entities != 0 || len(s.Load.Cells) > 0 {
			fmt.Fprintf(&b, " entities=%d", s.Load.Entities)
			for _, cl := range s.Load.Cells {
				fmt.Fprintf(&b, " c%d:%d", cl.Cell, cl.Entities)
			}
		}
	}
	for _, c := range m.Changes {
		fmt.Fprintf(&b, "\nchange %d %s cells=%v created=%v deadline=%v", c.ID, commandName(c.OpType), c.Cells,
			time.Duration(c.Created), time.Duration(c.Deadline))
		for i, t := range c.Transfers {
			fmt.Fprintf(&b, "\n  transfer %d: %d→%d x[%g,%g) z[%g,%g) cell=%d epoch=%d", i, t.From, t.To,
				t.Region[0], t.Region[2], t.Region[1], t.Region[3], t.Cell, t.Epoch)
			if t.Staged {
				b.WriteString(" staged")
			}
		}
	}
	if len(m.Resolved) > 0 {
		b.WriteString("\nresolved")
		for _, r := range m.Resolved {
			if r.Committed {
				fmt.Fprintf(&b, " %d:committed", r.ID)
			} else {
				fmt.Fprintf(&b, " %d:aborted(%s)", r.ID, r.Reason)
			}
		}
	}
	return b.String()
}

func renderTree(b *strings.Builder, n *TreeNode) {
	if n.Low == nil {
		fmt.Fprintf(b, "%d:c%d", n.ID, n.Cell)
		return
	}
	fmt.Fprintf(b, "%d:%s@%g(", n.ID, n.Axis, n.At)
	renderTree(b, n.Low)
	b.WriteString(", ")
	renderTree(b, n.High)
	b.WriteString(")")
}

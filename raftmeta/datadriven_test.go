package raftmeta

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Data-driven FSM tests in the style of cockroachdb/pebble's datadriven package: every
// testdata/*.txt file is a script of blocks
//
//	# comments and blank lines are kept as they are
//	split cell=1 epoch=2 axis=x at=512 owner=2
//	----
//	<the map after the command, or "error: <code>: <message>">
//
// each block ending at a blank line. The commands (one log entry each, at index 1, 2, ...):
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
// go test ./raftmeta -run TestDataDriven -rewrite regenerates the expected outputs; review
// every change before keeping it.
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
	h := &scriptHarness{t: t, f: NewFSM()}
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

type scriptHarness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

// run applies one script command and renders the outcome.
func (h *scriptHarness) run(pos, line string) string {
	t := h.t
	fields := strings.Fields(line)
	name, args := fields[0], map[string]string{}
	for _, kv := range fields[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s: argument %q is not key=value", pos, kv)
		}
		if k == "id" {
			k = "server"
		}
		args[k] = v
	}
	p := &scriptArgs{t: t, pos: pos, args: args}
	var data []byte
	switch name {
	case "restore":
		p.done()
		h.f = snapshotRestore(t, h.f)
		if err := h.f.s.check(); err != nil {
			t.Fatalf("%s: restored state: %v", pos, err)
		}
		return renderMap(h.f.Map())
	case "raw":
		var err error
		if data, err = hex.DecodeString(p.str("hex")); err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
	default:
		c := p.command(name)
		var err error
		if data, err = EncodeCommand(c); err != nil {
			t.Fatalf("%s: encoding %#v: %v", pos, c, err)
		}
	}
	p.done()

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

// scriptArgs reads a command's key=value arguments; done fails on any it did not read.
type scriptArgs struct {
	t    *testing.T
	pos  string
	args map[string]string
}

func (p *scriptArgs) fail(format string, a ...any) {
	p.t.Helper()
	p.t.Fatalf("%s: %s", p.pos, fmt.Sprintf(format, a...))
}

func (p *scriptArgs) str(k string) string {
	v, ok := p.args[k]
	if !ok {
		p.fail("missing argument %s", k)
	}
	delete(p.args, k)
	return v
}

func (p *scriptArgs) opt(k string) (string, bool) {
	v, ok := p.args[k]
	delete(p.args, k)
	return v, ok
}

func (p *scriptArgs) uint(k string) uint64 {
	n, err := strconv.ParseUint(p.str(k), 10, 64)
	if err != nil {
		p.fail("%s: %v", k, err)
	}
	return n
}

func (p *scriptArgs) optUint(k string) uint64 {
	if _, ok := p.args[k]; !ok {
		return 0
	}
	return p.uint(k)
}

func (p *scriptArgs) float(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.fail("%v", err)
	}
	return f
}

func (p *scriptArgs) dur(k string) int64 {
	v := p.str(k)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail("%s: %v", k, err)
	}
	return int64(d)
}

// pairs parses "A:B,C:D" (empty: none).
func (p *scriptArgs) pairs(s string) [][2]uint64 {
	var out [][2]uint64
	if s == "" {
		return out
	}
	for _, pair := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(pair, ":")
		x, err1 := strconv.ParseUint(a, 10, 64)
		y, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			p.fail("bad pair %q", pair)
		}
		out = append(out, [2]uint64{x, y})
	}
	return out
}

func (p *scriptArgs) pair(k string) (uint64, uint64) {
	ps := p.pairs(p.str(k))
	if len(ps) != 1 {
		p.fail("%s wants one ID:EPOCH", k)
	}
	return ps[0][0], ps[0][1]
}

func (p *scriptArgs) done() {
	for k := range p.args {
		p.fail("unknown argument %s", k)
	}
}

func (p *scriptArgs) command(name string) Command {
	switch name {
	case "init":
		w := strings.Split(p.str("world"), ",")
		if len(w) != 4 {
			p.fail("world wants X0,Z0,X1,Z1")
		}
		return InitWorld{
			World:       World{Min: [2]float64{p.float(w[0]), p.float(w[1])}, Max: [2]float64{p.float(w[2]), p.float(w[3])}},
			MinCellSize: p.float(p.str("min")),
		}
	case "register":
		c := Register{Server: ServerID(p.uint("server")), Addr: p.str("addr"), Now: p.dur("now"), LeaseTTL: p.dur("ttl")}
		c.ClientAddr, _ = p.opt("client")
		if v, ok := p.opt("cap"); ok {
			c.Capacity = int(p.float(v))
		}
		return c
	case "heartbeat":
		c := Heartbeat{Server: ServerID(p.uint("server")), Now: p.dur("now"), LeaseTTL: p.dur("ttl")}
		if v, ok := p.opt("entities"); ok {
			c.Load.Entities = int(p.float(v))
		}
		if v, ok := p.opt("cells"); ok {
			for _, pr := range p.pairs(v) {
				c.Load.Cells = append(c.Load.Cells, CellLoad{Cell: CellID(pr[0]), Entities: int(pr[1])})
			}
		}
		return c
	case "deregister":
		return Deregister{Server: ServerID(p.uint("server"))}
	case "split":
		return Split{
			Cell: CellID(p.uint("cell")), Epoch: Epoch(p.uint("epoch")), Axis: Axis(p.str("axis")),
			At: p.float(p.str("at")), NewOwner: ServerID(p.optUint("owner")),
		}
	case "merge":
		lo, le := p.pair("low")
		hi, he := p.pair("high")
		return Merge{Low: CellID(lo), LowEpoch: Epoch(le), High: CellID(hi), HighEpoch: Epoch(he)}
	case "shift":
		c := Shift{Node: NodeID(p.uint("node")), At: p.float(p.str("at")), Epochs: map[CellID]Epoch{}}
		for _, pr := range p.pairs(p.str("epochs")) {
			c.Epochs[CellID(pr[0])] = Epoch(pr[1])
		}
		return c
	case "move":
		return Move{Cell: CellID(p.uint("cell")), Epoch: Epoch(p.uint("epoch")), To: ServerID(p.uint("to"))}
	case "drain":
		c := Drain{Server: ServerID(p.uint("server"))}
		if v, ok := p.opt("migrate"); ok {
			c.Migrate = v == "true"
		}
		return c
	case "prepare":
		name := p.str("op")
		if name == "prepare" {
			p.fail("prepare op=prepare")
		}
		op := p.command(name)
		b, err := EncodeCommand(op)
		if err != nil {
			p.fail("encoding %#v: %v", op, err)
		}
		return Prepare{Op: b, Now: p.dur("now"), Timeout: p.dur("timeout")}
	case "staged":
		return Staged{Change: ChangeID(p.uint("change")), Transfer: int(p.uint("transfer")), Server: ServerID(p.uint("server"))}
	case "abort":
		c := Abort{Change: ChangeID(p.uint("change"))}
		c.Reason, _ = p.opt("reason")
		return c
	case "markdead":
		return MarkDead{Server: ServerID(p.uint("server")), Now: p.dur("now")}
	}
	p.fail("unknown command %q", name)
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

package mapview

import (
	"cmp"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// builder makes maps the way the FSM does: one world cell, then splits of leaves.
type builder struct {
	m        raftmeta.Map
	nextCell raftmeta.CellID
	nextNode raftmeta.NodeID
	leaf     map[raftmeta.CellID]*raftmeta.TreeNode
}

func newBuilder(x0, z0, x1, z1 float64) *builder {
	b := &builder{nextCell: 2, nextNode: 2, leaf: map[raftmeta.CellID]*raftmeta.TreeNode{}}
	b.m.World = raftmeta.World{Min: [2]float64{x0, z0}, Max: [2]float64{x1, z1}}
	b.m.MinCellSize = 64
	b.m.Tree = &raftmeta.TreeNode{ID: 1, Cell: 1}
	b.leaf[1] = b.m.Tree
	b.m.Cells = []raftmeta.Cell{{ID: 1, Node: 1, Bounds: raftmeta.Rect{x0, z0, x1, z1}, Epoch: 1, State: raftmeta.CellActive}}
	return b
}

func (b *builder) cell(id raftmeta.CellID) *raftmeta.Cell {
	for i := range b.m.Cells {
		if b.m.Cells[i].ID == id {
			return &b.m.Cells[i]
		}
	}
	panic("no cell")
}

// split cuts cell id at `at` on axis; the low half keeps id, the high half is returned.
func (b *builder) split(id raftmeta.CellID, axis raftmeta.Axis, at float64) raftmeta.CellID {
	n := b.leaf[id]
	c := b.cell(id)
	hi := *c
	hi.ID = b.nextCell
	b.nextCell++
	if axis == raftmeta.AxisX {
		c.Bounds[2], hi.Bounds[0] = at, at
	} else {
		c.Bounds[3], hi.Bounds[1] = at, at
	}
	c.Epoch++
	hi.Epoch = 1
	low := &raftmeta.TreeNode{ID: b.nextNode, Cell: id}
	high := &raftmeta.TreeNode{ID: b.nextNode + 1, Cell: hi.ID}
	b.nextNode += 2
	c.Node, hi.Node = low.ID, high.ID
	*n = raftmeta.TreeNode{ID: n.ID, Axis: axis, At: at, Low: low, High: high}
	delete(b.leaf, id)
	b.leaf[id], b.leaf[hi.ID] = low, high
	b.m.Cells = append(b.m.Cells, hi)
	b.m.Version++
	return hi.ID
}

func (b *builder) server(id raftmeta.ServerID, alive bool, ent int) *raftmeta.Server {
	b.m.Servers = append(b.m.Servers, raftmeta.Server{
		ID: id, Addr: "127.0.0.1:" + itoa(7100+int(id)), ClientAddr: "127.0.0.1:" + itoa(7000+int(id)),
		Capacity: 2000, Alive: alive, LeaseExpires: 1767225600_000000000 + int64(id)*1_500_000_000,
		Load: raftmeta.Load{Entities: ent, TickP99Micros: 850 * int64(id), BytesOut: 120000 * int64(id)},
	})
	return &b.m.Servers[len(b.m.Servers)-1]
}

// report records a cell's load in its owner's (or any server's) report.
func (b *builder) report(s raftmeta.ServerID, cell raftmeta.CellID, ent int) {
	for i := range b.m.Servers {
		if b.m.Servers[i].ID == s {
			b.m.Servers[i].Load.Cells = append(b.m.Servers[i].Load.Cells,
				raftmeta.CellLoad{Cell: cell, Entities: ent, TickP99Micros: int64(40 * ent), BytesOut: int64(300 * ent)})
		}
	}
}

func (b *builder) done() raftmeta.Map {
	m := b.m
	slices.SortFunc(m.Cells, func(a, c raftmeta.Cell) int { return cmp.Compare(a.ID, c.ID) })
	m.Index = m.Version + 7
	return m
}

func itoa(i int) string {
	return string(appendInt(nil, i))
}

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// Hand-built maps.

// singleMap: the whole world is one cell.
func singleMap() raftmeta.Map {
	b := newBuilder(0, 0, 1024, 1024)
	b.server(1, true, 120)
	b.cell(1).Owner = 1
	b.report(1, 1, 120)
	b.m.Version = 3
	return b.done()
}

// quadMap: a 16 km world split in four, two owners each holding a column.
func quadMap() raftmeta.Map {
	b := newBuilder(0, 0, 16384, 16384)
	b.server(1, true, 1500)
	b.server(2, true, 700)
	c2 := b.split(1, raftmeta.AxisX, 8192)
	c3 := b.split(1, raftmeta.AxisZ, 8192)
	c4 := b.split(c2, raftmeta.AxisZ, 8192)
	b.cell(1).Owner, b.cell(c3).Owner = 1, 1
	b.cell(c2).Owner, b.cell(c4).Owner = 2, 2
	b.report(1, 1, 1000)
	b.report(1, c3, 500)
	b.report(2, c2, 300)
	b.report(2, c4, 400)
	return b.done()
}

// troubleMap: a wide world with an unowned cell, a migrating cell, a dead server's cell and a
// cell whose owner is not registered; one server is draining.
func troubleMap() raftmeta.Map {
	b := newBuilder(-1000, -500, 1000, 500)
	b.server(1, true, 90)
	b.server(2, true, 40).Draining = true
	b.server(3, false, 0)
	hi := b.split(1, raftmeta.AxisX, 0)        // 1: x<0 (unowned); 2: x≥0
	top := b.split(hi, raftmeta.AxisZ, 0)      // 2: z<0; 3: z≥0
	right := b.split(top, raftmeta.AxisX, 500) // 3: x<500; 4: x≥500
	mid := b.split(1, raftmeta.AxisZ, 250)     // 1: z<250 (unowned); 5: z≥250
	b.cell(hi).Owner, b.cell(hi).State = 2, raftmeta.CellMigrating
	b.cell(top).Owner = 3
	b.cell(right).Owner = 9
	b.cell(mid).Owner = 1
	b.report(2, hi, 40)
	b.report(1, mid, 90)
	b.report(1, hi, 12) // the former owner's report of the migrating cell: the owner's wins
	return b.done()
}

var fixtures = []struct {
	name string
	m    func() raftmeta.Map
}{
	{"single", singleMap},
	{"quad", quadMap},
	{"trouble", troubleMap},
}

func TestBuilderMapsAreValid(t *testing.T) {
	for _, f := range fixtures {
		m := f.m()
		if got := leaves(m.Tree, nil); len(got) != len(m.Cells) {
			t.Errorf("%s: tree has %d leaves, map %d cells", f.name, len(got), len(m.Cells))
		}
	}
}

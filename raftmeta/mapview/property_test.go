package mapview

import (
	"bytes"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// genMap draws a random map: a world of random size cut by random splits, random owners
// (some unregistered, some none), random states, some dead servers.
func genMap(t *rapid.T) raftmeta.Map {
	w := rapid.Float64Range(50, 50000).Draw(t, "w")
	h := rapid.Float64Range(50, 50000).Draw(t, "h")
	x0 := rapid.Float64Range(-20000, 20000).Draw(t, "x0")
	z0 := rapid.Float64Range(-20000, 20000).Draw(t, "z0")
	b := newBuilder(x0, z0, x0+w, z0+h)
	nsrv := rapid.IntRange(0, 30).Draw(t, "servers")
	for i := range nsrv {
		b.server(raftmeta.ServerID(10+3*i), rapid.Bool().Draw(t, "alive"), rapid.IntRange(0, 5000).Draw(t, "ent"))
	}
	splits := rapid.IntRange(0, 40).Draw(t, "splits")
	for range splits {
		id := raftmeta.CellID(rapid.IntRange(1, int(b.nextCell)-1).Draw(t, "cell"))
		c := b.cell(id)
		axis, lo, hi := raftmeta.AxisX, c.Bounds[0], c.Bounds[2]
		if rapid.Bool().Draw(t, "z") {
			axis, lo, hi = raftmeta.AxisZ, c.Bounds[1], c.Bounds[3]
		}
		at := lo + (hi-lo)*rapid.Float64Range(0.02, 0.98).Draw(t, "at")
		if at <= lo || at >= hi {
			continue
		}
		b.split(id, axis, at)
	}
	for i := range b.m.Cells {
		c := &b.m.Cells[i]
		switch k := rapid.IntRange(0, 9).Draw(t, "owner"); {
		case k == 0:
			c.Owner = 0
		case k == 1:
			c.Owner = 999 // unregistered
		case nsrv > 0:
			c.Owner = b.m.Servers[rapid.IntRange(0, nsrv-1).Draw(t, "srv")].ID
		}
		if rapid.IntRange(0, 4).Draw(t, "migrating") == 0 {
			c.State = raftmeta.CellMigrating
		}
	}
	return b.done()
}

func isBorder(r rune, plain bool) bool {
	if plain {
		return r == '+' || r == '-' || r == '|'
	}
	return strings.ContainsRune("─│┌┐└┘├┤┬┴┼", r)
}

// Every character of the drawing is a border or the mark of exactly the cell under it, and
// every cell with room for an interior has all of it drawn with its mark.
func TestASCIIEveryCellDrawn(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := genMap(t)
		opts := ASCIIOptions{
			Width:  rapid.IntRange(1, 220).Draw(t, "width"),
			Height: rapid.IntRange(1, 90).Draw(t, "height"),
			Plain:  rapid.Bool().Draw(t, "plain"),
		}
		var buf bytes.Buffer
		if err := ASCII(&buf, m, opts); err != nil {
			t.Fatal(err)
		}
		v := newView(m)
		x0, z0, x1, z1, _ := v.world()
		cols, rows := gridSize(x1-x0, z1-z0, opts.Width, opts.Height)
		lines := strings.Split(buf.String(), "\n")
		if len(lines) < rows+1 {
			t.Fatalf("%d lines, want at least %d", len(lines), rows+1)
		}
		l := layout{x0, z0, x1, z1, cols, rows}
		drawn := map[raftmeta.CellID]int{}
		for r, line := range lines[1 : rows+1] {
			runes := []rune(line)
			if len(runes) != cols {
				t.Fatalf("row %d has %d characters, want %d: %q", r, len(runes), cols, line)
			}
			for c, ch := range runes {
				if isBorder(ch, opts.Plain) {
					continue
				}
				// The world point under this character.
				x := x0 + (x1-x0)*float64(c)/float64(cols-1)
				z := z1 - (z1-z0)*float64(r)/float64(rows-1)
				var under []raftmeta.Cell
				for _, cell := range m.Cells {
					b := cell.Bounds
					if x >= b[0] && x < b[2] && z >= b[1] && z < b[3] {
						under = append(under, cell)
					}
				}
				if len(under) != 1 {
					t.Fatalf("(%d,%d) %q lies in %d cells", r, c, ch, len(under))
				}
				if want := rune(v.cellMark(under[0])); ch != want {
					t.Fatalf("(%d,%d) is %q, want %q (cell %d)", r, c, ch, want, under[0].ID)
				}
				drawn[under[0].ID]++
			}
		}
		for _, cell := range m.Cells {
			c0, r0, c1, r1 := l.rect(cell.Bounds)
			if want := max(0, c1-c0-1) * max(0, r1-r0-1); drawn[cell.ID] != want {
				t.Fatalf("cell %d: %d characters drawn, want %d", cell.ID, drawn[cell.ID], want)
			}
		}
	})
}

// With IDs on, the only characters that are neither border nor mark are the IDs of the cells
// they lie in (and the spaces around them).
func TestASCIIIDsInTheirCells(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := genMap(t)
		opts := ASCIIOptions{Width: rapid.IntRange(3, 160).Draw(t, "width"), Height: rapid.IntRange(3, 60).Draw(t, "height"), IDs: true}
		var buf bytes.Buffer
		if err := ASCII(&buf, m, opts); err != nil {
			t.Fatal(err)
		}
		v := newView(m)
		x0, z0, x1, z1, _ := v.world()
		cols, rows := gridSize(x1-x0, z1-z0, opts.Width, opts.Height)
		lines := strings.Split(buf.String(), "\n")
		for r, line := range lines[1 : rows+1] {
			for c, ch := range []rune(line) {
				if isBorder(ch, false) {
					continue
				}
				x := x0 + (x1-x0)*float64(c)/float64(cols-1)
				z := z1 - (z1-z0)*float64(r)/float64(rows-1)
				for _, cell := range m.Cells {
					b := cell.Bounds
					if x >= b[0] && x < b[2] && z >= b[1] && z < b[3] {
						id := itoa(int(cell.ID))
						if ch != rune(v.cellMark(cell)) && ch != ' ' && !strings.ContainsRune(id, ch) {
							t.Fatalf("(%d,%d) is %q in cell %d", r, c, ch, cell.ID)
						}
					}
				}
			}
		}
	})
}

package mapview

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// ASCIIOptions tunes the terminal drawing.
type ASCIIOptions struct {
	// Width and Height bound the drawing of the world, frame included, in characters (0: 80 ×
	// 24). The drawing keeps the world's aspect ratio assuming a character twice as tall as it is
	// wide, so it fills one of the two bounds. The header line above and the legend below (one
	// line per server plus up to three) come on top of Height.
	Width, Height int
	// Color colours each owner's cells with ANSI escape codes (256-colour palette).
	Color bool
	// Plain draws borders with '+', '-' and '|' instead of box-drawing characters.
	Plain bool
	// IDs writes each cell's ID in its middle when the cell is wide enough.
	IDs bool
}

// Default ASCII bounds.
const (
	defaultASCIIWidth  = 80
	defaultASCIIHeight = 24
	minASCIISide       = 3 // frame + one character
)

// ANSI 256-colour approximations of the Okabe–Ito palette (colour-blind safe), as in the SVG.
var ansiPalette = []int{214, 117, 36, 227, 32, 166, 175}

const ansiReset = "\x1b[0m"

func ansiFor(slot int, dead bool) string {
	dim := ""
	if dead {
		dim = "2;"
	}
	return "\x1b[" + dim + "38;5;" + strconv.Itoa(ansiPalette[slot%len(ansiPalette)]) + "m"
}

// Border directions of a grid point.
const (
	up = 1 << iota
	down
	left
	right
)

var boxChars = [16]rune{
	0:                        ' ',
	up:                       '│',
	down:                     '│',
	up | down:                '│',
	left:                     '─',
	right:                    '─',
	left | right:             '─',
	down | right:             '┌',
	down | left:              '┐',
	up | right:               '└',
	up | left:                '┘',
	up | down | right:        '├',
	up | down | left:         '┤',
	down | left | right:      '┬',
	up | left | right:        '┴',
	up | down | left | right: '┼',
}

func plainChar(d int) rune {
	h, vt := d&(left|right) != 0, d&(up|down) != 0
	switch {
	case h && vt:
		return '+'
	case h:
		return '-'
	case vt:
		return '|'
	}
	return ' '
}

// grid is the character canvas of an ASCII drawing.
type grid struct {
	cols, rows int
	border     []int  // direction bits per point
	fill       []byte // cell mark, 0 where none
	owner      []int  // slot of the filling cell's owner, -1 where none
	label      []byte // label character drawn over the fill, 0 where none
}

func (g *grid) at(r, c int) int { return r*g.cols + c }

func (g *grid) hline(r, c0, c1 int) {
	for c := c0; c <= c1; c++ {
		if c > c0 {
			g.border[g.at(r, c)] |= left
		}
		if c < c1 {
			g.border[g.at(r, c)] |= right
		}
	}
}

func (g *grid) vline(c, r0, r1 int) {
	for r := r0; r <= r1; r++ {
		if r > r0 {
			g.border[g.at(r, c)] |= up
		}
		if r < r1 {
			g.border[g.at(r, c)] |= down
		}
	}
}

// gridSize picks the drawing's size in characters, frame included: as large as fits in
// maxW × maxH with the world's aspect ratio, a character being twice as tall as wide.
func gridSize(worldW, worldH float64, maxW, maxH int) (cols, rows int) {
	maxW, maxH = max(maxW, minASCIISide), max(maxH, minASCIISide)
	aspect := worldW / worldH // width over height
	// (cols-1) character widths across, (rows-1) rows = 2(rows-1) widths down.
	spanC := float64(maxW - 1)
	if byH := 2 * float64(maxH-1) * aspect; byH < spanC {
		spanC = byH
	}
	spanR := spanC / (2 * aspect)
	cols = min(maxW, max(minASCIISide, int(math.Round(spanC))+1))
	rows = min(maxH, max(minASCIISide, int(math.Round(spanR))+1))
	return cols, rows
}

// layout is the mapping from world coordinates to grid lines.
type layout struct {
	x0, z0, x1, z1 float64
	cols, rows     int
}

// col is the grid column of world x; row is the grid row of world z (z grows upwards).
func (l layout) col(x float64) int {
	return clampInt(int(math.Round((x-l.x0)/(l.x1-l.x0)*float64(l.cols-1))), 0, l.cols-1)
}

func (l layout) row(z float64) int {
	return clampInt(int(math.Round((l.z1-z)/(l.z1-l.z0)*float64(l.rows-1))), 0, l.rows-1)
}

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

// rect is a cell's rectangle on the grid: border columns c0, c1 and rows r0 (top), r1 (bottom);
// its fill is strictly inside.
func (l layout) rect(b raftmeta.Rect) (c0, r0, c1, r1 int) {
	return l.col(b[0]), l.row(b[3]), l.col(b[2]), l.row(b[1])
}

// draw lays the cells of v out on a grid of the given size.
func (v *view) draw(cols, rows int, ids bool) (*grid, error) {
	x0, z0, x1, z1, err := v.world()
	if err != nil {
		return nil, err
	}
	l := layout{x0, z0, x1, z1, cols, rows}
	n := cols * rows
	g := &grid{cols: cols, rows: rows, border: make([]int, n), fill: make([]byte, n), owner: make([]int, n), label: make([]byte, n)}
	for i := range g.owner {
		g.owner[i] = -1
	}
	g.hline(0, 0, cols-1)
	g.hline(rows-1, 0, cols-1)
	g.vline(0, 0, rows-1)
	g.vline(cols-1, 0, rows-1)
	for _, c := range v.cells {
		c0, r0, c1, r1 := l.rect(c.Bounds)
		g.hline(r0, c0, c1)
		g.hline(r1, c0, c1)
		g.vline(c0, r0, r1)
		g.vline(c1, r0, r1)
		mark := v.cellMark(c)
		slot, ok := v.slot[c.Owner]
		if !ok {
			slot = -1
		}
		for r := r0 + 1; r < r1; r++ {
			for cc := c0 + 1; cc < c1; cc++ {
				g.fill[g.at(r, cc)] = mark
				g.owner[g.at(r, cc)] = slot
			}
		}
		if ids && r1-r0 >= 2 {
			text := strconv.FormatUint(uint64(c.ID), 10)
			if width := c1 - c0 - 1; width >= len(text)+2 {
				text = " " + text + " "
			} else if width < len(text) {
				continue
			}
			r := r0 + 1 + (r1-r0-2)/2
			start := c0 + 1 + (c1-c0-1-len(text))/2
			for i := range len(text) {
				g.label[g.at(r, start+i)] = text[i]
			}
		}
	}
	return g, nil
}

// ASCII draws the world of m in the terminal: each cell filled with its owner's letter, cell
// borders, a header line and a legend (letter → server, address, state, cells, entities).
func ASCII(w io.Writer, m raftmeta.Map, opts ASCIIOptions) error {
	v := newView(m)
	x0, z0, x1, z1, err := v.world()
	if err != nil {
		return err
	}
	if opts.Width <= 0 {
		opts.Width = defaultASCIIWidth
	}
	if opts.Height <= 0 {
		opts.Height = defaultASCIIHeight
	}
	cols, rows := gridSize(x1-x0, z1-z0, opts.Width, opts.Height)
	g, err := v.draw(cols, rows, opts.IDs)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "map version %d: %s, %s (%d alive); world %s x %s m, x east, z north; 1 char = %s x %s m\n",
		m.Version, plural(len(v.cells), "cell"), plural(len(v.servers), "server"), v.aliveServers(),
		num(x1-x0), num(z1-z0), num((x1-x0)/float64(cols-1)), num((z1-z0)/float64(rows-1)))
	var line strings.Builder
	for r := range rows {
		line.Reset()
		cur := "" // ANSI state of the line
		for c := range cols {
			i := g.at(r, c)
			want := ""
			var ch rune
			switch {
			case g.label[i] != 0:
				ch = rune(g.label[i])
			case g.fill[i] != 0:
				ch = rune(g.fill[i])
				if opts.Color && g.owner[i] >= 0 {
					want = ansiFor(g.owner[i], !v.servers[g.owner[i]].Alive)
				}
			case opts.Plain:
				ch = plainChar(g.border[i])
			default:
				ch = boxChars[g.border[i]]
			}
			if want != cur {
				if cur != "" {
					line.WriteString(ansiReset)
				}
				line.WriteString(want)
				cur = want
			}
			line.WriteRune(ch)
		}
		if cur != "" {
			line.WriteString(ansiReset)
		}
		line.WriteByte('\n')
		bw.WriteString(line.String())
	}
	v.legend(bw, opts.Color)
	return bw.Flush()
}

// legend writes one line per server and lines for the other marks in use.
func (v *view) legend(w io.Writer, color bool) {
	addrW := len("-")
	for _, s := range v.servers {
		addrW = max(addrW, len(s.ClientAddr), len(s.Addr))
	}
	idW := 1
	for _, s := range v.servers {
		idW = max(idW, len(strconv.FormatUint(uint64(s.ID), 10)))
	}
	for i, s := range v.servers {
		mark := string(slotLetter(i))
		if color {
			mark = ansiFor(i, !s.Alive) + mark + ansiReset
		}
		addr := s.ClientAddr
		if addr == "" {
			addr = s.Addr
		}
		fmt.Fprintf(w, "  %s  server %-*d  %-*s  %-15s  %-9s  %s\n", mark, idW, s.ID, addrW, dash(addr),
			serverState(s), plural(v.count[s.ID], "cell"), plural(serverEntities(s), "entity"))
	}
	if n := v.count[0]; n > 0 {
		fmt.Fprintf(w, "  %c  unowned: %s\n", markUnowned, plural(n, "cell"))
	}
	var unknown []string
	migrating := false
	for _, c := range v.cells {
		if _, ok := v.slot[c.Owner]; !ok && c.Owner != 0 {
			unknown = append(unknown, strconv.FormatUint(uint64(c.Owner), 10))
		}
		migrating = migrating || c.State == raftmeta.CellMigrating
	}
	if len(unknown) > 0 {
		fmt.Fprintf(w, "  %c  owner not registered: server %s\n", markUnknown, strings.Join(dedup(unknown), ", "))
	}
	if migrating {
		fmt.Fprintf(w, "  lower case: cell migrating to a new owner\n")
	}
}

// dedup drops repeats from a list, keeping first occurrences.
func dedup(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

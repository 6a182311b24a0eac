package mapview

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// SVGOptions tunes the SVG picture.
type SVGOptions struct {
	// Width of the picture in pixels (0: 800); its height follows from the world's aspect ratio
	// and the legend.
	Width int
	// Title replaces the default title, "Meridian partition map".
	Title string
	// Heat, when not empty, overlays a density map of these points (entities, say) on the
	// cells: the world is cut into square bins, darker where more weight falls.
	Heat []HeatPoint
}

// HeatPoint is a weighted position in world coordinates for the heat overlay.
type HeatPoint struct {
	X, Z   float64
	Weight float64 // ≤ 0 counts as 1
}

// okabeIto is the Okabe–Ito palette without black: distinguishable with every common form of
// colour blindness. Owners take it in server order, wrapping after seven.
var okabeIto = []string{"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}

// Fills for cells without a registered owner.
const (
	fillUnowned = "#E6E6E6"
	fillUnknown = "#B3B3B3"
	deadOpacity = "0.35"
)

const (
	svgDefaultWidth = 800
	svgMinWidth     = 240
	svgMargin       = 16.0
	svgTitleH       = 52.0 // title and subtitle block above the map
	svgLegendRow    = 20.0
	heatBins        = 64 // bins along the longer side of the world
)

// fillOf is the fill colour of a server slot.
func fillOf(slot int) string { return okabeIto[slot%len(okabeIto)] }

// textOn picks black or white text, whichever contrasts more with a #RRGGBB fill.
func TextOn(fill string) string {
	if len(fill) != 7 || fill[0] != '#' {
		return "#000"
	}
	lin := func(s string) float64 {
		v, _ := strconv.ParseUint(s, 16, 8)
		c := float64(v) / 255
		if c <= 0.04045 {
			return c / 12.92
		}
		return math.Pow((c+0.055)/1.055, 2.4)
	}
	l := 0.2126*lin(fill[1:3]) + 0.7152*lin(fill[3:5]) + 0.0722*lin(fill[5:7])
	if (l+0.05)/0.05 >= 1.05/(l+0.05) {
		return "#000"
	}
	return "#fff"
}

// SVG writes a self-contained SVG picture of m: the world, each cell filled with its owner's
// colour and labelled (cell ID, owner, epoch and entities when known, as many lines as fit), a
// legend and a title with the map version. Migrating cells are hatched; a dead server's cells
// are faded.
func SVG(w io.Writer, m raftmeta.Map, opts SVGOptions) error {
	v := newView(m)
	x0, z0, x1, z1, err := v.world()
	if err != nil {
		return err
	}
	width := float64(opts.Width)
	if opts.Width <= 0 {
		width = svgDefaultWidth
	}
	width = max(width, svgMinWidth)
	title := opts.Title
	if title == "" {
		title = "Meridian partition map"
	}

	// Map area: the full width, unless the world is so tall it would dwarf the legend.
	ww, wh := x1-x0, z1-z0
	mapW := width - 2*svgMargin
	mapH := mapW * wh / ww
	if limit := 1.25 * mapW; mapH > limit {
		mapH = limit
		mapW = mapH * ww / wh
	}
	mapX, mapY := svgMargin, svgMargin+svgTitleH
	scale := mapW / ww
	px := func(x float64) float64 { return mapX + (x-x0)*scale }
	py := func(z float64) float64 { return mapY + (z1-z)*scale }

	legend := v.svgLegend(len(opts.Heat) > 0)
	noteY := mapY + mapH + 16
	legendY := noteY + 14
	height := legendY + float64(len(legend))*svgLegendRow + svgMargin - 4

	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="Helvetica, Arial, sans-serif">`+"\n",
		num(width), num(height), num(width), num(height))
	p("<title>%s, version %d</title>\n", esc(title), m.Version)
	p(`<defs><pattern id="migrating" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)"><rect width="3" height="8" fill="#000" fill-opacity="0.3"/></pattern></defs>` + "\n")
	p(`<rect width="100%%" height="100%%" fill="#fff"/>` + "\n")
	p(`<text x="%s" y="%s" font-size="18" font-weight="bold">%s, version %d</text>`+"\n", num(svgMargin), num(svgMargin+18), esc(title), m.Version)
	p(`<text x="%s" y="%s" font-size="12" fill="#444">%s, %s (%d alive), world %s &#215; %s m, Raft index %d</text>`+"\n",
		num(svgMargin), num(svgMargin+38), plural(len(v.cells), "cell"), plural(len(v.servers), "server"), v.aliveServers(),
		num(ww), num(wh), m.Index)

	// Cells.
	p(`<g id="cells" stroke="#333" stroke-width="0.75">` + "\n")
	for _, c := range v.cells {
		b := c.Bounds
		rx, ry, rw, rh := px(b[0]), py(b[3]), (b[2]-b[0])*scale, (b[3]-b[1])*scale
		fill, opacity := v.cellFill(c)
		extra := ""
		if opacity != "" {
			extra = ` fill-opacity="` + opacity + `"`
		}
		p(`<rect x="%s" y="%s" width="%s" height="%s" fill="%s"%s><title>%s</title></rect>`+"\n",
			num(rx), num(ry), num(rw), num(rh), fill, extra, esc(v.cellTooltip(c)))
		if c.State == raftmeta.CellMigrating {
			p(`<rect x="%s" y="%s" width="%s" height="%s" fill="url(#migrating)"/>`+"\n", num(rx), num(ry), num(rw), num(rh))
		}
	}
	p("</g>\n")

	if len(opts.Heat) > 0 {
		heat(bw, opts.Heat, x0, z0, x1, z1, mapX, mapY, mapW)
	}

	p(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#000" stroke-width="1.5"/>`+"\n", num(mapX), num(mapY), num(mapW), num(mapH))

	// Labels, as many lines as fit, at the largest size that fits (at most 14 px).
	p(`<g id="labels" text-anchor="middle">` + "\n")
	for _, c := range v.cells {
		b := c.Bounds
		fill, opacity := v.cellFill(c)
		ink := TextOn(fill)
		if opacity != "" {
			ink = "#000"
		}
		lines := v.cellLabel(c)
		fs, n := fitLabel(lines, (b[2]-b[0])*scale-8, (b[3]-b[1])*scale-8)
		if n == 0 {
			continue
		}
		cx, cy := px((b[0]+b[2])/2), py((b[1]+b[3])/2)
		lh := 1.2 * fs
		top := cy - float64(n)*lh/2
		p(`<g font-size="%s" fill="%s">`, num(fs), ink)
		for i, s := range lines[:n] {
			weight := ""
			if i == 0 {
				weight = ` font-weight="bold"`
			}
			p(`<text x="%s" y="%s"%s>%s</text>`, num(cx), num(top+float64(i)*lh+0.95*fs), weight, esc(s))
		}
		p("</g>\n")
	}
	p("</g>\n")

	minCell := ""
	if m.MinCellSize > 0 {
		minCell = "; cells at least " + num(m.MinCellSize) + " m wide"
	}
	p(`<text x="%s" y="%s" font-size="11" fill="#444">x east &#8594;, z north &#8593;; corners (%s, %s) to (%s, %s) m%s</text>`+"\n",
		num(mapX), num(noteY), num(x0), num(z0), num(x1), num(z1), minCell)

	// Legend.
	p(`<g id="legend" font-size="12">` + "\n")
	for i, row := range legend {
		y := legendY + float64(i)*svgLegendRow
		p(`<rect x="%s" y="%s" width="14" height="14" fill="%s"%s stroke="#333" stroke-width="0.75"/>`,
			num(svgMargin), num(y), row.fill, row.attrs)
		p(`<text x="%s" y="%s">%s</text>`+"\n", num(svgMargin+22), num(y+11), esc(row.text))
	}
	p("</g>\n</svg>\n")
	return bw.Flush()
}

// cellFill is a cell's fill colour and, for a dead owner, its opacity.
func (v *view) cellFill(c raftmeta.Cell) (fill, opacity string) {
	if c.Owner == 0 {
		return fillUnowned, ""
	}
	i, ok := v.slot[c.Owner]
	if !ok {
		return fillUnknown, ""
	}
	if !v.servers[i].Alive {
		return fillOf(i), deadOpacity
	}
	return fillOf(i), ""
}

// ownerLine names a cell's owner: "B: server 2", "B: server 2 (dead)", "unowned".
func (v *view) ownerLine(c raftmeta.Cell) string {
	if c.Owner == 0 {
		return "unowned"
	}
	s, ok := v.server(c.Owner)
	switch {
	case !ok:
		return fmt.Sprintf("?: server %d (unregistered)", c.Owner)
	case !s.Alive:
		return fmt.Sprintf("%c: server %d (dead)", v.letter(c.Owner), c.Owner)
	}
	return fmt.Sprintf("%c: server %d", v.letter(c.Owner), c.Owner)
}

// cellLabel is a cell's label, most important line first.
func (v *view) cellLabel(c raftmeta.Cell) []string {
	ep := "epoch " + strconv.FormatUint(uint64(c.Epoch), 10)
	if c.State == raftmeta.CellMigrating {
		ep += ", migrating"
	}
	lines := []string{"cell " + strconv.FormatUint(uint64(c.ID), 10), v.ownerLine(c), ep}
	if l, ok := v.load[c.ID]; ok {
		lines = append(lines, plural(l.Entities, "entity"))
	}
	return lines
}

// cellTooltip is the hover text of a cell.
func (v *view) cellTooltip(c raftmeta.Cell) string {
	b := c.Bounds
	s := fmt.Sprintf("cell %d: x %s..%s, z %s..%s; %s; epoch %d; %s",
		c.ID, num(b[0]), num(b[2]), num(b[1]), num(b[3]), v.ownerLine(c), c.Epoch, c.State)
	if l, ok := v.load[c.ID]; ok {
		s += fmt.Sprintf("; %s, tick p99 %s, %s out", plural(l.Entities, "entity"), micros(l.TickP99Micros), rate(l.BytesOut))
	}
	return s
}

// Label sizing, in pixels.
const (
	labelMaxFont  = 14.0
	labelMinFont  = 7.0 // below this, drop lines before shrinking further
	labelTinyFont = 5.0 // below this, no label at all
	charWidthEm   = 0.6 // a generous average glyph width of a sans-serif font
)

// fitLabel picks the font size and number of lines of a label in a w × h box (pixels): all lines
// at the largest size up to 14 px; if that is under 7 px, fewer lines; none if even one line
// would be under 5 px. The size is rounded down to a quarter pixel.
func fitLabel(lines []string, w, h float64) (size float64, n int) {
	for n = len(lines); n > 0; n-- {
		longest := 0
		for _, s := range lines[:n] {
			longest = max(longest, len(s))
		}
		size = min(labelMaxFont, h/(1.2*float64(n)), w/(charWidthEm*float64(longest)))
		size = math.Floor(size*4) / 4
		if size >= labelMinFont || (n == 1 && size >= labelTinyFont) {
			return size, n
		}
	}
	return 0, 0
}

type legendRow struct {
	fill, attrs, text string
}

// svgLegend lists the servers and the other fills in use.
func (v *view) svgLegend(withHeat bool) []legendRow {
	var rows []legendRow
	for i, s := range v.servers {
		attrs := ""
		if !s.Alive {
			attrs = ` fill-opacity="` + deadOpacity + `"`
		}
		addr := s.ClientAddr
		if addr == "" {
			addr = s.Addr
		}
		rows = append(rows, legendRow{fillOf(i), attrs, fmt.Sprintf("%c: server %d, %s, %s, %s, %s",
			slotLetter(i), s.ID, dash(addr), serverState(s), plural(v.count[s.ID], "cell"), plural(serverEntities(s), "entity"))})
	}
	if n := v.count[0]; n > 0 {
		rows = append(rows, legendRow{fillUnowned, "", "unowned: " + plural(n, "cell")})
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
		rows = append(rows, legendRow{fillUnknown, "", "owner not registered: server " + strings.Join(dedup(unknown), ", ")})
	}
	if migrating {
		rows = append(rows, legendRow{"url(#migrating)", "", "hatched: migrating to a new owner"})
	}
	if withHeat {
		rows = append(rows, legendRow{"#000", ` fill-opacity="0.4"`, "shade: entity density (darker is denser)"})
	}
	return rows
}

// heat draws the density overlay: square bins, opacity growing with the square root of their
// weight (so a sparse crowd still shows next to a dense one).
func heat(w io.Writer, pts []HeatPoint, x0, z0, x1, z1, mapX, mapY, mapW float64) {
	side := max(x1-x0, z1-z0) / heatBins // metres per bin
	nx, nz := int(math.Ceil((x1-x0)/side)), int(math.Ceil((z1-z0)/side))
	bins := make([]float64, nx*nz)
	for _, p := range pts {
		if !(p.X >= x0 && p.X < x1 && p.Z >= z0 && p.Z < z1) {
			continue
		}
		wt := p.Weight
		if wt <= 0 {
			wt = 1
		}
		i, j := min(nx-1, int((p.X-x0)/side)), min(nz-1, int((p.Z-z0)/side))
		bins[j*nx+i] += wt
	}
	top := 0.0
	for _, b := range bins {
		top = max(top, b)
	}
	if top == 0 {
		return
	}
	scale := mapW / (x1 - x0)
	fmt.Fprintf(w, `<g id="heat" fill="#000">`+"\n")
	for j := nz - 1; j >= 0; j-- { // top row (largest z) first
		for i := range nx {
			b := bins[j*nx+i]
			op := math.Round(60*math.Sqrt(b/top)) / 100 // up to 0.6; the root lifts sparse bins
			if op < 0.01 {
				continue
			}
			bx0, bx1 := x0+float64(i)*side, min(x1, x0+float64(i+1)*side)
			bz0, bz1 := z0+float64(j)*side, min(z1, z0+float64(j+1)*side)
			fmt.Fprintf(w, `<rect x="%s" y="%s" width="%s" height="%s" fill-opacity="%s"/>`+"\n",
				num(mapX+(bx0-x0)*scale), num(mapY+(z1-bz1)*scale), num((bx1-bx0)*scale), num((bz1-bz0)*scale), num(op))
		}
	}
	fmt.Fprintf(w, "</g>\n")
}

// esc escapes text for XML.
func esc(s string) string { return html.EscapeString(s) }

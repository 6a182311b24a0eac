package scenario

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/meridian-mmo/meridian/raftmeta/mapview"
)

// The pictures of a report: the partition map and crowd at each Moment, and the tick and load
// charts over time. Self-contained SVG (no scripts, no external fonts), in the house style of
// raftmeta/mapview: Okabe–Ito fills, a bold title and a grey subtitle, a legend underneath.

// svgOkabeIto is the Okabe–Ito palette without black: distinguishable with every common form of
// colour blindness. Servers take it in id order, wrapping after seven (then with dashed lines in
// the charts).
var svgOkabeIto = []string{"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}

const (
	svgWidth       = 720.0
	svgMargin      = 16.0
	svgTitleH      = 52.0 // title and subtitle above a picture
	svgLegendRow   = 20.0
	svgFontFamily  = "Helvetica, Arial, sans-serif"
	svgUnownedFill = "#E6E6E6"
	svgHeatBins    = 48  // crowd bins along the longer side of the world
	svgCharEm      = 0.6 // a generous average glyph width of a sans-serif font, in em

	// svgTickBudgetMS is a cell server's tick budget at 20 Hz, drawn on the tick chart.
	svgTickBudgetMS = 50.0
	// svgBalancedRatio is the imbalance under which the load counts as balanced (see
	// LoadStats.SecondsToBalance), drawn on the load chart.
	svgBalancedRatio = 1.10
)

// svgBuf accumulates one SVG document.
type svgBuf struct{ bytes.Buffer }

func (b *svgBuf) p(format string, a ...any) { fmt.Fprintf(&b.Buffer, format, a...) }

// open starts the document: the root element with its viewBox, a <title> and a white background.
func (b *svgBuf) open(w, h float64, title string) {
	b.p(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="%s">`+"\n",
		svgNum(w), svgNum(h), svgNum(w), svgNum(h), svgFontFamily)
	b.p("<title>%s</title>\n", svgEsc(title))
	b.p(`<rect width="100%%" height="100%%" fill="#fff"/>` + "\n")
}

// heading writes the bold title and the grey subtitle at the top left.
func (b *svgBuf) heading(title, subtitle string) {
	b.p(`<text x="%s" y="%s" font-size="18" font-weight="bold">%s</text>`+"\n", svgNum(svgMargin), svgNum(svgMargin+18), svgEsc(title))
	if subtitle != "" {
		b.p(`<text x="%s" y="%s" font-size="12" fill="#444">%s</text>`+"\n", svgNum(svgMargin), svgNum(svgMargin+38), svgEsc(subtitle))
	}
}

func (b *svgBuf) close() { b.p("</svg>\n") }

// svgNum formats a coordinate: at most two decimals, no "-0", never NaN.
func svgNum(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "0"
	}
	r := math.Round(f*100) / 100
	if r == 0 {
		r = 0
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// svgEsc escapes text for XML.
func svgEsc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// svgTextWidth estimates the width of s at font size fs (pixels).
func svgTextWidth(s string, fs float64) float64 {
	return float64(len([]rune(s))) * svgCharEm * fs
}

// svgTextOn picks black or white text, whichever contrasts more with a #RRGGBB fill (the map
// pictures' rule).
func svgTextOn(fill string) string { return mapview.TextOn(fill) }

// svgNoData is a small picture that says there was nothing to draw.
func svgNoData(title, why string) []byte {
	var b svgBuf
	h := 160.0
	b.open(svgWidth, h, title+": no data")
	b.heading(title, why)
	b.p(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#999" stroke-dasharray="4 4"/>`+"\n",
		svgNum(svgMargin), svgNum(svgMargin+svgTitleH), svgNum(svgWidth-2*svgMargin), svgNum(h-2*svgMargin-svgTitleH))
	b.p(`<text x="%s" y="%s" font-size="20" fill="#888" text-anchor="middle">no data</text>`+"\n",
		svgNum(svgWidth/2), svgNum(svgMargin+svgTitleH+(h-2*svgMargin-svgTitleH)/2+7))
	b.close()
	return b.Bytes()
}

// serverPalette gives each server id of a report the same colour in every picture.
type serverPalette struct {
	ids  []string
	slot map[string]int
}

// compareServerIDs orders server ids numerically when they are numbers (they are), else
// numbers first and the rest as text.
func compareServerIDs(a, b string) int {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(x, y)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// sortedServerIDs returns the keys of m in server order.
func sortedServerIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareServerIDs)
	return ids
}

// newServerPalette collects the servers a report mentions: in the samples, the per-server tick
// figures and as owners of cells.
func newServerPalette(r *Report) serverPalette {
	seen := map[string]bool{}
	for _, s := range r.Series {
		for id := range s.Servers {
			seen[id] = true
		}
	}
	for id := range r.TickMS.PerServer {
		seen[id] = true
	}
	for _, m := range r.Moments {
		for _, c := range m.Cells {
			if c.Owner != 0 {
				seen[strconv.FormatUint(c.Owner, 10)] = true
			}
		}
	}
	p := serverPalette{ids: sortedServerIDs(seen), slot: map[string]int{}}
	for i, id := range p.ids {
		p.slot[id] = i
	}
	return p
}

func (p serverPalette) colour(id string) string {
	i, ok := p.slot[id]
	if !ok {
		return "#999999"
	}
	return svgOkabeIto[i%len(svgOkabeIto)]
}

// dash tells apart servers sharing a colour once the palette wraps.
func (p serverPalette) dash(id string) string {
	return []string{"", "7 3", "2 2", "9 3 2 3"}[(p.slot[id]/len(svgOkabeIto))%4]
}

func (p serverPalette) ownerColour(owner uint64) string {
	if owner == 0 {
		return svgUnownedFill
	}
	return p.colour(strconv.FormatUint(owner, 10))
}

// ---------------------------------------------------------------------------------------------
// The partition map and the crowd at a moment.

// momentWorld is the world rectangle of a moment, or, if it has none, the box around its cells
// and crowd.
func momentWorld(m Moment) (x0, z0, x1, z1 float64, ok bool) {
	w := m.World
	good := func(x0, z0, x1, z1 float64) bool {
		return x1 > x0 && z1 > z0 && !math.IsInf(x1-x0, 0) && !math.IsInf(z1-z0, 0)
	}
	if good(w[0], w[1], w[2], w[3]) {
		return w[0], w[1], w[2], w[3], true
	}
	x0, z0, x1, z1 = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range m.Cells {
		x0, z0 = min(x0, c.Bounds[0]), min(z0, c.Bounds[1])
		x1, z1 = max(x1, c.Bounds[2]), max(z1, c.Bounds[3])
	}
	for _, p := range m.Crowd {
		x0, z0 = min(x0, p[0]), min(z0, p[1])
		x1, z1 = max(x1, p[0]), max(z1, p[1])
	}
	return x0, z0, x1, z1, good(x0, z0, x1, z1)
}

// crowdBins counts the crowd in square bins, svgHeatBins along the world's longer side. Bots
// outside the world are not binned; outside counts them.
type crowdBins struct {
	side    float64 // metres per bin
	nx, nz  int
	count   []int // row-major from z0
	top     int
	outside int
}

func binCrowd(crowd [][2]float64, x0, z0, x1, z1 float64) crowdBins {
	side := max(x1-x0, z1-z0) / svgHeatBins
	b := crowdBins{side: side, nx: max(1, int(math.Ceil((x1-x0)/side-1e-9))), nz: max(1, int(math.Ceil((z1-z0)/side-1e-9)))}
	b.count = make([]int, b.nx*b.nz)
	for _, p := range crowd {
		x, z := p[0], p[1]
		if !(x >= x0 && x <= x1 && z >= z0 && z <= z1) {
			b.outside++
			continue
		}
		i, j := min(b.nx-1, int((x-x0)/side)), min(b.nz-1, int((z-z0)/side))
		b.count[j*b.nx+i]++
		b.top = max(b.top, b.count[j*b.nx+i])
	}
	return b
}

// svgHeatOpacity is a bin's opacity: visible for a single bot, growing with the square root of the
// count (so a sparse crowd still shows next to a dense one).
func svgHeatOpacity(n, top int) float64 {
	if n <= 0 || top <= 0 {
		return 0
	}
	return math.Round(100*(0.12+0.6*math.Sqrt(float64(n)/float64(top)))) / 100
}

// momentPeakDensity is the most bots in one bin at a moment (-1 without a world).
func momentPeakDensity(m Moment) int {
	x0, z0, x1, z1, ok := momentWorld(m)
	if !ok {
		return -1
	}
	return binCrowd(m.Crowd, x0, z0, x1, z1).top
}

// svgCellOf returns the index of the cell containing (x, z), or -1.
func svgCellOf(cells []MomentCell, x, z float64) int {
	for i, c := range cells {
		if x >= c.Bounds[0] && x <= c.Bounds[2] && z >= c.Bounds[1] && z <= c.Bounds[3] {
			return i
		}
	}
	return -1
}

// svgLabelFit picks the font size and number of lines of a label in a w × h box: all lines at
// the largest size up to maxFS; if that is under 6 px, fewer lines; none if one line would be
// under 5 px.
func svgLabelFit(lines []string, w, h, maxFS float64) (fs float64, n int) {
	for n = len(lines); n > 0; n-- {
		longest := 0
		for _, s := range lines[:n] {
			longest = max(longest, len([]rune(s)))
		}
		fs = min(maxFS, h/(1.2*float64(n)), w/(svgCharEm*float64(longest)))
		fs = math.Floor(fs*4) / 4
		if fs >= 6 || (n == 1 && fs >= 5) {
			return fs, n
		}
	}
	return 0, 0
}

// momentSVG draws the partition map of a moment, its cells filled with their owners' colours,
// and the crowd over it as a heat map.
func momentSVG(m Moment, pal serverPalette) []byte {
	title := fmt.Sprintf("%s, t = %s s", m.Label, figNum(m.T))
	x0, z0, x1, z1, ok := momentWorld(m)
	if !ok {
		return svgNoData(title, "no world, no cells and no crowd to draw")
	}
	ww, wh := x1-x0, z1-z0
	mapW := svgWidth - 2*svgMargin
	mapH := mapW * wh / ww
	if limit := 1.25 * mapW; mapH > limit {
		mapH = limit
		mapW = mapH * ww / wh
	}
	mapX, mapY := svgMargin, svgMargin+svgTitleH
	scale := mapW / ww
	px := func(x float64) float64 { return mapX + (x-x0)*scale }
	py := func(z float64) float64 { return mapY + (z1-z)*scale } // north up

	// Bots and cells per owner, for the labels and the legend.
	botsIn := make([]int, len(m.Cells))
	for _, p := range m.Crowd {
		if i := svgCellOf(m.Cells, p[0], p[1]); i >= 0 {
			botsIn[i]++
		}
	}
	type ownerRow struct{ cells, bots int }
	owners := map[uint64]*ownerRow{}
	for i, c := range m.Cells {
		o := owners[c.Owner]
		if o == nil {
			o = &ownerRow{}
			owners[c.Owner] = o
		}
		o.cells++
		o.bots += botsIn[i]
	}
	ownerIDs := make([]uint64, 0, len(owners))
	for id := range owners {
		ownerIDs = append(ownerIDs, id)
	}
	slices.SortFunc(ownerIDs, func(a, b uint64) int {
		if (a == 0) != (b == 0) { // unowned last
			if a == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a, b)
	})
	bins := binCrowd(m.Crowd, x0, z0, x1, z1)

	noteY := mapY + mapH + 16
	legendY := noteY + 12
	rows := len(ownerIDs)
	if len(m.Crowd) > 0 {
		rows++
	}
	height := legendY + float64(rows)*svgLegendRow + svgMargin - 4

	var b svgBuf
	b.open(svgWidth, height, title)
	sub := fmt.Sprintf("%s, %s, %s; world %s × %s m", figPlural(len(m.Cells), "cell"),
		figPlural(len(ownerIDs)-svgBtoi(owners[0] != nil), "server"), figPlural(len(m.Crowd), "bot"), figNum(ww), figNum(wh))
	if bins.outside > 0 {
		sub += fmt.Sprintf(" (%d outside)", bins.outside)
	}
	b.heading(title, sub)

	b.p(`<g id="cells" stroke="#333" stroke-width="0.75">` + "\n")
	for i, c := range m.Cells {
		bd := c.Bounds
		b.p(`<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>`+"\n",
			svgNum(px(bd[0])), svgNum(py(bd[3])), svgNum((bd[2]-bd[0])*scale), svgNum((bd[3]-bd[1])*scale),
			pal.ownerColour(c.Owner), svgEsc(fmt.Sprintf("cell %d: x %s..%s, z %s..%s; %s; %s",
				c.ID, figNum(bd[0]), figNum(bd[2]), figNum(bd[1]), figNum(bd[3]), svgOwnerName(c.Owner), figPlural(botsIn[i], "bot"))))
	}
	b.p("</g>\n")

	if bins.top > 0 {
		b.p(`<g id="crowd" fill="#000">` + "\n")
		for j := bins.nz - 1; j >= 0; j-- { // the top row (largest z) first
			for i := range bins.nx {
				n := bins.count[j*bins.nx+i]
				if n == 0 {
					continue
				}
				bx0, bx1 := x0+float64(i)*bins.side, min(x1, x0+float64(i+1)*bins.side)
				bz0, bz1 := z0+float64(j)*bins.side, min(z1, z0+float64(j+1)*bins.side)
				b.p(`<rect x="%s" y="%s" width="%s" height="%s" fill-opacity="%s"><title>%s</title></rect>`+"\n",
					svgNum(px(bx0)), svgNum(py(bz1)), svgNum((bx1-bx0)*scale), svgNum((bz1-bz0)*scale),
					svgNum(svgHeatOpacity(n, bins.top)), figPlural(n, "bot"))
			}
		}
		b.p("</g>\n")
	}
	b.p(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#000" stroke-width="1.5"/>`+"\n",
		svgNum(mapX), svgNum(mapY), svgNum(mapW), svgNum(mapH))

	// Cell labels, over the crowd, with a halo so they read on dark bins too.
	b.p(`<g id="labels" text-anchor="middle">` + "\n")
	for i, c := range m.Cells {
		bd := c.Bounds
		lines := []string{"cell " + strconv.FormatUint(c.ID, 10), svgOwnerName(c.Owner), figPlural(botsIn[i], "bot")}
		fs, n := svgLabelFit(lines, (bd[2]-bd[0])*scale-6, (bd[3]-bd[1])*scale-6, 11)
		if n == 0 {
			continue
		}
		ink := svgTextOn(pal.ownerColour(c.Owner))
		halo := "#fff"
		if ink == "#fff" {
			halo = "#000"
		}
		cx, cy := px((bd[0]+bd[2])/2), py((bd[1]+bd[3])/2)
		lh := 1.2 * fs
		top := cy - float64(n)*lh/2
		b.p(`<g font-size="%s" fill="%s" stroke="%s" stroke-width="2" stroke-opacity="0.6" paint-order="stroke">`, svgNum(fs), ink, halo)
		for k, s := range lines[:n] {
			weight := ""
			if k == 0 {
				weight = ` font-weight="bold"`
			}
			b.p(`<text x="%s" y="%s"%s>%s</text>`, svgNum(cx), svgNum(top+float64(k)*lh+0.95*fs), weight, svgEsc(s))
		}
		b.p("</g>\n")
	}
	b.p("</g>\n")

	b.p(`<text x="%s" y="%s" font-size="11" fill="#444">x east &#8594;, z north &#8593;; corners (%s, %s) to (%s, %s) m</text>`+"\n",
		svgNum(mapX), svgNum(noteY), figNum(x0), figNum(z0), figNum(x1), figNum(z1))

	// Legend: the owners, then the crowd's scale.
	b.p(`<g id="legend" font-size="12">` + "\n")
	y := legendY
	for _, id := range ownerIDs {
		o := owners[id]
		b.p(`<rect x="%s" y="%s" width="14" height="14" fill="%s" stroke="#333" stroke-width="0.75"/>`,
			svgNum(svgMargin), svgNum(y), pal.ownerColour(id))
		b.p(`<text x="%s" y="%s">%s</text>`+"\n", svgNum(svgMargin+22), svgNum(y+11),
			svgEsc(fmt.Sprintf("%s: %s, %s", svgOwnerName(id), figPlural(o.cells, "cell"), figPlural(o.bots, "bot"))))
		y += svgLegendRow
	}
	if len(m.Crowd) > 0 {
		label := fmt.Sprintf("crowd, bots per %s m square:", figNum(bins.side))
		b.p(`<text x="%s" y="%s">%s</text>`, svgNum(svgMargin), svgNum(y+11), svgEsc(label))
		x := svgMargin + svgTextWidth(label, 12) + 4
		for _, n := range svgHeatSteps(bins.top) {
			b.p(`<rect x="%s" y="%s" width="14" height="14" fill="#000" fill-opacity="%s" stroke="#999" stroke-width="0.5"/>`,
				svgNum(x), svgNum(y), svgNum(svgHeatOpacity(n, bins.top)))
			s := strconv.Itoa(n)
			b.p(`<text x="%s" y="%s">%s</text>`, svgNum(x+18), svgNum(y+11), s)
			x += 18 + svgTextWidth(s, 12) + 10
		}
		b.p("\n")
	}
	b.p("</g>\n")
	b.close()
	return b.Bytes()
}

// svgHeatSteps are the counts the crowd legend shows: 1, the top, and up to two in between.
func svgHeatSteps(top int) []int {
	if top <= 0 {
		return nil
	}
	steps := []int{1}
	for _, f := range []float64{0.25, 0.5} {
		n := int(math.Round(f * float64(top)))
		if n > steps[len(steps)-1] && n < top {
			steps = append(steps, n)
		}
	}
	if top > 1 {
		steps = append(steps, top)
	}
	return steps
}

func svgOwnerName(owner uint64) string {
	if owner == 0 {
		return "unowned"
	}
	return "server " + strconv.FormatUint(owner, 10)
}

func svgBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---------------------------------------------------------------------------------------------
// Line charts over time.

// chartLine is one line of a chart; a NaN y is a gap.
type chartLine struct {
	label, colour, dash string
	xs, ys              []float64
}

// chartRef is a dashed horizontal reference line.
type chartRef struct {
	y     float64
	label string
}

// chartPanel is one chart (one y axis) of a picture.
type chartPanel struct {
	title  string
	yLabel string
	lines  []chartLine
	refs   []chartRef
	yMin   float64 // the axis starts here unless a value is lower
	plotH  float64
	labels bool // name the phases and the faults (the first panel of a picture does)
}

// chartDeco is what every panel of a picture marks: the phases and the faults.
type chartDeco struct {
	phases []Phase
	faults []Fault
}

const (
	chartLeft   = 64.0 // room for the y tick labels and the axis title
	chartRight  = 24.0
	chartTitleH = 22.0
	chartAxisH  = 36.0 // x tick labels and the axis title under a plot
)

// svgNiceStep is a 1, 2 or 5 × 10^n step cutting span into about target pieces.
func svgNiceStep(span float64, target int) float64 {
	if !(span > 0) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(max(1, target))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch n := raw / mag; {
	case n < 1.5:
		return mag
	case n < 3:
		return 2 * mag
	case n < 7:
		return 5 * mag
	}
	return 10 * mag
}

// svgTickLabel formats a tick value with as many decimals as the step needs.
func svgTickLabel(v, step float64) string {
	dec := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if strings.Trim(s, "-0.") == "" {
		s = strconv.FormatFloat(0, 'f', dec, 64)
	}
	return s
}

// svgTicks are the multiples of step in [lo, hi].
func svgTicks(lo, hi, step float64) []float64 {
	var ts []float64
	for i := math.Ceil(lo/step - 1e-9); i*step <= hi+step*1e-9 && len(ts) < 100; i++ {
		ts = append(ts, i*step)
	}
	return ts
}

func svgFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// svgLegendLayout places legend entries (a line sample and a text) in rows across width.
func svgLegendLayout(labels []string, width float64) (xs, ys []float64, rows int) {
	x, row := 0.0, 0
	for _, l := range labels {
		w := 26 + svgTextWidth(l, 11) + 16
		if x > 0 && x+w > width {
			x, row = 0, row+1
		}
		xs, ys = append(xs, x), append(ys, float64(row)*18)
		x += w
	}
	if len(labels) > 0 {
		rows = row + 1
	}
	return xs, ys, rows
}

// chartSVG draws the panels one under another, sharing the time axis [xlo, xhi].
func chartSVG(title, subtitle string, xlo, xhi float64, panels []chartPanel, deco chartDeco) []byte {
	plotW := svgWidth - chartLeft - chartRight
	// Heights first.
	height := svgMargin + svgTitleH
	for _, pn := range panels {
		_, _, rows := svgLegendLayout(svgLineLabels(pn.lines), plotW)
		height += chartTitleH + pn.plotH + chartAxisH + float64(rows)*18 + 14
	}
	height += svgMargin - 14

	var b svgBuf
	b.open(svgWidth, height, title)
	b.heading(title, subtitle)
	y := svgMargin + svgTitleH
	for i, pn := range panels {
		y = chartPanelSVG(&b, pn, i, y, plotW, xlo, xhi, deco)
	}
	b.close()
	return b.Bytes()
}

func svgLineLabels(ls []chartLine) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.label
	}
	return out
}

// yRange is a panel's y axis: from yMin (or lower values) to above its highest value and
// reference line, with headroom for the reference labels; haveData says whether any line has a
// finite value.
func (pn chartPanel) yRange() (lo, hi float64, haveData bool) {
	lo, hi = pn.yMin, math.Inf(-1)
	for _, l := range pn.lines {
		for _, v := range l.ys {
			if svgFinite(v) {
				lo, hi, haveData = min(lo, v), max(hi, v), true
			}
		}
	}
	for _, r := range pn.refs {
		lo, hi = min(lo, r.y), max(hi, r.y)
	}
	if !(hi > lo) {
		hi = lo + 1
	}
	hi += 0.05 * (hi - lo)
	return lo, hi, haveData
}

// chartPanelSVG draws one panel from top y and returns where the next one starts.
func chartPanelSVG(b *svgBuf, pn chartPanel, idx int, y, plotW, xlo, xhi float64, deco chartDeco) float64 {
	b.p(`<g id="panel-%d">`+"\n", idx)
	b.p(`<text x="%s" y="%s" font-size="13" font-weight="bold">%s</text>`+"\n", svgNum(svgMargin), svgNum(y+14), svgEsc(pn.title))
	top := y + chartTitleH
	left := chartLeft
	bottom := top + pn.plotH
	right := left + plotW

	lo, hi, haveData := pn.yRange()
	ystep := svgNiceStep(hi-lo, 5)
	lo = math.Floor(lo/ystep+1e-9) * ystep
	hi = math.Ceil(hi/ystep-1e-9) * ystep
	xstep := svgNiceStep(xhi-xlo, 8)

	sx := func(x float64) float64 { return left + (x-xlo)/(xhi-xlo)*plotW }
	sy := func(v float64) float64 { return bottom - (v-lo)/(hi-lo)*pn.plotH }
	clampX := func(x float64) float64 { return min(right, max(left, sx(x))) }

	// Phases: alternating shaded bands, named along the bottom where the name fits.
	for i, ph := range deco.phases {
		if !(ph.EndS > ph.StartS) || ph.EndS < xlo || ph.StartS > xhi {
			continue
		}
		bx0, bx1 := clampX(ph.StartS), clampX(ph.EndS)
		op := []string{"0.05", "0.1"}[i%2]
		b.p(`<rect x="%s" y="%s" width="%s" height="%s" fill="#56B4E9" fill-opacity="%s"><title>%s</title></rect>`+"\n",
			svgNum(bx0), svgNum(top), svgNum(bx1-bx0), svgNum(pn.plotH), op,
			svgEsc(fmt.Sprintf("phase %s: %s to %s s", ph.Name, figNum(ph.StartS), figNum(ph.EndS))))
		if pn.labels && svgTextWidth(ph.Name, 10)+6 <= bx1-bx0 {
			b.p(`<text x="%s" y="%s" font-size="10" fill="#335" text-anchor="middle">%s</text>`+"\n",
				svgNum((bx0+bx1)/2), svgNum(bottom-5), svgEsc(ph.Name))
		}
	}

	// Grid and y ticks.
	b.p(`<g font-size="11" fill="#333">` + "\n")
	for _, t := range svgTicks(lo, hi, ystep) {
		ty := sy(t)
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd" stroke-width="0.75"/>`, svgNum(left), svgNum(ty), svgNum(right), svgNum(ty))
		b.p(`<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", svgNum(left-6), svgNum(ty+4), svgTickLabel(t, ystep))
	}
	for _, t := range svgTicks(xlo, xhi, xstep) {
		tx := sx(t)
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>`, svgNum(tx), svgNum(bottom), svgNum(tx), svgNum(bottom+4))
		b.p(`<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", svgNum(tx), svgNum(bottom+16), svgTickLabel(t, xstep))
	}
	b.p(`<text x="%s" y="%s" text-anchor="middle">t (s)</text>`+"\n", svgNum((left+right)/2), svgNum(bottom+31))
	b.p(`<text transform="translate(%s %s) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
		svgNum(svgMargin+2), svgNum((top+bottom)/2), svgEsc(pn.yLabel))
	b.p("</g>\n")

	// Faults: dotted vertical lines, labelled in the first panel, staggered so they overlap less.
	for i, f := range deco.faults {
		if f.AtS < xlo || f.AtS > xhi {
			continue
		}
		fx := sx(f.AtS)
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#000" stroke-width="1.25" stroke-dasharray="1.5 3"><title>%s</title></line>`+"\n",
			svgNum(fx), svgNum(top), svgNum(fx), svgNum(bottom), svgEsc(fmt.Sprintf("t = %s s: %s", figNum(f.AtS), f.What)))
		if pn.labels {
			ly := top + 12 + float64(i%3)*13
			anchor, lx := "start", fx+3
			if lx+svgTextWidth(f.What, 10) > right {
				anchor, lx = "end", fx-3
			}
			b.p(`<text x="%s" y="%s" font-size="10" text-anchor="%s" fill="#000" stroke="#fff" stroke-width="3" paint-order="stroke">%s</text>`+"\n",
				svgNum(lx), svgNum(ly), anchor, svgEsc(f.What))
		}
	}

	// Reference lines.
	for _, r := range pn.refs {
		ry := sy(r.y)
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333" stroke-width="1.25" stroke-dasharray="7 4"/>`,
			svgNum(left), svgNum(ry), svgNum(right), svgNum(ry))
		b.p(`<text x="%s" y="%s" font-size="11" text-anchor="end" fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke">%s</text>`+"\n",
			svgNum(right-4), svgNum(ry-4), svgEsc(r.label))
	}

	// The lines: a path per run of known values; a lone value is a dot.
	b.p(`<g fill="none" stroke-width="1.75" stroke-linejoin="round">` + "\n")
	for _, l := range pn.lines {
		dash := ""
		if l.dash != "" {
			dash = ` stroke-dasharray="` + l.dash + `"`
		}
		b.p(`<g stroke="%s"%s><title>%s</title>`, l.colour, dash, svgEsc(l.label))
		var path strings.Builder
		run := 0
		flush := func(i int) {
			if run == 1 {
				b.p(`<circle cx="%s" cy="%s" r="2" fill="%s" stroke="none"/>`, svgNum(sx(l.xs[i-1])), svgNum(sy(l.ys[i-1])), l.colour)
			} else if run > 1 {
				b.p(`<path d="%s"/>`, path.String())
			}
			path.Reset()
			run = 0
		}
		for i := range l.ys {
			if i >= len(l.xs) || !svgFinite(l.ys[i]) || !svgFinite(l.xs[i]) {
				flush(i)
				continue
			}
			cmd := "L"
			if run == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%s %s ", cmd, svgNum(sx(l.xs[i])), svgNum(sy(l.ys[i])))
			run++
		}
		flush(min(len(l.ys), len(l.xs)))
		b.p("</g>\n")
	}
	b.p("</g>\n")
	chartFrame(b, left, top, right, bottom, pn.plotH, haveData)
	ly := bottom + chartAxisH + 4
	rows := chartLegend(b, pn.lines, left, ly, plotW, nil)
	b.p("</g>\n</g>\n")
	return ly + float64(rows)*18 + 14 - 4
}

// chartFrame says "no data" in a panel that has none, and frames its plot area.
func chartFrame(b *svgBuf, left, top, right, bottom, plotH float64, haveData bool) {
	if !haveData {
		b.p(`<text x="%s" y="%s" font-size="16" fill="#888" text-anchor="middle">no data</text>`+"\n",
			svgNum((left+right)/2), svgNum((top+bottom)/2))
	}
	b.p(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#333"/>`+"\n",
		svgNum(left), svgNum(top), svgNum(right-left), svgNum(plotH))
}

// chartLegend draws a panel's legend from y ly down, a sample of each line and its label
// (marker, if set, also draws the line's point marker on the sample), and returns its rows.
// It leaves the legend's group open for the caller to close.
func chartLegend(b *svgBuf, lines []chartLine, left, ly, width float64, marker func(i int, x, y float64, l chartLine)) int {
	xs, ys, rows := svgLegendLayout(svgLineLabels(lines), width)
	b.p(`<g font-size="11">` + "\n")
	for i, l := range lines {
		x, yy := left+xs[i], ly+ys[i]
		dash := ""
		if l.dash != "" {
			dash = ` stroke-dasharray="` + l.dash + `"`
		}
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5"%s/>`, svgNum(x), svgNum(yy), svgNum(x+20), svgNum(yy), l.colour, dash)
		if marker != nil {
			marker(i, x+10, yy, l)
		}
		b.p(`<text x="%s" y="%s">%s</text>`+"\n", svgNum(x+26), svgNum(yy+4), svgEsc(l.label))
	}
	return rows
}

// chartSeriesRange is the time axis of a report's charts: its samples, phases and faults.
func chartSeriesRange(r *Report) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range r.Series {
		if svgFinite(s.T) {
			lo, hi = min(lo, s.T), max(hi, s.T)
		}
	}
	if lo > hi {
		return 0, 0, false
	}
	for _, p := range r.Phases {
		if svgFinite(p.StartS) && svgFinite(p.EndS) && p.EndS > p.StartS {
			lo, hi = min(lo, p.StartS), max(hi, p.EndS)
		}
	}
	for _, f := range r.Faults {
		if svgFinite(f.AtS) {
			lo, hi = min(lo, f.AtS), max(hi, f.AtS)
		}
	}
	if !(hi > lo) {
		hi = lo + 1
	}
	return lo, hi, true
}

// chartServerLines builds one line per server from the samples, with gaps where the server was
// absent, dead or its value unknown (negative); a server down at the end says since when.
func chartServerLines(r *Report, pal serverPalette, value func(ServerSample) float64) []chartLine {
	var lines []chartLine
	for _, id := range pal.ids {
		l := chartLine{label: "server " + id, colour: pal.colour(id), dash: pal.dash(id)}
		seen, lastAlive := false, -1
		for i, s := range r.Series {
			ss, ok := s.Servers[id]
			v := math.NaN()
			if ok && ss.Alive {
				if x := value(ss); x >= 0 {
					v = x
				}
				lastAlive = i
			}
			seen = seen || ok
			l.xs, l.ys = append(l.xs, s.T), append(l.ys, v)
		}
		if !seen {
			continue
		}
		if lastAlive >= 0 && lastAlive < len(r.Series)-1 {
			l.label += fmt.Sprintf(" (down from t = %s s)", figNum(r.Series[lastAlive+1].T))
		} else if lastAlive < 0 {
			l.label += " (never alive)"
		}
		lines = append(lines, l)
	}
	return lines
}

func reportDeco(r *Report) chartDeco { return chartDeco{phases: r.Phases, faults: r.Faults} }

// tickSVG is tick_p99.svg: each server's tick p99 per second against the budget.
func tickSVG(r *Report, pal serverPalette) []byte {
	const title = "Tick time p99 per server"
	lo, hi, ok := chartSeriesRange(r)
	if !ok {
		return svgNoData(title, "the run recorded no samples")
	}
	pn := chartPanel{
		title:  "p99 of each second's ticks",
		yLabel: "tick p99 (ms)",
		lines:  chartServerLines(r, pal, func(s ServerSample) float64 { return s.TickP99MS }),
		refs:   []chartRef{{svgTickBudgetMS, "budget " + strconv.FormatFloat(svgTickBudgetMS, 'f', -1, 64) + " ms"}},
		plotH:  280,
		labels: true,
	}
	sub := fmt.Sprintf("%s, %s partitioning, %s bots; overall p99 %s; dotted: faults, shaded: phases",
		r.Scenario, r.Partitioning, strconv.Itoa(r.Bots), figMS(r.TickMS.P99))
	return chartSVG(title, sub, lo, hi, []chartPanel{pn}, reportDeco(r))
}

// loadSVG is load.svg: each server's entities, and the imbalance (max/mean) under it.
func loadSVG(r *Report, pal serverPalette) []byte {
	const title = "Load per server"
	lo, hi, ok := chartSeriesRange(r)
	if !ok {
		return svgNoData(title, "the run recorded no samples")
	}
	ents := chartPanel{
		title:  "Real entities per server",
		yLabel: "entities",
		lines:  chartServerLines(r, pal, func(s ServerSample) float64 { return float64(s.Entities) }),
		plotH:  240,
		labels: true,
	}
	imb := chartLine{label: "max/mean over live servers", colour: "#0072B2"}
	for _, s := range r.Series {
		v := s.MaxOverMean
		if v < 0 {
			v = math.NaN()
		}
		imb.xs, imb.ys = append(imb.xs, s.T), append(imb.ys, v)
	}
	ratio := chartPanel{
		title:  "Imbalance",
		yLabel: "max/mean",
		lines:  []chartLine{imb},
		refs:   []chartRef{{svgBalancedRatio, "balanced ≤ " + strconv.FormatFloat(svgBalancedRatio, 'f', 2, 64)}},
		yMin:   1,
		plotH:  140,
	}
	sub := fmt.Sprintf("%s, %s partitioning; max/mean p50 %s, max %s; balanced after %s",
		r.Scenario, r.Partitioning, figVal(r.Load.MaxOverMeanP50), figVal(r.Load.MaxOverMeanMax), figSecondsOrNever(r.Load.SecondsToBalance))
	return chartSVG(title, sub, lo, hi, []chartPanel{ents, ratio}, reportDeco(r))
}

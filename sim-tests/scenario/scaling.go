package scenario

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ScalePoint is one bot count of a scaling run: the same scenario with Bots bots, with dynamic
// partitioning and (if it was compared) static.
type ScalePoint struct {
	Bots    int     `json:"bots"`
	Dynamic *Report `json:"dynamic"`
	Static  *Report `json:"static"` // nil: not compared at this count
	// Error is why a run at this count did not complete (the bots could not all connect, the
	// cluster did not start); the reports it did not produce are nil.
	Error string `json:"error,omitempty"`
}

// scalingPictureName is the chart beside scaling.md.
const scalingPictureName = "scaling.svg"

// scalingReportLink is where the reports of one bot count are, relative to the scaling run's
// directory (each count's run is written to <dir>/bots-<N>).
func scalingReportLink(bots int) string {
	return path.Join("bots-"+strconv.Itoa(bots), "report.md")
}

// WriteScaling writes dir/scaling.json (the points), dir/scaling.md and dir/scaling.svg: how
// each headline figure grows with the number of bots. dir is created if need be; the points are
// not changed. scaling.md links each count's report as bots-<N>/report.md, which the caller
// writes.
//
// Points that cannot be encoded as JSON (a NaN figure, say) still get scaling.md and
// scaling.svg; the error says what went wrong.
func WriteScaling(dir string, points []ScalePoint) error {
	if len(points) == 0 {
		return errors.New("scenario: WriteScaling: no points")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("scenario: WriteScaling: %w", err)
	}
	var errs []error
	if err := writeJSON(filepath.Join(dir, "scaling.json"), points); err != nil {
		errs = append(errs, err)
	}
	sorted := sortedScalePoints(points)
	if err := os.WriteFile(filepath.Join(dir, scalingPictureName), scalingSVG(sorted), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("scenario: WriteScaling: %w", err))
	}
	if err := os.WriteFile(filepath.Join(dir, "scaling.md"), []byte(scalingMarkdown(sorted)), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("scenario: WriteScaling: %w", err))
	}
	return errors.Join(errs...)
}

// sortedScalePoints is a copy of points by bot count (stable).
func sortedScalePoints(points []ScalePoint) []ScalePoint {
	out := slices.Clone(points)
	slices.SortStableFunc(out, func(a, b ScalePoint) int { return cmp.Compare(a.Bots, b.Bots) })
	return out
}

// scaleFirst is the first report of the points (dynamic before static), nil if there is none.
func scaleFirst(points []ScalePoint) *Report {
	for _, p := range points {
		if p.Dynamic != nil {
			return p.Dynamic
		}
	}
	for _, p := range points {
		if p.Static != nil {
			return p.Static
		}
	}
	return nil
}

// scaleCounts is "100, 200, 400, 800": the distinct bot counts.
func scaleCounts(points []ScalePoint) string {
	var out []string
	for i, p := range points {
		if i == 0 || p.Bots != points[i-1].Bots {
			out = append(out, strconv.Itoa(p.Bots))
		}
	}
	return strings.Join(out, ", ")
}

// worstTickP99 is the highest per-server tick p99 of r, ms; -1 when r has none.
func worstTickP99(r *Report) float64 {
	worst := -1.0
	if r == nil {
		return worst
	}
	for _, ts := range r.TickMS.PerServer {
		if svgFinite(ts.P99) && ts.P99 > worst {
			worst = ts.P99
		}
	}
	return worst
}

// scaleWorld is the world of r's first moment that has one: "512 × 512 m", "" if none has.
func scaleWorld(r *Report) string {
	if r == nil {
		return ""
	}
	for _, m := range r.Moments {
		w := m.World
		if w[2] > w[0] && w[3] > w[1] && svgFinite(w[2]-w[0]) && svgFinite(w[3]-w[1]) {
			return figNum(w[2]-w[0]) + " × " + figNum(w[3]-w[1]) + " m"
		}
	}
	return ""
}

// scaleSame is one(v) when every report that knows the figure says v ("3 servers"), else each
// value with the counts it was at: "servers: 3 at 100, 200 bots; 4 at 800 bots". Reports for
// which get is "" do not know it; "" if none does.
func scaleSame(points []ScalePoint, what string, get func(*Report) string, one func(string) string) string {
	var order []string
	at := map[string][]string{}
	for _, p := range points {
		for _, r := range []*Report{p.Dynamic, p.Static} {
			if r == nil {
				continue
			}
			v := get(r)
			if v == "" {
				continue
			}
			if _, ok := at[v]; !ok {
				order = append(order, v)
			}
			n := strconv.Itoa(p.Bots)
			if bs := at[v]; len(bs) == 0 || bs[len(bs)-1] != n {
				at[v] = append(bs, n)
			}
		}
	}
	switch len(order) {
	case 0:
		return ""
	case 1:
		return one(order[0])
	}
	parts := make([]string, len(order))
	for i, v := range order {
		parts[i] = v + " at " + strings.Join(at[v], ", ") + " bots"
	}
	return what + ": " + strings.Join(parts, "; ")
}

// scalingSetupLine is the scaling run's setup in a line.
func scalingSetupLine(points []ScalePoint) string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	add(scaleSame(points, "servers", func(r *Report) string { return strconv.Itoa(r.Servers) },
		func(v string) string { n, _ := strconv.Atoi(v); return figPlural(n, "server") }))
	add(scaleSame(points, "duration", func(r *Report) string { return figSeconds(r.DurationS) },
		func(v string) string { return v + " per run" }))
	add(scaleSame(points, "seed", func(r *Report) string { return strconv.FormatUint(r.Seed, 10) },
		func(v string) string { return "seed " + v }))
	add(scaleSame(points, "world", scaleWorld, func(v string) string { return "world " + v }))
	var static []string
	for _, p := range points {
		if p.Static != nil {
			static = append(static, strconv.Itoa(p.Bots))
		}
	}
	switch {
	case len(static) == 0:
		add("dynamic partitioning (static not compared)")
	case len(static) == len(points):
		add("dynamic partitioning, compared with static at every count")
	default:
		add("dynamic partitioning, compared with static at " + strings.Join(static, ", ") + " bots")
	}
	return strings.Join(parts, ", ") + "."
}

// scaleInvariants is "OK", "FAILED" or "-" (not run).
func scaleInvariants(r *Report) string {
	switch {
	case r == nil:
		return "-"
	case r.Invariants.OK:
		return "OK"
	}
	return "FAILED"
}

// scalePointInvariants is the invariants column of a point: "dyn / static", or that its run
// did not complete.
func scalePointInvariants(p ScalePoint) string {
	if p.Error != "" {
		return "**did not complete**"
	}
	return scaleBoth(p, scaleInvariants)
}

// scaleBoth is "dyn / static" of a figure.
func scaleBoth(p ScalePoint, f func(*Report) string) string {
	side := func(r *Report) string {
		if r == nil {
			return "-"
		}
		return f(r)
	}
	return side(p.Dynamic) + " / " + side(p.Static)
}

// scaleDyn is a figure of the dynamic run, "-" without one.
func scaleDyn(p ScalePoint, f func(*Report) string) string {
	if p.Dynamic == nil {
		return "-"
	}
	return f(p.Dynamic)
}

// scalingTable is the table of the figures at each count (scaling.md, and the block of
// docs/performance.md), with its legend.
func scalingTable(b *mdBuf, points []ScalePoint) {
	b.p("| bots | tick p99 overall, ms (dyn / static) | worst server's tick p99, ms (dyn / static)" +
		" | max/mean p50 (dyn / static) | max/mean max (dyn / static) | s to balance (dyn)" +
		" | kbit/s per client p50 (dyn) | handoffs (dyn) | handoff p99 ms (dyn)" +
		" | map changes (dyn: splits/merges/shifts/moves) | CPU cores (dyn: bots/gateway/cells/meta) | invariants (dyn / static) |\n")
	b.p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, p := range points {
		b.p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.Bots,
			scaleBoth(p, func(r *Report) string { return figVal(r.TickMS.P99) }),
			scaleBoth(p, func(r *Report) string { return figVal(worstTickP99(r)) }),
			scaleBoth(p, func(r *Report) string { return figVal(r.Load.MaxOverMeanP50) }),
			scaleBoth(p, func(r *Report) string { return figVal(r.Load.MaxOverMeanMax) }),
			scaleDyn(p, func(r *Report) string { return figVal(r.Load.SecondsToBalance) }),
			scaleDyn(p, func(r *Report) string { return figVal(r.Bandwidth.KbitPerClientP50) }),
			scaleDyn(p, func(r *Report) string { return figCount(r.Handoffs.Count) }),
			scaleDyn(p, func(r *Report) string { return figVal(r.Handoffs.LatencyMSP99) }),
			scaleDyn(p, func(r *Report) string {
				m := r.MapChanges
				return figCount(m.Splits) + "/" + figCount(m.Merges) + "/" + figCount(m.Shifts) + "/" + figCount(m.Moves)
			}),
			scaleDyn(p, func(r *Report) string {
				c := r.CPU
				if c.MachineCores == 0 {
					return "-"
				}
				return figVal(c.Bots) + "/" + figVal(c.Gateway) + "/" + figVal(c.Cells) + "/" + figVal(c.Meta)
			}),
			scalePointInvariants(p))
	}
	b.p("\n\"-\": not run (static not compared) or not measured; for \"s to balance\", also that max/mean " +
		"never stayed ≤ 1.10. Max/mean: real entities on the busiest live server over the live servers' mean.\n")
}

// scalingMarkdown is scaling.md of points sorted by bot count.
func scalingMarkdown(points []ScalePoint) string {
	var b mdBuf
	name := "unknown scenario"
	if r := scaleFirst(points); r != nil && r.Scenario != "" {
		name = r.Scenario
	}
	b.p("# Meridian sim: %s at %s bots\n\n", name, scaleCounts(points))
	b.p("%s\n\n", scalingSetupLine(points))

	scalingTable(&b, points)

	// Runs that did not complete, and failed invariants, with what the runs said about them.
	incomplete := false
	for _, p := range points {
		if p.Error == "" {
			continue
		}
		if !incomplete {
			b.p("\n## Runs that did not complete\n\n")
			incomplete = true
		}
		b.p("- %d bots: %s\n", p.Bots, strings.Join(strings.Fields(p.Error), " "))
	}
	var failed bool
	for _, p := range points {
		for _, s := range []compareSide{{"dynamic", p.Dynamic}, {"static", p.Static}} {
			if s.r == nil || s.r.Invariants.OK {
				continue
			}
			if !failed {
				b.p("\n## Failed invariants\n\n")
				failed = true
			}
			b.p("- %d bots, %s: %s\n", p.Bots, s.name, verdictLine(s.r.Invariants))
			b.notes(s.r.Invariants, "  ")
		}
	}

	b.p("\n## Pictures\n\n![how the headline figures grow with the number of bots](%s)\n", scalingPictureName)

	largest := points[len(points)-1]
	b.p("\n## Limits of the largest run (%s)\n", figPlural(largest.Bots, "bot"))
	switch {
	case largest.Error != "" && largest.Dynamic == nil:
		b.p("\nThe run did not complete (why is above).\n")
	case largest.Static == nil:
		b.p("\n")
		if largest.Dynamic == nil {
			b.p("Not run.\n")
		} else {
			b.limits(largest.Dynamic.Limits)
		}
	default:
		for _, s := range []compareSide{{"dynamic", largest.Dynamic}, {"static", largest.Static}} {
			b.p("\n### %s\n\n", s.name)
			if s.r == nil {
				b.p("Not run.\n")
				continue
			}
			b.limits(s.r.Limits)
		}
	}

	b.p("\n## Reports\n\n")
	for i, p := range points {
		if i > 0 && p.Bots == points[i-1].Bots {
			continue
		}
		what := "dynamic"
		if p.Static != nil {
			what = "dynamic vs static"
		}
		b.p("- [%s](%s) (%s)\n", figPlural(p.Bots, "bot"), scalingReportLink(p.Bots), what)
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// scaling.svg: small multiples, a figure against the number of bots per panel.

const (
	scaleSVGWidth     = 900.0
	scalePanelW       = scaleSVGWidth / 2
	scalePlotH        = 190.0
	scaleDynColour    = "#0072B2" // Okabe–Ito blue, as the imbalance line of load.svg
	scaleStaticColour = "#D55E00" // Okabe–Ito vermillion
)

// scaleAxis is the bot-count axis of the panels: log2 when the counts span a factor of 4 or
// more, else linear; the counts are its ticks.
type scaleAxis struct {
	counts []int
	log    bool
	lo, hi float64 // in axis units (log2(bots) or bots), padded
}

func newScaleAxis(points []ScalePoint) scaleAxis {
	var a scaleAxis
	for _, p := range points {
		if n := len(a.counts); n == 0 || a.counts[n-1] != p.Bots {
			a.counts = append(a.counts, p.Bots)
		}
	}
	if len(a.counts) == 0 {
		a.counts = []int{0}
	}
	first, last := a.counts[0], a.counts[len(a.counts)-1]
	a.log = first > 0 && float64(last)/float64(first) >= 4
	a.lo, a.hi = a.unit(float64(first)), a.unit(float64(last))
	if pad := 0.06 * (a.hi - a.lo); pad > 0 {
		a.lo, a.hi = a.lo-pad, a.hi+pad
	} else if a.log {
		a.lo, a.hi = a.lo-0.5, a.hi+0.5
	} else {
		a.lo, a.hi = a.lo-1, a.hi+1
	}
	return a
}

func (a scaleAxis) unit(bots float64) float64 {
	if a.log {
		return math.Log2(bots)
	}
	return bots
}

func (a scaleAxis) title() string {
	if a.log {
		return "bots (log₂ scale)"
	}
	return "bots"
}

// scaleMarker draws a point's marker: a circle for the first line of a panel, a square for the
// second (so the lines differ by more than colour), with its value as a tooltip.
func scaleMarker(b *svgBuf, i int, x, y float64, colour, tip string) {
	if i%2 == 0 {
		b.p(`<circle cx="%s" cy="%s" r="3.5" fill="%s" stroke="#fff" stroke-width="1"><title>%s</title></circle>`,
			svgNum(x), svgNum(y), colour, svgEsc(tip))
		return
	}
	b.p(`<rect x="%s" y="%s" width="7" height="7" fill="%s" stroke="#fff" stroke-width="1"><title>%s</title></rect>`,
		svgNum(x-3.5), svgNum(y-3.5), colour, svgEsc(tip))
}

// scalePanelHeight is the height a panel takes, its legend included.
func scalePanelHeight(pn chartPanel, plotW float64) float64 {
	_, _, rows := svgLegendLayout(svgLineLabels(pn.lines), plotW)
	return chartTitleH + pn.plotH + chartAxisH + float64(rows)*18 + 14
}

// scalePanelSVG draws one panel with its top left corner at (ox, oy), width scalePanelW. Lines
// join a line's known values (a bot count it has no value at is skipped); each value is a dot.
func scalePanelSVG(b *svgBuf, pn chartPanel, idx int, ox, oy float64, ax scaleAxis, unit string) {
	plotW := scalePanelW - chartLeft - chartRight
	b.p(`<g id="panel-%d">`+"\n", idx)
	b.p(`<text x="%s" y="%s" font-size="13" font-weight="bold">%s</text>`+"\n", svgNum(ox+svgMargin), svgNum(oy+14), svgEsc(pn.title))
	top := oy + chartTitleH
	left := ox + chartLeft
	bottom := top + pn.plotH
	right := left + plotW

	lo, hi, haveData := pn.yRange()
	ystep := svgNiceStep(hi-lo, 5)
	lo = math.Floor(lo/ystep+1e-9) * ystep
	hi = math.Ceil(hi/ystep-1e-9) * ystep

	sx := func(bots float64) float64 { return left + (ax.unit(bots)-ax.lo)/(ax.hi-ax.lo)*plotW }
	sy := func(v float64) float64 { return bottom - (v-lo)/(hi-lo)*pn.plotH }

	// Grid, y ticks, and the counts as x ticks (a label that would overlap the previous one is
	// left out; its tick stays).
	b.p(`<g font-size="11" fill="#333">` + "\n")
	for _, t := range svgTicks(lo, hi, ystep) {
		ty := sy(t)
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd" stroke-width="0.75"/>`, svgNum(left), svgNum(ty), svgNum(right), svgNum(ty))
		b.p(`<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", svgNum(left-6), svgNum(ty+4), svgTickLabel(t, ystep))
	}
	lastEnd := math.Inf(-1)
	for _, n := range ax.counts {
		tx := sx(float64(n))
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eee" stroke-width="0.75"/>`, svgNum(tx), svgNum(top), svgNum(tx), svgNum(bottom))
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>`, svgNum(tx), svgNum(bottom), svgNum(tx), svgNum(bottom+4))
		s := strconv.Itoa(n)
		w := svgTextWidth(s, 11)
		if tx-w/2 < lastEnd+4 {
			b.p("\n")
			continue
		}
		lastEnd = tx + w/2
		b.p(`<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", svgNum(tx), svgNum(bottom+16), s)
	}
	b.p(`<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", svgNum((left+right)/2), svgNum(bottom+31), svgEsc(ax.title()))
	b.p(`<text transform="translate(%s %s) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
		svgNum(ox+svgMargin+2), svgNum((top+bottom)/2), svgEsc(pn.yLabel))
	b.p("</g>\n")

	for _, r := range pn.refs {
		ry := sy(r.y)
		b.p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333" stroke-width="1.25" stroke-dasharray="7 4"/>`,
			svgNum(left), svgNum(ry), svgNum(right), svgNum(ry))
		b.p(`<text x="%s" y="%s" font-size="11" text-anchor="end" fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke">%s</text>`+"\n",
			svgNum(right-4), svgNum(ry-4), svgEsc(r.label))
	}

	for i, l := range pn.lines {
		dash := ""
		if l.dash != "" {
			dash = ` stroke-dasharray="` + l.dash + `"`
		}
		b.p(`<g><title>%s</title>`, svgEsc(l.label))
		var d strings.Builder
		type pt struct{ x, y, bots, v float64 }
		var pts []pt
		for k := range min(len(l.xs), len(l.ys)) {
			if svgFinite(l.xs[k]) && svgFinite(l.ys[k]) {
				pts = append(pts, pt{sx(l.xs[k]), sy(l.ys[k]), l.xs[k], l.ys[k]})
			}
		}
		for k, p := range pts {
			cmd := "L"
			if k == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s ", cmd, svgNum(p.x), svgNum(p.y))
		}
		if len(pts) > 1 {
			b.p(`<path d="%s" fill="none" stroke="%s" stroke-width="1.75" stroke-linejoin="round"%s/>`, strings.TrimSpace(d.String()), l.colour, dash)
		}
		for _, p := range pts {
			tip := fmt.Sprintf("%s, %s: %s", l.label, figPlural(int(p.bots), "bot"), figNum(p.v))
			if unit != "" {
				tip += " " + unit
			}
			scaleMarker(b, i, p.x, p.y, l.colour, tip)
		}
		b.p("</g>\n")
	}
	chartFrame(b, left, top, right, bottom, pn.plotH, haveData)
	chartLegend(b, pn.lines, left, bottom+chartAxisH+4, plotW, func(i int, x, y float64, l chartLine) {
		scaleMarker(b, i, x, y, l.colour, l.label)
	})
	b.p("</g>\n</g>\n")
}

// scaleLine is a figure of one side at each point; NaN where the side did not run or the
// figure is unknown (negative).
func scaleLine(points []ScalePoint, label, colour string, static bool, f func(*Report) float64) chartLine {
	l := chartLine{label: label, colour: colour}
	for _, p := range points {
		r := p.Dynamic
		if static {
			r = p.Static
		}
		v := math.NaN()
		if r != nil {
			if x := f(r); x >= 0 {
				v = x
			}
		}
		l.xs, l.ys = append(l.xs, float64(p.Bots)), append(l.ys, v)
	}
	return l
}

// scalingSVG is scaling.svg of points sorted by bot count: four panels, two by two.
func scalingSVG(points []ScalePoint) []byte {
	name := "unknown scenario"
	if r := scaleFirst(points); r != nil && r.Scenario != "" {
		name = r.Scenario
	}
	title := "Meridian sim: " + name + " at " + scaleCounts(points) + " bots"
	anyStatic := slices.ContainsFunc(points, func(p ScalePoint) bool { return p.Static != nil })
	both := func(f func(*Report) float64) []chartLine {
		ls := []chartLine{scaleLine(points, "dynamic", scaleDynColour, false, f)}
		if anyStatic {
			ls = append(ls, scaleLine(points, "static", scaleStaticColour, true, f))
		}
		return ls
	}
	dyn := func(f func(*Report) float64) []chartLine {
		return []chartLine{scaleLine(points, "dynamic", scaleDynColour, false, f)}
	}
	type panel struct {
		chartPanel
		unit string
	}
	panels := []panel{
		{chartPanel{title: "Tick p99 of the worst server", yLabel: "tick p99 (ms)", lines: both(worstTickP99),
			refs:  []chartRef{{svgTickBudgetMS, "budget " + strconv.FormatFloat(svgTickBudgetMS, 'f', -1, 64) + " ms"}},
			plotH: scalePlotH}, "ms"},
		{chartPanel{title: "Imbalance: max/mean entities, p50", yLabel: "max/mean",
			lines: both(func(r *Report) float64 { return r.Load.MaxOverMeanP50 }),
			refs:  []chartRef{{svgBalancedRatio, "balanced ≤ " + strconv.FormatFloat(svgBalancedRatio, 'f', 2, 64)}},
			yMin:  1, plotH: scalePlotH}, ""},
		{chartPanel{title: "Downstream per client, p50", yLabel: "kbit/s",
			lines: dyn(func(r *Report) float64 { return r.Bandwidth.KbitPerClientP50 }), plotH: scalePlotH}, "kbit/s"},
		{chartPanel{title: "Handoff latency p99", yLabel: "ms",
			lines: dyn(func(r *Report) float64 { return r.Handoffs.LatencyMSP99 }), plotH: scalePlotH}, "ms"},
	}

	plotW := scalePanelW - chartLeft - chartRight
	rowH := make([]float64, (len(panels)+1)/2)
	for i, pn := range panels {
		rowH[i/2] = max(rowH[i/2], scalePanelHeight(pn.chartPanel, plotW))
	}
	height := svgMargin + svgTitleH
	for _, h := range rowH {
		height += h
	}
	height += svgMargin - 14

	sub := "tick p99, imbalance, bandwidth and handoff latency against the number of bots"
	if r := scaleFirst(points); r != nil {
		sub = fmt.Sprintf("%s, %s per run; dynamic", figPlural(r.Servers, "server"), figSeconds(r.DurationS))
		if anyStatic {
			sub += " and static"
		}
		sub += " partitioning; dashed: the tick budget and the balanced imbalance"
	}
	ax := newScaleAxis(points)
	var b svgBuf
	b.open(scaleSVGWidth, height, title)
	b.heading(title, sub)
	y := svgMargin + svgTitleH
	for i, pn := range panels {
		scalePanelSVG(&b, pn.chartPanel, i, float64(i%2)*scalePanelW, y, ax, pn.unit)
		if i%2 == 1 {
			y += rowH[i/2]
		}
	}
	b.close()
	return b.Bytes()
}

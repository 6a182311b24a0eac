package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Picture file names beside report.json (the maps are map-<k>-<slug of the label>.svg, k from 1
// in Moments order).
const (
	tickPictureName = "tick_p99.svg"
	loadPictureName = "load.svg"
)

// reportPicture is a picture of a report: its file name and how to draw it.
type reportPicture struct {
	name string
	draw func() []byte
}

// reportPictures lists the pictures of r in the order of Report.Pictures: a map per moment, then
// the tick and the load charts.
func reportPictures(r *Report) []reportPicture {
	pal := newServerPalette(r)
	var pics []reportPicture
	for k, m := range r.Moments {
		pics = append(pics, reportPicture{momentPicture(k, m.Label), func() []byte { return momentSVG(m, pal) }})
	}
	pics = append(pics,
		reportPicture{tickPictureName, func() []byte { return tickSVG(r, pal) }},
		reportPicture{loadPictureName, func() []byte { return loadSVG(r, pal) }})
	return pics
}

// momentPicture is the file name of the map of Moments[k].
func momentPicture(k int, label string) string {
	return fmt.Sprintf("map-%d-%s.svg", k+1, momentSlug(label))
}

// momentSlug makes a label a file name: lower-case letters and digits, runs of anything else as
// one hyphen, at most 40 characters; "moment" if nothing is left.
func momentSlug(label string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(label) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(c)
			dash = false
			if b.Len() >= 40 {
				break
			}
			continue
		}
		dash = true
	}
	if b.Len() == 0 {
		return "moment"
	}
	return b.String()
}

// WriteReport writes a scenario's report into dir (created if need be): report.json (r,
// indented), the pictures, and report.md, a summary for a person that shows them. It sets
// r.Pictures to the pictures' file names, relative to dir, before writing report.json.
//
// A report that cannot be encoded as JSON (a NaN figure, say) still gets its pictures and
// report.md; the error says what went wrong.
func WriteReport(dir string, r *Report) error {
	if r == nil {
		return errors.New("scenario: WriteReport: no report")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("scenario: WriteReport: %w", err)
	}
	pics := reportPictures(r)
	r.Pictures = make([]string, len(pics))
	for i, p := range pics {
		r.Pictures[i] = p.name
	}
	var errs []error
	if err := writeJSON(filepath.Join(dir, "report.json"), r); err != nil {
		errs = append(errs, err)
	}
	for _, p := range pics {
		if err := os.WriteFile(filepath.Join(dir, p.name), p.draw(), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("scenario: WriteReport: %w", err))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(reportMarkdown(r)), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("scenario: WriteReport: %w", err))
	}
	return errors.Join(errs...)
}

// WriteCompare writes a --compare run into dir: each side's report with WriteReport in
// dir/dynamic and dir/static, then dir/report.json (c) and dir/report.md, the two side by side.
// Afterwards each report's Pictures are relative to dir ("dynamic/load.svg"), as in
// dir/report.json. A side that did not run (nil) is shown as such.
func WriteCompare(dir string, c *Compare) error {
	if c == nil || c.Dynamic == nil && c.Static == nil {
		return errors.New("scenario: WriteCompare: no reports")
	}
	if c.Dynamic == c.Static {
		return errors.New("scenario: WriteCompare: the same report on both sides")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("scenario: WriteCompare: %w", err)
	}
	var errs []error
	for _, side := range compareSides(c) {
		if side.r == nil {
			continue
		}
		if err := WriteReport(filepath.Join(dir, side.name), side.r); err != nil {
			errs = append(errs, err)
		}
		for i, p := range side.r.Pictures {
			side.r.Pictures[i] = path.Join(side.name, p)
		}
	}
	if err := writeJSON(filepath.Join(dir, "report.json"), c); err != nil {
		errs = append(errs, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(compareMarkdown(c)), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("scenario: WriteCompare: %w", err))
	}
	return errors.Join(errs...)
}

type compareSide struct {
	name string // "dynamic", "static": the subdirectory too
	r    *Report
}

func compareSides(c *Compare) []compareSide {
	return []compareSide{{"dynamic", c.Dynamic}, {"static", c.Static}}
}

func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("scenario: %s: %w", filepath.Base(file), err)
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Numbers for a person. Figures that could not be measured are -1 in a Report: they read "-".

// figNum formats v with about three significant digits: "123", "12.3", "1.07", "0.042".
func figNum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	a := math.Abs(v)
	var s string
	switch {
	case a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 1e-6:
		s = strconv.FormatFloat(v, 'f', min(8, 1-int(math.Floor(math.Log10(a)))), 64)
	default:
		return "0"
	}
	if strings.Trim(s, "-0.") == "" {
		return "0"
	}
	return s
}

// figVal is figNum of a figure that is -1 (any negative) when unknown.
func figVal(v float64) string {
	if v < 0 {
		return "-"
	}
	return figNum(v)
}

func figUnit(v float64, unit string) string {
	s := figVal(v)
	if s == "-" {
		return s
	}
	return s + " " + unit
}

// figMS is a duration in milliseconds: "12.3 ms", "-" when unknown.
func figMS(v float64) string { return figUnit(v, "ms") }

// figSeconds is a duration in seconds: "4.20 s", "-" when unknown.
func figSeconds(v float64) string { return figUnit(v, "s") }

// figSecondsOrNever is a time to reach something, -1 when it never was: "4.20 s", "never".
func figSecondsOrNever(v float64) string {
	if v < 0 {
		return "never"
	}
	return figSeconds(v)
}

// figKbit is a rate: "96.5 kbit/s".
func figKbit(v float64) string { return figUnit(v, "kbit/s") }

// figCount is a count, "-" when unknown (negative).
func figCount(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// figPlural is "1 bot", "3 bots", "2 entities".
func figPlural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// figRatio is b/a of two known figures: "2.13×"; "-" when either is unknown or a is 0.
func figRatio(a, b float64) string {
	if !(a > 0) || !(b >= 0) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return "-"
	}
	return figNum(b/a) + "×"
}

// mdCell makes text safe inside a markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

// ---------------------------------------------------------------------------------------------
// report.md

// headlineRow is a row of the headline table: its name, and its value in a report (text, and the
// number a ratio uses; NaN when there is none).
type headlineRow struct {
	name  string
	get   func(r *Report) (string, float64)
	ratio bool // static/dynamic means something
}

func (h headlineRow) value(r *Report) (string, float64) {
	if r == nil {
		return "-", math.NaN()
	}
	return h.get(r)
}

// headlineRows are the headline figures, with a tick p99 row per server in servers.
func headlineRows(servers []string) []headlineRow {
	ms := func(f func(r *Report) float64) func(r *Report) (string, float64) {
		return func(r *Report) (string, float64) { v := f(r); return figMS(v), v }
	}
	count := func(f func(r *Report) int64) func(r *Report) (string, float64) {
		return func(r *Report) (string, float64) { n := f(r); return figCount(n), float64(n) }
	}
	cores := func(f func(r *Report) float64) func(r *Report) (string, float64) {
		return func(r *Report) (string, float64) {
			v := f(r)
			if r.CPU.MachineCores == 0 || v < 0 {
				return "-", math.NaN() // not measured (a report from before CPU was)
			}
			return fmt.Sprintf("%s of %d", figVal(v), r.CPU.MachineCores), v
		}
	}
	rows := []headlineRow{
		{"tick p50, all servers", ms(func(r *Report) float64 { return r.TickMS.P50 }), true},
		{"tick p99, all servers", ms(func(r *Report) float64 { return r.TickMS.P99 }), true},
		{"tick max, all servers (bucket bound)", ms(func(r *Report) float64 { return r.TickMS.Max }), true},
	}
	for _, id := range servers {
		rows = append(rows, headlineRow{"tick p99, server " + id, func(r *Report) (string, float64) {
			ts, ok := r.TickMS.PerServer[id]
			if !ok {
				return "-", math.NaN()
			}
			return figMS(ts.P99), ts.P99
		}, true})
	}
	rows = append(rows,
		headlineRow{"max/mean entities, p50", func(r *Report) (string, float64) {
			return figVal(r.Load.MaxOverMeanP50), r.Load.MaxOverMeanP50
		}, true},
		headlineRow{"max/mean entities, max", func(r *Report) (string, float64) {
			return figVal(r.Load.MaxOverMeanMax), r.Load.MaxOverMeanMax
		}, true},
		headlineRow{"time to balance (max/mean ≤ 1.10)", func(r *Report) (string, float64) {
			return figSecondsOrNever(r.Load.SecondsToBalance), r.Load.SecondsToBalance
		}, true},
		headlineRow{"downstream per client, p50", func(r *Report) (string, float64) {
			return figKbit(r.Bandwidth.KbitPerClientP50), r.Bandwidth.KbitPerClientP50
		}, true},
		headlineRow{"downstream per client, p99", func(r *Report) (string, float64) {
			return figKbit(r.Bandwidth.KbitPerClientP99), r.Bandwidth.KbitPerClientP99
		}, true},
		headlineRow{"handoffs", count(func(r *Report) int64 { return r.Handoffs.Count }), false},
		headlineRow{"handoff latency p99", ms(func(r *Report) float64 { return r.Handoffs.LatencyMSP99 }), true},
		headlineRow{"map changes: splits", count(func(r *Report) int64 { return r.MapChanges.Splits }), false},
		headlineRow{"map changes: merges", count(func(r *Report) int64 { return r.MapChanges.Merges }), false},
		headlineRow{"map changes: shifts", count(func(r *Report) int64 { return r.MapChanges.Shifts }), false},
		headlineRow{"map changes: moves", count(func(r *Report) int64 { return r.MapChanges.Moves }), false},
		headlineRow{"view flickers (an entity out of a client's view and back within 5 ticks)", count(func(r *Report) int64 { return int64(r.Seams.Flickers) }), true},
		headlineRow{"view flickers per client per minute", func(r *Report) (string, float64) {
			return figNum(r.Seams.FlickersPerClientMinute), r.Seams.FlickersPerClientMinute
		}, true},
		headlineRow{"full-state snapshots (not deltas) of all received", func(r *Report) (string, float64) {
			if r.Seams.Snapshots == 0 {
				return "-", math.NaN()
			}
			v := float64(r.Seams.FullSnapshots) / float64(r.Seams.Snapshots)
			return fmt.Sprintf("%s (%s %%)", figCount(int64(r.Seams.FullSnapshots)), figNum(100*v)), v
		}, true},
		headlineRow{"CPU, cores: the bots (sim process)", cores(func(r *Report) float64 { return r.CPU.Bots }), false},
		headlineRow{"CPU, cores: the gateway", cores(func(r *Report) float64 { return r.CPU.Gateway }), false},
		headlineRow{"CPU, cores: the cell servers", cores(func(r *Report) float64 { return r.CPU.Cells }), true},
		headlineRow{"CPU, cores: the meta nodes", cores(func(r *Report) float64 { return r.CPU.Meta }), false},
	)
	return rows
}

// setupLine is the run's setup in a line.
func setupLine(r *Report) string {
	part := r.Partitioning
	if part == "" {
		part = "unknown"
	}
	return setupLineAs(r, part)
}

// setupLineAs is setupLine with the partitioning given.
func setupLineAs(r *Report, part string) string {
	pg := "no"
	if r.PGURL {
		pg = "yes"
	}
	return fmt.Sprintf("%s, %s, %s partitioning, %s, seed %d, PostgreSQL: %s.",
		figPlural(r.Bots, "bot"), figPlural(r.Servers, "server"), part, figSeconds(r.DurationS), r.Seed, pg)
}

// verdictLine says whether the invariants held, with their counters.
func verdictLine(inv Invariants) string {
	counts := []struct {
		name string
		n    int64
	}{
		{"entities lost", int64(inv.EntitiesLost)},
		{"duplicated", int64(inv.EntitiesDuplicated)},
		{"client reconnects", int64(inv.ClientReconnects)},
		{"inputs dropped", inv.InputsDropped},
	}
	var all, bad []string
	for _, c := range counts {
		s := fmt.Sprintf("%s %d", c.name, c.n)
		all = append(all, s)
		if c.n != 0 {
			bad = append(bad, s)
		}
	}
	if inv.OK {
		return "**Invariants: OK** (" + strings.Join(all, ", ") + ")."
	}
	if len(bad) == 0 {
		return "**Invariants: FAILED** (see the notes; " + strings.Join(all, ", ") + ")."
	}
	return "**Invariants: FAILED**: " + strings.Join(bad, ", ") + "."
}

// reproduceLine is the command line that runs the scenario again.
func reproduceLine(r *Report) string {
	return fmt.Sprintf("meridian sim %s --seed %d --bots %d --servers %d --duration %ss --partitioning %s",
		r.Scenario, r.Seed, r.Bots, r.Servers, strconv.FormatFloat(r.DurationS, 'f', -1, 64), r.Partitioning)
}

// pictureTitle is the alt text of the i-th picture of r.
func pictureTitle(r *Report, i int) string {
	switch {
	case i < len(r.Moments):
		m := r.Moments[i]
		return fmt.Sprintf("map: %s, t = %s s", m.Label, figNum(m.T))
	case i == len(r.Moments):
		return "tick p99 per server"
	}
	return "entities per server and max/mean"
}

// mdAlt makes text safe as a markdown image's alt text (and in a table cell).
func mdAlt(s string) string {
	return strings.NewReplacer("[", "(", "]", ")").Replace(mdCell(s))
}

// peakMoment is the index of the moment the crowd was densest (the most bots in one bin of
// the map's heat map), -1 without moments.
func peakMoment(r *Report) int {
	best, bestN := -1, -2
	for i, m := range r.Moments {
		if n := momentPeakDensity(m); n > bestN {
			best, bestN = i, n
		}
	}
	return best
}

type mdBuf struct{ strings.Builder }

func (b *mdBuf) p(format string, a ...any) { fmt.Fprintf(&b.Builder, format, a...) }

func (b *mdBuf) notes(inv Invariants, indent string) {
	for _, n := range inv.Notes {
		b.p("%s- %s\n", indent, strings.Join(strings.Fields(n), " "))
	}
}

func (b *mdBuf) phases(ps []Phase) {
	if len(ps) == 0 {
		b.p("No phases recorded.\n")
		return
	}
	b.p("| phase | from | to | length |\n|---|---:|---:|---:|\n")
	for _, p := range ps {
		b.p("| %s | %s | %s | %s |\n", mdCell(p.Name), figSeconds(p.StartS), figSeconds(p.EndS), figSeconds(p.EndS-p.StartS))
	}
}

func (b *mdBuf) faults(fs []Fault) {
	if len(fs) == 0 {
		b.p("No faults injected.\n")
		return
	}
	b.p("| at | fault | recovered after |\n|---:|---|---:|\n")
	for _, f := range fs {
		b.p("| %s | %s | %s |\n", figSeconds(f.AtS), mdCell(f.What), figSecondsOrNever(f.RecoveredS))
	}
}

func (b *mdBuf) limits(ls []string) {
	if len(ls) == 0 {
		b.p("None reported.\n")
		return
	}
	for _, l := range ls {
		b.p("- %s\n", strings.Join(strings.Fields(l), " "))
	}
}

// reportMarkdown is report.md of one run.
func reportMarkdown(r *Report) string {
	var b mdBuf
	b.p("# Meridian sim: %s\n\n", r.Scenario)
	b.p("%s\n\n", setupLine(r))
	b.p("%s\n", verdictLine(r.Invariants))
	if len(r.Invariants.Notes) > 0 {
		b.p("\n")
		b.notes(r.Invariants, "")
	}

	b.p("\n## Headline figures\n\n| figure | value |\n|---|---:|\n")
	for _, h := range headlineRows(sortedServerIDs(r.TickMS.PerServer)) {
		s, _ := h.value(r)
		b.p("| %s | %s |\n", h.name, s)
	}

	b.p("\n## Phases\n\n")
	b.phases(r.Phases)
	b.p("\n## Faults\n\n")
	b.faults(r.Faults)
	b.p("\n## Limits\n\n")
	b.limits(r.Limits)

	b.p("\n## Pictures\n")
	for i, name := range r.Pictures {
		switch {
		case i == 0 && len(r.Moments) > 0:
			b.p("\n### The partition map and the crowd\n")
		case i == len(r.Moments):
			b.p("\n### Tick time\n")
		case i == len(r.Moments)+1:
			b.p("\n### Load\n")
		}
		b.p("\n![%s](%s)\n", mdAlt(pictureTitle(r, i)), name)
	}
	b.p("\nReproduce: `%s`\n", reproduceLine(r))
	return b.String()
}

// compareMarkdown is report.md of a --compare run: the two runs side by side.
func compareMarkdown(c *Compare) string {
	sides := compareSides(c)
	var b mdBuf
	first := c.Dynamic
	if first == nil {
		first = c.Static
	}
	b.p("# Meridian sim: %s, dynamic vs static partitioning\n\n", first.Scenario)
	if c.Dynamic != nil && c.Static != nil && setupLineAs(c.Dynamic, "") != setupLineAs(c.Static, "") {
		b.p("Dynamic: %s  \nStatic: %s\n\n", setupLine(c.Dynamic), setupLine(c.Static))
	} else {
		b.p("%s\n\n", setupLineAs(first, "dynamic and static"))
	}

	b.p("## Verdicts\n\n")
	for _, s := range sides {
		if s.r == nil {
			b.p("- %s: not run\n", s.name)
			continue
		}
		b.p("- %s: %s\n", s.name, verdictLine(s.r.Invariants))
		b.notes(s.r.Invariants, "  ")
	}

	// Server ids of both runs.
	ids := map[string]bool{}
	for _, s := range sides {
		if s.r != nil {
			for id := range s.r.TickMS.PerServer {
				ids[id] = true
			}
		}
	}
	b.p("\n## Headline figures\n\n| figure | dynamic | static | static/dynamic |\n|---|---:|---:|---:|\n")
	for _, h := range headlineRows(sortedServerIDs(ids)) {
		ds, dv := h.value(c.Dynamic)
		ss, sv := h.value(c.Static)
		ratio := ""
		if h.ratio {
			ratio = figRatio(dv, sv)
		}
		b.p("| %s | %s | %s | %s |\n", h.name, ds, ss, ratio)
	}

	b.p("\n## Faults and limits\n")
	for _, s := range sides {
		if s.r == nil {
			continue
		}
		b.p("\n### %s\n\n", s.name)
		b.faults(s.r.Faults)
		if len(s.r.Limits) > 0 {
			b.p("\nLimits:\n\n")
			b.limits(s.r.Limits)
		}
	}

	// Pictures: the map at the crowd's peak and the two charts, side by side.
	type pic struct{ alt, file string }
	pick := func(r *Report, which int) pic {
		if r == nil {
			return pic{}
		}
		i := -1
		switch which {
		case 0:
			i = peakMoment(r)
		case 1:
			i = len(r.Moments)
		case 2:
			i = len(r.Moments) + 1
		}
		if i < 0 || i >= len(r.Pictures) {
			return pic{}
		}
		return pic{pictureTitle(r, i), r.Pictures[i]}
	}
	b.p("\n## Pictures\n\n| | dynamic | static |\n|---|---|---|\n")
	for which, name := range []string{"map at the crowd's peak", "tick p99", "load"} {
		b.p("| %s |", name)
		for _, s := range sides {
			p := pick(s.r, which)
			if p.file == "" {
				b.p(" - |")
				continue
			}
			b.p(" ![%s: %s](%s) |", s.name, mdAlt(p.alt), p.file)
		}
		b.p("\n")
	}
	b.p("\nEvery picture and the full reports:\n\n")
	for _, s := range sides {
		if s.r == nil {
			continue
		}
		links := []string{fmt.Sprintf("[report.md](%s)", path.Join(s.name, "report.md"))}
		for i, p := range s.r.Pictures {
			links = append(links, fmt.Sprintf("[%s](%s)", mdAlt(pictureTitle(s.r, i)), p))
		}
		b.p("- %s: %s\n", s.name, strings.Join(links, ", "))
	}

	b.p("\nReproduce:\n\n")
	for _, s := range sides {
		if s.r != nil {
			b.p("- %s: `%s`\n", s.name, reproduceLine(s.r))
		}
	}
	return b.String()
}

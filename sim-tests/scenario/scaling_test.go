package scenario

import (
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// scalingTestReport is syntheticReport with bots bots and its tick, load, bandwidth and handoff
// figures times f.
func scalingTestReport(partitioning string, bots int, f float64) *Report {
	r := syntheticReport(partitioning, 1)
	r.Bots = bots
	r.TickMS.P50 *= f
	r.TickMS.P99 *= f
	for id, ts := range r.TickMS.PerServer {
		ts.P99 *= f
		r.TickMS.PerServer[id] = ts
	}
	r.Load.MaxOverMeanP50 = 1 + (r.Load.MaxOverMeanP50-1)*f
	r.Load.MaxOverMeanMax = 1 + (r.Load.MaxOverMeanMax-1)*f
	r.Bandwidth.KbitPerClientP50 *= f
	r.Handoffs.Count = int64(float64(r.Handoffs.Count) * f)
	r.Handoffs.LatencyMSP99 *= f
	return r
}

// scalingTestPoints: 100, 200, 400 and 800 bots; static not compared at 400; the dynamic run at
// 800 lost entities, never balanced and has no handoff latency; the static one is over budget.
func scalingTestPoints() []ScalePoint {
	var ps []ScalePoint
	for i, n := range []int{100, 200, 400, 800} {
		f := math.Pow(2, float64(i)) / 2
		p := ScalePoint{Bots: n, Dynamic: scalingTestReport("dynamic", n, f)}
		if n != 400 {
			p.Static = scalingTestReport("static", n, 2*f)
		}
		ps = append(ps, p)
	}
	d := ps[3].Dynamic
	d.Invariants = Invariants{EntitiesLost: 3, Notes: []string{"bot 701: entity 1701 held by no live server"}}
	d.Load.SecondsToBalance = -1
	d.Handoffs.LatencyMSP99 = -1
	d.Limits = []string{"the bots fell behind: 12% of inputs late"}
	ps[3].Static.Limits = []string{"cell server 2: tick p99 390 ms, over the 50 ms budget"}
	return ps
}

func TestWriteScaling(t *testing.T) {
	dir := t.TempDir()
	points := scalingTestPoints()
	// Given out of order: the table and the charts go by bot count.
	given := []ScalePoint{points[2], points[0], points[3], points[1]}
	if err := WriteScaling(dir, given); err != nil {
		t.Fatal(err)
	}
	checkWrittenFiles(t, dir, []string{"scaling.json", "scaling.md", "scaling.svg"})

	var got []ScalePoint
	readWrittenJSON(t, filepath.Join(dir, "scaling.json"), &got)
	if !reflect.DeepEqual(got, given) {
		t.Errorf("scaling.json does not round-trip into the points")
	}
	if given[0].Dynamic.Pictures != nil || given[0].Bots != 400 {
		t.Error("WriteScaling changed the points")
	}

	md := readWrittenFile(t, filepath.Join(dir, "scaling.md"))
	mustMention(t, "scaling.md", md,
		"# Meridian sim: hotspot at 100, 200, 400, 800 bots\n",
		"3 servers, 60.0 s per run, seed 42, world 1000 × 1000 m, dynamic partitioning, compared with static at 100, 200, 800 bots.",
		"| bots | tick p99 overall, ms (dyn / static) | worst server's tick p99, ms (dyn / static) | max/mean p50 (dyn / static) | max/mean max (dyn / static) | s to balance (dyn) | kbit/s per client p50 (dyn) | handoffs (dyn) | handoff p99 ms (dyn) | map changes (dyn: splits/merges/shifts/moves) | CPU cores (dyn: bots/gateway/cells/meta) | invariants (dyn / static) |",
		// 100 bots: f = 0.5 (dynamic), 1 (static).
		"| 100 | 24.4 / 48.7 | 24.4 / 48.7 | 1.04 / 1.07 | 1.42 / 1.83 | 12.5 | 48.2 | 258 | 75.0 | 4/2/17/3 | 0.80/0.50/0.40/0.10 | OK / OK |",
		"| 400 | 97.4 / - | 97.4 / - |",
		"| 800 | 195 / 390 | 195 / 390 | 1.28 / 1.56 | 4.32 / 7.64 | - | 386 | 2068 | - | 4/2/17/3 | 0.80/0.50/0.40/0.10 | FAILED / OK |",
		"## Failed invariants", "- 800 bots, dynamic: **Invariants: FAILED**: entities lost 3.", "  - bot 701: entity 1701",
		"![how the headline figures grow with the number of bots](scaling.svg)",
		"## Limits of the largest run (800 bots)", "- the bots fell behind: 12% of inputs late", "- cell server 2: tick p99 390 ms",
		"- [100 bots](bots-100/report.md) (dynamic vs static)", "- [400 bots](bots-400/report.md) (dynamic)",
		"- [800 bots](bots-800/report.md)")
	rows := regexp.MustCompile(`(?m)^\| (\d+) \|.*$`).FindAllStringSubmatch(md, -1)
	var order []string
	for _, row := range rows {
		order = append(order, row[1])
		if failed := strings.Contains(row[0], "FAILED"); failed != (row[1] == "800") {
			t.Errorf("row %s: FAILED = %v", row[1], failed)
		}
	}
	if strings.Join(order, " ") != "100 200 400 800" {
		t.Errorf("table rows %q, want 100 200 400 800", order)
	}

	svg := readWrittenFile(t, filepath.Join(dir, "scaling.svg"))
	mustMention(t, "scaling.svg", svg, `viewBox="0 0 900 `, "budget 50 ms", "balanced ≤ 1.10", "bots (log₂ scale)",
		"Tick p99 of the worst server", "Handoff latency p99", ">static<", ">dynamic<",
		"static, 800 bots: 390 ms", "dynamic, 100 bots: 48.2 kbit/s")
	for _, n := range []int{100, 200, 400, 800} {
		mustMention(t, "scaling.svg", svg, ">"+strconv.Itoa(n)+"</text>")
	}
	// A path per line of four panels: dynamic and static in the first two, dynamic in the
	// others. Markers: 4 + 3 (no static at 400) in each of the first two, 4 and 3 (no handoff
	// latency at 800) in the others, plus one per legend entry.
	if n := strings.Count(svg, "<path "); n != 6 {
		t.Errorf("scaling.svg: %d paths, want 6", n)
	}
	if n := strings.Count(svg, "<circle ") + strings.Count(svg, `width="7" height="7"`); n != 7+7+4+3+6 {
		t.Errorf("scaling.svg: %d markers, want %d", n, 7+7+4+3+6)
	}
	if h := scalingSVGHeight(t, svg); h < 560 || h > 720 {
		t.Errorf("scaling.svg: height %v, want about 640", h)
	}
}

func scalingSVGHeight(t *testing.T, svg string) float64 {
	t.Helper()
	m := regexp.MustCompile(`viewBox="0 0 ([0-9.]+) ([0-9.]+)"`).FindStringSubmatch(svg)
	if m == nil {
		t.Fatal("no viewBox")
	}
	h, _ := strconv.ParseFloat(m[2], 64)
	return h
}

func TestWriteScalingEdges(t *testing.T) {
	if err := WriteScaling(t.TempDir(), nil); err == nil {
		t.Error("WriteScaling of no points: no error")
	}

	// Dynamic only, close counts: a linear axis, one line per panel, nothing static.
	dir := t.TempDir()
	ps := []ScalePoint{{Bots: 100, Dynamic: scalingTestReport("dynamic", 100, 1)}, {Bots: 150, Dynamic: scalingTestReport("dynamic", 150, 1.2)}}
	ps[1].Dynamic.Servers = 4
	if err := WriteScaling(dir, ps); err != nil {
		t.Fatal(err)
	}
	checkWrittenFiles(t, dir, []string{"scaling.json", "scaling.md", "scaling.svg"})
	md := readWrittenFile(t, filepath.Join(dir, "scaling.md"))
	mustMention(t, "scaling.md", md, "servers: 3 at 100 bots; 4 at 150 bots", "static not compared", "| OK / - |",
		"## Limits of the largest run (150 bots)\n\n- cell server 2")
	if strings.Contains(md, "FAILED") {
		t.Error("scaling.md: FAILED without a failed invariant")
	}
	svg := readWrittenFile(t, filepath.Join(dir, "scaling.svg"))
	if strings.Contains(svg, "log₂") || strings.Contains(svg, ">static<") {
		t.Error("scaling.svg: a log axis or a static line for 100 and 150 bots, dynamic only")
	}

	// A single point with no figures at all still draws, with "no data" panels.
	dir = t.TempDir()
	r := &Report{Scenario: "uniform", Bots: 10, TickMS: TickStats{P99: -1}, Load: LoadStats{MaxOverMeanP50: -1, MaxOverMeanMax: -1, SecondsToBalance: -1},
		Bandwidth: BandwidthStats{KbitPerClientP50: -1, KbitPerClientP99: -1}, Handoffs: HandoffStats{Count: -1, LatencyMSP99: -1},
		MapChanges: MapChanges{Splits: -1, Merges: -1, Shifts: -1, Moves: -1}}
	if err := WriteScaling(dir, []ScalePoint{{Bots: 10, Dynamic: r}}); err != nil {
		t.Fatal(err)
	}
	checkWrittenFiles(t, dir, []string{"scaling.svg"})
	mustMention(t, "scaling.md", readWrittenFile(t, filepath.Join(dir, "scaling.md")),
		"| 10 | - / - | - / - | - / - | - / - | - | - | - | - | -/-/-/- | - | FAILED / - |")
	if n := strings.Count(readWrittenFile(t, filepath.Join(dir, "scaling.svg")), ">no data<"); n != 4 {
		t.Errorf("scaling.svg of nothing: %d panels say no data, want 4", n)
	}

	// A NaN cannot be JSON: the error says so, the rest is written.
	dir = t.TempDir()
	ps = scalingTestPoints()
	ps[1].Static.TickMS.P99 = math.NaN()
	if err := WriteScaling(dir, ps); err == nil || !strings.Contains(err.Error(), "scaling.json") {
		t.Fatalf("WriteScaling with a NaN: %v", err)
	}
	checkWrittenFiles(t, dir, []string{"scaling.md", "scaling.svg"})

	// A count whose run did not complete is a row that says so, with why below the table.
	dir = t.TempDir()
	ps = append(scalingTestPoints()[:2], ScalePoint{Bots: 2000, Error: "scenario: connecting 2000 bots: bot 511: client: waiting for welcome: timeout"})
	if err := WriteScaling(dir, ps); err != nil {
		t.Fatal(err)
	}
	mustMention(t, "scaling.md", readWrittenFile(t, filepath.Join(dir, "scaling.md")),
		"| 2000 | - / - | - / - | - / - | - / - | - | - | - | - | - | - | **did not complete** |",
		"## Runs that did not complete\n\n- 2000 bots: scenario: connecting 2000 bots: bot 511",
		"## Limits of the largest run (2000 bots)\n\nThe run did not complete")
}

package scenario

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// syntheticReport is a run of three servers over 60 s: a crowd converging on the middle, a
// SIGKILL of server 3 at t = 30 s (it stays dead), three moments.
func syntheticReport(partitioning string, slow float64) *Report {
	rng := rand.New(rand.NewPCG(7, uint64(len(partitioning))))
	r := &Report{
		Scenario: "hotspot", Seed: 42, Bots: 300, Servers: 3, DurationS: 60,
		Partitioning: partitioning, PGURL: partitioning == "dynamic",
		TickMS: TickStats{P50: 3.21 * slow, P99: 48.7 * slow, Max: 120, PerServer: map[string]TickStat{
			"1": {P50: 3.1 * slow, P99: 41.5 * slow, Max: 80, Ticks: 1200},
			"2": {P50: 3.3 * slow, P99: 48.7 * slow, Max: 120, Ticks: 1200},
			"3": {P50: 2.9 * slow, P99: 22.4 * slow, Max: 40, Ticks: 600},
		}},
		Load:       LoadStats{MaxOverMeanP50: 1.07 * slow, MaxOverMeanMax: 1.83 * slow, SecondsToBalance: 12.5},
		Bandwidth:  BandwidthStats{KbitPerClientP50: 96.4, KbitPerClientP99: 231},
		Handoffs:   HandoffStats{Count: 517, LatencyMSP99: 150},
		MapChanges: MapChanges{Splits: 4, Merges: 2, Shifts: 17, Moves: 3},
		Invariants: Invariants{OK: true},
		Seams:      SeamStats{Flickers: 12, FlickersPerClientMinute: 0.04, Snapshots: 360000},
		CPU: CPUStats{MachineCores: 2, Bots: 0.8, Gateway: 0.5, Cells: 0.4, PerCell: map[string]float64{"1": 0.25, "2": 0.15},
			Meta: 0.1, Total: 1.8},
		Phases: []Phase{
			{Name: "spread", StartS: 0, EndS: 15},
			{Name: "converge", StartS: 15, EndS: 40},
			{Name: "boss fight", StartS: 40, EndS: 59},
		},
		Faults: []Fault{{AtS: 30, What: "SIGKILL cell server 3", RecoveredS: 4.2}},
		Limits: []string{"cell server 2: tick p99 48.7 ms, near the 50 ms budget"},
	}
	if slow > 1 {
		r.Load.SecondsToBalance = -1
		r.Bandwidth.KbitPerClientP99 = -1
		r.Invariants = Invariants{OK: false, EntitiesLost: 2, Notes: []string{"bot 17: entity 1017 held by no live server", "bot 99: entity 1099 | in flight"}}
	}
	for i := range 60 {
		t := float64(i)
		s := Sample{T: t, Servers: map[string]ServerSample{}, Bots: 300, MapVersion: uint64(10 + i/5)}
		alive := 3
		if i >= 30 {
			alive = 2
		}
		tot := 0
		for k := 1; k <= 3; k++ {
			id := strconv.Itoa(k)
			ss := ServerSample{Alive: true, Cells: 2,
				TickP50MS: 2 + rng.Float64(), TickP99MS: slow * (10 + 10*float64(k) + 5*math.Sin(t/5) + 3*rng.Float64()),
				Entities: 100 + 10*k + int(20*math.Sin(t/7+float64(k)))}
			if k == 3 && i >= 30 {
				ss = ServerSample{Alive: false, TickP50MS: -1, TickP99MS: -1}
			}
			if k == 2 && i == 45 {
				ss.TickP99MS = -1 // a second without a scrape
			}
			s.Servers[id] = ss
			tot += ss.Entities
		}
		mx := 0
		for _, ss := range s.Servers {
			mx = max(mx, ss.Entities)
		}
		s.MaxOverMean = float64(mx) / (float64(tot) / float64(alive))
		if i == 0 {
			s.MaxOverMean = -1
		}
		r.Series = append(r.Series, s)
	}
	world := [4]float64{-500, -500, 500, 500}
	crowd := func(n int, cx, cz, spread float64) [][2]float64 {
		var pts [][2]float64
		for range n {
			pts = append(pts, [2]float64{cx + spread*rng.NormFloat64(), cz + spread*rng.NormFloat64()})
		}
		return pts
	}
	cells := func(owners ...uint64) []MomentCell {
		// A 2 × 2 grid, the north-east quarter split in four.
		cs := []MomentCell{
			{ID: 1, Bounds: [4]float64{-500, -500, 0, 0}, Owner: owners[0]},
			{ID: 2, Bounds: [4]float64{0, -500, 500, 0}, Owner: owners[1]},
			{ID: 3, Bounds: [4]float64{-500, 0, 0, 500}, Owner: owners[2]},
		}
		for q := range 4 {
			x0, z0 := float64(q%2)*250, float64(q/2)*250
			cs = append(cs, MomentCell{ID: uint64(4 + q), Bounds: [4]float64{x0, z0, x0 + 250, z0 + 250}, Owner: owners[3+q]})
		}
		return cs
	}
	r.Moments = []Moment{
		{Label: "start", T: 0, World: world, Cells: cells(1, 2, 3, 1, 2, 3, 1), Crowd: crowd(300, 0, 0, 300)},
		{Label: "crowd formed", T: 20, World: world, Cells: cells(1, 2, 3, 1, 2, 3, 0), Crowd: crowd(300, 250, 250, 40)},
		{Label: "after the kill (SIGKILL 3)", T: 35, World: world, Cells: cells(1, 2, 1, 1, 2, 2, 1),
			Crowd: append(crowd(280, 250, 250, 60), [2]float64{900, 900})},
	}
	return r
}

var writeTestHeadlines = []string{
	"3.21 ms", "48.7 ms", "120 ms", // overall tick
	"41.5 ms", "22.4 ms", // per server (48.7 is server 2 too)
	"1.07", "1.83", "12.5 s", // imbalance
	"96.4 kbit/s", "231 kbit/s",
	"517", "150 ms",
	"| map changes: splits | 4 |", "| map changes: merges | 2 |", "| map changes: shifts | 17 |", "| map changes: moves | 3 |",
	"SIGKILL cell server 3", "4.20 s", "near the 50 ms budget", "boss fight",
	"**Invariants: OK**",
	"| CPU, cores: the bots (sim process) | 0.80 of 2 |", "| view flickers per client per minute | 0.040 |", "| CPU, cores: the cell servers | 0.40 of 2 |",
	"Reproduce: `meridian sim hotspot --seed 42 --bots 300 --servers 3 --duration 60s --partitioning dynamic`",
	"300 bots, 3 servers, dynamic partitioning, 60.0 s, seed 42, PostgreSQL: yes.",
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	r := syntheticReport("dynamic", 1)
	if err := WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	want := []string{"map-1-start.svg", "map-2-crowd-formed.svg", "map-3-after-the-kill-sigkill-3.svg", "tick_p99.svg", "load.svg"}
	if !reflect.DeepEqual(r.Pictures, want) {
		t.Fatalf("Pictures = %q, want %q", r.Pictures, want)
	}
	checkWrittenFiles(t, dir, append([]string{"report.json", "report.md"}, want...))

	var got Report
	readWrittenJSON(t, filepath.Join(dir, "report.json"), &got)
	if !reflect.DeepEqual(&got, r) {
		t.Errorf("report.json does not round-trip:\n got %+v\nwant %+v", got, *r)
	}

	md := readWrittenFile(t, filepath.Join(dir, "report.md"))
	mustMention(t, "report.md", md, append([]string{"# Meridian sim: hotspot"}, writeTestHeadlines...)...)
	for _, p := range want {
		mustMention(t, "report.md", md, "]("+p+")")
	}

	// The tick chart: the budget and the fault are drawn; server 3 has a gap after its death
	// (so its line is one path), server 2 two paths around its missing second.
	tick := readWrittenFile(t, filepath.Join(dir, "tick_p99.svg"))
	mustMention(t, "tick_p99.svg", tick, "budget 50 ms", "SIGKILL cell server 3", "server 3 (down from t = 30.0 s)", "converge")
	if n := strings.Count(tick, "<path "); n != 4 {
		t.Errorf("tick_p99.svg: %d paths, want 4 (1 + 2 + 1)", n)
	}
	load := readWrittenFile(t, filepath.Join(dir, "load.svg"))
	mustMention(t, "load.svg", load, "balanced ≤ 1.10", "max/mean over live servers", "Real entities per server")
	m := readWrittenFile(t, filepath.Join(dir, "map-3-after-the-kill-sigkill-3.svg"))
	mustMention(t, "map", m, "after the kill (SIGKILL 3), t = 35.0 s", "(1 outside)", "server 1: 4 cells", `id="crowd"`, "cell 7")
	if strings.Contains(m, "server 3:") {
		t.Error("map after the kill: server 3 in the legend, it owns nothing")
	}
}

func TestWriteReportFailedAndEmpty(t *testing.T) {
	dir := t.TempDir()
	r := syntheticReport("static", 2)
	r.Series, r.Moments = nil, []Moment{{Label: "", T: 1}} // no samples, a moment without a world
	if err := WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	checkWrittenFiles(t, dir, []string{"report.json", "report.md", "map-1-moment.svg", "tick_p99.svg", "load.svg"})
	mustMention(t, "tick_p99.svg", readWrittenFile(t, filepath.Join(dir, "tick_p99.svg")), "no data")
	mustMention(t, "map", readWrittenFile(t, filepath.Join(dir, "map-1-moment.svg")), "no data")
	md := readWrittenFile(t, filepath.Join(dir, "report.md"))
	mustMention(t, "report.md", md, "**Invariants: FAILED**: entities lost 2.", "- bot 17: entity 1017", "never", "| downstream per client, p99 | - |")

	// A NaN cannot be JSON: the error says so, the rest is written.
	dir = t.TempDir()
	r = syntheticReport("dynamic", 1)
	r.TickMS.P99 = math.NaN()
	if err := WriteReport(dir, r); err == nil || !strings.Contains(err.Error(), "report.json") {
		t.Fatalf("WriteReport with a NaN: %v", err)
	}
	checkWrittenFiles(t, dir, []string{"report.md", "tick_p99.svg"})
}

func TestWriteCompare(t *testing.T) {
	dir := t.TempDir()
	c := &Compare{Dynamic: syntheticReport("dynamic", 1), Static: syntheticReport("static", 2)}
	if err := WriteCompare(dir, c); err != nil {
		t.Fatal(err)
	}
	pics := []string{"map-1-start.svg", "map-2-crowd-formed.svg", "map-3-after-the-kill-sigkill-3.svg", "tick_p99.svg", "load.svg"}
	files := []string{"report.json", "report.md"}
	for _, side := range []string{"dynamic", "static"} {
		files = append(files, side+"/report.json", side+"/report.md")
		for _, p := range pics {
			files = append(files, side+"/"+p)
		}
	}
	checkWrittenFiles(t, dir, files)

	for side, r := range map[string]*Report{"dynamic": c.Dynamic, "static": c.Static} {
		if r.Pictures[3] != side+"/tick_p99.svg" {
			t.Errorf("%s Pictures = %q, want them under %s/", side, r.Pictures, side)
		}
		var sub Report // the side's own report.json: pictures relative to it
		readWrittenJSON(t, filepath.Join(dir, side, "report.json"), &sub)
		if sub.Pictures[3] != "tick_p99.svg" || sub.Scenario != "hotspot" || sub.Partitioning != side {
			t.Errorf("%s/report.json: pictures %q, partitioning %q", side, sub.Pictures, sub.Partitioning)
		}
	}
	var got Compare
	readWrittenJSON(t, filepath.Join(dir, "report.json"), &got)
	if !reflect.DeepEqual(&got, c) {
		t.Errorf("report.json does not round-trip into the Compare")
	}

	md := readWrittenFile(t, filepath.Join(dir, "report.md"))
	mustMention(t, "report.md", md,
		"# Meridian sim: hotspot, dynamic vs static partitioning",
		"| figure | dynamic | static | static/dynamic |",
		"| tick p99, all servers | 48.7 ms | 97.4 ms | 2.00× |",
		"| max/mean entities, p50 | 1.07 | 2.14 | 2.00× |",
		"| time to balance (max/mean ≤ 1.10) | 12.5 s | never | - |",
		"| handoffs | 517 | 517 |  |",
		"| CPU, cores: the gateway | 0.50 of 2 | 0.50 of 2 |  |",
		"- dynamic: **Invariants: OK**", "- static: **Invariants: FAILED**", "  - bot 99: entity 1099 | in flight",
		// The crowd's peak is when it formed (the densest bins).
		"(dynamic/map-2-crowd-formed.svg)", "(static/map-2-crowd-formed.svg)",
		"(dynamic/tick_p99.svg)", "(static/load.svg)", "(static/report.md)",
		"`meridian sim hotspot --seed 42 --bots 300 --servers 3 --duration 60s --partitioning static`")
	for _, f := range files {
		if strings.HasSuffix(f, ".svg") {
			mustMention(t, "report.md", md, "("+f+")")
		}
	}

	// One side missing.
	dir = t.TempDir()
	if err := WriteCompare(dir, &Compare{Dynamic: syntheticReport("dynamic", 1)}); err != nil {
		t.Fatal(err)
	}
	mustMention(t, "report.md", readWrittenFile(t, filepath.Join(dir, "report.md")), "- static: not run")
	if err := WriteCompare(t.TempDir(), &Compare{}); err == nil {
		t.Error("WriteCompare of nothing: no error")
	}
}

func TestFigures(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{figMS(12.345), "12.3 ms"}, {figMS(-1), "-"}, {figMS(0.042), "0.042 ms"}, {figMS(0), "0 ms"},
		{figVal(1.0749), "1.07"}, {figVal(-1), "-"}, {figNum(math.NaN()), "-"}, {figNum(-250), "-250"},
		{figNum(1234.5), "1234"}, {figNum(0.0000001), "0"}, {figSecondsOrNever(-1), "never"},
		{figKbit(96.44), "96.4 kbit/s"}, {figCount(-1), "-"}, {figCount(12), "12"},
		{figRatio(48.7, 97.4), "2.00×"}, {figRatio(0, 3), "-"}, {figRatio(-1, 3), "-"}, {figRatio(3, -1), "-"},
		{figPlural(1, "entity"), "1 entity"}, {figPlural(2, "entity"), "2 entities"},
		{momentSlug("After the kill: server #3!"), "after-the-kill-server-3"}, {momentSlug("  "), "moment"},
		{svgTickLabel(0.5, 0.5), "0.5"}, {svgTickLabel(20, 5), "20"}, {svgTickLabel(1.1, 0.05), "1.10"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct{ span, want float64 }{{60, 10}, {1, 0.2}, {55, 10}, {0.9, 0.1}, {250, 50}, {7, 1}} {
		if got := svgNiceStep(tc.span, 6); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("svgNiceStep(%v, 6) = %v, want %v", tc.span, got, tc.want)
		}
	}
}

// checkFiles checks each file exists and is not empty, and each SVG is well-formed XML with a
// viewBox on its root.
func checkWrittenFiles(t *testing.T, dir string, files []string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
			continue
		}
		if strings.HasSuffix(f, ".svg") {
			checkWrittenSVG(t, f, b)
		}
	}
}

func checkWrittenSVG(t *testing.T, name string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(b)))
	root := true
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("%s: not XML: %v", name, err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok && root {
			root = false
			vb := ""
			for _, a := range se.Attr {
				if a.Name.Local == "viewBox" {
					vb = a.Value
				}
			}
			if se.Name.Local != "svg" || len(strings.Fields(vb)) != 4 {
				t.Errorf("%s: root <%s> viewBox %q", name, se.Name.Local, vb)
			}
		}
	}
	if root {
		t.Errorf("%s: no root element", name)
	}
	if s := string(b); strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Errorf("%s: NaN or Inf in the picture", name)
	}
}

func readWrittenFile(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readWrittenJSON(t *testing.T, file string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(readWrittenFile(t, file)), v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func mustMention(t *testing.T, name, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not mention %q", name, sub)
		}
	}
}

// TestCPULimit: the CPU line names the largest consumer, and says whether the machine ran out.
func TestCPULimit(t *testing.T) {
	c := CPUStats{MachineCores: 2, Bots: 0.9, Gateway: 0.6, Cells: 0.3, Meta: 0.1, Total: 1.9}
	if got := cpuLimit(c); !strings.Contains(got, "bots 0.90, gateway 0.60, cell servers 0.30, meta nodes 0.10; 1.90 of 2") ||
		!strings.Contains(got, "the machine was saturated, and the bots (the sim process) used the most (47 %)") {
		t.Errorf("saturated: %q", got)
	}
	c = CPUStats{MachineCores: 4, Bots: 0.2, Gateway: 0.3, Cells: 1.2, Meta: 0.1, Total: 1.8}
	if got := cpuLimit(c); !strings.Contains(got, "the machine had room (the cell servers used the most)") {
		t.Errorf("room: %q", got)
	}
	if got := cpuLimit(CPUStats{Total: -1}); got != "" {
		t.Errorf("unmeasured: %q, want nothing", got)
	}
}

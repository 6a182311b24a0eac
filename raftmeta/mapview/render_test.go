package mapview

import (
	"bytes"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		i := 0
		for i < len(g) && i < len(w) && g[i] == w[i] {
			i++
		}
		line := func(s []string) string {
			if i < len(s) {
				return s[i]
			}
			return "(end)"
		}
		t.Errorf("%s differs from the golden file at line %d (go test -update rewrites it)\n got: %s\nwant: %s",
			name, i+1, line(g), line(w))
	}
}

// renderers are the outputs checked against golden files, by file suffix.
var renderers = []struct {
	suffix string
	render func(io.Writer, raftmeta.Map) error
}{
	{"summary.txt", Summary},
	{"cells.txt", Table},
	{"servers.txt", Servers},
	{"ascii.txt", func(w io.Writer, m raftmeta.Map) error {
		return ASCII(w, m, ASCIIOptions{Width: 64, Height: 20, IDs: true})
	}},
	{"ascii-plain.txt", func(w io.Writer, m raftmeta.Map) error {
		return ASCII(w, m, ASCIIOptions{Width: 40, Height: 12, Plain: true})
	}},
	{"ascii-color.txt", func(w io.Writer, m raftmeta.Map) error {
		return ASCII(w, m, ASCIIOptions{Width: 48, Height: 14, Color: true, IDs: true})
	}},
	{"svg", func(w io.Writer, m raftmeta.Map) error { return SVG(w, m, SVGOptions{}) }},
}

func TestGolden(t *testing.T) {
	for _, f := range fixtures {
		for _, r := range renderers {
			t.Run(f.name+"."+r.suffix, func(t *testing.T) {
				var a, b bytes.Buffer
				if err := r.render(&a, f.m()); err != nil {
					t.Fatal(err)
				}
				if err := r.render(&b, f.m()); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.Bytes(), b.Bytes()) {
					t.Fatal("two renderings of the same map differ")
				}
				golden(t, f.name+"."+r.suffix, a.Bytes())
			})
		}
	}
}

func TestSVGHeatGolden(t *testing.T) {
	m := quadMap()
	var pts []HeatPoint
	// A crowd around (12500, 3000), denser towards its centre (a spiral of points), a few
	// wanderers, and one point outside the world, which is ignored.
	for i := range 400 {
		r, a := 1800*float64(i)/400, 2.39996*float64(i)
		pts = append(pts, HeatPoint{X: 12500 + r*math.Cos(a), Z: 3000 + r*math.Sin(a)})
	}
	pts = append(pts, HeatPoint{X: 1000, Z: 15000, Weight: 3}, HeatPoint{X: -5, Z: 0})
	var buf bytes.Buffer
	if err := SVG(&buf, m, SVGOptions{Width: 640, Title: "Crowd hotspot", Heat: pts}); err != nil {
		t.Fatal(err)
	}
	golden(t, "quad-heat.svg", buf.Bytes())
}

// Cell order in the input does not matter: outputs sort by ID.
func TestOrderIndependent(t *testing.T) {
	m := quadMap()
	rev := m
	rev.Cells = append([]raftmeta.Cell(nil), m.Cells...)
	rev.Servers = append([]raftmeta.Server(nil), m.Servers...)
	for i, j := 0, len(rev.Cells)-1; i < j; i, j = i+1, j-1 {
		rev.Cells[i], rev.Cells[j] = rev.Cells[j], rev.Cells[i]
	}
	rev.Servers[0], rev.Servers[1] = rev.Servers[1], rev.Servers[0]
	for _, r := range renderers {
		var a, b bytes.Buffer
		if err := r.render(&a, m); err != nil {
			t.Fatal(err)
		}
		if err := r.render(&b, rev); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() {
			t.Errorf("%s: output depends on input order", r.suffix)
		}
	}
}

func TestNoWorld(t *testing.T) {
	var m raftmeta.Map
	if err := ASCII(io.Discard, m, ASCIIOptions{}); err == nil {
		t.Error("ASCII of an empty map: no error")
	}
	if err := SVG(io.Discard, m, SVGOptions{}); err == nil {
		t.Error("SVG of an empty map: no error")
	}
	// Tables of an empty map are just headers.
	var buf bytes.Buffer
	if err := Table(&buf, m); err != nil || strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("Table of an empty map: %q, %v", buf.String(), err)
	}
}

func TestTableFacts(t *testing.T) {
	var buf bytes.Buffer
	if err := Table(&buf, troubleMap()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"migrating", "2 (B, draining)", "3 (C, dead)", "9 (?, unregistered)",
		"  40  ", // the migrating cell's load is its new owner's report (40), not the old one's (12)
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cells table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "  12  ") {
		t.Errorf("cells table shows the former owner's report:\n%s", out)
	}
}

func TestASCIIMarks(t *testing.T) {
	var buf bytes.Buffer
	if err := ASCII(&buf, troubleMap(), ASCIIOptions{Width: 60, Height: 20, Plain: true}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	drawing := strings.Join(lines[1:], "\n")
	for _, mark := range []string{".", "b", "C", "?", "A"} {
		if !strings.Contains(drawing, mark+mark) {
			t.Errorf("drawing lacks a run of %q:\n%s", mark, out)
		}
	}
	for _, want := range []string{"server 3", "dead", "unowned: 1 cell", "owner not registered: server 9", "lower case: cell migrating"} {
		if !strings.Contains(out, want) {
			t.Errorf("legend lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, '\x1b') {
		t.Error("escape codes without Color")
	}
	for _, r := range out {
		if r > 127 {
			t.Fatalf("Plain output has %q", r)
		}
	}
}

func TestASCIIColor(t *testing.T) {
	var buf bytes.Buffer
	if err := ASCII(&buf, quadMap(), ASCIIOptions{Width: 40, Height: 12, Color: true}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, ansiFor(0, false)+"AAA") || !strings.Contains(out, ansiFor(1, false)+"BBB") {
		t.Errorf("no coloured runs:\n%q", out)
	}
	if strings.Count(out, "\x1b[0m") == 0 {
		t.Error("colours never reset")
	}
}

func TestGridSizeAspect(t *testing.T) {
	for _, tc := range []struct {
		ww, wh     float64
		w, h       int
		cols, rows int
	}{
		{1000, 1000, 80, 24, 47, 24}, // square world: limited by height, 2 columns per row
		{1000, 1000, 21, 40, 21, 11}, // limited by width
		{2000, 1000, 200, 21, 81, 21},
		{100, 10000, 80, 24, 3, 24}, // a thin world still gets an interior column
		{1000, 1000, 0, 0, 3, 3},    // tiny bounds grow to the minimum
	} {
		c, r := gridSize(tc.ww, tc.wh, tc.w, tc.h)
		if c != tc.cols || r != tc.rows {
			t.Errorf("gridSize(%v, %v, %d, %d) = %d×%d, want %d×%d", tc.ww, tc.wh, tc.w, tc.h, c, r, tc.cols, tc.rows)
		}
		if c > max(tc.w, minASCIISide) || r > max(tc.h, minASCIISide) {
			t.Errorf("gridSize(%v, %v, %d, %d) = %d×%d exceeds the bounds", tc.ww, tc.wh, tc.w, tc.h, c, r)
		}
	}
}

func TestFitLabel(t *testing.T) {
	lines := []string{"cell 12", "A: server 1", "epoch 4", "1500 entities"}
	if fs, n := fitLabel(lines, 300, 300); n != 4 || fs != labelMaxFont {
		t.Errorf("big box: %v px, %d lines", fs, n)
	}
	if fs, n := fitLabel(lines, 120, 20); n != 2 || fs < labelMinFont {
		t.Errorf("short box: %v px, %d lines", fs, n)
	}
	if _, n := fitLabel(lines, 10, 10); n != 0 {
		t.Errorf("tiny box: %d lines", n)
	}
}

func TestTextOn(t *testing.T) {
	if TextOn("#F0E442") != "#000" || TextOn("#0072B2") != "#fff" || TextOn("bogus") != "#000" {
		t.Error("wrong contrast choice")
	}
}

func TestSVGFacts(t *testing.T) {
	var buf bytes.Buffer
	if err := SVG(&buf, troubleMap(), SVGOptions{Width: 500}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`width="500"`, "version 4", `fill="url(#migrating)"`, `fill-opacity="0.35"`, fillUnowned, fillUnknown,
		"owner not registered: server 9", "hatched: migrating",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if n := strings.Count(out, "<title>cell "); n != len(troubleMap().Cells) {
		t.Errorf("%d cell rects, want %d", n, len(troubleMap().Cells))
	}
}

func TestSVGEscapes(t *testing.T) {
	m := singleMap()
	m.Servers[0].ClientAddr = `a<b>&"c"`
	var buf bytes.Buffer
	if err := SVG(&buf, m, SVGOptions{Title: "x & y"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "a<b>") || strings.Contains(buf.String(), "x & y") {
		t.Error("unescaped text in SVG")
	}
}

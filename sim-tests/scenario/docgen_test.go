package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceDocBlock(t *testing.T) {
	doc := "# Perf\n\nwritten by a person\n\n" + docBegin("x") + "\nold figures\nmore\n" + docEnd("x") + "\n\nafter\n"
	got, err := ReplaceDocBlock([]byte(doc), "x", "new table\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Perf\n\nwritten by a person\n\n" + docBegin("x") + "\nnew table\n" + docEnd("x") + "\n\nafter\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// Again: the same result (the markers stay, nothing accumulates).
	if again, err := ReplaceDocBlock(got, "x", "new table"); err != nil || string(again) != want {
		t.Fatalf("a second replacement: %v\n%s", err, again)
	}
	// An empty block, and an empty body.
	empty := docBegin("x") + "\n" + docEnd("x") + "\n"
	if got, err := ReplaceDocBlock([]byte(empty), "x", "a"); err != nil || string(got) != docBegin("x")+"\na\n"+docEnd("x")+"\n" {
		t.Fatalf("filling an empty block: %v %q", err, got)
	}
	if got, err := ReplaceDocBlock([]byte(doc), "x", ""); err != nil || string(got) != "# Perf\n\nwritten by a person\n\n"+empty+"\nafter\n" {
		t.Fatalf("emptying a block: %v %q", err, got)
	}
	for name, bad := range map[string]string{
		"missing":      "# Perf\n",
		"other name":   docBegin("y") + "\n" + docEnd("y") + "\n",
		"twice":        doc + doc,
		"end first":    docEnd("x") + "\n" + docBegin("x") + "\n",
		"no end":       docBegin("x") + "\nfigures\n",
		"inline begin": "text " + docBegin("x") + " more\n" + docEnd("x") + "\n",
	} {
		if _, err := ReplaceDocBlock([]byte(bad), "x", "b"); !errors.Is(err, ErrNoDocBlock) {
			t.Errorf("%s: %v, want ErrNoDocBlock", name, err)
		}
	}
}

func TestScalingDocBlock(t *testing.T) {
	points := scalingTestPoints()
	md := ScalingDocBlock([]ScalePoint{points[3], points[0], points[2], points[1]}, "2026-12-06")
	mustMention(t, "block", md,
		"Measured 2026-12-06 by `make sim`: `meridian sim hotspot --compare --scale 100,200,400,800 --servers 3 --duration 60s --seed 42`.",
		"| 100 | 24.4 / 48.7 |",
		// 200 bots: worst server 48.7 ms, invariants OK; 400: 97.4 ms.
		"**The largest count sustained is 200 bots**",
		"At 400 bots: the worst server's tick p99 was 97.4 ms; CPU, cores used on average: bots 0.80, gateway 0.50, cell servers 0.40, meta nodes 0.10; 1.80 of 2: the machine was saturated, and the bots (the sim process) used the most (44 %).")
	if i, j := strings.Index(md, "| 100 |"), strings.Index(md, "| 800 |"); i < 0 || j < i {
		t.Error("rows not by bot count")
	}

	// Nothing sustained; the next count did not complete.
	for i := range points {
		points[i].Dynamic.Invariants.OK = false
	}
	md = ScalingDocBlock([]ScalePoint{points[0], {Bots: 2000, Error: "scenario: connecting 2000 bots: timeout"}}, "d")
	mustMention(t, "block", md, "**No count was sustained**", "At 100 bots: Invariants: FAILED")
	md = ScalingDocBlock([]ScalePoint{{Bots: 2000, Error: "scenario: connecting 2000 bots: timeout"}}, "d")
	mustMention(t, "block", md, "At 2000 bots: the run did not complete (scenario: connecting 2000 bots: timeout).")
}

func TestScenariosDocBlock(t *testing.T) {
	kill := syntheticReport("dynamic", 1)
	kill.Scenario = "server-kill"
	mig := syntheticReport("dynamic", 1)
	mig.Scenario, mig.Faults = "migration", nil
	mig.Invariants = Invariants{EntitiesLost: 2}
	md := ScenariosDocBlock([]*Report{kill, mig}, "2026-12-06")
	mustMention(t, "block", md,
		"Measured 2026-12-06 by `make sim`",
		"| migration | 300 bots, 3 servers, 60.0 s, dynamic | 48.7 | 48.7 | 1.07 | 12.5 | 96.4 | 517 | 150 | - | 0.80/0.50/0.40/0.10 | **FAILED**: entities lost 2. |",
		"| server-kill | 300 bots, 3 servers, 60.0 s, dynamic | 48.7 | 48.7 | 1.07 | 12.5 | 96.4 | 517 | 150 | SIGKILL cell server 3: 4.20 s | 0.80/0.50/0.40/0.10 | OK |")
	if strings.Index(md, "| migration |") > strings.Index(md, "| server-kill |") {
		t.Error("rows not in the order of Names")
	}
}

func TestReadReports(t *testing.T) {
	dir := t.TempDir()
	r := syntheticReport("dynamic", 1)
	if err := WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(dir)
	if err != nil || got.Scenario != r.Scenario || got.Bots != r.Bots {
		t.Fatalf("ReadReport: %v %+v", err, got)
	}
	if _, err := ReadReport(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadReport of nothing: %v", err)
	}
	cmpDir := t.TempDir()
	if err := WriteCompare(cmpDir, &Compare{Dynamic: syntheticReport("dynamic", 1), Static: syntheticReport("static", 2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReport(cmpDir); err == nil || !strings.Contains(err.Error(), "not the report of a single run") {
		t.Fatalf("ReadReport of a comparison: %v", err)
	}
	scDir := t.TempDir()
	if err := WriteScaling(scDir, scalingTestPoints()); err != nil {
		t.Fatal(err)
	}
	if ps, err := ReadScaling(scDir); err != nil || len(ps) != 4 || ps[3].Bots != 800 {
		t.Fatalf("ReadScaling: %v %d", err, len(ps))
	}
	if err := os.WriteFile(filepath.Join(scDir, "scaling.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadScaling(scDir); err == nil {
		t.Fatal("ReadScaling of a broken file: no error")
	}
}

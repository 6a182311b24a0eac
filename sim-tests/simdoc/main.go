// Command simdoc regenerates the blocks of docs/performance.md that `make sim` measures, from
// the reports `meridian sim` wrote: the hotspot at each bot count (<reports>/hotspot/scaling.json)
// and a row per other scenario (<reports>/<scenario>/report.json), and copies the scaling plot
// beside the document (ScalingPlot). Only the text between a block's markers changes; a block
// whose reports are missing is left as it was, and said so.
//
//	go run ./sim-tests/simdoc [-reports sim-report] [-doc docs/performance.md]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/meridian-mmo/meridian/sim-tests/scenario"
)

// ScalingPlot is the file, beside the document, the scaling run's plot is copied to.
const ScalingPlot = "sim-hotspot-scaling.svg"

func main() {
	reports := flag.String("reports", "sim-report", "the directory `make sim` wrote its reports to")
	doc := flag.String("doc", filepath.Join("docs", "performance.md"), "the document to update")
	flag.Parse()
	if err := run(*reports, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "simdoc:", err)
		os.Exit(1)
	}
}

func run(reports, doc string) error {
	text, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	updated := 0

	scalingDir := filepath.Join(reports, "hotspot")
	switch points, err := scenario.ReadScaling(scalingDir); {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Printf("simdoc: no %s: block %q left as it was\n", filepath.Join(scalingDir, "scaling.json"), scenario.DocBlockScaling)
	case err != nil:
		return err
	default:
		if text, err = scenario.ReplaceDocBlock(text, scenario.DocBlockScaling, scenario.ScalingDocBlock(points, modDay(filepath.Join(scalingDir, "scaling.json")))); err != nil {
			return err
		}
		updated++
		// The plot goes beside the document, which shows it.
		svg, err := os.ReadFile(filepath.Join(scalingDir, "scaling.svg"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(doc), ScalingPlot), svg, 0o644); err != nil {
			return err
		}
	}

	var runs []*scenario.Report
	newest := ""
	for _, name := range scenario.Names() {
		if name == "hotspot" {
			continue // the scaling block's
		}
		dir := filepath.Join(reports, name)
		r, err := scenario.ReadReport(dir)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Printf("simdoc: no %s: no row for %s\n", filepath.Join(dir, "report.json"), name)
			continue
		}
		if err != nil {
			return err
		}
		runs = append(runs, r)
		newest = max(newest, modDay(filepath.Join(dir, "report.json")))
	}
	if len(runs) > 0 {
		if text, err = scenario.ReplaceDocBlock(text, scenario.DocBlockScenarios, scenario.ScenariosDocBlock(runs, newest)); err != nil {
			return err
		}
		updated++
	} else {
		fmt.Printf("simdoc: no scenario reports: block %q left as it was\n", scenario.DocBlockScenarios)
	}
	if updated == 0 {
		return nil
	}
	if err := os.WriteFile(doc, text, 0o644); err != nil {
		return err
	}
	fmt.Printf("simdoc: %s: %d generated blocks rewritten from %s\n", doc, updated, reports)
	return nil
}

// modDay is the day file was written, "2026-12-06" ("" if unknown).
func modDay(file string) string {
	st, err := os.Stat(file)
	if err != nil {
		return ""
	}
	return st.ModTime().UTC().Format("2006-01-02")
}

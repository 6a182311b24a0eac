package cluster

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
)

var (
	measure     = flag.Bool("sim.measure", false, "run TestMeasureLoadBalance (make measure-partitioner)")
	measureBots = flag.Int("sim.bots", 3000, "bots in TestMeasureLoadBalance")
)

// TestMeasureLoadBalance is the measurement of docs/performance.md "Load balance": a crowd
// forms in one corner and walks across the world, once with the dynamic partitioner and once
// with a static 3 × 3 grid dealt to the same 3 servers, same seed, same run. It prints max/mean
// load over time, when the load got within 1.10 after the crowd formed, every server's Step
// time p99, and the ticks migrating entities were frozen. It asserts nothing about speed.
func TestMeasureLoadBalance(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: go test ./sim-tests/cluster -run TestMeasureLoadBalance -v -args -sim.measure")
	}
	const form, walk = 1500, 1200 // ticks: 75 s to gather (from anywhere in the world at 14 m/s), 60 s to walk across
	run := func(static bool) *Report {
		o := DefaultOptions(1)
		o.Bots = *measureBots
		o.World = 1024
		o.MaxSpeed = 14
		o.Ticks = form + walk + 300
		o.Drop, o.MaxDelay, o.MapDelay = 0, 1, 1 // a LAN: every message next tick, nothing lost
		o.Reconnect = 0
		o.Planner.MergeLoad = o.Bots / 30
		o.Planner.MinTransfer = max(2, o.Bots/300)
		o.Static = static
		o.Scenario = Migration(form, walk)
		o.TimeSteps = true
		sim, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sim.Run()
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	dyn, sta := run(false), run(true)
	var b strings.Builder
	fmt.Fprintf(&b, "%d bots, 3 servers, 1024 m world; a crowd of radius %.0f m gathers around (205,205) for %d s, walks to (819,819) over %d s\n",
		*measureBots, 1024*CrowdRadius, form/20, walk/20)
	for _, r := range []struct {
		name string
		rep  *Report
	}{{"dynamic", dyn}, {"static 3x3", sta}} {
		rep := r.rep
		bal := secondsToBalance(rep.MaxOverMean, rep.Formed, 1.10)
		after := rep.MaxOverMean[min(rep.Formed, len(rep.MaxOverMean)-1):]
		fmt.Fprintf(&b, "%-10s formed at %5.1f s; max/mean after forming: p50 %.2f p90 %.2f max %.2f; within 1.10 %s after forming; during the walk p50 %.2f max %.2f\n",
			r.name, float64(rep.Formed)/20, Quantile(after, .5), Quantile(after, .9), Quantile(after, 1), bal,
			Quantile(rep.MaxOverMean[form:form+walk], .5), Quantile(rep.MaxOverMean[form:form+walk], 1))
		for i, ds := range rep.StepTimes {
			fmt.Fprintf(&b, "           server %d Step p50 %v p99 %v max %v\n", i+1,
				cellserver.DurationQuantile(ds, .5).Round(10*time.Microsecond), cellserver.DurationQuantile(ds, .99).Round(10*time.Microsecond),
				cellserver.DurationQuantile(ds, 1).Round(10*time.Microsecond))
		}
		fmt.Fprintf(&b, "           map: %d splits %d shifts %d merges %d moves, %d aborted; %d handoffs (frozen ticks %v); %d entities migrated (frozen ticks %v)\n",
			rep.Splits, rep.Shifts, rep.Merges, rep.Moves, rep.Aborted, rep.Handoffs, rep.FrozenHandoff, rep.Migrated, rep.FrozenMigration)
	}
	fmt.Fprintf(&b, "max/mean every 5 s (dynamic | static):\n")
	for tk := 0; tk < len(dyn.MaxOverMean) && tk < len(sta.MaxOverMean); tk += 100 {
		fmt.Fprintf(&b, "  %5.0f s  %.2f | %.2f  (%d cells)\n", float64(tk)/20, dyn.MaxOverMean[tk], sta.MaxOverMean[tk], dyn.Cells[tk])
	}
	t.Log("\n" + b.String())
}

// secondsToBalance is how long after tick formed the ratio first stayed ≤ limit for 2 s.
func secondsToBalance(ratio []float64, formed int, limit float64) string {
	if formed == 0 {
		return "never (the crowd never formed)"
	}
	run := 0
	for tk := formed; tk < len(ratio); tk++ {
		if ratio[tk] <= limit {
			run++
			if run == 40 {
				return fmt.Sprintf("%.1f s", math.Max(0, float64(tk-39-formed)/20))
			}
		} else {
			run = 0
		}
	}
	return "never"
}

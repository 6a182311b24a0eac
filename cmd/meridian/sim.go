package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/scenario"
)

// simOptions are the flags of `meridian sim` (and of the demo, which is a sim).
type simOptions struct {
	scenario.Options
	report, logLevel, scale, cpuProfile string
	compare, keep                       bool
}

func addSimFlags(fs *flag.FlagSet, o *simOptions) {
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the bots' choices")
	fs.IntVar(&o.Bots, "bots", o.Bots, "bots (players) over KCP through the gateway")
	fs.IntVar(&o.Servers, "servers", o.Servers, "cell servers")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "the scenario's length, after the bots joined")
	fs.StringVar(&o.Partitioning, "partitioning", o.Partitioning, "dynamic (the partitioner splits, shifts, merges and moves cells) or static (a fixed grid)")
	fs.StringVar(&o.PGURL, "pg-url", "", "persist to this PostgreSQL (default: Pebble alone)")
	fs.Float64Var(&o.World, "world", o.World, "side of the square world, metres")
	fs.StringVar(&o.report, "report", o.report, "directory to write report.json, report.md and the pictures to")
	fs.BoolVar(&o.compare, "compare", false, "run twice, dynamic and static partitioning, and compare them side by side")
	fs.StringVar(&o.scale, "scale", "", "run the scenario at each of these bot counts (e.g. 250,500,1000,2000; --bots is ignored) and write how each figure grows (scaling.md, scaling.svg) beside a report per count")
	fs.BoolVar(&o.keep, "keep-data", false, "keep the cluster's data and logs (in the report directory, under cluster/) instead of removing them")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error (this process's own log)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile (the bots' KCP clients; go tool pprof reads it) to this file")
}

// runSim is `meridian sim <scenario> [flags]`.
func runSim(ctx context.Context, args []string) error {
	o := simOptions{Options: scenario.DefaultOptions()}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.Scenario, args = args[0], args[1:]
	}
	o.report = filepath.Join("sim-report", o.Scenario+"-"+time.Now().Format("20060102-150405"))
	fs := flag.NewFlagSet("meridian sim", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: meridian sim <scenario> [flags]\n\nscenarios:\n")
		for _, n := range scenario.Names() {
			fmt.Fprintf(fs.Output(), "  %-12s %s\n", n, scenario.Scenarios[n].Description)
		}
		fmt.Fprintf(fs.Output(), "\nflags:\n")
		fs.PrintDefaults()
	}
	addSimFlags(fs, &o)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.scale != "" {
		return simulateScaling(ctx, &o, os.Stdout)
	}
	_, err := simulate(ctx, &o, os.Stdout, nil)
	return err
}

// simulateScaling runs the scenario at each bot count of --scale, each in its own report
// directory bots-N, and writes the scaling summary; it fails if an invariant failed anywhere.
func simulateScaling(ctx context.Context, o *simOptions, out io.Writer) error {
	var counts []int
	for _, f := range strings.Split(o.scale, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--scale: %q is not a number of bots", f)
		}
		counts = append(counts, n)
	}
	root := o.report
	var points []scenario.ScalePoint
	var failed []string
	for _, n := range counts {
		so := *o
		so.Bots, so.report = n, filepath.Join(root, fmt.Sprintf("bots-%d", n))
		p, err := simulate(ctx, &so, out, nil)
		switch {
		case errors.Is(err, errInvariants):
			failed = append(failed, fmt.Sprintf("%d bots", n))
		case err != nil && ctx.Err() == nil:
			// The run did not complete (at a count beyond the machine, the bots may not all
			// connect): the summary says so, and the other counts still run.
			fmt.Fprintf(out, "%d bots: the run did not complete: %v\n", n, err)
			p.Error = err.Error()
			failed = append(failed, fmt.Sprintf("%d bots (did not complete)", n))
		case err != nil:
			return err
		}
		points = append(points, p)
	}
	if err := scenario.WriteScaling(root, points); err != nil {
		return err
	}
	fmt.Fprintf(out, "scaling: %s\n", filepath.Join(root, "scaling.md"))
	if len(failed) > 0 {
		return fmt.Errorf("%w at %s", errInvariants, strings.Join(failed, ", "))
	}
	return nil
}

// errInvariants: a run's invariants failed (the report says which).
var errInvariants = errors.New("invariants failed")

// simulate runs o (twice with --compare), writes the report and says where; it fails if an
// invariant failed.
//
// onSecond (nil: a progress line a second to out) is called every second instead.
func simulate(ctx context.Context, o *simOptions, out io.Writer, onSecond func(scenario.Sample, *raftmeta.Map, string)) (scenario.ScalePoint, error) {
	point := scenario.ScalePoint{Bots: o.Bots}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return point, err
	}
	o.Log = log
	if _, err := scenario.Lookup(o.Scenario); err != nil {
		return point, err
	}
	data := filepath.Join(o.report, "cluster")
	if !o.keep {
		if data, err = os.MkdirTemp("", "meridian-sim-*"); err != nil {
			return point, err
		}
		defer os.RemoveAll(data)
	}
	one := func(partitioning string) (*scenario.Report, error) {
		so := o.Options
		so.Partitioning = partitioning
		so.Dir = filepath.Join(data, partitioning)
		if so.OnSecond = onSecond; onSecond == nil {
			so.Progress = out
		}
		fmt.Fprintf(out, "meridian sim %s: %d bots, %d cell servers, 3 meta nodes, 1 gateway, %s partitioning, %v (seed %d)\n",
			so.Scenario, so.Bots, so.Servers, partitioning, so.Duration, so.Seed)
		return scenario.Run(ctx, so)
	}
	var failed []string
	verdict := func(label string, r *scenario.Report) {
		inv := r.Invariants
		fmt.Fprintf(out, "%s: tick p99 %.1f ms, max/mean p50 %.2f, %.1f kbit/s per client (p50), %d handoffs, invariants %s\n",
			label, r.TickMS.P99, r.Load.MaxOverMeanP50, r.Bandwidth.KbitPerClientP50, r.Handoffs.Count, map[bool]string{true: "OK", false: "FAILED"}[inv.OK])
		if !inv.OK {
			failed = append(failed, fmt.Sprintf("%s: %d lost, %d duplicated, %d reconnects, %d inputs dropped (%s)", label,
				inv.EntitiesLost, inv.EntitiesDuplicated, inv.ClientReconnects, inv.InputsDropped, strings.Join(inv.Notes, "; ")))
		}
	}
	if o.compare {
		var c scenario.Compare
		if c.Dynamic, err = one("dynamic"); err != nil {
			return point, err
		}
		if c.Static, err = one("static"); err != nil {
			return point, err
		}
		if err := scenario.WriteCompare(o.report, &c); err != nil {
			return point, err
		}
		verdict("dynamic", c.Dynamic)
		verdict("static", c.Static)
		point.Dynamic, point.Static = c.Dynamic, c.Static
	} else {
		r, err := one(o.Partitioning)
		if err != nil {
			return point, err
		}
		if err := scenario.WriteReport(o.report, r); err != nil {
			return point, err
		}
		verdict(o.Partitioning, r)
		if o.Partitioning == "static" {
			point.Static = r
		} else {
			point.Dynamic = r
		}
	}
	fmt.Fprintf(out, "report: %s\n", filepath.Join(o.report, "report.md"))
	if len(failed) > 0 {
		return point, fmt.Errorf("%w: %s", errInvariants, strings.Join(failed, "; "))
	}
	return point, nil
}

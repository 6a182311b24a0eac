package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/raftmeta/mapview"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/sim-tests/scenario"
)

// runDemo is the README's first command: the hotspot scenario of `meridian sim` with ~1 000 bots
// on a local cluster (3 meta nodes, 3 cell servers, a gateway; Pebble, no PostgreSQL), the
// partition map redrawn in the terminal every second as cells split under the crowd, and the
// report's path at the end. `meridian demo --standalone` is the single-server demo.
func runDemo(ctx context.Context, args []string) error {
	if len(args) > 0 && (args[0] == "--standalone" || args[0] == "-standalone") {
		return runStandaloneDemo(ctx, args[1:])
	}
	o := simOptions{Options: scenario.DefaultOptions()}
	o.Bots, o.Servers, o.Duration, o.World = 600, 3, 80*time.Second, 512
	o.report = filepath.Join("demo-report", time.Now().Format("20060102-150405"))
	fs := flag.NewFlagSet("meridian demo", flag.ContinueOnError)
	fs.StringVar(&o.Scenario, "scenario", "hotspot", "the scenario (see meridian sim -h)")
	addSimFlags(fs, &o)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fi, err := os.Stdout.Stat()
	live := err == nil && fi.Mode()&os.ModeCharDevice != 0
	if !live {
		_, err := simulate(ctx, &o, os.Stdout, nil)
		return err
	}
	var buf bytes.Buffer
	_, err = simulate(ctx, &o, os.Stdout, func(s scenario.Sample, mp *raftmeta.Map, phase string) {
		buf.Reset()
		buf.WriteString("\x1b[H\x1b[2J") // home, clear
		fmt.Fprintf(&buf, "Meridian demo: %s, %d bots, %d cell servers, %s partitioning (Ctrl-C stops; the report follows)\n\n",
			o.Scenario, o.Bots, o.Servers, o.Partitioning)
		if mp != nil {
			_ = mapview.ASCII(&buf, *mp, mapview.ASCIIOptions{Width: 100, Height: 34, Color: true, IDs: true})
		}
		buf.WriteString("\n" + scenario.ProgressLine(s, phase, mp) + "\n")
		_, _ = os.Stdout.Write(buf.Bytes())
	})
	return err
}

// runStandaloneDemo: one standalone cell server and a crowd of bots in this process, over real
// KCP on 127.0.0.1, with a live line every second and a summary.
func runStandaloneDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian demo --standalone", flag.ContinueOnError)
	var o cellOptions
	addCellFlags(fs, &o, "127.0.0.1:0", "127.0.0.1:0", 256)
	bc := bots.DefaultConfig("", 500)
	bc.Behavior = "hotspot"
	addBotFlags(fs, &bc)
	duration := fs.Duration("duration", 30*time.Second, "how long the crowd plays")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	cfg, err := o.config(time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := newRegistry()
	srv, err := cellserver.NewStandalone(cfg, reg, log)
	if err != nil {
		return err
	}
	maddr, err := serveMetrics(ctx, o.metrics, reg, log)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	bc.Addr = srv.Listener.Addr().String()
	fmt.Printf("Meridian demo: 1 cell server (standalone, %.0f m × %.0f m world, %d Hz, AOI %.0f/%.0f m) + %d %s bots over KCP for %v\n",
		o.world, o.world, cfg.World.TickHz, o.aoiEnter, o.aoiLeave, bc.N, bc.Behavior, *duration)
	fmt.Printf("  server %s   metrics http://%s/metrics\n", bc.Addr, maddr)

	start := time.Now()
	r, err := bots.Connect(ctx, bc)
	if err != nil {
		cancel()
		<-done
		return err
	}
	fmt.Printf("  %d bots connected in %v\n", bc.N, time.Since(start).Round(time.Millisecond))
	srv.Driver.TakeWindow() // the summary covers the run, not the connection phase
	runCtx, stopRun := context.WithTimeout(ctx, *duration)
	defer stopRun()
	go r.Run(runCtx)

	meter := newBotMeter(r)
	var all []time.Duration
	var bytesOut, overruns, skipped int
	collect := func() cellserver.TickWindow {
		w := srv.Driver.TakeWindow()
		all = append(all, w.Durations...)
		bytesOut += w.BytesOut
		overruns += w.Overruns
		skipped += w.Skipped
		return w
	}
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	run := time.Now()
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-tk.C:
			w := collect()
			t, rt := meter.sample()
			if len(w.Durations) == 0 {
				fmt.Printf("t=%3.0fs no tick completed in this second: the server is stalled\n", time.Since(run).Seconds())
				continue
			}
			fmt.Printf("t=%3.0fs tick p50 %5.2f ms p99 %5.2f ms (%2d ticks)  clients %d  in view %.0f  %.2f kbit/s per client (server %.2f)  RTT p50 %v\n",
				time.Since(run).Seconds(), ms(w.Quantile(0.5)), ms(w.Quantile(0.99)), len(w.Durations), w.Clients, float64(w.InView)/float64(max(1, w.Clients)),
				rt.kbit, float64(w.BytesOut)*8/1000/float64(max(1, w.Clients)), t.RTTp50.Round(100*time.Microsecond))
		}
	}
	collect() // the last partial second
	el := time.Since(run).Seconds()
	total := r.Totals()
	pr := perBot(meter.first, total, el, total.Bots)
	r.Close()
	cancel()
	if err := <-done; err != nil {
		return err
	}
	n := float64(max(1, total.Bots))
	fmt.Printf("\nsummary over %.1f s:\n", el)
	fmt.Printf("  ticks        %d run, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d overruns, %d skipped\n",
		len(all), ms(cellserver.DurationQuantile(all, 0.5)), ms(cellserver.DurationQuantile(all, 0.99)), ms(cellserver.DurationQuantile(all, 1)), overruns, skipped)
	fmt.Printf("  bandwidth    %.2f kbit/s per client of snapshot frames received (server built %.2f); on the wire, KCP + UDP/IPv4 headers\n"+
		"               included, %.2f kbit/s per client down and up together (server and bots share this process)\n",
		pr.kbit, float64(bytesOut)*8/1000/el/n, pr.wireDown)
	fmt.Printf("  snapshots    %d received (%.1f/s per client), %d decode errors\n", total.SnapshotsReceived-meter.first.SnapshotsReceived, pr.snaps, total.DecodeErrors)
	fmt.Printf("  sessions     %d bots, %d dropped during the run, RTT p50 %v p99 %v\n", total.Bots, total.Disconnected, total.RTTp50.Round(100*time.Microsecond), total.RTTp99.Round(100*time.Microsecond))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

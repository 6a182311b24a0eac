package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meridian-mmo/meridian/sim-tests/bots"
)

func addBotFlags(fs *flag.FlagSet, cfg *bots.Config) {
	fs.IntVar(&cfg.N, "n", cfg.N, "number of bots")
	fs.StringVar(&cfg.Behavior, "behavior", cfg.Behavior, "wander or hotspot")
	fs.Uint64Var(&cfg.Seed, "bot-seed", cfg.Seed, "seed of the bots' behaviours")
	fs.IntVar(&cfg.InputHz, "input-hz", cfg.InputHz, "how often each bot decides its intent")
}

func runBots(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian bots", flag.ContinueOnError)
	cfg := bots.DefaultConfig("127.0.0.1:7777", 100)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "server (gateway or standalone cell server) UDP address")
	addBotFlags(fs, &cfg)
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	r, err := bots.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("%d bots connected to %s in %v (%s)\n", cfg.N, cfg.Addr, time.Since(start).Round(time.Millisecond), cfg.Behavior)
	go r.Run(ctx)
	live := newBotMeter(r)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	run := time.Now()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			live.line(os.Stdout, time.Since(run))
		}
	}
	total := r.Totals()
	r.Close()
	el := time.Since(run).Seconds()
	fmt.Printf("summary: %d bots, %.1fs, %d snapshots (%.1f/s per bot), %.2f kbit/s per bot, %d decode errors, %d disconnected, RTT p50 %v p99 %v\n",
		total.Bots, el, total.SnapshotsReceived, float64(total.SnapshotsReceived)/el/float64(max(1, total.Bots)),
		float64(total.BytesReceived)*8/1000/el/float64(max(1, total.Bots)), total.DecodeErrors, total.Disconnected, total.RTTp50, total.RTTp99)
	return nil
}

// botMeter turns cumulative bot totals into per-second figures.
type botMeter struct {
	r    *bots.Runner
	prev bots.Totals
	at   time.Time
}

func newBotMeter(r *bots.Runner) *botMeter { return &botMeter{r: r, prev: r.Totals(), at: time.Now()} }

// sample returns the totals and the per-bot kbit/s and snapshots/s since the previous sample.
func (m *botMeter) sample() (bots.Totals, float64, float64) {
	t := m.r.Totals()
	now := time.Now()
	dt := now.Sub(m.at).Seconds()
	n := float64(max(1, t.Connected))
	kbit := float64(t.BytesReceived-m.prev.BytesReceived) * 8 / 1000 / dt / n
	snaps := float64(t.SnapshotsReceived-m.prev.SnapshotsReceived) / dt / n
	m.prev, m.at = t, now
	return t, kbit, snaps
}

func (m *botMeter) line(w io.Writer, el time.Duration) {
	t, kbit, snaps := m.sample()
	fmt.Fprintf(w, "t=%3.0fs bots %d/%d  %.1f snapshots/s  %.2f kbit/s per bot  RTT p50 %v p99 %v  decode errors %d\n",
		el.Seconds(), t.Connected, t.Bots, snaps, kbit, t.RTTp50.Round(100*time.Microsecond), t.RTTp99.Round(100*time.Microsecond), t.DecodeErrors)
}

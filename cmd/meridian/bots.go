package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meridian-mmo/meridian/auth"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
)

func addBotFlags(fs *flag.FlagSet, cfg *bots.Config) {
	fs.IntVar(&cfg.N, "n", cfg.N, "number of bots")
	fs.StringVar(&cfg.Behavior, "behavior", cfg.Behavior, "wander, hotspot (a crowd within 20 m of the centre), hotspot:R (within R metres), patrol (back and forth across the vertical centre line, within 30 m of it) or patrol:R (within R metres)")
	fs.Uint64Var(&cfg.Seed, "bot-seed", cfg.Seed, "seed of the bots' behaviours")
	fs.IntVar(&cfg.InputHz, "input-hz", cfg.InputHz, "how often each bot decides its intent")
	fs.DurationVar(&cfg.InteractEvery, "interact-every", cfg.InteractEvery, "how often each bot chats to a random entity in its view (0: never)")
}

func runBots(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian bots", flag.ContinueOnError)
	cfg := bots.DefaultConfig("127.0.0.1:7777", 100)
	gw := fs.String("gateway", cfg.Addr, "UDP (KCP) address of the gateway, or of a standalone cell server")
	alias := fs.String("addr", "", "the same as --gateway (older spelling; --gateway wins if both are set)")
	addBotFlags(fs, &cfg)
	duration := fs.Duration("duration", 0, "how long the bots play once connected (0: until interrupted)")
	secretFile := fs.String("token-secret-file", "", "file holding the gateway's token secret (as its --token-secret-file): bot i then sends a signed token for player --player-base + i, valid 24 h; empty: development tokens")
	fs.Uint64Var(&cfg.PlayerBase, "player-base", 0, "bot i plays as player player-base + i (required, ≥ 1, with --token-secret-file); 0 without a secret: bot i sends the token \"bot-<i>\" (a player derived from it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *secretFile != "" {
		secret, err := auth.LoadSecret(*secretFile)
		if err != nil {
			return fmt.Errorf("--token-secret-file: %w", err)
		}
		if cfg.TokenSigner, err = auth.NewSigner(secret); err != nil {
			return fmt.Errorf("--token-secret-file: %w", err)
		}
		if cfg.PlayerBase == 0 {
			return fmt.Errorf("--player-base must be ≥ 1 with --token-secret-file (bot i plays as player player-base + i)")
		}
	}
	set := map[string]bool{} // on the command line or through MERIDIAN_*
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.Addr = *gw
	if !set["gateway"] && set["addr"] {
		cfg.Addr = *alias
	}
	start := time.Now()
	r, err := bots.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("%d bots connected to %s in %v (%s)\n", cfg.N, cfg.Addr, time.Since(start).Round(time.Millisecond), cfg.Behavior)
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(ctx) }()
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
	el := time.Since(run).Seconds()
	<-ran
	// Let the last inputs and chats arrive before counting what was not acknowledged.
	r.Settle(context.Background(), time.Second)
	settled := r.Totals()
	r.Close()
	pr := perBot(live.first, total, el, total.Bots)
	fmt.Printf("summary: %d bots, %.1fs, %d snapshots (%.1f/s per bot), %.2f kbit/s per bot of snapshot frames; on the wire (KCP + UDP/IPv4 headers) %.2f kbit/s down, %.2f kbit/s up per bot; %d decode errors, %d disconnected, RTT p50 %v p99 %v\n",
		total.Bots, el, total.SnapshotsReceived-live.first.SnapshotsReceived, pr.snaps, pr.kbit, pr.wireDown, pr.wireUp,
		total.DecodeErrors, total.Disconnected, total.RTTp50, total.RTTp99)
	fmt.Printf("seams: %d flickers (an entity gone from a view for ≤ 5 ticks), %d tick regressions, %d baseline misses, %d acknowledgements backwards; %d input sequences unacknowledged 1 s after the end; interactions %d sent, %d received (%d duplicates)\n",
		settled.Flickers, settled.TickRegressions, settled.BaselineMisses, settled.AckRegressions, settled.InputsUnacked,
		settled.InteractionsSent, settled.InteractionsReceived, settled.DuplicateInteractions)
	for why, n := range settled.Ended {
		if why == "" {
			why = "closed by the server"
		}
		fmt.Printf("  %d sessions ended: %s\n", n, why)
	}
	return nil
}

// botMeter turns cumulative bot totals into per-second figures.
type botMeter struct {
	r     *bots.Runner
	first bots.Totals // at the start of the run
	prev  bots.Totals
	at    time.Time
}

func newBotMeter(r *bots.Runner) *botMeter {
	t := r.Totals()
	return &botMeter{r: r, first: t, prev: t, at: time.Now()}
}

// rates are per-bot figures over an interval.
type rates struct {
	kbit     float64 // snapshot frames received, kbit/s
	snaps    float64 // snapshots/s
	wireDown float64 // UDP datagrams received by the process, headers included, kbit/s
	wireUp   float64 // UDP datagrams sent by the process, headers included, kbit/s
}

// sample returns the totals and the per-bot rates since the previous sample.
func (m *botMeter) sample() (bots.Totals, rates) {
	t := m.r.Totals()
	now := time.Now()
	r := perBot(m.prev, t, now.Sub(m.at).Seconds(), t.Connected)
	m.prev, m.at = t, now
	return t, r
}

func perBot(a, b bots.Totals, seconds float64, n int) rates {
	d := seconds * float64(max(1, n))
	return rates{
		kbit:     float64(b.BytesReceived-a.BytesReceived) * 8 / 1000 / d,
		snaps:    float64(b.SnapshotsReceived-a.SnapshotsReceived) / d,
		wireDown: float64(b.WireIn-a.WireIn) * 8 / 1000 / d,
		wireUp:   float64(b.WireOut-a.WireOut) * 8 / 1000 / d,
	}
}

func (m *botMeter) line(w io.Writer, el time.Duration) {
	t, r := m.sample()
	fmt.Fprintf(w, "t=%3.0fs bots %d/%d  %.1f snapshots/s  %.2f kbit/s per bot (on the wire %.2f down, %.2f up)  RTT p50 %v p99 %v  decode errors %d\n",
		el.Seconds(), t.Connected, t.Bots, r.snaps, r.kbit, r.wireDown, r.wireUp, t.RTTp50.Round(100*time.Microsecond), t.RTTp99.Round(100*time.Microsecond), t.DecodeErrors)
}

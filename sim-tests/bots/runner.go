package bots

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/wire"
)

// Config describes a crowd of bots.
type Config struct {
	Addr        string
	N           int
	Behavior    string
	Seed        uint64
	InputHz     int           // how often behaviours run (an intent is sent only when it changes)
	DialWorkers int           // concurrent handshakes while connecting
	Client      client.Config // template; Addr and Token are set per bot
}

// DefaultConfig returns a crowd of n wandering bots aimed at addr. Bots use a 20 ms KCP
// interval (half the server's fast mode) so that thousands fit on one machine beside a server.
func DefaultConfig(addr string, n int) Config {
	cc := client.DefaultConfig(addr, []byte("bot"))
	cc.KCPInterval = 20
	return Config{Addr: addr, N: n, Behavior: "wander", Seed: 1, InputHz: 20, DialWorkers: 32, Client: cc}
}

// Validate names the first field out of bounds.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("bots: Addr must be set")
	case c.N < 1:
		return fmt.Errorf("bots: N (%d) must be ≥ 1", c.N)
	case c.InputHz < 1 || c.InputHz > 120:
		return fmt.Errorf("bots: InputHz (%d) must be in [1, 120]", c.InputHz)
	case c.DialWorkers < 1:
		return fmt.Errorf("bots: DialWorkers (%d) must be ≥ 1", c.DialWorkers)
	}
	if _, err := ParseBehavior(c.Behavior); err != nil {
		return err
	}
	return nil
}

type bot struct {
	c        *client.Client
	behavior Behavior
	rng      *rand.Rand
}

// Runner is a connected crowd.
type Runner struct {
	cfg        Config
	bots       []*bot
	inputsSent atomic.Uint64
	sendErrors atomic.Uint64
}

// Totals aggregates every bot's counters.
type Totals struct {
	Bots              int
	Connected         int // sessions still open
	Disconnected      int // sessions that ended without the runner closing them
	SnapshotsReceived uint64
	BytesReceived     uint64
	DecodeErrors      uint64
	InputsSent        uint64
	RTTp50, RTTp99    time.Duration
	// WireIn and WireOut are the process's UDP traffic, KCP and UDP/IPv4 headers included
	// (kcp-go's process-wide counters plus 28 bytes a datagram). In a process that runs only
	// bots, WireIn is the downstream and WireOut the upstream of all bots together.
	WireIn, WireOut uint64
}

// udpIPv4Overhead is the IPv4 (20) + UDP (8) header bytes of one datagram.
const udpIPv4Overhead = 28

// Connect dials every bot (DialWorkers at a time) and returns when all are welcomed, or the
// first error (closing those already connected).
func Connect(ctx context.Context, cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	factory, _ := ParseBehavior(cfg.Behavior)
	r := &Runner{cfg: cfg, bots: make([]*bot, cfg.N)}
	jobs := make(chan int)
	errs := make(chan error, cfg.N)
	var wg sync.WaitGroup
	for range min(cfg.DialWorkers, cfg.N) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("bot %d: %w", i, ctx.Err())
					continue
				}
				cc := cfg.Client
				cc.Addr = cfg.Addr
				cc.Token = fmt.Appendf(nil, "bot-%d", i)
				c, err := client.Dial(ctx, cc)
				if err != nil {
					errs <- fmt.Errorf("bot %d: %w", i, err)
					continue
				}
				w := c.Welcome()
				world := [2][2]float64{
					{wire.DequantisePos(w.WorldMin[0]), wire.DequantisePos(w.WorldMin[1])},
					{wire.DequantisePos(w.WorldMax[0]), wire.DequantisePos(w.WorldMax[1])},
				}
				r.bots[i] = &bot{c: c, behavior: factory(world), rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
			}
		}()
	}
	for i := range cfg.N {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Run steps every bot's behaviour at InputHz until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(time.Second / time.Duration(r.cfg.InputHz))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, b := range r.bots {
			select {
			case <-b.c.Done():
				continue
			default:
			}
			self, ok := b.c.Self()
			mx, mz, yaw, send := b.behavior.Next(self, ok, b.rng)
			if !send {
				continue
			}
			if _, err := b.c.SendInput(mx, mz, yaw, 0); err != nil {
				r.sendErrors.Add(1)
				continue
			}
			r.inputsSent.Add(1)
		}
	}
}

// Clients returns the bots' clients.
func (r *Runner) Clients() []*client.Client {
	out := make([]*client.Client, 0, len(r.bots))
	for _, b := range r.bots {
		if b != nil {
			out = append(out, b.c)
		}
	}
	return out
}

// Totals sums every bot's counters.
func (r *Runner) Totals() Totals {
	snmp := kcp.DefaultSnmp.Copy()
	t := Totals{
		Bots: len(r.bots), InputsSent: r.inputsSent.Load(),
		WireIn:  snmp.InBytes + udpIPv4Overhead*snmp.InPkts,
		WireOut: snmp.OutBytes + udpIPv4Overhead*snmp.OutPkts,
	}
	rtts := make([]time.Duration, 0, len(r.bots))
	for _, b := range r.bots {
		if b == nil {
			continue
		}
		select {
		case <-b.c.Done():
			t.Disconnected++
		default:
			t.Connected++
		}
		s := b.c.Stats()
		t.SnapshotsReceived += s.SnapshotsReceived
		t.BytesReceived += s.BytesReceived
		t.DecodeErrors += s.DecodeErrors
		if s.RTT > 0 {
			rtts = append(rtts, s.RTT)
		}
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		t.RTTp50 = rtts[len(rtts)/2]
		t.RTTp99 = rtts[min(len(rtts)-1, len(rtts)*99/100)]
	}
	return t
}

// Close disconnects every bot.
func (r *Runner) Close() {
	var wg sync.WaitGroup
	for _, b := range r.bots {
		if b == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); b.c.Close() }()
	}
	wg.Wait()
}

package e2e

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/sim-tests/bots"
	"github.com/meridian-mmo/meridian/wire"
)

// recorder keeps the server's entity states for recent ticks, captured on the tick goroutine.
type recorder struct {
	mu     sync.Mutex
	states map[wire.Tick]map[wire.EntityID]wire.EntityState
}

func (r *recorder) onTick(w *cellserver.World, out *cellserver.StepOutput) {
	m := make(map[wire.EntityID]wire.EntityState)
	for _, id := range w.EntityIDs() {
		st, _ := w.Entity(id)
		m[id] = st
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := w.Tick()
	r.states[t] = m
	delete(r.states, t-200)
}

func (r *recorder) at(t wire.Tick) map[wire.EntityID]wire.EntityState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states[t]
}

func startServer(t *testing.T, world float64) (*cellserver.Standalone, *recorder, func()) {
	t.Helper()
	wc := cellserver.DefaultConfig()
	wc.WorldMin, wc.WorldMax = [2]float64{0, 0}, [2]float64{world, world}
	ec := gateway.DefaultConfig()
	ec.Listen = "127.0.0.1:0"
	srv, err := cellserver.NewStandalone(cellserver.StandaloneConfig{
		World: wc, Driver: cellserver.DefaultDriverConfig(time.Now()), Edge: ec, Seed: 7,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{states: map[wire.Tick]map[wire.EntityID]wire.EntityState{}}
	srv.OnTick = rec.onTick
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return srv, rec, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}
}

// TestBotsSeeTheServersWorld: a standalone cell server and 50 bots over real KCP on
// 127.0.0.1. After the bots have wandered, every bot's decoded view equals the server's state
// of the same tick exactly (states are quantised on the server, so "within quantisation" is
// equality), holds every entity inside the enter radius, and every input was applied.
func TestBotsSeeTheServersWorld(t *testing.T) {
	const nBots = 50
	srv, rec, stop := startServer(t, 120)
	defer stop()

	cfg := bots.DefaultConfig(srv.Listener.Addr().String(), nBots)
	cfg.Seed = 3
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := bots.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	runCtx, stopRun := context.WithTimeout(ctx, 3*time.Second)
	r.Run(runCtx)
	stopRun()
	// Inputs have stopped; let the last ones be applied and a few snapshots arrive.
	time.Sleep(time.Second)

	wc := cellserver.DefaultConfig()
	totals := r.Totals()
	if totals.Connected != nBots || totals.DecodeErrors != 0 {
		t.Fatalf("connected %d/%d, decode errors %d", totals.Connected, nBots, totals.DecodeErrors)
	}
	if totals.InputsSent == 0 {
		t.Fatal("bots sent no inputs")
	}
	for i, c := range r.Clients() {
		tick, view := c.Latest()
		server := rec.at(tick)
		if server == nil {
			t.Fatalf("bot %d: server has no record of tick %d", i, tick)
		}
		self, ok := server[c.Entity()]
		if !ok {
			t.Fatalf("bot %d: its entity %d is not on the server", i, c.Entity())
		}
		inView := map[wire.EntityID]bool{}
		for _, s := range view {
			inView[s.ID] = true
			want, ok := server[s.ID]
			if !ok {
				t.Errorf("bot %d tick %d: sees entity %d the server does not have", i, tick, s.ID)
				continue
			}
			if s.State != want {
				t.Errorf("bot %d tick %d entity %d: decoded %+v, server %+v", i, tick, s.ID, s.State, want)
			}
		}
		if !inView[c.Entity()] {
			t.Errorf("bot %d does not see itself", i)
		}
		for id, st := range server {
			d := math.Hypot(wire.DequantisePos(st.X-self.X), wire.DequantisePos(st.Z-self.Z))
			if d <= wc.AOIEnterRadius && !inView[id] {
				t.Errorf("bot %d tick %d: entity %d is %.1f m away (< %.0f m) but not in view", i, tick, id, d, wc.AOIEnterRadius)
			}
		}
		st := c.Stats()
		if st.SnapshotsReceived < 20 {
			t.Errorf("bot %d received only %d snapshots", i, st.SnapshotsReceived)
		}
		if st.LastInputAcked != st.InputsSent {
			t.Errorf("bot %d: sent inputs up to seq %d, server applied up to %d", i, st.InputsSent, st.LastInputAcked)
		}
	}
}

// TestRefusedAndShutdown: a client beyond the world's capacity is told "server full" instead
// of waiting for a welcome, and a server shutting down tells its clients, which end at once.
func TestRefusedAndShutdown(t *testing.T) {
	wc := cellserver.DefaultConfig()
	wc.WorldMax = [2]float64{100, 100}
	wc.MaxClients = 1
	ec := gateway.DefaultConfig()
	ec.Listen = "127.0.0.1:0"
	srv, err := cellserver.NewStandalone(cellserver.StandaloneConfig{
		World: wc, Driver: cellserver.DefaultDriverConfig(time.Now()), Edge: ec, Seed: 1,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	addr := srv.Listener.Addr().String()
	first, err := client.Dial(ctx, client.DefaultConfig(addr, []byte("first")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Dial(ctx, client.DefaultConfig(addr, []byte("second")))
	if !errors.Is(err, client.ErrDisconnected) || !strings.Contains(err.Error(), "server full") {
		t.Fatalf("second client: %v, want a server-full disconnect", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-first.Done()
	if err := first.Err(); !errors.Is(err, client.ErrDisconnected) || !strings.Contains(err.Error(), "shutdown") {
		t.Fatalf("first client ended with %v, want a shutdown disconnect", err)
	}
}

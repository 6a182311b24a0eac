package cellserver

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/wire"
)

// Standalone is a cell server that owns the whole world and serves clients itself through an
// embedded client edge: `meridian cell` without a metadata service. It is glue between the
// edge (sessions) and the Driver (ticks); neither knows the other.
type Standalone struct {
	World    *World
	Driver   *Driver
	Listener *gateway.Listener
	Metrics  *Metrics

	// OnTick, if set before Run, is called on the tick goroutine after every Step, before the
	// output is sent: the one place where the World may be read while the server runs.
	OnTick func(w *World, out *StepOutput)

	mu  sync.Mutex // guards rng
	rng *rand.Rand // spawn positions
	cfg Config
}

// StandaloneConfig gathers what a standalone cell server needs.
type StandaloneConfig struct {
	World  Config
	Driver DriverConfig
	Edge   gateway.Config
	Seed   uint64
}

// NewStandalone builds the world, the driver and the edge, and binds the listener.
func NewStandalone(cfg StandaloneConfig, reg prometheus.Registerer, log *slog.Logger) (*Standalone, error) {
	world, err := NewWorld(cfg.World, rand.New(rand.NewPCG(cfg.Seed, 0x6d6572696469616e)))
	if err != nil {
		return nil, err
	}
	s := &Standalone{World: world, Metrics: NewMetrics(reg), rng: rand.New(rand.NewPCG(cfg.Seed, 1)), cfg: cfg.World}
	if s.Driver, err = NewDriver(world, cfg.Driver, s, s.Metrics); err != nil {
		return nil, err
	}
	if s.Listener, err = gateway.Listen(cfg.Edge, s, reg, log); err != nil {
		return nil, err
	}
	return s, nil
}

// Run serves until ctx ends, then closes every session.
func (s *Standalone) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := s.Listener.Serve(ctx)
		cancel() // a server that cannot accept clients stops ticking too
		errc <- err
	}()
	err := s.Driver.Run(ctx)
	if lerr := <-errc; err == nil {
		err = lerr
	}
	return err
}

// Deliver implements Sink: welcomes and snapshots go to the sessions' queues.
func (s *Standalone) Deliver(out *StepOutput) {
	if s.OnTick != nil {
		s.OnTick(s.World, out)
	}
	for _, r := range out.Refused {
		msg := "join refused"
		if r.Reason == wire.ReasonServerFull {
			msg = "server full"
		}
		s.Listener.Disconnect(gateway.SessionID(r.Client), r.Reason, msg)
	}
	for _, j := range out.Joined {
		s.Listener.SendControl(gateway.SessionID(j.Client), j.Welcome.AppendFrame(nil))
	}
	for _, snap := range out.Snapshots {
		s.Listener.SendSnapshot(gateway.SessionID(snap.Client), snap.Frame)
	}
	// Interactions: the whole world is here, so every target is real here (or gone).
	for _, a := range out.Interacts {
		wc, ok := s.World.entityClient(a.Interact.Target)
		if !ok || wc == 0 {
			continue
		}
		ia := wire.Interaction{From: a.Entity, Seq: a.Interact.Seq, Tick: s.World.Tick(), Kind: a.Interact.Kind, Data: a.Interact.Data}
		s.Listener.SendControl(gateway.SessionID(wc), ia.AppendFrame(nil))
	}
}

// Open implements gateway.Backend: a new session joins at a random point of the world.
func (s *Standalone) Open(id gateway.SessionID, player wire.PlayerID) {
	s.mu.Lock()
	spawn := [2]float64{
		s.cfg.WorldMin[0] + s.rng.Float64()*(s.cfg.WorldMax[0]-s.cfg.WorldMin[0]),
		s.cfg.WorldMin[1] + s.rng.Float64()*(s.cfg.WorldMax[1]-s.cfg.WorldMin[1]),
	}
	s.mu.Unlock()
	s.Driver.Join(Join{Client: ClientID(id), Spawn: spawn, Player: player})
}

// Input implements gateway.Backend.
func (s *Standalone) Input(id gateway.SessionID, in wire.Input) {
	s.Driver.Input(ClientInput{Client: ClientID(id), Input: in})
}

// Interact implements gateway.Backend: an interaction, in the client's input sequence.
func (s *Standalone) Interact(id gateway.SessionID, in wire.Interact) {
	s.Driver.Input(ClientInput{Client: ClientID(id), Input: wire.Input{Seq: in.Seq}, Interact: &in})
}

// Ack implements gateway.Backend.
func (s *Standalone) Ack(id gateway.SessionID, t wire.Tick) {
	s.Driver.Ack(ClientAck{Client: ClientID(id), Tick: t})
}

// Close implements gateway.Backend.
func (s *Standalone) Close(id gateway.SessionID) { s.Driver.Leave(ClientID(id)) }

// Tick implements gateway.Backend.
func (s *Standalone) Tick() wire.Tick { return s.Driver.Tick() }

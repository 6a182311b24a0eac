package bots

import (
	"context"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/gateway"
)

// TestRunnerPatrolWithInteractions: 30 patrolling bots on a standalone cell server chat to
// each other. Every chat sent is received exactly once (every target is a live bot), every
// input is acknowledged after Settle, and one server shows no seam.
func TestRunnerPatrolWithInteractions(t *testing.T) {
	wc := cellserver.DefaultConfig()
	wc.WorldMax = [2]float64{120, 120}
	ec := gateway.DefaultConfig()
	ec.Listen = "127.0.0.1:0"
	srv, err := cellserver.NewStandalone(cellserver.StandaloneConfig{
		World: wc, Driver: cellserver.DefaultDriverConfig(time.Now()), Edge: ec, Seed: 3,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	cfg := DefaultConfig(srv.Listener.Addr().String(), 30)
	cfg.Behavior = "patrol:20"
	cfg.InteractEvery = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	run, stopRun := context.WithTimeout(ctx, 3*time.Second)
	r.Run(run)
	stopRun()
	if !r.Settle(ctx, 5*time.Second) {
		t.Errorf("inputs still unacknowledged after 5 s: %d", r.Totals().InputsUnacked)
	}
	var tot Totals
	deadline := time.Now().Add(5 * time.Second)
	for { // the last chats may still be on their way
		tot = r.Totals()
		if tot.InteractionsReceived >= tot.InteractionsSent || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%+v", tot)
	if tot.Connected != 30 || tot.Disconnected != 0 || tot.SendErrors != 0 {
		t.Fatalf("connected %d, disconnected %d (%v), send errors %d", tot.Connected, tot.Disconnected, tot.Ended, tot.SendErrors)
	}
	if tot.InteractionsSent < 100 || tot.InteractionsReceived != tot.InteractionsSent || tot.DuplicateInteractions != 0 {
		t.Fatalf("interactions: %d sent, %d received (%d duplicates); want ≥ 100 sent, all received once",
			tot.InteractionsSent, tot.InteractionsReceived, tot.DuplicateInteractions)
	}
	if tot.InputsSent < 30*4 || tot.InputsUnacked != 0 {
		t.Fatalf("%d inputs sent, %d unacknowledged", tot.InputsSent, tot.InputsUnacked)
	}
	if tot.Flickers != 0 || tot.TickRegressions != 0 || tot.BaselineMisses != 0 || tot.AckRegressions != 0 || tot.DecodeErrors != 0 {
		t.Fatalf("seams on a single server: %+v", tot)
	}
	r.Close()
	if tot := r.Totals(); tot.Disconnected != 0 || tot.Connected != 0 {
		t.Fatalf("after Close: %d connected, %d disconnected; want 0 and 0 (the runner closed them)", tot.Connected, tot.Disconnected)
	}
}

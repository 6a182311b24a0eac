package client_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/wire"
)

// standalone runs a standalone cell server for a small world on 127.0.0.1 until the test ends.
func standalone(t *testing.T, world float64) string {
	t.Helper()
	wc := cellserver.DefaultConfig()
	wc.WorldMin, wc.WorldMax = [2]float64{0, 0}, [2]float64{world, world}
	ec := gateway.DefaultConfig()
	ec.Listen = "127.0.0.1:0"
	srv, err := cellserver.NewStandalone(cellserver.StandaloneConfig{
		World: wc, Driver: cellserver.DefaultDriverConfig(time.Now()), Edge: ec, Seed: 5,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return srv.Listener.Addr().String()
}

// eventually polls cond every 20 ms until it holds, failing the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInteractEndToEnd: two clients of a standalone server; one chats to the other between two
// inputs. The chat arrives once with the sender's entity and sequence, the sequence is shared
// with the inputs, and the sender's snapshots acknowledge all three messages.
func TestInteractEndToEnd(t *testing.T) {
	addr := standalone(t, 40) // small enough that both are in each other's view
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := client.Dial(ctx, client.DefaultConfig(addr, []byte("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, client.DefaultConfig(addr, []byte("bob")))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	eventually(t, 5*time.Second, "alice sees bob", func() bool {
		_, v := alice.Latest()
		return slices.ContainsFunc(v, func(s wire.ViewSlot) bool { return s.ID == bob.Entity() })
	})

	if _, err := alice.SendInteract(0, wire.InteractChat, []byte("nobody")); err == nil {
		t.Fatal("an interact without a target was sent")
	}
	if _, err := alice.SendInteract(bob.Entity(), wire.InteractChat, []byte{0xff}); err == nil {
		t.Fatal("chat that is not UTF-8 was sent")
	}
	s1, err := alice.SendInput(10, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := alice.SendInteract(bob.Entity(), wire.InteractChat, []byte("hi!"))
	if err != nil {
		t.Fatal(err)
	}
	s3, err := alice.SendInput(0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != 1 || s2 != 2 || s3 != 3 {
		t.Fatalf("sequences %d, %d, %d; want 1, 2, 3 (refused interacts take no number, one counter for both)", s1, s2, s3)
	}

	var got []wire.Interaction
	eventually(t, 5*time.Second, "bob receives the chat", func() bool {
		got = append(got, bob.Interactions()...)
		return len(got) > 0
	})
	want := wire.Interaction{From: alice.Entity(), Seq: s2, Kind: wire.InteractChat, Data: []byte("hi!")}
	if g := got[0]; len(got) != 1 || g.From != want.From || g.Seq != want.Seq || g.Kind != want.Kind || string(g.Data) != "hi!" || g.Tick == 0 {
		t.Fatalf("bob received %+v, want one %+v", got, want)
	}
	eventually(t, 5*time.Second, "alice's messages acknowledged", func() bool { return alice.Stats().LastInputSeq == s3 })

	// Both keep receiving snapshots; nothing in this calm world may show as a seam.
	time.Sleep(200 * time.Millisecond)
	for name, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
		st := c.Stats()
		if st.Flickers != 0 || st.TickRegressions != 0 || st.BaselineMisses != 0 || st.DecodeErrors != 0 || st.AckRegressions != 0 || st.UnexpectedWelcomes != 0 {
			t.Errorf("%s: %+v", name, st)
		}
	}
	if st := alice.Stats(); st.InputSeqSent != 3 || st.Interactions != 0 {
		t.Errorf("alice: sent up to %d, received %d interactions; want 3 and 0", st.InputSeqSent, st.Interactions)
	}
	if st := bob.Stats(); st.Interactions != 1 || st.DuplicateInteractions != 0 || st.InteractionsDropped != 0 {
		t.Errorf("bob: %d interactions (%d duplicates, %d dropped), want 1", st.Interactions, st.DuplicateInteractions, st.InteractionsDropped)
	}
	if err := alice.Close(); err != nil || alice.Err() != nil {
		t.Fatalf("close: %v, %v", err, alice.Err())
	}
	if _, err := alice.SendInteract(bob.Entity(), wire.InteractAttack, nil); err == nil {
		t.Fatal("interact after close: no error")
	}
}

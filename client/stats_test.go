package client

import (
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// feed encodes view cur at tick against baseline base (tick bt, 0: full state) and hands the
// snapshot to c as if it had arrived, returning whether c accepted it.
func feed(t *testing.T, c *Client, tick, bt wire.Tick, lastSeq uint32, base, cur []wire.ViewSlot) bool {
	t.Helper()
	frame, err := wire.AppendSnapshot(nil, wire.SnapshotHeader{ServerTick: tick, BaselineTick: bt, LastInputSeq: lastSeq, SlotCount: len(cur)}, base, cur)
	if err != nil {
		t.Fatal(err)
	}
	var snap wire.Snapshot
	_, ok := c.onSnapshot(frame[3:], &snap)
	return ok
}

func newTestClient() *Client {
	return &Client{cfg: DefaultConfig("127.0.0.1:1", []byte("t")), history: make([]decoded, 64),
		welcome: wire.Welcome{Entity: 1, TickHz: 20}, left: map[wire.EntityID]wire.Tick{}}
}

func view(ids ...wire.EntityID) []wire.ViewSlot {
	v := make([]wire.ViewSlot, len(ids))
	for i, id := range ids {
		if id != 0 {
			v[i] = wire.ViewSlot{ID: id, State: wire.EntityState{X: int32(id) * 64}}
		}
	}
	return v
}

func TestStatsFlickers(t *testing.T) {
	c := newTestClient()
	steps := []struct {
		tick wire.Tick
		view []wire.ViewSlot
	}{
		{10, view(1, 2, 3, 4)},
		{11, view(1, 0, 3, 4)},    // 2 leaves at 11 …
		{12, view(1, 2, 3, 4)},    // … and is back at 12: a flicker
		{13, view(1, 2, 4, 3)},    // 3 and 4 swap slots: still in view
		{14, view(1, 2, 0, 0, 5)}, // 3 and 4 leave at 14, 5 enters
		{20, view(1, 2, 0, 3, 5)}, // 3 back after 6 ticks: not a flicker
		{21, view(1, 0, 0, 3, 5)}, // 2 leaves at 21 …
		{26, view(1, 3, 0, 0, 5)}, // … snapshots 22–25 lost; 2 is not back; 3 changed slots
		{27, view(1, 3, 2, 4, 5)}, // 2 back 6 ticks after it left: not a flicker; 4 long gone
		{28, view(0, 3, 2, 4, 5)}, // the client's own entity leaves …
		{31, view(1, 3, 2, 4, 5)}, // … and is back 3 ticks later: a flicker
	}
	prev, prevTick := []wire.ViewSlot(nil), wire.Tick(0)
	for _, s := range steps {
		if !feed(t, c, s.tick, prevTick, 0, prev, s.view) {
			t.Fatalf("tick %d: snapshot refused", s.tick)
		}
		prev, prevTick = s.view, s.tick
	}
	st := c.Stats()
	if st.Flickers != 2 || st.DecodeErrors != 0 || st.SnapshotsReceived != uint64(len(steps)) {
		t.Fatalf("flickers %d (want 2), decode errors %d, snapshots %d", st.Flickers, st.DecodeErrors, st.SnapshotsReceived)
	}
	if f := c.RecentFlickers(); len(f) != 2 || f[0].Entity != 2 || f[0].Left != 11 || f[0].Back != 12 || f[0].At.X != 2*64 || !f[0].SelfInView ||
		f[1].Entity != 1 || f[1].Left != 28 || f[1].Back != 31 || !f[1].SelfInView || f[1].Self.X != 64 {
		t.Fatalf("flicker records %+v", f)
	}
	if len(c.left) > 1 {
		t.Fatalf("%d entities remembered as recently left, want ≤ 1: %v", len(c.left), c.left)
	}
}

// TestStatsNoFlickerAfterGap: after a gap of more than FlickerTicks between two snapshots (a
// session resumed on another server after its server died), entities that are missing from the
// first snapshot and pop in a tick later are no flickers: they were not seen since before the
// gap. The same ticks after a short gap are.
func TestStatsNoFlickerAfterGap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ticks [3]wire.Tick
		want  uint64
	}{
		{"resumed after 129 ticks", [3]wire.Tick{249, 378, 380}, 0},
		{"a gap of FlickerTicks+1", [3]wire.Tick{10, 10 + FlickerTicks + 1, 10 + FlickerTicks + 2}, 0},
		{"a gap of FlickerTicks", [3]wire.Tick{10, 10 + FlickerTicks, 10 + FlickerTicks + 1}, 2},
		{"no gap", [3]wire.Tick{10, 11, 12}, 2},
	} {
		c := newTestClient()
		views := [][]wire.ViewSlot{view(1, 2, 3), view(1), view(1, 2, 3)}
		for i, v := range views {
			if !feed(t, c, tc.ticks[i], 0, 0, nil, v) {
				t.Fatalf("%s: tick %d refused", tc.name, tc.ticks[i])
			}
		}
		if got := c.Stats().Flickers; got != tc.want {
			t.Errorf("%s: %d flickers, want %d", tc.name, got, tc.want)
		}
	}
}

// TestStatsFlickerFullState: a new owner's full-state view that assigns every slot anew is no
// flicker, however many entities changed slots.
func TestStatsFlickerFullState(t *testing.T) {
	c := newTestClient()
	var a, b []wire.EntityID
	for i := range 100 {
		a = append(a, wire.EntityID(i+1))
		b = append(b, wire.EntityID(100-i))
	}
	if !feed(t, c, 5, 0, 0, nil, view(a...)) || !feed(t, c, 6, 0, 0, nil, view(b...)) {
		t.Fatal("snapshot refused")
	}
	if f := c.Stats().Flickers; f != 0 {
		t.Fatalf("%d flickers, want 0", f)
	}
	// Half of them gone for a tick: 50 flickers.
	if !feed(t, c, 7, 6, 0, view(b...), view(b[:50]...)) || !feed(t, c, 8, 0, 0, nil, view(a...)) {
		t.Fatal("snapshot refused")
	}
	if f := c.Stats().Flickers; f != 50 {
		t.Fatalf("%d flickers, want 50", f)
	}
}

func TestStatsRegressionsAndBaselines(t *testing.T) {
	c := newTestClient()
	v := view(1, 2)
	if !feed(t, c, 10, 0, 3, nil, v) || !feed(t, c, 11, 10, 5, v, v) {
		t.Fatal("snapshot refused")
	}
	if feed(t, c, 11, 10, 5, v, v) || feed(t, c, 9, 0, 5, nil, v) {
		t.Fatal("a snapshot not newer than the newest accepted")
	}
	if feed(t, c, 13, 12, 5, v, v) { // baseline 12 never arrived
		t.Fatal("a snapshot against a missing baseline accepted")
	}
	if !feed(t, c, 14, 11, 4, v, v) { // the ack went backwards
		t.Fatal("snapshot refused")
	}
	st := c.Stats()
	if st.TickRegressions != 2 || st.BaselineMisses != 1 || st.DecodeErrors != 1 || st.AckRegressions != 1 || st.LastInputSeq != 5 {
		t.Fatalf("stats %+v: want 2 tick regressions, 1 baseline miss (1 decode error), 1 ack regression, last input seq 5", st)
	}
	// Of the three accepted (10, 11, 14), only tick 10 was not a delta; refused ones do not count.
	if st.SnapshotsReceived != 3 || st.FullSnapshots != 1 {
		t.Fatalf("stats %+v: want 3 snapshots received, 1 of them full", st)
	}
}

func TestInteractionQueue(t *testing.T) {
	c := newTestClient()
	frame := func(from wire.EntityID, seq uint32) []byte {
		return (&wire.Interaction{From: from, Seq: seq, Tick: 9, Kind: wire.InteractChat, Data: []byte("hi")}).AppendFrame(nil)[3:]
	}
	for i := range MaxQueuedInteractions + 10 {
		c.onInteraction(frame(7, uint32(i+1)))
	}
	c.onInteraction(frame(7, MaxQueuedInteractions+10)) // a repeat of the newest
	c.onInteraction([]byte{1, 2, 3})                    // truncated
	got := c.Interactions()
	if len(got) != MaxQueuedInteractions || got[0].Seq != 12 || got[len(got)-1].Seq != MaxQueuedInteractions+10 {
		t.Fatalf("queue holds %d, first seq %d, last %d", len(got), got[0].Seq, got[len(got)-1].Seq)
	}
	if again := c.Interactions(); len(again) != 0 {
		t.Fatalf("queue not drained: %d left", len(again))
	}
	st := c.Stats()
	if st.Interactions != MaxQueuedInteractions+11 || st.InteractionsDropped != 11 || st.DuplicateInteractions != 1 || st.DecodeErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

package wire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func ent(id EntityID, x, z, vx, vz int32) ViewSlot {
	return ViewSlot{ID: id, State: EntityState{X: x, Y: 100, Z: z, VX: vx, VZ: vz, Yaw: 512, Kind: 1}}
}

// advance returns view with every entity moved dt ticks at its own velocity.
func advance(view []ViewSlot, dt uint32) []ViewSlot {
	out := slices.Clone(view)
	for i := range out {
		if out[i].ID != 0 {
			out[i].State = out[i].State.Predict(dt)
		}
	}
	return out
}

func mustAppend(t testing.TB, h SnapshotHeader, base, cur []ViewSlot) []byte {
	t.Helper()
	frame, err := AppendSnapshot(nil, h, base, cur)
	if err != nil {
		t.Fatalf("AppendSnapshot: %v", err)
	}
	typ, payload, rest, err := SplitFrame(frame)
	if err != nil || typ != MsgSnapshot || len(rest) != 0 {
		t.Fatalf("snapshot frame: %v %v %d", typ, err, len(rest))
	}
	return payload
}

func mustDecode(t testing.TB, payload []byte, base []ViewSlot) *Snapshot {
	t.Helper()
	var s Snapshot
	if err := DecodeSnapshot(payload, base, &s); err != nil {
		t.Fatalf("DecodeSnapshot: %v", err)
	}
	return &s
}

// Constant-velocity and absent entities cost one bit each.
func TestSnapshotUnchangedCostsOneBit(t *testing.T) {
	base := make([]ViewSlot, 64)
	for i := range 60 {
		base[i] = ent(EntityID(1000+i), int32(i*1000), -int32(i*999), int32(i%23-11), int32(i%7-3))
	}
	cur := advance(base, 3)
	h := SnapshotHeader{ServerTick: 103, BaselineTick: 100, LastInputSeq: 9, SlotCount: 64}
	payload := mustAppend(t, h, base, cur)
	headerBits := 32 + 6 + 32 + 11
	if want := (headerBits + 64 + 7) / 8; len(payload) != want {
		t.Fatalf("payload %d bytes, want %d (1 bit per slot)", len(payload), want)
	}
	s := mustDecode(t, payload, base)
	if s.Header != h || !reflect.DeepEqual(s.Slots, cur) || len(s.Events) != 0 {
		t.Fatalf("decoded %+v, %d events", s.Header, len(s.Events))
	}
}

func TestSnapshotEvents(t *testing.T) {
	base := []ViewSlot{
		ent(1, 0, 0, 1, 1),   // 0: unchanged (moves as predicted)
		ent(2, 0, 0, 0, 0),   // 1: update (turns)
		ent(3, 0, 0, 0, 0),   // 2: leaves
		{},                   // 3: 7 enters
		ent(4, 0, 0, 0, 0),   // 4: replaced by 8
		{},                   // 5: stays empty
		ent(5, 0, 0, 0, 0),   // 6: beyond the new slot count: implicit leave
		{},                   // 7: empty, beyond: nothing
		ent(6, 10, 10, 0, 0), // 8: implicit leave
	}
	cur := []ViewSlot{
		ent(1, 2, 2, 1, 1),
		{ID: 2, State: EntityState{X: 1, Y: 100, Z: -1, VX: 5, VZ: -5, Yaw: 3, Kind: 1, Action: 9}},
		{},
		ent(7, -5, 5, 0, 0),
		{ID: 1 << 40, State: EntityState{X: math.MinInt32, Y: math.MaxInt32, Z: -1, VX: math.MinInt32, VZ: math.MaxInt32, Yaw: 1023, Kind: 255, Action: 255}},
		{},
	}
	h := SnapshotHeader{ServerTick: 12, BaselineTick: 10, SlotCount: len(cur)}
	s := mustDecode(t, mustAppend(t, h, base, cur), base)
	if !reflect.DeepEqual(s.Slots, cur) {
		t.Fatalf("slots:\n got %+v\nwant %+v", s.Slots, cur)
	}
	want := []SlotEvent{
		{EventUpdate, 1, 2}, {EventLeave, 2, 3}, {EventEnter, 3, 7},
		{EventLeave, 4, 4}, {EventEnter, 4, 1 << 40}, {EventLeave, 6, 5}, {EventLeave, 8, 6},
	}
	if !reflect.DeepEqual(s.Events, want) {
		t.Fatalf("events:\n got %v\nwant %v", s.Events, want)
	}
	// The same view as full state: every entity enters, the baseline is ignored.
	h.BaselineTick = 0
	s = mustDecode(t, mustAppend(t, h, base, cur), base)
	want = []SlotEvent{{EventEnter, 0, 1}, {EventEnter, 1, 2}, {EventEnter, 3, 7}, {EventEnter, 4, 1 << 40}}
	if !reflect.DeepEqual(s.Slots, cur) || !reflect.DeepEqual(s.Events, want) {
		t.Fatalf("full state: slots %+v events %v", s.Slots, s.Events)
	}
}

func TestSnapshotDecodeInPlace(t *testing.T) {
	base := []ViewSlot{ent(1, 0, 0, 1, 0), ent(2, 0, 0, 0, 0), {}, ent(3, 0, 0, 0, 0)}
	cur := []ViewSlot{ent(1, 5, 0, 1, 0), {}, ent(4, 1, 1, 1, 1)}
	payload := mustAppend(t, SnapshotHeader{ServerTick: 9, BaselineTick: 4, SlotCount: 3}, base, cur)
	view := slices.Clone(base)
	s := Snapshot{Slots: view}
	if err := DecodeSnapshot(payload, view, &s); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Slots, cur) || &s.Slots[0] != &view[0] {
		t.Fatalf("in place: %+v", s.Slots)
	}
	if want := []SlotEvent{{EventLeave, 1, 2}, {EventEnter, 2, 4}, {EventLeave, 3, 3}}; !reflect.DeepEqual(s.Events, want) {
		t.Fatalf("events %v", s.Events)
	}
}

func TestSnapshotEncoderErrors(t *testing.T) {
	cur := []ViewSlot{ent(1, 0, 0, 0, 0)}
	for _, c := range []struct {
		h    SnapshotHeader
		cur  []ViewSlot
		want error
	}{
		{SnapshotHeader{ServerTick: 0, SlotCount: 1}, cur, ErrValueOutOfRange},
		{SnapshotHeader{ServerTick: 5, BaselineTick: 5, SlotCount: 1}, cur, ErrBadBaseline},
		{SnapshotHeader{ServerTick: 5, BaselineTick: 6, SlotCount: 1}, cur, ErrBadBaseline},
		{SnapshotHeader{ServerTick: 5, SlotCount: 2}, cur, ErrSlotCount},
		{SnapshotHeader{ServerTick: 5, SlotCount: -1}, nil, ErrSlotCount},
		{SnapshotHeader{ServerTick: 5, SlotCount: MaxViewSlots + 1}, make([]ViewSlot, MaxViewSlots+1), ErrTooManySlots},
		{SnapshotHeader{ServerTick: 5, SlotCount: 1}, []ViewSlot{{ID: 1, State: EntityState{Yaw: YawSteps}}}, ErrValueOutOfRange},
	} {
		dst := []byte{1, 2, 3}
		got, err := AppendSnapshot(dst, c.h, nil, c.cur)
		if !errors.Is(err, c.want) || !bytes.Equal(got, dst) {
			t.Errorf("%+v: % x, %v; want %v", c.h, got, err, c.want)
		}
	}
	// Slot called too often or too rarely.
	var e SnapshotEncoder
	for _, calls := range []int{0, 1, 3} {
		e.Begin(nil, SnapshotHeader{ServerTick: 1, SlotCount: 2})
		for range calls {
			e.Slot(nil, nil)
		}
		if _, err := e.Finish(); !errors.Is(err, ErrSlotCount) {
			t.Errorf("%d Slot calls for 2 slots: %v", calls, err)
		}
	}
	// A yaw out of range in an update.
	base := []ViewSlot{ent(1, 0, 0, 0, 0)}
	bad := []ViewSlot{{ID: 1, State: EntityState{Yaw: 2000}}}
	if _, err := AppendSnapshot(nil, SnapshotHeader{ServerTick: 5, BaselineTick: 4, SlotCount: 1}, base, bad); !errors.Is(err, ErrValueOutOfRange) {
		t.Errorf("bad yaw in update: %v", err)
	}
}

// snapshotBits builds a payload by hand.
func snapshotBits(f func(w *BitWriter)) []byte {
	var w BitWriter
	f(&w)
	return w.Flush()
}

func zeros(w *BitWriter, n int) {
	for ; n > 0; n -= 64 {
		w.WriteBits(0, min(n, 64))
	}
}

func header(w *BitWriter, tick Tick, d uint32, slots int) {
	w.WriteBits(uint64(tick), 32)
	w.WriteUnsignedCode(d)
	w.WriteBits(7, 32)
	w.WriteBits(uint64(slots), 11)
}

func TestSnapshotDecodeErrors(t *testing.T) {
	base := []ViewSlot{ent(1, 0, 0, 0, 0), {}}
	valid := mustAppend(t, SnapshotHeader{ServerTick: 10, BaselineTick: 8, SlotCount: 2}, base,
		[]ViewSlot{ent(1, 0, 3, 0, 0), ent(9, 1, 1, 1, 1)})
	cases := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"trailing byte", append(slices.Clone(valid), 0), ErrTrailingBytes},
		{"tick 0", snapshotBits(func(w *BitWriter) { header(w, 0, 0, 0) }), ErrValueOutOfRange},
		{"baseline tick 0", snapshotBits(func(w *BitWriter) { header(w, 5, 5, 0) }), ErrBadBaseline},
		{"baseline before 0", snapshotBits(func(w *BitWriter) { header(w, 5, 300, 0) }), ErrBadBaseline},
		{"too many slots", snapshotBits(func(w *BitWriter) { header(w, 5, 0, MaxViewSlots+1) }), ErrTooManySlots},
		{"non-zero padding", snapshotBits(func(w *BitWriter) { header(w, 5, 0, 1); w.WriteBits(0b01, 2) }), ErrNonCanonical},
		{"zero padding ok but byte too many", snapshotBits(func(w *BitWriter) { header(w, 5, 0, 0); w.WriteBits(0, 9) }), ErrTrailingBytes},
		{"update of empty slot", snapshotBits(func(w *BitWriter) { header(w, 10, 2, 2); w.WriteBits(0b0, 1); w.WriteBits(0b10, 2) }), ErrBadBaseline},
		{"leave of empty slot", snapshotBits(func(w *BitWriter) { header(w, 10, 2, 2); w.WriteBits(0b0, 1); w.WriteBits(0b110, 3) }), ErrBadBaseline},
		{"update in full state", snapshotBits(func(w *BitWriter) { header(w, 10, 0, 1); w.WriteBits(0b10, 2) }), ErrBadBaseline},
		{"empty update", snapshotBits(func(w *BitWriter) { header(w, 10, 2, 1); w.WriteBits(0b10_0000, 6) }), ErrNonCanonical},
		{"zero position delta", snapshotBits(func(w *BitWriter) { header(w, 10, 2, 1); w.WriteBits(0b10_1_000_000, 9) }), ErrNonCanonical},
		{"zero velocity delta", snapshotBits(func(w *BitWriter) { header(w, 10, 2, 1); w.WriteBits(0b10_0_1_00_000, 9) }), ErrNonCanonical},
		{"same yaw", snapshotBits(func(w *BitWriter) {
			header(w, 10, 2, 1)
			w.WriteBits(0b10_0_0_1, 5)
			w.WriteBits(512, 10)
			w.WriteBits(0, 1)
		}), ErrNonCanonical},
		{"same kind", snapshotBits(func(w *BitWriter) { header(w, 10, 2, 1); w.WriteBits(0b10_0_0_0_1, 6); w.WriteBits(1<<8, 16) }), ErrNonCanonical},
		{"enter of id 0", snapshotBits(func(w *BitWriter) { header(w, 10, 0, 1); w.WriteBits(0b111_0, 4); zeros(w, 32+96+2+26) }), ErrValueOutOfRange},
		{"enter of the same entity", snapshotBits(func(w *BitWriter) {
			header(w, 10, 2, 1)
			w.WriteBits(0b111_0, 4)
			w.WriteBits(1, 32)
			zeros(w, 96+2+26)
		}), ErrNonCanonical},
		{"64-bit form of a small id", snapshotBits(func(w *BitWriter) {
			header(w, 10, 0, 1)
			w.WriteBits(0b111_1, 4)
			w.WriteBits(5, 64)
			zeros(w, 96+2+26)
		}), ErrNonCanonical},
		{"long tick code", snapshotBits(func(w *BitWriter) { w.WriteBits(10, 32); w.WriteBits(0b111, 3); w.WriteBits(2, 32); w.WriteBits(0, 43) }), ErrNonCanonical},
	}
	for _, c := range cases {
		var s Snapshot
		s.Slots = append(s.Slots, ent(5, 5, 5, 5, 5))
		err := DecodeSnapshot(c.payload, base, &s)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if len(s.Slots) != 0 || len(s.Events) != 0 || s.Header != (SnapshotHeader{}) {
			t.Errorf("%s: out not emptied on error", c.name)
		}
	}
	for n := range len(valid) {
		var s Snapshot
		if err := DecodeSnapshot(valid[:n], base, &s); !errors.Is(err, ErrTruncated) {
			t.Errorf("payload cut to %d bytes: %v", n, err)
		}
	}
	if err := DecodeSnapshot(valid, make([]ViewSlot, MaxViewSlots+1), new(Snapshot)); !errors.Is(err, ErrTooManySlots) {
		t.Errorf("oversized baseline: %v", err)
	}
	if h, err := PeekSnapshotHeader(valid); err != nil || h != (SnapshotHeader{ServerTick: 10, BaselineTick: 8, LastInputSeq: 0, SlotCount: 2}) {
		t.Errorf("PeekSnapshotHeader: %+v %v", h, err)
	}
}

// Differences and predictions wrap around int32, on both sides.
func TestSnapshotWrapAround(t *testing.T) {
	base := []ViewSlot{
		{ID: 1, State: EntityState{X: math.MaxInt32 - 1, Z: math.MinInt32 + 1, VX: 3, VZ: -3}},
		{ID: 2, State: EntityState{X: math.MinInt32, Z: math.MaxInt32, VX: math.MaxInt32, VZ: math.MinInt32}},
		{ID: 3, State: EntityState{X: 0, Y: math.MinInt32}},
	}
	cur := advance(base, 7)
	cur[1].State.X = math.MaxInt32 // a difference of ±2^32-ish
	cur[1].State.VX = math.MinInt32
	cur[2].State.Y = math.MaxInt32
	for _, baseline := range []Tick{0, 93} {
		h := SnapshotHeader{ServerTick: 100, BaselineTick: baseline, SlotCount: 3}
		s := mustDecode(t, mustAppend(t, h, base, cur), base)
		if !reflect.DeepEqual(s.Slots, cur) {
			t.Fatalf("baseline %d:\n got %+v\nwant %+v", baseline, s.Slots, cur)
		}
	}
}

func TestViewRing(t *testing.T) {
	var r ViewRing
	if _, ok := r.Get(0); ok {
		t.Fatal("tick 0 found")
	}
	v := []ViewSlot{ent(1, 2, 3, 4, 5)}
	r.Put(0, v) // ignored
	for tick := Tick(1); tick <= 100; tick++ {
		v[0].State.X = int32(tick)
		r.Put(tick, v)
	}
	for tick := Tick(1); tick <= 100; tick++ {
		got, ok := r.Get(tick)
		if held := tick > 100-BaselineWindow; ok != held || ok && got[0].State.X != int32(tick) {
			t.Fatalf("tick %d: %v %v", tick, got, ok)
		}
	}
	r.Put(100-BaselineWindow, v) // older than what its place holds: ignored
	if _, ok := r.Get(100); !ok {
		t.Fatal("an old Put evicted a newer view")
	}
	v[0].State.X = -1
	if got, _ := r.Get(100); got[0].State.X != 100 {
		t.Fatal("Put does not copy")
	}
	r.Reset()
	if _, ok := r.Get(100); ok {
		t.Fatal("Reset kept a view")
	}
	// Decode: a snapshot whose baseline the ring does not hold.
	payload := mustAppend(t, SnapshotHeader{ServerTick: 200, BaselineTick: 150, SlotCount: 0}, nil, nil)
	if err := r.Decode(payload, new(Snapshot)); !errors.Is(err, ErrBadBaseline) {
		t.Fatalf("missing baseline: %v", err)
	}
}

func TestSnapshotNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := make([]ViewSlot, 80)
	for i := range 60 {
		base[i] = ent(EntityID(1+i), rng.Int32N(1e6), rng.Int32N(1e6), rng.Int32N(45)-22, rng.Int32N(45)-22)
	}
	cur := advance(base, 2)
	for i := 0; i < 60; i += 5 {
		cur[i].State.VX++
		cur[i].State.Yaw = uint16(rng.IntN(YawSteps))
	}
	cur[61] = ent(1<<33, 1, 2, 3, 4)
	cur[3] = ViewSlot{}
	h := SnapshotHeader{ServerTick: 1000, BaselineTick: 998, SlotCount: len(cur)}
	buf := make([]byte, 0, 4096)
	var e SnapshotEncoder
	var s Snapshot
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		e.Begin(buf[:0], h)
		for i := range cur {
			e.Slot(&base[i], &cur[i])
		}
		if buf, err = e.Finish(); err != nil {
			t.Fatal(err)
		}
		if buf, err = AppendSnapshot(buf[:0], h, base, cur); err != nil {
			t.Fatal(err)
		}
		if err := DecodeSnapshot(buf[FrameHeaderSize:], base, &s); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per encode+decode", allocs)
	}
	if !reflect.DeepEqual(s.Slots, cur) {
		t.Fatal("decoded view differs")
	}
}

// --- The property test: random view traces over a lossy, reordering link. ---

// traceParams are the knobs of one random trace; rapid shrinks them.
type traceParams struct {
	seed                    uint64
	ticks, maxSlots         int
	start                   Tick
	pLoss, pAckLoss, pDelay float64 // probabilities (snapshot lost, ack lost, delayed up to maxDelay ticks)
	maxDelay                int
	pChange, pEnterLeave    float64
	extreme                 bool // draw extreme int32 values sometimes
}

// world evolves one client's view tick by tick, the way a cell server's AOI would: entities
// keep their slot while in view, move at constant velocity, change velocity/yaw/action, leave,
// and new entities (never reused ids) take free slots.
type world struct {
	rng    *rand.Rand
	p      traceParams
	view   []ViewSlot
	nextID EntityID
}

func (w *world) value(small int32) int32 {
	if w.p.extreme && w.rng.IntN(8) == 0 {
		return []int32{math.MaxInt32, math.MinInt32, math.MaxInt32 - 5, math.MinInt32 + 5, int32(w.rng.Uint32())}[w.rng.IntN(5)]
	}
	return w.rng.Int32N(2*small+1) - small
}

func (w *world) newEntity() ViewSlot {
	w.nextID++
	id := w.nextID
	if w.rng.IntN(4) == 0 {
		id += 1<<32 + EntityID(w.rng.Uint64N(1<<60)) // ids from another server's block
	}
	return ViewSlot{ID: id, State: EntityState{
		X: w.value(1 << 24), Y: w.value(1 << 12), Z: w.value(1 << 24),
		VX: w.value(22), VZ: w.value(22),
		Yaw: uint16(w.rng.IntN(YawSteps)), Kind: uint8(w.rng.IntN(4)), Action: uint8(w.rng.IntN(3)),
	}}
}

func (w *world) step() {
	r := w.rng
	// The slot count changes now and then (trailing slots dropped or added).
	if r.Float64() < w.p.pEnterLeave/4 {
		n := min(w.p.maxSlots, max(0, len(w.view)+r.IntN(7)-3))
		for len(w.view) < n {
			w.view = append(w.view, ViewSlot{})
		}
		w.view = w.view[:n]
	}
	for i := range w.view {
		s := &w.view[i]
		if s.ID == 0 {
			if r.Float64() < w.p.pEnterLeave {
				*s = w.newEntity()
			}
			continue
		}
		s.State = s.State.Predict(1)
		if r.Float64() >= w.p.pChange {
			continue
		}
		switch r.IntN(9) {
		case 0, 1:
			s.State.VX, s.State.VZ = w.value(22), w.value(22)
			s.State.Yaw = uint16(r.IntN(YawSteps))
		case 2:
			s.State.Yaw = uint16(r.IntN(YawSteps))
		case 3:
			s.State.Action = uint8(r.IntN(4))
		case 4:
			s.State.X += w.value(1000) // teleport / correction
			s.State.Z += w.value(5000)
		case 5:
			s.State.Y += w.value(100)
		case 6:
			*s = ViewSlot{} // leaves
		case 7:
			*s = w.newEntity() // slot reused at once by another entity
		case 8:
			j := r.IntN(len(w.view)) // moves to another slot (swap)
			w.view[i], w.view[j] = w.view[j], w.view[i]
		}
	}
}

type inflight[T any] struct {
	at  int // tick index of delivery
	val T
}

// deliver removes and returns the items due at tick k, in a shuffled order.
func deliver[T any](rng *rand.Rand, q *[]inflight[T], k int) []T {
	var due []T
	kept := (*q)[:0]
	for _, it := range *q {
		if it.at <= k {
			due = append(due, it.val)
		} else {
			kept = append(kept, it)
		}
	}
	*q = kept
	rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	return due
}

func expectedEvents(base, cur []ViewSlot, d uint32) []SlotEvent {
	var ev []SlotEvent
	for i, c := range cur {
		var b ViewSlot
		if i < len(base) {
			b = base[i]
		}
		switch {
		case b.ID == 0 && c.ID == 0:
		case c.ID == 0:
			ev = append(ev, SlotEvent{EventLeave, uint16(i), b.ID})
		case b.ID == c.ID:
			if b.State.Predict(d) != c.State {
				ev = append(ev, SlotEvent{EventUpdate, uint16(i), c.ID})
			}
		default:
			if b.ID != 0 {
				ev = append(ev, SlotEvent{EventLeave, uint16(i), b.ID})
			}
			ev = append(ev, SlotEvent{EventEnter, uint16(i), c.ID})
		}
	}
	for i := len(cur); i < len(base); i++ {
		if base[i].ID != 0 {
			ev = append(ev, SlotEvent{EventLeave, uint16(i), base[i].ID})
		}
	}
	return ev
}

// runTrace simulates a server and a client over a lossy, reordering link and checks every
// snapshot the client receives. It returns a description of the first failure.
func runTrace(p traceParams) error {
	rng := rand.New(rand.NewPCG(p.seed, 0x5eed))
	w := &world{rng: rng, p: p, nextID: 1}
	w.view = make([]ViewSlot, p.maxSlots/2+rng.IntN(p.maxSlots/2+1))
	for i := range w.view {
		if rng.IntN(4) != 0 {
			w.view[i] = w.newEntity()
		}
	}

	var (
		srvRing   ViewRing                // views the server sent, by tick
		srvViews  = map[Tick][]ViewSlot{} // every view, to check the client against
		newestAck Tick
		snaps     []inflight[[]byte]
		acks      []inflight[Tick]
		history   = map[Tick][]ViewSlot{} // the client's decoded views (unbounded)
		ringCl    ViewRing                // a second client keeping only BaselineWindow views
		reordered bool
		out, full Snapshot
	)
	for k := 0; k < p.ticks; k++ {
		tick := p.start + Tick(k)
		if k > 0 {
			w.step()
		}
		view := slices.Clone(w.view)
		srvViews[tick] = view

		// Acks that arrive now move the baseline.
		for _, a := range deliver(rng, &acks, k) {
			newestAck = max(newestAck, a)
		}
		h := SnapshotHeader{ServerTick: tick, LastInputSeq: uint32(k * 3), SlotCount: len(view)}
		var base []ViewSlot
		if b, ok := srvRing.Get(newestAck); ok {
			h.BaselineTick, base = newestAck, b
		}
		frame, err := AppendSnapshot(nil, h, base, view)
		if err != nil {
			return fmt.Errorf("tick %d: encode: %w", tick, err)
		}
		srvRing.Put(tick, view)
		if statsHook != nil {
			statsHook(k, view, h, len(frame))
		}

		// The full-state encoding of the same view decodes to the same view.
		fh := h
		fh.BaselineTick = 0
		fullFrame, err := AppendSnapshot(nil, fh, nil, view)
		if err != nil {
			return fmt.Errorf("tick %d: encode full: %w", tick, err)
		}
		if err := DecodeSnapshot(fullFrame[FrameHeaderSize:], nil, &full); err != nil {
			return fmt.Errorf("tick %d: decode full: %w", tick, err)
		}
		if !slices.Equal(full.Slots, view) {
			return fmt.Errorf("tick %d: full-state decode differs from the view", tick)
		}
		if h.BaselineTick != 0 && len(frame) > len(fullFrame)+16 {
			// Not a correctness property, but a delta should never be much worse than full state.
			return fmt.Errorf("tick %d: delta %d bytes, full %d", tick, len(frame), len(fullFrame))
		}

		if rng.Float64() >= p.pLoss {
			delay := 1
			if rng.Float64() < p.pDelay {
				delay += rng.IntN(p.maxDelay + 1)
				reordered = true
			}
			snaps = append(snaps, inflight[[]byte]{k + delay, frame})
		}
		for _, f := range deliver(rng, &snaps, k) {
			payload := f[FrameHeaderSize:]
			hh, err := PeekSnapshotHeader(payload)
			if err != nil {
				return err
			}
			var base []ViewSlot
			if hh.BaselineTick != 0 {
				var ok bool
				if base, ok = history[hh.BaselineTick]; !ok {
					return fmt.Errorf("tick %d: baseline %d never decoded by the client", hh.ServerTick, hh.BaselineTick)
				}
			}
			if err := DecodeSnapshot(payload, base, &out); err != nil {
				return fmt.Errorf("tick %d (baseline %d): %w", hh.ServerTick, hh.BaselineTick, err)
			}
			want := srvViews[hh.ServerTick]
			if out.Header != hh || !slices.Equal(out.Slots, want) {
				return fmt.Errorf("tick %d (baseline %d): decoded view differs:\n got %+v\nwant %+v", hh.ServerTick, hh.BaselineTick, out.Slots, want)
			}
			if !slices.Equal(out.Slots, fullDecode(want, hh)) {
				return fmt.Errorf("tick %d: delta and full decodes differ", hh.ServerTick)
			}
			if ev := expectedEvents(base, want, uint32(hh.ServerTick-hh.BaselineTick)); !slices.Equal(out.Events, ev) {
				return fmt.Errorf("tick %d (baseline %d): events\n got %v\nwant %v", hh.ServerTick, hh.BaselineTick, out.Events, ev)
			}
			history[hh.ServerTick] = slices.Clone(out.Slots)

			// The ViewRing client gets the same snapshots; with reordering it may have
			// dropped the baseline, and only then may it fail.
			var rs Snapshot
			if err := ringCl.Decode(payload, &rs); err != nil {
				if !reordered || !errors.Is(err, ErrBadBaseline) {
					return fmt.Errorf("tick %d: ViewRing client: %w", hh.ServerTick, err)
				}
			} else if !slices.Equal(rs.Slots, want) {
				return fmt.Errorf("tick %d: ViewRing client decoded another view", hh.ServerTick)
			}

			// The client acks what it decoded; acks get lost and reordered too.
			if rng.Float64() >= p.pAckLoss {
				delay := 1
				if rng.Float64() < p.pDelay {
					delay += rng.IntN(p.maxDelay + 1)
				}
				acks = append(acks, inflight[Tick]{k + delay, hh.ServerTick})
			}
		}
	}
	return nil
}

var debugProps = false

var statsHook func(k int, view []ViewSlot, h SnapshotHeader, n int)

func fullDecode(view []ViewSlot, h SnapshotHeader) []ViewSlot {
	h.BaselineTick = 0
	frame, err := AppendSnapshot(nil, h, nil, view)
	if err != nil {
		return nil
	}
	var s Snapshot
	if DecodeSnapshot(frame[FrameHeaderSize:], nil, &s) != nil {
		return nil
	}
	return s.Slots
}

func TestSnapshotDeltaProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := traceParams{
			seed:        rapid.Uint64().Draw(t, "seed"),
			ticks:       rapid.IntRange(1, 400).Draw(t, "ticks"),
			maxSlots:    rapid.IntRange(0, 64).Draw(t, "maxSlots"),
			start:       rapid.SampledFrom([]Tick{1, 1000, math.MaxUint32 - 500}).Draw(t, "start"),
			pLoss:       rapid.SampledFrom([]float64{0, 0.1, 0.5}).Draw(t, "pLoss"),
			pAckLoss:    rapid.SampledFrom([]float64{0, 0.2, 0.7}).Draw(t, "pAckLoss"),
			pDelay:      rapid.SampledFrom([]float64{0, 0.2, 0.6}).Draw(t, "pDelay"),
			maxDelay:    rapid.IntRange(0, 40).Draw(t, "maxDelay"),
			pChange:     rapid.SampledFrom([]float64{0, 0.05, 0.3, 1}).Draw(t, "pChange"),
			pEnterLeave: rapid.SampledFrom([]float64{0, 0.05, 0.3}).Draw(t, "pEnterLeave"),
			extreme:     rapid.Bool().Draw(t, "extreme"),
		}
		if debugProps {
			fmt.Printf("%+v\n", p)
		}
		if err := runTrace(p); err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
	})
}

// A long, mostly-moving trace with the realistic link of the benchmark (every snapshot
// delivered, acks 2–3 ticks late), as a plain deterministic test.
func TestSnapshotLongTrace(t *testing.T) {
	p := traceParams{seed: 42, ticks: 2000, maxSlots: 64, start: 1, pDelay: 0.5, maxDelay: 1,
		pChange: 0.02, pEnterLeave: 0.01}
	if testing.Short() {
		p.ticks = 300
	}
	if err := runTrace(p); err != nil {
		t.Fatal(err)
	}
}

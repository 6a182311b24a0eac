package wire

import (
	"fmt"
	"slices"
)

// Snapshots. A snapshot is one client's view at one server tick, written as one record per view
// slot against a baseline: the client's decoded view at an earlier tick that it acknowledged
// (Quake 3 / Fiedler model). The payload is a bit stream (see bits.go):
//
//	serverTick:32  d:ucode  lastInputSeq:32  slotCount:11  record × slotCount  zero padding
//
// d = serverTick − baselineTick, with d = 0 meaning "no baseline" (full state); ucode is the
// unsigned prefix code and scode below the signed one. With B the baseline's slot i (empty if
// there is no baseline or the baseline view has ≤ i slots), C the current slot i, and
// P = B.State.Predict(d), the record of slot i is:
//
//	0    unchanged: B and C empty, or the same entity with C.State == P
//	10   update:    the same entity, C.State != P; then a delta record against P:
//	       1 bit: position differs → scode(C.X−P.X) scode(C.Z−P.Z) scode(C.Y−P.Y)
//	       1 bit: velocity differs → scode(C.VX−P.VX) scode(C.VZ−P.VZ)
//	       1 bit: yaw differs      → yaw:10
//	       1 bit: kind or action   → kind:8 action:8
//	110  leave:     B held an entity, C is empty
//	111  enter:     C holds an entity and B is empty or holds another one; then
//	       0 id:32 | 1 id:64 (the 64-bit form only for ids ≥ 2^32)
//	       x:32 y:32 z:32 (two's complement) scode(vx) scode(vz) yaw:10 kind:8 action:8
//
// Baseline slots at index ≥ slotCount that held entities have left. All arithmetic on the int32
// fields (differences, prediction) wraps around modulo 2^32. Only this encoding is canonical:
// decoders reject a redundant record (an update that changes nothing, a flag whose fields are all
// unchanged, an enter of the baseline's own entity) with ErrNonCanonical.

// BaselineWindow is how many recent ticks' views a server keeps per client to delta against,
// and a client keeps to decode with (see ViewRing). An ack older than that gets full state.
const BaselineWindow = 32

// Bits of the snapshot header fields.
const (
	slotCountBits = 11 // enough for MaxViewSlots
	id32Limit     = 1 << 32
)

// Record tags, as written (MSB first).
const (
	tagUnchanged = 0b0   // 1 bit
	tagUpdate    = 0b10  // 2 bits
	tagLeave     = 0b110 // 3 bits
	tagEnter     = 0b111 // 3 bits
)

// SnapshotEncoder writes one snapshot frame at a time: Begin, then Slot once per slot in slot
// order, then Finish. The zero value is ready; reusing one encoder (and the destination buffer)
// makes encoding allocation-free. It is not safe for concurrent use.
type SnapshotEncoder struct {
	w     BitWriter
	start int // offset of the frame in the destination
	h     SnapshotHeader
	d     uint32 // h.ServerTick − h.BaselineTick, 0 without a baseline
	slots int    // Slot calls since Begin
	err   error
}

// Begin starts a snapshot frame (length prefix, MsgSnapshot, payload) appended to dst, which
// Finish returns. With h.BaselineTick == 0 the snapshot is full state and Slot ignores base.
// An invalid header (ServerTick 0, BaselineTick not before ServerTick, SlotCount outside
// 0..MaxViewSlots) is reported by Finish.
func (e *SnapshotEncoder) Begin(dst []byte, h SnapshotHeader) {
	buf, start := BeginFrame(dst, MsgSnapshot)
	e.w.Reset(buf)
	e.start = start
	e.h = h
	e.d = 0
	e.slots = 0
	e.err = checkHeader(h)
	if e.err != nil {
		return
	}
	if h.BaselineTick != 0 {
		e.d = uint32(h.ServerTick - h.BaselineTick)
	}
	e.w.WriteBits(uint64(h.ServerTick), 32)
	e.w.WriteUnsignedCode(e.d)
	e.w.WriteBits(uint64(h.LastInputSeq), 32)
	e.w.WriteBits(uint64(h.SlotCount), slotCountBits)
}

func checkHeader(h SnapshotHeader) error {
	switch {
	case h.ServerTick == 0:
		return fmt.Errorf("%w: snapshot at tick 0", ErrValueOutOfRange)
	case h.SlotCount < 0 || h.SlotCount > MaxViewSlots:
		return fmt.Errorf("%w: %d slots, max %d", ErrTooManySlots, h.SlotCount, MaxViewSlots)
	case h.BaselineTick >= h.ServerTick:
		return fmt.Errorf("%w: baseline tick %d not before server tick %d", ErrBadBaseline, h.BaselineTick, h.ServerTick)
	}
	return nil
}

// Slot writes the record of the next slot: base is the slot in the baseline view, cur the slot
// in the current view; nil or an ID of 0 means empty. It must be called exactly
// SlotCount times, in slot order. A yaw ≥ YawSteps in cur is an error, reported by Finish.
func (e *SnapshotEncoder) Slot(base, cur *ViewSlot) {
	e.slots++
	if e.err != nil || e.slots > e.h.SlotCount {
		return
	}
	w := &e.w
	if cur == nil || cur.ID == 0 {
		if e.d == 0 || base == nil || base.ID == 0 {
			w.WriteBits(tagUnchanged, 1)
		} else {
			w.WriteBits(tagLeave, 3)
		}
		return
	}
	if e.d == 0 || base == nil || base.ID != cur.ID {
		e.enter(cur)
		return
	}
	b, c := &base.State, &cur.State
	d := int32(e.d) // wrapping, like Predict
	// Compare with the prediction field by field: building the predicted struct and comparing
	// it whole costs a store-forwarding stall on the hot path.
	if c.X == b.X+b.VX*d && c.Z == b.Z+b.VZ*d && c.Y == b.Y && c.VX == b.VX && c.VZ == b.VZ &&
		c.Yaw == b.Yaw && c.Kind == b.Kind && c.Action == b.Action {
		w.WriteBits(tagUnchanged, 1)
		return
	}
	e.update(b, c)
}

// update writes an update record of c against b's prediction, which differs from c.
func (e *SnapshotEncoder) update(b, c *EntityState) {
	w := &e.w
	if c.Yaw >= YawSteps {
		e.badYaw(c.Yaw)
		return
	}
	d := int32(e.d)
	px, pz := b.X+b.VX*d, b.Z+b.VZ*d // the prediction; Y, velocity, yaw, kind and action are b's
	if c.X != px || c.Y != b.Y || c.Z != pz {
		w.WriteBits(tagUpdate<<1|1, 3)
		w.WriteSignedCode(c.X - px) // int32 arithmetic wraps, as the decoder's does
		w.WriteSignedCode(c.Z - pz)
		w.WriteSignedCode(c.Y - b.Y)
	} else {
		w.WriteBits(tagUpdate<<1, 3)
	}
	if c.VX != b.VX || c.VZ != b.VZ {
		w.WriteBits(1, 1)
		w.WriteSignedCode(c.VX - b.VX)
		w.WriteSignedCode(c.VZ - b.VZ)
	} else {
		w.WriteBits(0, 1)
	}
	if c.Yaw != b.Yaw {
		w.WriteBits(1<<YawBits|uint64(c.Yaw), 1+YawBits)
	} else {
		w.WriteBits(0, 1)
	}
	if c.Kind != b.Kind || c.Action != b.Action {
		w.WriteBits(1<<16|uint64(c.Kind)<<8|uint64(c.Action), 17)
	} else {
		w.WriteBits(0, 1)
	}
}

// enter writes an enter record of c.
func (e *SnapshotEncoder) enter(c *ViewSlot) {
	w := &e.w
	s := &c.State
	if s.Yaw >= YawSteps {
		e.badYaw(s.Yaw)
		return
	}
	if c.ID < id32Limit {
		w.WriteBits(tagEnter<<33|uint64(c.ID), 3+1+32) // choice bit 0
	} else {
		w.WriteBits(tagEnter<<1|1, 4)
		w.WriteBits(uint64(c.ID), 64)
	}
	w.WriteBits(uint64(uint32(s.X))<<32|uint64(uint32(s.Y)), 64)
	w.WriteBits(uint64(uint32(s.Z)), 32)
	w.WriteSignedCode(s.VX)
	w.WriteSignedCode(s.VZ)
	w.WriteBits(uint64(s.Yaw)<<16|uint64(s.Kind)<<8|uint64(s.Action), YawBits+16)
}

func (e *SnapshotEncoder) badYaw(yaw uint16) {
	e.err = fmt.Errorf("%w: snapshot slot %d: yaw %d, max %d", ErrValueOutOfRange, e.slots-1, yaw, YawSteps-1)
}

// Finish completes the frame and returns the destination given to Begin with the frame
// appended. On error (an invalid header, a yaw out of range, Slot not called SlotCount times, a
// frame over MaxFrameSize) it returns the destination as it was before Begin, and the error.
func (e *SnapshotEncoder) Finish() ([]byte, error) {
	if e.err == nil && e.slots != e.h.SlotCount {
		e.err = fmt.Errorf("%w: %d slots written, header says %d", ErrSlotCount, e.slots, e.h.SlotCount)
	}
	buf := e.w.Flush()
	e.w.Reset(nil) // do not keep the caller's buffer reachable
	if e.err != nil {
		return buf[:e.start], e.err
	}
	return EndFrame(buf, e.start)
}

// AppendSnapshot appends a snapshot frame of the view cur against the baseline view base to dst.
// len(cur) must be h.SlotCount; base may be shorter or longer than cur (slots beyond it are
// empty; its slots beyond len(cur) are left) and is ignored when h.BaselineTick is 0. On error
// it returns dst unchanged.
func AppendSnapshot(dst []byte, h SnapshotHeader, base, cur []ViewSlot) ([]byte, error) {
	if len(cur) != h.SlotCount {
		return dst, fmt.Errorf("%w: %d slots in view, header says %d", ErrSlotCount, len(cur), h.SlotCount)
	}
	var e SnapshotEncoder
	e.Begin(dst, h)
	for i := range cur {
		var b *ViewSlot
		if i < len(base) {
			b = &base[i]
		}
		e.Slot(b, &cur[i])
	}
	return e.Finish()
}

// Snapshot is a decoded snapshot. DecodeSnapshot reuses the capacity of Slots and Events.
type Snapshot struct {
	Header SnapshotHeader
	// Slots is the client's whole view at Header.ServerTick: the baseline with the records
	// applied. Empty slots are the zero ViewSlot.
	Slots []ViewSlot
	// Events lists the enter, update and leave records in slot order; an enter into a slot
	// whose baseline held another entity is preceded by that entity's leave; the implicit
	// leaves of baseline slots ≥ SlotCount come last. Unchanged slots have no event. An entity
	// that changed slots appears as a leave and an enter, possibly enter first: clients that
	// track entities by id should apply a snapshot's leaves before its enters.
	Events []SlotEvent
}

// PeekSnapshotHeader decodes only the header of a snapshot payload, to find its baseline tick.
func PeekSnapshotHeader(payload []byte) (SnapshotHeader, error) {
	var r BitReader
	r.Reset(payload)
	return readHeader(&r)
}

func readHeader(r *BitReader) (SnapshotHeader, error) {
	tick := Tick(r.ReadBits(32))
	d := r.ReadUnsignedCode()
	seq := uint32(r.ReadBits(32))
	n := int(r.ReadBits(slotCountBits))
	if err := r.Err(); err != nil {
		return SnapshotHeader{}, fmt.Errorf("%w: snapshot header", err)
	}
	h := SnapshotHeader{ServerTick: tick, LastInputSeq: seq, SlotCount: n}
	switch {
	case tick == 0:
		return SnapshotHeader{}, fmt.Errorf("%w: snapshot at tick 0", ErrValueOutOfRange)
	case d >= uint32(tick):
		return SnapshotHeader{}, fmt.Errorf("%w: baseline %d ticks before tick %d", ErrBadBaseline, d, tick)
	case n > MaxViewSlots:
		return SnapshotHeader{}, fmt.Errorf("%w: %d slots, max %d", ErrTooManySlots, n, MaxViewSlots)
	}
	if d != 0 {
		h.BaselineTick = tick - Tick(d)
	}
	return h, nil
}

// DecodeSnapshot decodes a snapshot payload (the bytes after the type byte) into out. base is
// the client's decoded view at the header's BaselineTick (see PeekSnapshotHeader and ViewRing);
// it is ignored when BaselineTick is 0. out.Slots may be base itself (decoding in place) but
// must not otherwise overlap it (in place, an error leaves base partly overwritten). On error
// out is emptied, its capacity kept.
//
// Decoding never panics and allocates at most O(MaxViewSlots) whatever the input. An update or
// leave of an empty baseline slot is ErrBadBaseline: the client decoded against a view other
// than the one the server meant.
func DecodeSnapshot(payload []byte, base []ViewSlot, out *Snapshot) error {
	err := decodeSnapshot(payload, base, out)
	if err != nil {
		out.Header = SnapshotHeader{}
		out.Slots = out.Slots[:0]
		out.Events = out.Events[:0]
	}
	return err
}

func decodeSnapshot(payload []byte, base []ViewSlot, out *Snapshot) error {
	var r BitReader
	r.Reset(payload)
	h, err := readHeader(&r)
	if err != nil {
		return err
	}
	var d uint32
	if h.BaselineTick == 0 {
		base = nil
	} else {
		d = uint32(h.ServerTick - h.BaselineTick)
	}
	if len(base) > MaxViewSlots {
		return fmt.Errorf("%w: baseline view of %d slots, max %d", ErrTooManySlots, len(base), MaxViewSlots)
	}
	n := h.SlotCount
	out.Header = h
	// Growing before the loop keeps the in-place case simple: either slots shares base's array
	// and slot i is written only after base[i] was read, or it is a new array.
	slots := slices.Grow(out.Slots[:0], n)
	events := out.Events[:0]
	for i := 0; i < n; i++ {
		var b ViewSlot
		if i < len(base) {
			b = base[i]
		}
		tag := readTag(&r)
		if err := r.Err(); err != nil {
			return slotErr(i, err)
		}
		var c ViewSlot
		switch tag {
		case tagUnchanged:
			if b.ID != 0 {
				c = ViewSlot{ID: b.ID, State: b.State.Predict(d)}
			}
		case tagUpdate:
			if b.ID == 0 {
				return slotErr(i, fmt.Errorf("%w: update of an empty baseline slot", ErrBadBaseline))
			}
			c = ViewSlot{ID: b.ID, State: b.State.Predict(d)}
			readDelta(&r, &c.State)
			events = append(events, SlotEvent{Kind: EventUpdate, Slot: uint16(i), ID: c.ID})
		case tagLeave:
			if b.ID == 0 {
				return slotErr(i, fmt.Errorf("%w: leave of an empty baseline slot", ErrBadBaseline))
			}
			events = append(events, SlotEvent{Kind: EventLeave, Slot: uint16(i), ID: b.ID})
		case tagEnter:
			readEnter(&r, &c)
			if r.Err() != nil {
				break
			}
			if c.ID == 0 {
				return slotErr(i, fmt.Errorf("%w: enter of entity id 0", ErrValueOutOfRange))
			}
			if c.ID == b.ID {
				return slotErr(i, fmt.Errorf("%w: enter of the baseline's own entity %d", ErrNonCanonical, c.ID))
			}
			if b.ID != 0 {
				events = append(events, SlotEvent{Kind: EventLeave, Slot: uint16(i), ID: b.ID})
			}
			events = append(events, SlotEvent{Kind: EventEnter, Slot: uint16(i), ID: c.ID})
		}
		if err := r.Err(); err != nil {
			return slotErr(i, err)
		}
		slots = append(slots, c)
	}
	for i := n; i < len(base); i++ {
		if base[i].ID != 0 {
			events = append(events, SlotEvent{Kind: EventLeave, Slot: uint16(i), ID: base[i].ID})
		}
	}
	switch rem := r.Remaining(); {
	case rem >= 8:
		return fmt.Errorf("%w: %d bytes after the last snapshot record", ErrTrailingBytes, rem/8)
	case r.ReadBits(rem) != 0:
		return fmt.Errorf("%w: non-zero snapshot padding", ErrNonCanonical)
	}
	out.Slots = slots
	out.Events = events
	return nil
}

func slotErr(i int, err error) error {
	return fmt.Errorf("%w (snapshot slot %d)", err, i)
}

// readTag reads a record tag: 0, 10, 110 or 111.
func readTag(r *BitReader) uint8 {
	switch {
	case !r.ReadBit():
		return tagUnchanged
	case !r.ReadBit():
		return tagUpdate
	case !r.ReadBit():
		return tagLeave
	}
	return tagEnter
}

// readDelta applies a delta record to s, the prediction. A record that changes nothing, or
// sets a flag whose fields are unchanged, is non-canonical.
func readDelta(r *BitReader, s *EntityState) {
	changed := false
	if r.ReadBit() {
		dx, dz, dy := r.ReadSignedCode(), r.ReadSignedCode(), r.ReadSignedCode()
		if dx == 0 && dy == 0 && dz == 0 {
			r.fail(ErrNonCanonical)
		}
		s.X += dx
		s.Z += dz
		s.Y += dy
		changed = true
	}
	if r.ReadBit() {
		dvx, dvz := r.ReadSignedCode(), r.ReadSignedCode()
		if dvx == 0 && dvz == 0 {
			r.fail(ErrNonCanonical)
		}
		s.VX += dvx
		s.VZ += dvz
		changed = true
	}
	if r.ReadBit() {
		yaw := uint16(r.ReadBits(YawBits))
		if yaw == s.Yaw {
			r.fail(ErrNonCanonical)
		}
		s.Yaw = yaw
		changed = true
	}
	if r.ReadBit() {
		ka := r.ReadBits(16)
		kind, action := uint8(ka>>8), uint8(ka)
		if kind == s.Kind && action == s.Action {
			r.fail(ErrNonCanonical)
		}
		s.Kind, s.Action = kind, action
		changed = true
	}
	if !changed {
		r.fail(ErrNonCanonical)
	}
}

// readEnter reads an enter record (after its tag) into c.
func readEnter(r *BitReader, c *ViewSlot) {
	if r.ReadBit() {
		c.ID = EntityID(r.ReadBits(64))
		if c.ID < id32Limit {
			r.fail(ErrNonCanonical)
		}
	} else {
		c.ID = EntityID(r.ReadBits(32))
	}
	s := &c.State
	xy := r.ReadBits(64)
	s.X, s.Y = int32(uint32(xy>>32)), int32(uint32(xy))
	s.Z = int32(uint32(r.ReadBits(32)))
	s.VX = r.ReadSignedCode()
	s.VZ = r.ReadSignedCode()
	yka := r.ReadBits(YawBits + 16)
	s.Yaw, s.Kind, s.Action = uint16(yka>>16), uint8(yka>>8), uint8(yka)
}

// ViewRing keeps the views of the last BaselineWindow ticks, indexed by tick modulo
// BaselineWindow. A server keeps one per client holding the views it sent (to find the
// baseline for the newest ack); a client keeps one holding the views it decoded (to find the
// baseline a snapshot names). The zero value is empty and ready. Put copies views into storage
// the ring reuses, so steady-state use does not allocate. Not safe for concurrent use.
type ViewRing struct {
	ticks [BaselineWindow]Tick
	views [BaselineWindow][]ViewSlot
}

// Put stores a copy of the view at tick t (t ≠ 0), replacing the view BaselineWindow ticks (or
// a multiple) older. A t older than the tick already stored in its place is ignored.
func (r *ViewRing) Put(t Tick, view []ViewSlot) {
	i := t % BaselineWindow
	if t == 0 || r.ticks[i] > t {
		return
	}
	r.ticks[i] = t
	r.views[i] = append(r.views[i][:0], view...)
}

// Get returns the view stored for tick t, which aliases the ring's storage and is valid until
// the next Put or Reset, and whether the ring still holds it.
func (r *ViewRing) Get(t Tick) ([]ViewSlot, bool) {
	i := t % BaselineWindow
	if t == 0 || r.ticks[i] != t {
		return nil, false
	}
	return r.views[i], true
}

// Reset forgets every view, keeping the storage.
func (r *ViewRing) Reset() {
	r.ticks = [BaselineWindow]Tick{}
}

// Decode is the client's side of a snapshot: it looks up the snapshot's baseline in the ring
// (ErrBadBaseline if the ring does not hold it), decodes the payload into out with
// DecodeSnapshot and stores the decoded view under the snapshot's tick. The client then acks
// out.Header.ServerTick. out.Slots must not be storage of the ring.
func (r *ViewRing) Decode(payload []byte, out *Snapshot) error {
	h, err := PeekSnapshotHeader(payload)
	if err != nil {
		return err
	}
	var base []ViewSlot
	if h.BaselineTick != 0 {
		var ok bool
		if base, ok = r.Get(h.BaselineTick); !ok {
			return fmt.Errorf("%w: no view for baseline tick %d (snapshot of tick %d)", ErrBadBaseline, h.BaselineTick, h.ServerTick)
		}
	}
	if err := DecodeSnapshot(payload, base, out); err != nil {
		return err
	}
	r.Put(out.Header.ServerTick, out.Slots)
	return nil
}

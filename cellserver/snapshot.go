package cellserver

import "github.com/meridian-mmo/meridian/wire"

// Snapshots.
//
// A snapshot delta-encodes a client's view slot by slot against the view of the newest tick
// the client acknowledged (its baseline). Two structures make a baseline cost O(1) per slot
// without keeping a copy of every client's view states:
//
//   - the world keeps a ring of HistoryTicks frames, one per tick, each the wire state of every
//     row at that tick (ids and states, 32 bytes a row: 5 MB for 32 ticks of 5 000 rows);
//   - each client keeps a log of the slot → row tables it was sent, one per tick, only back to
//     its acknowledged tick (records older than the ack are dead and reclaimed by compaction),
//     so its memory follows the acks in flight, not HistoryTicks.
//
// The baseline slot s of a client acknowledging tick B is then frames[B].vs[log[B][s]]: the
// entity that held that row at B, which is what the client decoded, even if the row has been
// recycled since.
//
// Most slots hold an entity that has only moved at constant velocity since the baseline, which
// the wire codes as one bit. captureFrame stamps each row with the last tick its state stopped
// being the exact extrapolation of the previous tick's (store.changedAt); a slot holding the
// same row at B and now, with changedAt ≤ B, is written as "unchanged" without reading either
// state. This is exact (TestSnapshotsEndToEnd compares every frame with the reference encoder)
// and removes most of the random memory reads of a snapshot.

// frame is the state of every row at one tick. Rows not alive at that tick hold stale data;
// no view references them.
type frame struct {
	tick wire.Tick
	vs   []wire.ViewSlot // by row
}

// captureFrame records tick t's state of every alive row, and stamps changedAt on every row
// whose state is not the extrapolation of its state at the previous tick.
func (w *World) captureFrame(t wire.Tick) {
	st := &w.st
	var prev []wire.ViewSlot
	if pt := w.prevTick; int(t-pt) < len(w.frames) {
		if pf := w.frameAt(pt); pf != nil {
			prev = pf.vs
		}
	}
	dt := uint32(t - w.prevTick)
	f := &w.frames[int(t)%len(w.frames)]
	f.tick = t
	if n := st.rows(); cap(f.vs) < n {
		f.vs = make([]wire.ViewSlot, n, n+n/4)
	} else {
		f.vs = f.vs[:n]
	}
	vs := f.vs
	for _, r := range st.alive {
		cur := wire.ViewSlot{ID: st.ids[r], State: wire.EntityState{
			X: st.x[r], Y: st.y[r], Z: st.z[r],
			VX: st.vx[r], VZ: st.vz[r],
			Yaw: st.yaw[r], Kind: st.kind[r], Action: st.action[r],
		}}
		if int(r) >= len(prev) || prev[r].ID != cur.ID || prev[r].State.Predict(dt) != cur.State {
			st.changedAt[r] = t
		}
		vs[r] = cur
	}
}

// frameAt returns the frame of tick t if the ring still holds it.
func (w *World) frameAt(t wire.Tick) *frame {
	f := &w.frames[int(t)%len(w.frames)]
	if t == 0 || f.tick != t {
		return nil
	}
	return f
}

// logEntry locates one tick's slot table in a viewLog.
type logEntry struct {
	tick   wire.Tick // 0: none
	off, n int32
}

// viewLog is a client's view and its history: the slot → row tables of the ticks it was
// sent, back to back in one buffer, the last one (data[cur:]) being the current view. A new
// tick's view starts as a copy of the previous one (begin) and is updated in place. Records
// before start are dead (older than the client's acknowledged tick, or beyond the
// HistoryTicks window) and are reclaimed by compacting the buffer when it would otherwise grow,
// so a client's memory follows its acks in flight.
type viewLog struct {
	data  []int32
	cur   int32      // offset of the current view
	start int32      // records before start are dead
	n     int        // occupied slots of the current view
	ents  []logEntry // indexed by tick % HistoryTicks
	ent   int        // index of the current view's entry
}

func newViewLog(history int) viewLog {
	return viewLog{ents: make([]logEntry, history)}
}

func (l *viewLog) reset() {
	l.data = l.data[:0]
	l.cur, l.start, l.n, l.ent = 0, 0, 0, 0
	clear(l.ents)
}

// view returns the current view's slots (noRow: empty). It is invalidated by put.
func (l *viewLog) view() []int32 { return l.data[l.cur:] }

// begin starts the view of tick t, newer than every recorded tick, as a copy of the current
// one.
func (l *viewLog) begin(t wire.Tick) {
	e := &l.ents[int(t)%len(l.ents)]
	if e.tick != 0 && e.off >= l.start {
		// The record this one replaces is HistoryTicks or more ticks old: it and everything
		// before it are out of the window.
		l.start = e.off + e.n
	}
	n := len(l.data) - int(l.cur)
	if len(l.data)+n > cap(l.data) && l.start > 0 && int(l.start) >= len(l.data)/2 {
		l.compact()
	}
	off := int32(len(l.data))
	l.data = append(l.data, l.data[l.cur:]...)
	l.cur = off
	l.ent = int(t) % len(l.ents)
	*e = logEntry{tick: t, off: off, n: -1}
}

// vacate empties slot s of the current view.
func (l *viewLog) vacate(s int) {
	l.data[int(l.cur)+s] = noRow
	l.n--
}

// put gives row r the lowest free slot of the current view.
func (l *viewLog) put(r int32) {
	l.n++
	v := l.data[l.cur:]
	if l.n <= len(v) { // there is a hole
		for s, x := range v {
			if x == noRow {
				v[s] = r
				return
			}
		}
	}
	l.data = append(l.data, r)
}

// end completes the current view: trailing empty slots are dropped, the record is sealed.
func (l *viewLog) end() {
	n := len(l.data)
	for n > int(l.cur) && l.data[n-1] == noRow {
		n--
	}
	l.data = l.data[:n]
	l.ents[l.ent].n = int32(n) - l.cur
}

// unsend forgets that tick t's view was sent (its snapshot could not be built), so an ack
// of t is refused; the view stays the base of the next tick's.
func (l *viewLog) unsend(t wire.Tick) {
	if e := &l.ents[int(t)%len(l.ents)]; e.tick == t {
		e.tick = 0
	}
}

// get returns the slot table sent at tick t, if it is still held.
func (l *viewLog) get(t wire.Tick) ([]int32, bool) {
	e := l.ents[int(t)%len(l.ents)]
	if t == 0 || e.tick != t || e.off < l.start || e.n < 0 {
		return nil, false
	}
	return l.data[e.off : e.off+e.n], true
}

// release marks every record older than tick t dead; t is the client's new acknowledged tick.
func (l *viewLog) release(t wire.Tick) {
	if e := l.ents[int(t)%len(l.ents)]; e.tick == t && e.off > l.start {
		l.start = e.off
	}
}

// compact moves the live records to the front of the buffer.
func (l *viewLog) compact() {
	s := l.start
	n := copy(l.data, l.data[s:])
	l.data = l.data[:n]
	for i := range l.ents {
		e := &l.ents[i]
		switch {
		case e.tick == 0:
		case e.off < s:
			*e = logEntry{}
		default:
			e.off -= s
		}
	}
	l.cur -= s
	l.start = 0
}

// snapshot appends client c's frame for tick t to w.buf. It reports false if the frame could
// not be built.
func (w *World) snapshot(c *client, t wire.Tick) bool {
	var (
		baseRows []int32
		bf       *frame
		bt       wire.Tick
	)
	if a := c.ackTick; a != 0 && int(t-a) < len(w.frames) {
		if rows, ok := c.log.get(a); ok {
			if f := w.frameAt(a); f != nil {
				baseRows, bf, bt = rows, f, a
			}
		}
	}
	// The snapshot carries the current slots only: baseline slots beyond them have left
	// implicitly (wire format).
	cur := c.log.view()
	if len(baseRows) > len(cur) {
		baseRows = baseRows[:len(cur)]
	}
	vs := w.frames[int(t)%len(w.frames)].vs
	changedAt := w.st.changedAt
	enc := &w.enc
	enc.Begin(w.buf, wire.SnapshotHeader{ServerTick: t, BaselineTick: bt, LastInputSeq: c.lastSeq, SlotCount: len(cur)})
	for s, r := range cur {
		var b, x *wire.ViewSlot
		if s < len(baseRows) {
			br := baseRows[s]
			if br == r && (r == noRow || changedAt[r] <= bt) {
				// The slot holds the same entity as at the baseline and it has only moved
				// at constant velocity since (or the slot is empty in both): the record is
				// "unchanged", which is also what the encoder writes for two empty slots.
				// Saying so spares reading both states, the main cost of a snapshot.
				enc.Slot(nil, nil)
				continue
			}
			if br != noRow {
				b = &bf.vs[br]
			}
		}
		if r != noRow {
			x = &vs[r]
		}
		enc.Slot(b, x)
	}
	buf, err := enc.Finish()
	if err != nil {
		c.log.unsend(t)
		return false
	}
	w.buf = buf
	c.lastSent = t
	return true
}

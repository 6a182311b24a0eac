package wire

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// benchFrame is one frame of the benchmark: the view, and the baseline the server deltas
// against.
type benchFrame struct {
	h    SnapshotHeader
	base []ViewSlot // nil for full state
	cur  []ViewSlot
}

// benchFrames replays the trace with the ack model of a 100 ms RTT client that acks every
// snapshot: the ack of tick t reaches the server 2 or 3 ticks later (half a tick of jitter),
// so the baseline is t−2 or t−3; the first frames, before any ack, are full state.
func benchFrames(tb testing.TB) []benchFrame {
	views := loadTrace(tb)
	rng := rand.New(rand.NewPCG(100, 3))
	frames := make([]benchFrame, len(views))
	for k, v := range views {
		f := benchFrame{cur: v, h: SnapshotHeader{ServerTick: Tick(traceStartTick + k), LastInputSeq: uint32(3*k + 1), SlotCount: len(v)}}
		if lag := 2 + rng.IntN(2); k >= lag {
			f.h.BaselineTick = f.h.ServerTick - Tick(lag)
			f.base = views[k-lag]
		}
		frames[k] = f
	}
	return frames
}

// appendProtowire encodes a frame the way a protobuf full-state snapshot would be, without
// code generation:
//
//	message Frame  { uint32 server_tick = 1; uint32 last_input_seq = 3; repeated Entity entities = 4; }
//	message Entity { uint64 id = 1; sint32 x = 2; sint32 y = 3; sint32 z = 4; sint32 vx = 5;
//	                 sint32 vz = 6; uint32 yaw = 7; uint32 kind = 8; uint32 action = 9; }
//
// with proto3's omission of zero fields, inside the same 3-byte frame header as ours.
func appendProtowire(dst, scratch []byte, h SnapshotHeader, cur []ViewSlot) (frame, scratchOut []byte) {
	dst, start := BeginFrame(dst, MsgSnapshot)
	dst = pwVarint(dst, 1, uint64(h.ServerTick))
	dst = pwVarint(dst, 3, uint64(h.LastInputSeq))
	for i := range cur {
		c := &cur[i]
		if c.ID == 0 {
			continue
		}
		s := &c.State
		e := scratch[:0]
		e = pwVarint(e, 1, uint64(c.ID))
		e = pwVarint(e, 2, protowire.EncodeZigZag(int64(s.X)))
		e = pwVarint(e, 3, protowire.EncodeZigZag(int64(s.Y)))
		e = pwVarint(e, 4, protowire.EncodeZigZag(int64(s.Z)))
		e = pwVarint(e, 5, protowire.EncodeZigZag(int64(s.VX)))
		e = pwVarint(e, 6, protowire.EncodeZigZag(int64(s.VZ)))
		e = pwVarint(e, 7, uint64(s.Yaw))
		e = pwVarint(e, 8, uint64(s.Kind))
		e = pwVarint(e, 9, uint64(s.Action))
		dst = protowire.AppendTag(dst, 4, protowire.BytesType)
		dst = protowire.AppendBytes(dst, e)
		scratch = e
	}
	dst, _ = EndFrame(dst, start)
	return dst, scratch
}

func pwVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// BenchmarkSnapshot encodes the 600 frames of testdata/snapshot_trace.txt (60 moving entities,
// 20 Hz, 30 s) per client. ns/op is per frame; the size metrics are over the whole trace:
// B/frame (frame header included), bits/entity (frame bytes × 8 / entities in the frame) and
// kbit/s at 20 Hz per client.
func BenchmarkSnapshot(b *testing.B) {
	frames := benchFrames(b)
	entities := 0
	for _, f := range frames {
		for _, s := range f.cur {
			if s.ID != 0 {
				entities++
			}
		}
	}
	report := func(b *testing.B, totalBytes int) {
		perFrame := float64(totalBytes) / float64(len(frames))
		b.ReportMetric(perFrame, "B/frame")
		b.ReportMetric(float64(totalBytes)*8/float64(entities), "bits/entity")
		b.ReportMetric(perFrame*8*traceHz/1000, "kbit/s")
	}
	buf := make([]byte, 0, 1<<16)
	var scratch []byte

	ours := func(full bool) func(b *testing.B) {
		return func(b *testing.B) {
			var e SnapshotEncoder
			encode := func(f *benchFrame) []byte {
				h, base := f.h, f.base
				if full {
					h.BaselineTick, base = 0, nil
				}
				e.Begin(buf[:0], h)
				for i := range f.cur {
					var bs *ViewSlot
					if i < len(base) {
						bs = &base[i]
					}
					e.Slot(bs, &f.cur[i])
				}
				out, err := e.Finish()
				if err != nil {
					b.Fatal(err)
				}
				return out
			}
			total := 0
			for i := range frames {
				total += len(encode(&frames[i]))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				buf = encode(&frames[i%len(frames)])
			}
			report(b, total)
		}
	}
	b.Run("enc=delta", ours(false))
	b.Run("enc=full", ours(true))
	b.Run("enc=protowire", func(b *testing.B) {
		total := 0
		for _, f := range frames {
			var out []byte
			out, scratch = appendProtowire(buf[:0], scratch, f.h, f.cur)
			total += len(out)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			f := &frames[i%len(frames)]
			buf, scratch = appendProtowire(buf[:0], scratch, f.h, f.cur)
		}
		report(b, total)
	})
}

// TestTraceSnapshots decodes the benchmark's frames as a client would and checks the sizes
// against the targets of DESIGN.md §7: ≤ 16 kbit/s per client, ≥ 10× smaller than protobuf.
func TestTraceSnapshots(t *testing.T) {
	frames := benchFrames(t)
	var client ViewRing
	var s Snapshot
	var delta, full, proto int
	var scratch []byte
	for _, f := range frames {
		frame, err := AppendSnapshot(nil, f.h, f.base, f.cur)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Decode(frame[FrameHeaderSize:], &s); err != nil {
			t.Fatalf("tick %d: %v", f.h.ServerTick, err)
		}
		if len(s.Slots) != len(f.cur) {
			t.Fatalf("tick %d: decoded %d slots, want %d", f.h.ServerTick, len(s.Slots), len(f.cur))
		}
		for i := range f.cur {
			if s.Slots[i] != f.cur[i] {
				t.Fatalf("tick %d slot %d: decoded %+v, want %+v", f.h.ServerTick, i, s.Slots[i], f.cur[i])
			}
		}
		delta += len(frame)
		h := f.h
		h.BaselineTick = 0
		ff, _ := AppendSnapshot(nil, h, nil, f.cur)
		full += len(ff)
		var pf []byte
		pf, scratch = appendProtowire(nil, scratch, f.h, f.cur)
		proto += len(pf)
	}
	kbps := func(total int) float64 { return float64(total) * 8 * traceHz / 1000 / float64(len(frames)) }
	t.Logf("delta %.2f kbit/s, full %.2f kbit/s, protowire %.2f kbit/s; protowire/delta = %.1f×",
		kbps(delta), kbps(full), kbps(proto), float64(proto)/float64(delta))
	if kbps(delta) > 16 {
		t.Errorf("delta snapshots need %.2f kbit/s, target ≤ 16", kbps(delta))
	}
	if proto < 10*delta {
		t.Errorf("delta snapshots only %.1f× smaller than protowire, target ≥ 10×", float64(proto)/float64(delta))
	}
}

// BenchmarkDecodeSnapshot decodes the trace's delta frames as a client does (ns/op per frame).
func BenchmarkDecodeSnapshot(b *testing.B) {
	frames := benchFrames(b)
	payloads := make([][]byte, len(frames))
	for i, f := range frames {
		frame, err := AppendSnapshot(nil, f.h, f.base, f.cur)
		if err != nil {
			b.Fatal(err)
		}
		payloads[i] = frame[FrameHeaderSize:]
	}
	var s Snapshot
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := i % len(frames)
		if err := DecodeSnapshot(payloads[k], frames[k].base, &s); err != nil {
			b.Fatal(err)
		}
	}
}

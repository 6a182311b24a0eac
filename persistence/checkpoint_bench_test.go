package persistence

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// benchCell returns n entities spread over a 1 km × 1 km cell, as a cell server holds them:
// ids from a counter with gaps, small velocities, half of them players (home and client set).
func benchCell(rng *rand.Rand, n int) []wire.EntityRecord {
	recs := make([]wire.EntityRecord, n)
	id := wire.EntityID(1 << 20)
	const side = 1024 * wire.PosUnitsPerMetre
	for i := range recs {
		id += wire.EntityID(rng.IntN(8) + 1)
		r := wire.EntityRecord{
			ID:        id,
			X:         rng.Int32N(side),
			Y:         rng.Int32N(4 * wire.PosUnitsPerMetre),
			Z:         rng.Int32N(side),
			VX:        rng.Int32N(17) - 8,
			VZ:        rng.Int32N(17) - 8,
			Yaw:       uint16(rng.IntN(wire.YawSteps)),
			Kind:      uint8(rng.IntN(4)),
			Action:    uint8(rng.IntN(3)),
			AuthEpoch: uint64(rng.IntN(5) + 1),
		}
		if i%2 == 0 {
			r.Home = uint64(rng.IntN(16) + 1)
			r.Client = uint32(i + 1)
			r.LastSeq = rng.Uint32N(1 << 16)
			r.LastInputTick = wire.Tick(1000 + rng.IntN(20))
		}
		recs[i] = r
	}
	return recs
}

// advance moves every entity by its velocity times ticks (the state between two checkpoints).
func advance(recs []wire.EntityRecord, ticks int32, tick wire.Tick) {
	for i := range recs {
		recs[i].X += recs[i].VX * ticks
		recs[i].Z += recs[i].VZ * ticks
		if recs[i].Home != 0 {
			recs[i].LastSeq += uint32(ticks)
			recs[i].LastInputTick = tick
		}
	}
}

// BenchmarkCheckpoint10k writes the checkpoint of one cell of 10 000 entities, as one batch
// synced to the real filesystem (b.TempDir()), every iteration with the entities moved on by
// 20 ticks. Besides ns/op it reports ms/op, the p50, p99 and max of the iterations, the
// encoding time alone (wire.AppendEntityBlockFast) and the stored bytes per checkpoint.
func BenchmarkCheckpoint10k(b *testing.B) {
	const n = 10_000
	rng := rand.New(rand.NewPCG(1, 10_000))
	recs := benchCell(rng, n)
	s, err := OpenStore(b.TempDir(), DefaultStoreOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	tick := uint32(1000)
	cp := func() Checkpoint {
		tick += 20
		advance(recs, 20, wire.Tick(tick))
		return Checkpoint{Cell: 42, Epoch: 3, Tick: tick, Entities: recs}
	}
	// Warm up: the files exist, the zstd encoder is allocated.
	for range 3 {
		if err := s.WriteCheckpoint(cp()); err != nil {
			b.Fatal(err)
		}
	}

	times := make([]time.Duration, 0, b.N)
	var block []byte
	var encode time.Duration
	b.ResetTimer()
	for range b.N {
		c := cp()
		b.StopTimer()
		t0 := time.Now()
		block, err = wire.AppendEntityBlockFast(block[:0], c.Entities)
		encode += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 = time.Now()
		if err := s.WriteCheckpoint(c); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var total time.Duration
	for _, d := range times {
		total += d
	}
	b.ReportMetric(ms(total)/float64(len(times)), "ms/op")
	b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
	b.ReportMetric(ms(times[min(len(times)-1, len(times)*99/100)]), "p99-ms")
	b.ReportMetric(ms(times[len(times)-1]), "max-ms")
	b.ReportMetric(ms(encode)/float64(len(times)), "encode-ms")
	b.ReportMetric(float64(liveHeaderSize+len(block)), "bytes/checkpoint")
}

package cellserver

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// wanderers is a population of simulated players for benchmarks and tests: each wanders,
// changing its intent every 1–5 s (from a seeded RNG), sends one input per tick and acks the
// snapshot of ackLag ticks ago.
type wanderers struct {
	rng    *rand.Rand
	hz     int
	ackLag wire.Tick
	ids    []ClientID
	intent []wire.Input
	next   []wire.Tick // tick of the next intent change
	in     StepInput
}

func newWanderers(seed uint64, n, hz int, ackLag wire.Tick, min, max [2]float64) *wanderers {
	p := &wanderers{rng: rand.New(rand.NewPCG(seed, 7)), hz: hz, ackLag: ackLag}
	for i := range n {
		id := ClientID(i + 1)
		p.ids = append(p.ids, id)
		p.intent = append(p.intent, wire.Input{})
		p.next = append(p.next, 0)
		p.in.Joins = append(p.in.Joins, Join{Client: id, Spawn: [2]float64{
			min[0] + p.rng.Float64()*(max[0]-min[0]),
			min[1] + p.rng.Float64()*(max[1]-min[1]),
		}})
	}
	return p
}

// step fills p.in for tick t: the pending joins (first tick only), one input per client and
// the acks.
func (p *wanderers) step(t wire.Tick) *StepInput {
	if t > 1 {
		p.in.Joins = p.in.Joins[:0]
	}
	p.in.Tick = t
	p.in.Inputs = p.in.Inputs[:0]
	p.in.Acks = p.in.Acks[:0]
	for i, id := range p.ids {
		in := &p.intent[i]
		if t >= p.next[i] {
			p.next[i] = t + wire.Tick(p.hz+p.rng.IntN(4*p.hz+1))
			if p.rng.IntN(5) == 0 { // a fifth of the time, stand still
				in.MoveX, in.MoveZ = 0, 0
			} else {
				a := p.rng.Float64() * 2 * math.Pi
				in.MoveX = int8(math.Round(127 * math.Cos(a)))
				in.MoveZ = int8(math.Round(127 * math.Sin(a)))
				in.Yaw = wire.QuantiseYaw(a)
			}
		}
		in.Seq++
		in.ClientTick = t
		p.in.Inputs = append(p.in.Inputs, ClientInput{Client: id, Input: *in})
		if t > p.ackLag {
			p.in.Acks = append(p.in.Acks, ClientAck{Client: id, Tick: t - p.ackLag})
		}
	}
	return &p.in
}

// benchWorld sizes a world so that ~60 entities are within each client's enter radius.
func benchWorld(tb testing.TB, clients int) (*World, *wanderers) {
	cfg := DefaultConfig()
	r := cfg.AOIEnterRadius
	side := math.Sqrt(float64(clients) * math.Pi * r * r / 60)
	cfg.WorldMax = [2]float64{side, side}
	cfg.MaxClients = clients
	w, err := NewWorld(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		tb.Fatal(err)
	}
	return w, newWanderers(3, clients, cfg.TickHz, 2, cfg.WorldMin, cfg.WorldMax)
}

// BenchmarkTick measures World.Step with every client a wandering player that sees ~60 others.
//
//	GOMAXPROCS=1 go test -run='^$' -bench=BenchmarkTick -benchtime=200x ./cellserver
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{1000, 5000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			w, p := benchWorld(b, n)
			t := wire.Tick(0)
			const warmup = 100
			for range warmup {
				t++
				w.Step(p.step(t))
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			durations := make([]time.Duration, 0, b.N)
			var bytes, slots int
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				t++
				in := p.step(t)
				b.StartTimer()
				start := time.Now()
				out := w.Step(in)
				durations = append(durations, time.Since(start))
				bytes += out.BytesOut
			}
			b.StopTimer()
			for i := range w.clients {
				slots += w.clients[i].log.n
			}
			slices.Sort(durations)
			p99 := durations[max(0, int(math.Ceil(0.99*float64(len(durations))))-1)]
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(bytes)*8*float64(w.cfg.TickHz)/float64(b.N)/float64(n)/1000, "kbit/s-client")
			b.ReportMetric(float64(slots)/float64(n), "view-entities")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
		})
	}
}

// BenchmarkCrowd is the hotspot case: n clients packed into a 60 m square, so every client has
// far more than MaxViewSlots (256) entities within its enter radius and the capacity rule runs
// every tick.
//
//	GOMAXPROCS=1 go test -run='^$' -bench=BenchmarkCrowd -benchtime=100x ./cellserver
func BenchmarkCrowd(b *testing.B) {
	for _, n := range []int{500, 1000, 2000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.WorldMax = [2]float64{60, 60}
			cfg.MaxClients = n
			w, err := NewWorld(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			p := newWanderers(5, n, cfg.TickHz, 2, cfg.WorldMin, cfg.WorldMax)
			t := wire.Tick(0)
			for range 40 {
				t++
				w.Step(p.step(t))
			}
			durations := make([]time.Duration, 0, b.N)
			var bytes int
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				t++
				in := p.step(t)
				b.StartTimer()
				start := time.Now()
				bytes += w.Step(in).BytesOut
				durations = append(durations, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(durations)
			p99 := durations[max(0, int(math.Ceil(0.99*float64(len(durations))))-1)]
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(bytes)*8*float64(cfg.TickHz)/float64(b.N)/float64(n)/1000, "kbit/s-client")
		})
	}
}

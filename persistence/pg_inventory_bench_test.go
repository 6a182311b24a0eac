package persistence

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/internal/pgtest"
)

// BenchmarkTradeContention: parallel one-for-one trades among few players holding few items,
// so that transactions queue on the same item rows. Each goroutine picks two players and an
// item each believes the other holds (from a shared, approximate map); a trade whose item
// moved meanwhile is refused (ErrNotOwner) — still one committed transaction, with its event.
// Reported: committed transactions/s (tx/s), applied trades/s (trades/s), the refused share,
// and the mean latency of a call (ms/tx, ns/op being wall time per call over all goroutines).
func BenchmarkTradeContention(b *testing.B) {
	for _, c := range []struct{ players, itemsEach, parallelism int }{
		{4, 4, 4},   // 16 items, 4×GOMAXPROCS goroutines
		{4, 16, 4},  // 64 items
		{16, 16, 8}, // 256 items, 8×GOMAXPROCS goroutines
	} {
		b.Run(fmt.Sprintf("players=%d/items=%d/par=%d", c.players, c.players*c.itemsEach, c.parallelism), func(b *testing.B) {
			benchTrades(b, c.players, c.itemsEach, c.parallelism)
		})
	}
}

func benchTrades(b *testing.B, players, itemsEach, parallelism int) {
	ctx := context.Background()
	cfg := DefaultPGConfig()
	cfg.MaxConns = 64
	pg, err := OpenPG(ctx, pgtest.URL(b), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	var mu sync.Mutex
	guess := map[int64]int{} // where each item is believed to be
	for p := 1; p <= players; p++ {
		mustCreatePlayers(b, pg, int64(p))
		for i := range itemsEach {
			id := int64((p-1)*itemsEach + i + 1)
			mustCreateItem(b, pg, Item{ID: id, Kind: "gem", Owner: int64(p)})
			guess[id] = p
		}
	}
	var buf []int64
	take := func(rng *rand.Rand, p int) int64 { // under mu
		buf = buf[:0]
		for id, q := range guess {
			if q == p {
				buf = append(buf, id)
			}
		}
		if len(buf) == 0 {
			return 0
		}
		return buf[rng.IntN(len(buf))]
	}
	var seed, okN, refusedN atomic.Int64
	var latency atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := seed.Add(1)
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		for i := 0; pb.Next(); i++ {
			a := 1 + rng.IntN(players)
			bb := 1 + (a+rng.IntN(players-1))%players
			mu.Lock()
			ia, ib := take(rng, a), take(rng, bb)
			mu.Unlock()
			var sa, sb []int64
			if ia != 0 {
				sa = []int64{ia}
			}
			if ib != 0 {
				sb = []int64{ib}
			}
			if sa == nil && sb == nil {
				sa = []int64{1}
			}
			start := time.Now()
			_, err := pg.Trade(ctx, fmt.Sprintf("b%d-%d", g, i), int64(a), int64(bb), sa, sb)
			latency.Add(int64(time.Since(start)))
			switch {
			case err == nil:
				okN.Add(1)
				mu.Lock()
				if ia != 0 {
					guess[ia] = bb
				}
				if ib != 0 {
					guess[ib] = a
				}
				mu.Unlock()
			case errors.Is(err, ErrNotOwner) || errors.Is(err, ErrItemGone):
				refusedN.Add(1)
			default:
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	n := okN.Load() + refusedN.Load()
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)/secs, "tx/s")
	b.ReportMetric(float64(okN.Load())/secs, "trades/s")
	if n > 0 {
		b.ReportMetric(float64(refusedN.Load())/float64(n), "refused/tx")
		b.ReportMetric(float64(latency.Load())/float64(n)/1e6, "ms/tx")
	}
}

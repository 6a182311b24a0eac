package persistence

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/meridian-mmo/meridian/internal/pgtest"
)

// The position flush benchmarks: the same rows through UpsertPlayers (parameter arrays and
// unnest) and FlushPlayers (COPY into a temporary table, then one merge), inserting (into an
// emptied table) and updating (every row, a newer epoch), at several batch sizes. rows/s is
// the figure docs/performance.md reports:
//
//	go test ./persistence -run '^$' -bench 'Benchmark(Flush|Upsert)Players' -benchtime 5x
func BenchmarkUpsertPlayers(b *testing.B) { benchPlayerWrite(b, (*PG).UpsertPlayers) }

func BenchmarkFlushPlayers(b *testing.B) { benchPlayerWrite(b, (*PG).FlushPlayers) }

var benchFlushSizes = []int{10, 100, 1000, 2000, 5000, 10_000, 20_000, 50_000}

func benchPlayerWrite(b *testing.B, write func(*PG, context.Context, []PlayerRow) (int, int, error)) {
	ctx := context.Background()
	pg := openPGTB(b)
	for _, mode := range []string{"insert", "update"} {
		for _, n := range benchFlushSizes {
			b.Run(fmt.Sprintf("%s/rows=%d", mode, n), func(b *testing.B) {
				rows := benchPlayerRows(n)
				reset := func() {
					if _, err := pg.pool.Exec(ctx, `TRUNCATE players CASCADE`); err != nil {
						b.Fatal(err)
					}
				}
				reset()
				if mode == "update" {
					if _, _, err := write(pg, ctx, rows); err != nil {
						b.Fatal(err)
					}
				}
				// Each size starts from a vacuumed table, not the dead rows of the last.
				if _, err := pg.pool.Exec(ctx, `VACUUM players`); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if mode == "insert" {
						b.StopTimer()
						reset()
						b.StartTimer()
					}
					for i := range rows {
						rows[i].X++
						rows[i].Epoch++
					}
					w, f, err := write(pg, ctx, rows)
					if err != nil || w != n || f != 0 {
						b.Fatalf("written %d fenced %d, %v", w, f, err)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// benchPlayerRows returns n players in descending ID order (the call sorts them), each with
// a small stats object.
func benchPlayerRows(n int) []PlayerRow {
	rows := make([]PlayerRow, n)
	for i := range rows {
		rows[i] = PlayerRow{ID: int64(n - i), Account: fmt.Sprint("p", i), X: float64(i), Y: 0, Z: float64(i) / 2,
			Cell: uint64(i % 64), Stats: json.RawMessage(`{"hp": 100, "level": 3}`), Epoch: 1}
	}
	return rows
}

// openPGTB is openTestPG for benchmarks too.
func openPGTB(tb testing.TB) *PG {
	tb.Helper()
	pg, err := OpenPG(context.Background(), pgtest.URL(tb), DefaultPGConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pg.Close)
	return pg
}

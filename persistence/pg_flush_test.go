package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
)

// playerWriters are the two write paths with one contract.
var playerWriters = []struct {
	name  string
	write func(*PG, context.Context, []PlayerRow) (int, int, error)
}{
	{"upsert", (*PG).UpsertPlayers},
	{"copy", (*PG).FlushPlayers},
}

func flushRow(id int64, x float64, epoch uint64) PlayerRow {
	return PlayerRow{ID: id, Account: fmt.Sprint("acct", id), X: x, Y: 1, Z: 2, Cell: 7, Epoch: epoch,
		Stats: json.RawMessage(fmt.Sprintf(`{"hp": %d}`, int(x)))}
}

// TestFlushPlayersContract: both paths insert, overwrite on an equal or newer epoch only,
// leave the account alone, fail whole on a constraint, and write nothing for an empty call.
func TestFlushPlayersContract(t *testing.T) {
	for _, w := range playerWriters {
		t.Run(w.name, func(t *testing.T) {
			ctx := context.Background()
			pg := openTestPG(t)
			n, f, err := w.write(pg, ctx, []PlayerRow{flushRow(3, 30, 5), flushRow(1, 10, 5), flushRow(2, 20, 5)})
			if err != nil || n != 3 || f != 0 {
				t.Fatalf("insert: written %d fenced %d, %v; want 3 0", n, f, err)
			}
			next := []PlayerRow{flushRow(1, 11, 4), flushRow(2, 21, 5), flushRow(3, 31, 6), flushRow(4, 41, 1)}
			next[2].Account = "renamed"
			next[1].Stats = nil
			n, f, err = w.write(pg, ctx, next)
			if err != nil || n != 3 || f != 1 {
				t.Fatalf("update: written %d fenced %d, %v; want 3 1", n, f, err)
			}
			want := map[int64]storedPlayer{
				1: {"acct1", 10, 7, `{"hp": 10}`, 5},
				2: {"acct2", 21, 7, `{"hp": 20}`, 5}, // no stats: the stored ones stay
				3: {"acct3", 31, 7, `{"hp": 31}`, 6},
				4: {"acct4", 41, 7, `{"hp": 41}`, 1},
			}
			if got := readPlayers(t, pg); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("players:\n got %v\nwant %v", got, want)
			}
			if n, f, err := w.write(pg, ctx, nil); err != nil || n != 0 || f != 0 {
				t.Errorf("empty call: %d %d %v", n, f, err)
			}
			clash := flushRow(9, 90, 1)
			clash.Account = "acct1"
			if _, _, err := w.write(pg, ctx, []PlayerRow{flushRow(5, 50, 1), clash}); pgCode(err) != "23505" {
				t.Errorf("account clash: %v, want a unique violation", err)
			}
			if _, ok := readPlayers(t, pg)[5]; ok {
				t.Error("a failed call wrote part of its rows")
			}
			for name, bad := range map[string][]PlayerRow{
				"NaN":       {flushRow(6, math.NaN(), 1)},
				"duplicate": {flushRow(6, 1, 1), flushRow(7, 1, 1), flushRow(6, 2, 2)},
				"epoch":     {{ID: 6, Account: "a", Epoch: math.MaxUint64}},
			} {
				if _, _, err := w.write(pg, ctx, bad); !errors.Is(err, ErrInvalidArgument) {
					t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
				}
			}
			if len(readPlayers(t, pg)) != 4 {
				t.Error("invalid calls wrote players")
			}
			// The temporary table of the COPY path is per call: a second flush on the same
			// connections, and many in a row, work.
			for i := range 5 {
				if _, _, err := w.write(pg, ctx, []PlayerRow{flushRow(4, float64(42+i), 1)}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestFlushPlayersZombie: a partitioned server that lost its players to a handoff (an older
// epoch) cannot overwrite what the new owner wrote, through either path, in a big batch or a
// small one; its rows are counted as fenced, and a player only it knows is still created.
func TestFlushPlayersZombie(t *testing.T) {
	ctx := context.Background()
	for _, w := range playerWriters {
		t.Run(w.name, func(t *testing.T) {
			pg := openTestPG(t)
			const n = 3000
			owner := make([]PlayerRow, n)
			zombie := make([]PlayerRow, n+1)
			for i := range owner {
				owner[i] = flushRow(int64(i+1), float64(i), 8)   // the new owner, epoch 8
				zombie[i] = flushRow(int64(i+1), -float64(i), 7) // the old owner, epoch 7
			}
			zombie[n] = flushRow(n+1, 1, 7)
			if wr, f, err := w.write(pg, ctx, owner); err != nil || wr != n || f != 0 {
				t.Fatalf("owner: written %d fenced %d, %v", wr, f, err)
			}
			for _, rows := range [][]PlayerRow{zombie, zombie[:2], zombie[n-1:]} {
				wr, f, err := w.write(pg, ctx, rows)
				wantW := 0
				if len(rows) > 0 && rows[len(rows)-1].ID == n+1 {
					wantW = 1
				}
				if err != nil || wr != wantW || f != len(rows)-wantW {
					t.Errorf("zombie, %d rows: written %d fenced %d, %v; want %d %d", len(rows), wr, f, err, wantW, len(rows)-wantW)
				}
			}
			got := readPlayers(t, pg)
			for i := range owner {
				if p := got[int64(i+1)]; p.x != float64(i) || p.epoch != 8 {
					t.Fatalf("player %d after the zombie's writes: %+v, want the owner's x %d epoch 8", i+1, p, i)
				}
			}
			if p := got[n+1]; p.epoch != 7 {
				t.Errorf("the player only the zombie knows: %+v", p)
			}
		})
	}
}

// readStats returns player id's stored stats, decoded.
func readStats(t *testing.T, pg *PG, id int64) map[string]any {
	t.Helper()
	var raw []byte
	if err := pg.pool.QueryRow(context.Background(), `SELECT stats FROM players WHERE id = $1`, id).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("player %d stats %s: %v", id, raw, err)
	}
	return m
}

// TestFlushPlayersStatsMerge: both paths merge a row's stats into the stored object (top-level
// keys: the row's win, the stored ones it lacks stay, keys written by others included) instead
// of replacing it; an empty object changes nothing; a fenced row merges nothing.
func TestFlushPlayersStatsMerge(t *testing.T) {
	for _, w := range playerWriters {
		t.Run(w.name, func(t *testing.T) {
			ctx := context.Background()
			pg := openTestPG(t)
			row := func(id int64, epoch uint64, stats string) PlayerRow {
				r := flushRow(id, 1, epoch)
				r.Stats = json.RawMessage(stats)
				return r
			}
			step := func(name string, rows []PlayerRow, wantW, wantF int, want map[int64]string) {
				t.Helper()
				n, f, err := w.write(pg, ctx, rows)
				if err != nil || n != wantW || f != wantF {
					t.Fatalf("%s: written %d fenced %d, %v; want %d %d", name, n, f, err, wantW, wantF)
				}
				for id, ws := range want {
					var wm map[string]any
					if err := json.Unmarshal([]byte(ws), &wm); err != nil {
						t.Fatal(err)
					}
					if got := readStats(t, pg, id); fmt.Sprint(got) != fmt.Sprint(wm) {
						t.Errorf("%s: player %d stats %v, want %v", name, id, got, wm)
					}
				}
			}
			step("insert", []PlayerRow{
				row(1, 5, `{"hp": 100, "level": 3, "quest": {"a": 1}}`),
				row(2, 5, `{"hp": 50}`),
			}, 2, 0, map[int64]string{
				1: `{"hp": 100, "level": 3, "quest": {"a": 1}}`,
				2: `{"hp": 50}`,
			})
			// Another writer (a game service) keeps a key of its own in the object.
			if _, err := pg.pool.Exec(ctx, `UPDATE players SET stats = stats || '{"gold": 7}' WHERE id = 1`); err != nil {
				t.Fatal(err)
			}
			step("merge", []PlayerRow{
				row(1, 5, `{"hp": 80}`),
				row(2, 6, `{"hp": 40, "mana": 9}`),
			}, 2, 0, map[int64]string{
				1: `{"hp": 80, "level": 3, "quest": {"a": 1}, "gold": 7}`,
				2: `{"hp": 40, "mana": 9}`,
			})
			step("top level only", []PlayerRow{row(1, 5, `{"quest": {"b": 2}, "level": null}`)}, 1, 0, map[int64]string{
				1: `{"hp": 80, "level": null, "quest": {"b": 2}, "gold": 7}`,
			})
			empty := row(2, 6, ``)
			step("empty", []PlayerRow{row(1, 5, `{}`), empty}, 2, 0, map[int64]string{
				1: `{"hp": 80, "level": null, "quest": {"b": 2}, "gold": 7}`,
				2: `{"hp": 40, "mana": 9}`,
			})
			step("fenced", []PlayerRow{row(2, 5, `{"hp": 1, "zombie": true}`), row(3, 1, `{"hp": 3}`)}, 1, 1, map[int64]string{
				2: `{"hp": 40, "mana": 9}`,
				3: `{"hp": 3}`,
			})
			// The other path merges into what this one wrote.
			other := playerWriters[0].write
			if w.name == playerWriters[0].name {
				other = playerWriters[1].write
			}
			if _, _, err := other(pg, ctx, []PlayerRow{row(1, 5, `{"hp": 70}`)}); err != nil {
				t.Fatal(err)
			}
			if got := readStats(t, pg, 1); fmt.Sprint(got) != fmt.Sprint(map[string]any{"hp": 70.0, "level": nil, "quest": map[string]any{"b": 2.0}, "gold": 7.0}) {
				t.Errorf("after the other path's write: %v", got)
			}
		})
	}
}

package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meridian-mmo/meridian/internal/pgtest"
)

// TestMain starts (lazily, on the first pgtest.URL) an ephemeral PostgreSQL cluster shared by
// this package's tests, and stops it at the end. Tests that do not call pgtest.URL are
// unaffected.
func TestMain(m *testing.M) { pgtest.Main(m) }

func testPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func openTestPG(t *testing.T) *PG {
	t.Helper()
	pg, err := OpenPG(context.Background(), pgtest.URL(t), DefaultPGConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	return pg
}

func allVersions(t *testing.T) []int {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for _, m := range ms {
		vs = append(vs, m.version)
	}
	return vs
}

func TestMigrationFiles(t *testing.T) {
	if _, err := migrations(); err != nil {
		t.Fatalf("the embedded migrations: %v", err)
	}
	for _, c := range []struct {
		files []string
		err   string
	}{
		{[]string{"0001_a.sql", "0002_b.sql"}, ""},
		{[]string{"0002_b.sql", "0001_a.sql", "0003_c.sql"}, ""},
		{[]string{"0001_a.sql", "0003_c.sql"}, "without gaps"},
		{[]string{"0001_a.sql", "0001_b.sql"}, "without gaps"},
		{[]string{"0002_a.sql"}, "without gaps"},
		{[]string{"1_a.sql"}, "NNNN_name.sql"},
		{[]string{"0001-a.sql"}, "NNNN_name.sql"},
		{nil, "no migrations"},
	} {
		fsys := fstest.MapFS{}
		for _, f := range c.files {
			fsys["migrations/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
		}
		_, err := loadMigrations(fsys)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v: error %v, want %q", c.files, err, c.err)
		}
	}
}

// TestMigrate: a fresh database gets every migration; a second run applies nothing.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t, pgtest.URL(t))
	applied, err := Migrate(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if want := allVersions(t); !slices.Equal(applied, want) {
		t.Fatalf("first Migrate applied %v, want %v", applied, want)
	}
	applied, err = Migrate(ctx, pool)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
	for _, table := range []string{"players", "items", "events", "schema_migrations"} {
		var ok bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s: exists %v, %v", table, ok, err)
		}
	}
}

// TestMigrateConcurrent: servers migrating one database together apply each migration once.
func TestMigrateConcurrent(t *testing.T) {
	url := pgtest.URL(t)
	const n = 6
	pools := []*pgxpool.Pool{testPool(t, url), testPool(t, url)}
	var wg sync.WaitGroup
	results := make([][]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = Migrate(context.Background(), pools[i%len(pools)]) })
	}
	wg.Wait()
	var all []int
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Migrate %d: %v", i, errs[i])
		}
		all = append(all, results[i]...)
	}
	slices.Sort(all)
	if want := allVersions(t); !slices.Equal(all, want) {
		t.Errorf("the concurrent Migrates applied %v between them, want each of %v once", all, want)
	}
}

func TestMigrateRefusesUnknownSchema(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, sql string
		want      error
	}{
		{"edited", `UPDATE schema_migrations SET checksum = 'x' WHERE version = 1`, ErrMigrationChecksum},
		{"newer", `INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_future.sql', 'x')`, ErrSchemaTooNew},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := pgtest.URL(t)
			pool := testPool(t, url)
			if _, err := Migrate(ctx, pool); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			if _, err := Migrate(ctx, pool); !errors.Is(err, c.want) {
				t.Errorf("Migrate: %v, want %v", err, c.want)
			}
			if pg, err := OpenPG(ctx, url, DefaultPGConfig()); !errors.Is(err, c.want) {
				if pg != nil {
					pg.Close()
				}
				t.Errorf("OpenPG: %v, want %v", err, c.want)
			}
		})
	}
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestEventsAppendOnly: events can be inserted (once per idempotency key), never changed.
func TestEventsAppendOnly(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	insert := `INSERT INTO events (idem_key, kind, player, payload) VALUES ($1, $2, $3, $4)
	           ON CONFLICT (idem_key) DO NOTHING`
	for i, want := range []int64{1, 0} { // a redelivery inserts nothing
		tag, err := pg.pool.Exec(ctx, insert, "loot:42:7", "loot", 42, json.RawMessage(`{"item": 7}`))
		if err != nil || tag.RowsAffected() != want {
			t.Fatalf("delivery %d: %v rows, %v; want %d", i+1, tag.RowsAffected(), err, want)
		}
	}
	if _, err := pg.pool.Exec(ctx, `INSERT INTO events (idem_key, kind) VALUES ('loot:42:7', 'other')`); pgCode(err) != "23505" {
		t.Errorf("a second event with the same key: %v, want a unique violation", err)
	}
	for _, sql := range []string{
		`UPDATE events SET kind = 'tampered'`,
		`DELETE FROM events`,
		`TRUNCATE events`,
	} {
		_, err := pg.pool.Exec(ctx, sql)
		if pgCode(err) != "23001" || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the append-only error (23001)", sql, err)
		}
	}
	var n int
	var kind string
	if err := pg.pool.QueryRow(ctx, `SELECT count(*), min(kind) FROM events`).Scan(&n, &kind); err != nil || n != 1 || kind != "loot" {
		t.Errorf("events after the refused changes: %d rows, kind %q, %v", n, kind, err)
	}
}

func TestItemsSchema(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	if _, _, err := pg.UpsertPlayers(ctx, []PlayerRow{{ID: 1, Account: "a", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sql  string
		code string
	}{
		{`INSERT INTO items (id, owner, kind, attributes) VALUES (1, 1, 'sword', '{"dmg": 7}')`, ""},
		{`INSERT INTO items (id, cell, x, z, kind) VALUES (2, 5, 1.5, 2.5, 'coin')`, ""},
		{`INSERT INTO items (id, kind) VALUES (3, 'nowhere')`, "23514"},
		{`INSERT INTO items (id, owner, cell, kind) VALUES (4, 1, 5, 'both')`, "23514"},
		{`INSERT INTO items (id, owner, kind) VALUES (5, 999, 'orphan')`, "23503"},
		{`INSERT INTO items (id, owner, kind, attributes) VALUES (6, 1, 'x', '[1]')`, "23514"},
		{`UPDATE items SET owner = NULL, cell = 5, version = version + 1 WHERE id = 1 AND version = 1`, ""},
	} {
		_, err := pg.pool.Exec(ctx, c.sql)
		if pgCode(err) != c.code || c.code == "" && err != nil {
			t.Errorf("%s: %v, want code %q", c.sql, err, c.code)
		}
	}
}

type storedPlayer struct {
	account string
	x       float64
	cell    int64
	stats   string
	epoch   int64
}

func readPlayers(t *testing.T, pg *PG) map[int64]storedPlayer {
	t.Helper()
	rows, _ := pg.pool.Query(context.Background(), `SELECT id, account, x, cell, stats::text, epoch FROM players`)
	out := map[int64]storedPlayer{}
	var id int64
	var p storedPlayer
	if _, err := pgx.ForEachRow(rows, []any{&id, &p.account, &p.x, &p.cell, &p.stats, &p.epoch}, func() error {
		out[id] = p
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUpsertPlayers: rows are inserted, then overwritten by equal or newer epochs only.
func TestUpsertPlayers(t *testing.T) {
	ctx := context.Background()
	pg := openTestPG(t)
	row := func(id int64, x float64, epoch uint64) PlayerRow {
		return PlayerRow{ID: id, Account: fmt.Sprint("acct", id), X: x, Y: 1, Z: 2, Cell: 7, Epoch: epoch,
			Stats: json.RawMessage(fmt.Sprintf(`{"hp": %d}`, int(x)))}
	}
	w, f, err := pg.UpsertPlayers(ctx, []PlayerRow{row(3, 30, 5), row(1, 10, 5), row(2, 20, 5)})
	if err != nil || w != 3 || f != 0 {
		t.Fatalf("insert: written %d fenced %d, %v; want 3 0", w, f, err)
	}
	// 1: older epoch, fenced. 2: same epoch, written. 3: newer, written. 4: new player.
	next := []PlayerRow{row(1, 11, 4), row(2, 21, 5), row(3, 31, 6), row(4, 41, 1)}
	next[2].Account = "renamed" // ignored on update
	next[1].Stats = nil         // {}: merged, changes nothing
	w, f, err = pg.UpsertPlayers(ctx, next)
	if err != nil || w != 3 || f != 1 {
		t.Fatalf("update: written %d fenced %d, %v; want 3 1", w, f, err)
	}
	got := readPlayers(t, pg)
	want := map[int64]storedPlayer{
		1: {"acct1", 10, 7, `{"hp": 10}`, 5},
		2: {"acct2", 21, 7, `{"hp": 20}`, 5}, // no stats: the stored ones stay
		3: {"acct3", 31, 7, `{"hp": 31}`, 6},
		4: {"acct4", 41, 7, `{"hp": 41}`, 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("players:\n got %v\nwant %v", got, want)
	}
	// A fenced-only call writes nothing.
	if w, f, err := pg.UpsertPlayers(ctx, []PlayerRow{row(3, 99, 5)}); err != nil || w != 0 || f != 1 {
		t.Errorf("stale write: written %d fenced %d, %v; want 0 1", w, f, err)
	}
	if w, f, err := pg.UpsertPlayers(ctx, nil); err != nil || w != 0 || f != 0 {
		t.Errorf("empty call: %d %d %v", w, f, err)
	}
	// An account held by another player fails the whole call.
	clash := row(9, 90, 1)
	clash.Account = "acct1"
	if _, _, err := pg.UpsertPlayers(ctx, []PlayerRow{row(5, 50, 1), clash}); pgCode(err) != "23505" {
		t.Errorf("account clash: %v, want a unique violation", err)
	}
	if _, ok := readPlayers(t, pg)[5]; ok {
		t.Error("a failed call wrote part of its rows")
	}
}

func TestUpsertPlayersInvalid(t *testing.T) {
	pg := openTestPG(t)
	ok := PlayerRow{ID: 1, Account: "a", Epoch: 1}
	for name, mut := range map[string]func(*PlayerRow){
		"id 0":           func(r *PlayerRow) { r.ID = 0 },
		"no account":     func(r *PlayerRow) { r.Account = "" },
		"long account":   func(r *PlayerRow) { r.Account = strings.Repeat("a", MaxAccountLen+1) },
		"NaN":            func(r *PlayerRow) { r.Y = math.NaN() },
		"Inf":            func(r *PlayerRow) { r.X = math.Inf(-1) },
		"huge cell":      func(r *PlayerRow) { r.Cell = math.MaxInt64 + 1 },
		"huge epoch":     func(r *PlayerRow) { r.Epoch = math.MaxUint64 },
		"stats array":    func(r *PlayerRow) { r.Stats = json.RawMessage(`[1]`) },
		"stats invalid":  func(r *PlayerRow) { r.Stats = json.RawMessage(`{"a":`) },
		"stats trailing": func(r *PlayerRow) { r.Stats = json.RawMessage(`{} {}`) },
	} {
		r := ok
		mut(&r)
		if _, _, err := pg.UpsertPlayers(context.Background(), []PlayerRow{r}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	dup := ok
	dup.Epoch = 2
	if _, _, err := pg.UpsertPlayers(context.Background(), []PlayerRow{ok, {ID: 2, Account: "b"}, dup}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("duplicate id: %v, want ErrInvalidArgument", err)
	}
	if n := len(readPlayers(t, pg)); n != 0 {
		t.Errorf("invalid calls wrote %d players", n)
	}
}

// TestUpsertPlayersThroughput reports the rate of a 50 000-player position flush (inserting,
// then updating every row). It asserts nothing about speed.
func TestUpsertPlayersThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	ctx := context.Background()
	pg := openTestPG(t)
	const n = 50_000
	rows := make([]PlayerRow, n)
	for i := range rows {
		rows[i] = PlayerRow{ID: int64(n - i), Account: fmt.Sprint("p", i), X: float64(i), Y: 0, Z: float64(i) / 2,
			Cell: uint64(i % 64), Stats: json.RawMessage(`{"hp": 100, "level": 3}`), Epoch: 1}
	}
	for _, pass := range []string{"insert", "update"} {
		start := time.Now()
		w, f, err := pg.UpsertPlayers(ctx, rows)
		d := time.Since(start)
		if err != nil || w != n || f != 0 {
			t.Fatalf("%s: written %d fenced %d, %v", pass, w, f, err)
		}
		t.Logf("%s of %d players in one call: %v, %.0f rows/s", pass, n, d.Round(time.Millisecond), n/d.Seconds())
		for i := range rows {
			rows[i].X++
			rows[i].Epoch = 2
		}
	}
}

func TestPGConfigValidate(t *testing.T) {
	if err := DefaultPGConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, c := range []struct {
		mut   func(*PGConfig)
		field string
	}{
		{func(c *PGConfig) { c.MaxConns = 0 }, "MaxConns"},
		{func(c *PGConfig) { c.MaxConns = 1001 }, "MaxConns"},
		{func(c *PGConfig) { c.ConnectTimeout = 0 }, "ConnectTimeout"},
		{func(c *PGConfig) { c.ConnectTimeout = time.Hour }, "ConnectTimeout"},
		{func(c *PGConfig) { c.StatementTimeout = -time.Second }, "StatementTimeout"},
		{func(c *PGConfig) { c.StatementTimeout = 2 * time.Hour }, "StatementTimeout"},
		{func(c *PGConfig) { c.StatementTimeout = 1500 * time.Microsecond }, "StatementTimeout"},
	} {
		cfg := DefaultPGConfig()
		c.mut(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "PGConfig."+c.field) {
			t.Errorf("%+v: %v, want ErrInvalidOptions naming %s", cfg, err, c.field)
		}
		if _, err := OpenPG(context.Background(), "postgres://unused", cfg); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("OpenPG with %+v: %v", cfg, err)
		}
	}
	cfg := DefaultPGConfig()
	cfg.StatementTimeout = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("StatementTimeout 0 (none): %v", err)
	}
}

func TestOpenPG(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenPG(ctx, "postgres://u:secret@h:notaport/db", DefaultPGConfig()); !errors.Is(err, ErrInvalidOptions) || strings.Contains(err.Error(), "secret") {
		t.Errorf("a malformed URL: %v; want ErrInvalidOptions without the password", err)
	}
	cfg := DefaultPGConfig()
	cfg.ConnectTimeout = 200 * time.Millisecond
	start := time.Now()
	if _, err := OpenPG(ctx, "host="+t.TempDir()+" user=x dbname=x sslmode=disable", cfg); err == nil {
		t.Error("OpenPG with no server: no error")
	} else if d := time.Since(start); d > 10*time.Second {
		t.Errorf("OpenPG with no server took %v", d)
	}

	cfg = DefaultPGConfig()
	cfg.StatementTimeout = 1500 * time.Millisecond
	pg, err := OpenPG(ctx, pgtest.URL(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	var st, app string
	if err := pg.pool.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('application_name')").Scan(&st, &app); err != nil {
		t.Fatal(err)
	}
	if st != "1500ms" || app != "meridian" {
		t.Errorf("statement_timeout %q, application_name %q; want 1500ms, meridian", st, app)
	}
	if _, err := pg.pool.Exec(ctx, "SELECT pg_sleep(3)"); pgCode(err) != "57014" {
		t.Errorf("a statement over the timeout: %v, want query_canceled (57014)", err)
	}
}

package persistence

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridian-mmo/meridian/wire"
)

// memOptions returns the default options on fs (a fresh in-memory filesystem if nil).
func memOptions(fs vfs.FS) StoreOptions {
	o := DefaultStoreOptions()
	if fs == nil {
		fs = vfs.NewMem()
	}
	o.FS = fs
	o.MemTableSize = 1 << 20 // flush often, so that reads cross memtables and sstables
	return o
}

func openT(t testing.TB, opts StoreOptions) *Store {
	t.Helper()
	s, err := OpenStore("db", opts)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

func closeT(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// genEntities returns n valid records with distinct random ids, in random order.
func genEntities(rng *rand.Rand, n int) []wire.EntityRecord {
	recs := make([]wire.EntityRecord, 0, n)
	ids := make(map[wire.EntityID]bool, n)
	for len(recs) < n {
		id := wire.EntityID(rng.Uint64N(1<<40) + 1)
		if ids[id] {
			continue
		}
		ids[id] = true
		r := wire.EntityRecord{
			ID:            id,
			X:             rng.Int32N(1<<24) - 1<<23,
			Y:             rng.Int32N(1 << 12),
			Z:             rng.Int32N(1<<24) - 1<<23,
			VX:            rng.Int32N(257) - 128,
			VZ:            rng.Int32N(257) - 128,
			Yaw:           uint16(rng.IntN(wire.YawSteps)),
			Kind:          uint8(rng.IntN(8)),
			Action:        uint8(rng.IntN(4)),
			AuthEpoch:     rng.Uint64N(1000),
			LastSeq:       rng.Uint32(),
			LastInputTick: wire.Tick(rng.Uint32()),
		}
		if rng.IntN(2) == 0 {
			r.Home = rng.Uint64N(100) + 1
			r.Client = rng.Uint32N(1<<20) + 1
		}
		recs = append(recs, r)
	}
	return recs
}

func sortedByID(recs []wire.EntityRecord) []wire.EntityRecord {
	s := slices.Clone(recs)
	slices.SortFunc(s, func(a, b wire.EntityRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return s
}

// sameCheckpoint reports how got differs from want (whose entities may be in any order).
func sameCheckpoint(got, want Checkpoint) error {
	if got.Cell != want.Cell || got.Epoch != want.Epoch || got.Tick != want.Tick {
		return fmt.Errorf("header cell %d epoch %d tick %d, want cell %d epoch %d tick %d",
			got.Cell, got.Epoch, got.Tick, want.Cell, want.Epoch, want.Tick)
	}
	w := sortedByID(want.Entities)
	if len(got.Entities) != len(w) {
		return fmt.Errorf("%d entities, want %d", len(got.Entities), len(w))
	}
	for i := range w {
		if got.Entities[i] != w[i] {
			return fmt.Errorf("entity %d: %+v, want %+v", i, got.Entities[i], w[i])
		}
	}
	return nil
}

func TestStoreOptionsValidate(t *testing.T) {
	if err := DefaultStoreOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		field string
		mut   func(*StoreOptions)
	}{
		{"CacheSize", func(o *StoreOptions) { o.CacheSize = 0 }},
		{"CacheSize", func(o *StoreOptions) { o.CacheSize = 1<<40 + 1 }},
		{"MemTableSize", func(o *StoreOptions) { o.MemTableSize = 1<<20 - 1 }},
		{"MemTableSize", func(o *StoreOptions) { o.MemTableSize = 1<<30 + 1 }},
	} {
		o := DefaultStoreOptions()
		c.mut(&o)
		err := o.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate = %v, want ErrInvalidOptions naming the field", c.field, err)
		}
		if _, err := OpenStore("db", o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: OpenStore = %v, want ErrInvalidOptions", c.field, err)
		}
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := openT(t, memOptions(nil))
	defer closeT(t, s)

	if _, ok, err := s.LoadCheckpoint(7); ok || err != nil {
		t.Fatalf("LoadCheckpoint of an unknown cell = %v, %v", ok, err)
	}
	want := map[uint64]Checkpoint{}
	for i, n := range []int{0, 1, 2, 100, 5000} {
		cp := Checkpoint{Cell: uint64(10 + i), Epoch: uint64(i), Tick: uint32(1000 * i), Entities: genEntities(rng, n)}
		if err := s.WriteCheckpoint(cp); err != nil {
			t.Fatalf("WriteCheckpoint(%d entities): %v", n, err)
		}
		want[cp.Cell] = cp
	}
	// Overwrite one at the same epoch, later tick.
	cp := Checkpoint{Cell: 13, Epoch: 3, Tick: 3001, Entities: genEntities(rng, 50)}
	if err := s.WriteCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	want[13] = cp
	for cell, w := range want {
		got, ok, err := s.LoadCheckpoint(cell)
		if err != nil || !ok {
			t.Fatalf("LoadCheckpoint(%d) = %v, %v", cell, ok, err)
		}
		if err := sameCheckpoint(got, w); err != nil {
			t.Errorf("cell %d: %v", cell, err)
		}
	}
	cells, err := s.Cells()
	if err != nil || !slices.Equal(cells, []uint64{10, 11, 12, 13, 14}) {
		t.Fatalf("Cells = %v, %v", cells, err)
	}
}

func TestCheckpointInvalid(t *testing.T) {
	s := openT(t, memOptions(nil))
	defer closeT(t, s)
	bad := []Checkpoint{
		{Cell: 0, Epoch: 1},
		{Cell: 1, Entities: []wire.EntityRecord{{ID: 0}}},
		{Cell: 1, Entities: []wire.EntityRecord{{ID: 5}, {ID: 5}}},
		{Cell: 1, Entities: []wire.EntityRecord{{ID: 5, Yaw: wire.YawSteps}}},
		{Cell: 1, Entities: []wire.EntityRecord{{ID: 5, Home: 3}}},
	}
	for i, cp := range bad {
		if err := s.WriteCheckpoint(cp); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("case %d: WriteCheckpoint = %v, want ErrInvalidArgument", i, err)
		}
	}
	if err := s.DeleteCheckpoint(0, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("DeleteCheckpoint(0) = %v", err)
	}
	if cells, err := s.Cells(); err != nil || len(cells) != 0 {
		t.Errorf("Cells after rejected writes = %v, %v", cells, err)
	}
}

func TestCheckpointFencing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fs := vfs.NewMem()
	s := openT(t, memOptions(fs))
	write := func(epoch uint64, tick uint32) error {
		return s.WriteCheckpoint(Checkpoint{Cell: 5, Epoch: epoch, Tick: tick, Entities: genEntities(rng, 3)})
	}
	mustLoad := func(epoch uint64, tick uint32) {
		t.Helper()
		cp, ok, err := s.LoadCheckpoint(5)
		if err != nil || !ok || cp.Epoch != epoch || cp.Tick != tick {
			t.Fatalf("LoadCheckpoint = %+v, %v, %v; want epoch %d tick %d", cp, ok, err, epoch, tick)
		}
	}
	if err := write(4, 10); err != nil {
		t.Fatal(err)
	}
	if err := write(3, 20); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("older epoch: %v, want ErrStaleEpoch", err)
	}
	mustLoad(4, 10)
	if err := write(4, 11); err != nil {
		t.Fatalf("same epoch: %v", err)
	}
	if err := write(6, 12); err != nil {
		t.Fatalf("newer epoch: %v", err)
	}
	mustLoad(6, 12)
	if err := s.DeleteCheckpoint(5, 5); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("delete at an older epoch: %v, want ErrStaleEpoch", err)
	}
	mustLoad(6, 12)
	if err := s.DeleteCheckpoint(5, 7); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := s.DeleteCheckpoint(5, 7); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	check := func() {
		t.Helper()
		if _, ok, err := s.LoadCheckpoint(5); ok || err != nil {
			t.Fatalf("LoadCheckpoint after delete = %v, %v", ok, err)
		}
		if cells, err := s.Cells(); err != nil || len(cells) != 0 {
			t.Fatalf("Cells after delete = %v, %v", cells, err)
		}
		for _, e := range []uint64{6, 7} {
			if err := write(e, 13); !errors.Is(err, ErrStaleEpoch) {
				t.Fatalf("write at epoch %d after the cell left at 7: %v, want ErrStaleEpoch", e, err)
			}
		}
		if err := s.DeleteCheckpoint(5, 6); !errors.Is(err, ErrStaleEpoch) {
			t.Fatalf("delete at an older epoch than the fence: %v", err)
		}
	}
	check()
	// The fence survives a restart (read from disk, not the cache).
	closeT(t, s)
	s = openT(t, memOptions(fs))
	check()
	if err := write(8, 14); err != nil {
		t.Fatalf("the cell coming back at a newer epoch: %v", err)
	}
	mustLoad(8, 14)
	// Deleting a cell that never had a checkpoint still fences it.
	if err := s.DeleteCheckpoint(9, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteCheckpoint(Checkpoint{Cell: 9, Epoch: 3}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("write to a fenced fresh cell: %v", err)
	}
	closeT(t, s)
}

func TestFormatVersion(t *testing.T) {
	fs := vfs.NewMem()
	closeT(t, openT(t, memOptions(fs)))
	raw := func(f func(db *pebble.DB)) {
		db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		f(db)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	raw(func(db *pebble.DB) { _ = db.Set(formatKey, []byte{0, 0, 0, 99}, pebble.Sync) })
	if _, err := OpenStore("db", memOptions(fs)); !errors.Is(err, ErrFormatVersion) {
		t.Fatalf("OpenStore of format 99 = %v, want ErrFormatVersion", err)
	}
	raw(func(db *pebble.DB) { _ = db.Delete(formatKey, pebble.Sync); _ = db.Set([]byte("x"), nil, pebble.Sync) })
	if _, err := OpenStore("db", memOptions(fs)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenStore without a format key = %v, want ErrCorrupt", err)
	}
}

func TestCorruptCheckpoint(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, memOptions(fs))
	if err := s.WriteCheckpoint(Checkpoint{Cell: 1, Epoch: 1, Entities: genEntities(rand.New(rand.NewPCG(1, 1)), 20)}); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	v, closer, err := db.Get(checkpointKey(1))
	if err != nil {
		t.Fatal(err)
	}
	v = slices.Clone(v)
	closer.Close()
	v[len(v)-1] ^= 1 // breaks the zstd checksum
	_ = db.Set(checkpointKey(1), v, pebble.Sync)
	_ = db.Close()
	s = openT(t, memOptions(fs))
	defer closeT(t, s)
	if _, _, err := s.LoadCheckpoint(1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadCheckpoint of a corrupt block = %v, want ErrCorrupt", err)
	}
}

func TestClosedStore(t *testing.T) {
	s := openT(t, memOptions(nil))
	closeT(t, s)
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if err := s.WriteCheckpoint(Checkpoint{Cell: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteCheckpoint = %v", err)
	}
	if _, _, err := s.LoadCheckpoint(1); !errors.Is(err, ErrClosed) {
		t.Errorf("LoadCheckpoint = %v", err)
	}
	if _, err := s.Cells(); !errors.Is(err, ErrClosed) {
		t.Errorf("Cells = %v", err)
	}
	if err := s.AppendEvents([]Event{{Key: "k", Kind: "loot"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendEvents = %v", err)
	}
	if _, err := s.PendingEvents(0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("PendingEvents = %v", err)
	}
}

// TestDiskReopen runs on the real filesystem: what was written is there after a reopen.
func TestDiskReopen(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	s, err := OpenStore(dir, DefaultStoreOptions())
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Cell: 1 << 40, Epoch: 9, Tick: 77, Entities: genEntities(rng, 1000)}
	if err := s.WriteCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents([]Event{{Key: "a", Kind: "death", Cell: 1 << 40, Epoch: 9, Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s, err = OpenStore(dir, DefaultStoreOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	got, ok, err := s.LoadCheckpoint(1 << 40)
	if err != nil || !ok {
		t.Fatalf("LoadCheckpoint = %v, %v", ok, err)
	}
	if err := sameCheckpoint(got, cp); err != nil {
		t.Fatal(err)
	}
	evs, err := s.PendingEvents(0, 10)
	if err != nil || len(evs) != 1 || evs[0].Seq != 1 || evs[0].Key != "a" {
		t.Fatalf("PendingEvents = %+v, %v", evs, err)
	}
}

// TestConcurrentWriters runs checkpoints of several cells and outbox writes at once (for the
// race detector, and group commit across cells).
func TestConcurrentWriters(t *testing.T) {
	s := openT(t, memOptions(nil))
	defer closeT(t, s)
	const cells, rounds = 8, 20
	last := make([]Checkpoint, cells)
	var wg sync.WaitGroup
	errs := make(chan error, cells+1)
	for c := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 99))
			for r := range rounds {
				cp := Checkpoint{Cell: uint64(c + 1), Epoch: uint64(r / 5), Tick: uint32(r), Entities: genEntities(rng, 200)}
				if err := s.WriteCheckpoint(cp); err != nil {
					errs <- err
					return
				}
				last[c] = cp
				if _, _, err := s.LoadCheckpoint(uint64(c + 1)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range rounds * 2 {
			if err := s.AppendEvents([]Event{{Key: fmt.Sprint("e", r), Kind: "loot"}}); err != nil {
				errs <- err
				return
			}
			if r%5 == 4 {
				if err := s.AckEvents(uint64(r - 2)); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for c := range cells {
		got, ok, err := s.LoadCheckpoint(uint64(c + 1))
		if err != nil || !ok {
			t.Fatalf("cell %d: %v, %v", c+1, ok, err)
		}
		if err := sameCheckpoint(got, last[c]); err != nil {
			t.Fatalf("cell %d: %v", c+1, err)
		}
	}
	evs, err := s.PendingEvents(0, 100)
	if err != nil || len(evs) != 3 || evs[0].Seq != 38 || evs[2].Seq != 40 { // acked up to 37
		t.Fatalf("PendingEvents = %+v, %v", evs, err)
	}
}

// quietLogger silences the raw pebble.Open calls of the tests.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

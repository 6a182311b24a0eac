package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Crash consistency on Pebble's crashable in-memory filesystem. A random history of
// checkpoints (of random size and contents), stale writes, deletions, event appends and
// acknowledgements runs against a Store and a model of what it acknowledged. After every
// call, the filesystem is crash-cloned twice: keeping exactly what was synced, and keeping a
// random share of what was not. Flushes and compactions are mixed in. Each clone is reopened as a Store and must hold the model's
// state exactly: every cell's latest acknowledged checkpoint whole (decodes, equals), each
// fence, every acknowledged and unacknowledged event, the sequence high-water mark. Some calls
// are also cloned while in flight: the clone must then hold the state before the call or after
// it, nothing in between.

const crashCells = 5

type crashModel struct {
	live    map[uint64]Checkpoint
	fences  map[uint64]fence
	pending []StoredEvent
	lastSeq uint64
}

func newCrashModel() *crashModel {
	return &crashModel{live: map[uint64]Checkpoint{}, fences: map[uint64]fence{}}
}

func (m *crashModel) clone() *crashModel {
	return &crashModel{
		live:    maps.Clone(m.live),
		fences:  maps.Clone(m.fences),
		pending: slices.Clone(m.pending),
		lastSeq: m.lastSeq,
	}
}

// match reports how the store's contents differ from m (reads only).
func (m *crashModel) match(s *Store) error {
	cells, err := s.Cells()
	if err != nil {
		return err
	}
	if want := slices.Sorted(maps.Keys(m.live)); !slices.Equal(cells, want) {
		return fmt.Errorf("Cells = %v, want %v", cells, want)
	}
	for cell := uint64(1); cell <= crashCells; cell++ {
		got, ok, err := s.LoadCheckpoint(cell)
		if err != nil {
			return fmt.Errorf("cell %d: %w", cell, err)
		}
		want, live := m.live[cell]
		if ok != live {
			return fmt.Errorf("cell %d: checkpoint present %v, want %v", cell, ok, live)
		}
		if live {
			if err := sameCheckpoint(got, want); err != nil {
				return fmt.Errorf("cell %d: %w", cell, err)
			}
		}
	}
	evs, err := s.PendingEvents(0, 1<<20)
	if err != nil {
		return err
	}
	if len(evs) != len(m.pending) {
		return fmt.Errorf("%d pending events, want %d", len(evs), len(m.pending))
	}
	for i, e := range evs {
		w := m.pending[i]
		if e.Seq != w.Seq || e.Key != w.Key || e.Kind != w.Kind || e.Cell != w.Cell || e.Epoch != w.Epoch ||
			!bytes.Equal(e.Payload, w.Payload) {
			return fmt.Errorf("pending event %d = %+v, want %+v", i, e, w)
		}
	}
	return nil
}

// checkFences checks, by writes the clone must reject, that every fence of m is in force, and
// that the next event gets sequence number m.lastSeq+1. It writes to s.
func (m *crashModel) checkFences(s *Store) error {
	for cell, f := range m.fences {
		if !f.exists || f.live && f.epoch == 0 {
			continue
		}
		stale := f.epoch - 1
		if !f.live {
			stale = f.epoch
		}
		if err := s.WriteCheckpoint(Checkpoint{Cell: cell, Epoch: stale}); !errors.Is(err, ErrStaleEpoch) {
			return fmt.Errorf("cell %d: write at epoch %d past fence %+v = %v, want ErrStaleEpoch", cell, stale, f, err)
		}
	}
	if err := s.AppendEvents([]Event{{Key: "fresh-key-never-used", Kind: "probe"}}); err != nil {
		return err
	}
	evs, err := s.PendingEvents(m.lastSeq, 1)
	if err != nil {
		return err
	}
	if len(evs) != 1 || evs[0].Seq != m.lastSeq+1 || evs[0].Key != "fresh-key-never-used" {
		return fmt.Errorf("after reopen, the next event is %+v, want seq %d", evs, m.lastSeq+1)
	}
	return nil
}

// verifyClone reopens fs and requires it to match one of the models.
func verifyClone(t *testing.T, fs vfs.FS, label string, models ...*crashModel) {
	t.Helper()
	s, err := OpenStore("db", memOptions(fs))
	if err != nil {
		t.Fatalf("%s: reopening the crash clone: %v", label, err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Fatalf("%s: close: %v", label, err)
		}
	}()
	var errs []error
	for _, m := range models {
		err := m.match(s)
		if err == nil {
			if err := m.checkFences(s); err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			return
		}
		errs = append(errs, err)
	}
	t.Fatalf("%s: the reopened clone matches no acceptable state: %v", label, errors.Join(errs...))
}

var eventKinds = []string{"loot", "trade", "death"}

func TestCrashConsistency(t *testing.T) {
	seeds, ops := []uint64{1, 2, 3, 4}, 80
	if testing.Short() {
		seeds, ops = seeds[:2], 30
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			crashHistory(t, seed, ops)
		})
	}
}

func crashHistory(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a54))
	mem := vfs.NewCrashableMem()
	s := openT(t, memOptions(mem))
	defer closeT(t, s)
	defer func() {
		mt := s.db.Metrics()
		t.Logf("seed %d: %d flushes, %d compactions", seed, mt.Flush.Count, mt.Compact.Count)
	}()
	m := newCrashModel()
	tick := uint32(0)

	// inFlight runs op while another goroutine crash-clones the filesystem after a random
	// short delay, and returns the clone.
	inFlight := func(op func()) *vfs.MemFS {
		ch := make(chan *vfs.MemFS, 1)
		delay := time.Duration(rng.IntN(400)) * time.Microsecond
		go func() {
			time.Sleep(delay)
			ch <- mem.CrashClone(vfs.CrashCloneCfg{})
		}()
		op()
		return <-ch
	}

	for i := range ops {
		before := m.clone()
		cell := uint64(rng.IntN(crashCells) + 1)
		f := m.fences[cell]
		var label string
		var racing *vfs.MemFS
		switch r := rng.IntN(100); {
		case r < 8: // Pebble's own work, which a crash may interrupt: a flush or a compaction
			label = "flush"
			work := func() {
				if err := s.db.Flush(); err != nil {
					t.Fatalf("op %d flush: %v", i, err)
				}
			}
			if r < 2 {
				label = "compaction"
				work = func() {
					if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
						t.Fatalf("op %d compaction: %v", i, err)
					}
				}
			}
			if rng.IntN(2) == 0 {
				racing = inFlight(work)
			} else {
				work()
			}
		case r < 40: // a checkpoint
			epoch := rng.Uint64N(3)
			switch {
			case f.exists && f.live:
				epoch = f.epoch + rng.Uint64N(2)
			case f.exists:
				epoch = f.epoch + 1 + rng.Uint64N(2)
			}
			n := rng.IntN(200)
			if rng.IntN(3) == 0 {
				n = rng.IntN(3000)
			}
			tick += uint32(rng.IntN(100) + 1)
			cp := Checkpoint{Cell: cell, Epoch: epoch, Tick: tick, Entities: genEntities(rng, n)}
			label = fmt.Sprintf("checkpoint cell %d epoch %d, %d entities", cell, epoch, n)
			write := func() {
				if err := s.WriteCheckpoint(cp); err != nil {
					t.Fatalf("op %d %s: %v", i, label, err)
				}
			}
			if rng.IntN(4) == 0 {
				racing = inFlight(write)
			} else {
				write()
			}
			m.live[cell] = cp
			m.fences[cell] = fence{exists: true, live: true, epoch: epoch}
		case r < 48: // a stale checkpoint, rejected
			if !f.exists || f.live && f.epoch == 0 {
				continue
			}
			var epoch uint64
			if f.live {
				epoch = rng.Uint64N(f.epoch)
			} else {
				epoch = rng.Uint64N(f.epoch + 1)
			}
			label = fmt.Sprintf("stale checkpoint cell %d epoch %d", cell, epoch)
			err := s.WriteCheckpoint(Checkpoint{Cell: cell, Epoch: epoch, Entities: genEntities(rng, 10)})
			if !errors.Is(err, ErrStaleEpoch) {
				t.Fatalf("op %d %s: %v, want ErrStaleEpoch", i, label, err)
			}
		case r < 55: // the cell given away
			epoch := rng.Uint64N(3)
			if f.exists {
				epoch = f.epoch + rng.Uint64N(2)
			}
			label = fmt.Sprintf("delete cell %d epoch %d", cell, epoch)
			if err := s.DeleteCheckpoint(cell, epoch); err != nil {
				t.Fatalf("op %d %s: %v", i, label, err)
			}
			delete(m.live, cell)
			m.fences[cell] = fence{exists: true, epoch: epoch}
		case r < 80: // events
			evs := make([]Event, rng.IntN(5)+1)
			pending := map[string]bool{}
			for _, e := range m.pending {
				pending[e.Key] = true
			}
			for j := range evs {
				var payload []byte
				if n := rng.IntN(200); n > 0 {
					payload = make([]byte, n)
					for k := range payload {
						payload[k] = byte(rng.Uint32())
					}
				}
				evs[j] = Event{
					Key:     fmt.Sprint("k", rng.IntN(30)),
					Kind:    eventKinds[rng.IntN(len(eventKinds))],
					Cell:    cell,
					Epoch:   rng.Uint64N(10),
					Payload: payload,
				}
			}
			label = fmt.Sprintf("append %d events", len(evs))
			appendEvs := func() {
				if err := s.AppendEvents(evs); err != nil {
					t.Fatalf("op %d %s: %v", i, label, err)
				}
			}
			if rng.IntN(4) == 0 {
				racing = inFlight(appendEvs)
			} else {
				appendEvs()
			}
			for _, e := range evs {
				if pending[e.Key] {
					continue
				}
				pending[e.Key] = true
				m.lastSeq++
				m.pending = append(m.pending, StoredEvent{Seq: m.lastSeq, Event: e})
			}
		default: // acknowledge a prefix
			upTo := rng.Uint64N(m.lastSeq + 1)
			label = fmt.Sprintf("ack up to %d", upTo)
			ack := func() {
				if err := s.AckEvents(upTo); err != nil {
					t.Fatalf("op %d %s: %v", i, label, err)
				}
			}
			if rng.IntN(4) == 0 {
				racing = inFlight(ack)
			} else {
				ack()
			}
			m.pending = slices.DeleteFunc(m.pending, func(e StoredEvent) bool { return e.Seq <= upTo })
		}
		label = fmt.Sprintf("op %d (%s)", i, label)
		if racing != nil {
			verifyClone(t, racing, label+", cloned in flight", before, m)
		}
		verifyClone(t, mem.CrashClone(vfs.CrashCloneCfg{}), label+", synced data only", m)
		pct := rng.IntN(100) + 1
		verifyClone(t, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(seed, uint64(i)))}),
			fmt.Sprintf("%s, %d%% of unsynced data kept", label, pct), m)
	}
}

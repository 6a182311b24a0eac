package persistence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// syncFailer fails every sync of the files whose base name matches, once switched on.
type syncFailer struct {
	on    atomic.Bool
	match func(base string) bool
	hits  atomic.Int64
}

func (f *syncFailer) String() string { return "syncFailer" }

func (f *syncFailer) MaybeError(op errorfs.Op) error {
	if !f.on.Load() {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
	default:
		return nil
	}
	base := op.Path[strings.LastIndexByte(op.Path, '/')+1:]
	if !f.match(base) {
		return nil
	}
	f.hits.Add(1)
	return errorfs.ErrInjected
}

// poisonedStore opens a Store over an errorfs-wrapped in-memory filesystem, with the syncs of
// the files match accepts failing once inj is switched on. It returns the store, the injector
// and a channel that receives what OnFatal is given (nil: OnFatal is not set).
func poisonedStore(t *testing.T, match func(string) bool, onFatal bool) (*Store, *syncFailer, chan error) {
	inj := &syncFailer{match: match}
	opts := memOptions(errorfs.Wrap(vfs.NewMem(), inj))
	opts.Logger = slog.New(&countingHandler{})
	var fatal chan error
	if onFatal {
		fatal = make(chan error, 4)
		opts.OnFatal = func(err error) { fatal <- err }
	}
	s := openT(t, opts)
	return s, inj, fatal
}

// countingHandler is a quiet slog handler that counts Pebble's warnings (its Errorf).
type countingHandler struct{ warnings atomic.Int64 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warnings.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// fakeExit replaces exit for the test and returns a counter of its calls.
func fakeExit(t *testing.T) *atomic.Int64 {
	var calls atomic.Int64
	old := exit
	exit = func(int) { calls.Add(1) }
	t.Cleanup(func() { exit = old })
	return &calls
}

// checkPoisoned requires every method of s to return ErrFsync.
func checkPoisoned(t *testing.T, s *Store) {
	t.Helper()
	if err := s.WriteCheckpoint(Checkpoint{Cell: 2, Epoch: 1}); !errors.Is(err, ErrFsync) {
		t.Errorf("WriteCheckpoint after the failure = %v, want ErrFsync", err)
	}
	if err := s.DeleteCheckpoint(2, 1); !errors.Is(err, ErrFsync) {
		t.Errorf("DeleteCheckpoint after the failure = %v, want ErrFsync", err)
	}
	if _, _, err := s.LoadCheckpoint(1); !errors.Is(err, ErrFsync) {
		t.Errorf("LoadCheckpoint after the failure = %v, want ErrFsync", err)
	}
	if _, err := s.Cells(); !errors.Is(err, ErrFsync) {
		t.Errorf("Cells after the failure = %v, want ErrFsync", err)
	}
	if err := s.AppendEvents([]Event{ev("z")}); !errors.Is(err, ErrFsync) {
		t.Errorf("AppendEvents after the failure = %v, want ErrFsync", err)
	}
	if _, err := s.PendingEvents(0, 10); !errors.Is(err, ErrFsync) {
		t.Errorf("PendingEvents after the failure = %v, want ErrFsync", err)
	}
	if err := s.AckEvents(0); !errors.Is(err, ErrFsync) {
		t.Errorf("AckEvents after the failure = %v, want ErrFsync", err)
	}
	if err := s.Close(); !errors.Is(err, ErrFsync) {
		t.Errorf("Close after the failure = %v, want ErrFsync", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func isWAL(base string) bool { return strings.HasSuffix(base, ".log") }

// A failed WAL sync during a checkpoint poisons the Store: the write returns ErrFsync (with the
// cause), OnFatal hears of it once, and nothing works afterwards; nothing is retried.
func TestFsyncFailureCheckpoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s, inj, fatal := poisonedStore(t, isWAL, true)
	if err := s.WriteCheckpoint(Checkpoint{Cell: 1, Epoch: 1, Entities: genEntities(rng, 100)}); err != nil {
		t.Fatal(err)
	}
	inj.on.Store(true)
	err := s.WriteCheckpoint(Checkpoint{Cell: 1, Epoch: 1, Tick: 2, Entities: genEntities(rng, 100)})
	if !errors.Is(err, ErrFsync) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("WriteCheckpoint with a failing WAL sync = %v, want ErrFsync wrapping the injected error", err)
	}
	// Pebble reported it as a commit failure (pebbleCommitFatal still matches its message).
	var pf *pebbleFatal
	if !errors.As(err, &pf) || !pf.commit {
		t.Fatalf("the failure was not recognised as a commit failure: %v", err)
	}
	hits := inj.hits.Load()
	select {
	case ferr := <-fatal:
		if !errors.Is(ferr, ErrFsync) {
			t.Fatalf("OnFatal got %v", ferr)
		}
	default:
		t.Fatal("OnFatal was not called")
	}
	inj.on.Store(false) // a retry would now succeed: the Store must not allow one
	checkPoisoned(t, s)
	if len(fatal) != 0 {
		t.Fatalf("OnFatal called %d more times", len(fatal))
	}
	if n := inj.hits.Load(); n != hits {
		t.Fatalf("%d more syncs attempted after the failure", n-hits)
	}
}

// Without OnFatal, a failed commit poisons the Store and returns ErrFsync; it does not exit.
func TestFsyncFailureOutbox(t *testing.T) {
	exits := fakeExit(t)
	s, inj, _ := poisonedStore(t, isWAL, false)
	if err := s.AppendEvents([]Event{ev("a")}); err != nil {
		t.Fatal(err)
	}
	inj.on.Store(true)
	if err := s.AppendEvents([]Event{ev("b")}); !errors.Is(err, ErrFsync) {
		t.Fatalf("AppendEvents with a failing WAL sync = %v, want ErrFsync", err)
	}
	inj.on.Store(false)
	checkPoisoned(t, s)
	if n := exits.Load(); n != 0 {
		t.Fatalf("exit called %d times for a failure its caller was told of", n)
	}
}

func TestFsyncFailureAck(t *testing.T) {
	s, inj, _ := poisonedStore(t, isWAL, true)
	if err := s.AppendEvents([]Event{ev("a")}); err != nil {
		t.Fatal(err)
	}
	inj.on.Store(true)
	if err := s.AckEvents(1); !errors.Is(err, ErrFsync) {
		t.Fatalf("AckEvents with a failing WAL sync = %v, want ErrFsync", err)
	}
	inj.on.Store(false)
	checkPoisoned(t, s)
}

// A failed MANIFEST sync in Pebble's background flush (no caller to return it to) poisons the
// Store too, and OnFatal hears of it (without OnFatal, the process exits). The database is
// then shut down, so that Pebble stops retrying the flush.
func TestFsyncFailureBackground(t *testing.T) {
	for _, onFatal := range []bool{true, false} {
		t.Run(fmt.Sprint("OnFatal=", onFatal), func(t *testing.T) {
			exits := fakeExit(t)
			backgroundFailure(t, onFatal)
			if want := map[bool]int64{true: 0, false: 1}[onFatal]; exits.Load() != want {
				t.Fatalf("exit called %d times, want %d", exits.Load(), want)
			}
		})
	}
}

func backgroundFailure(t *testing.T, onFatal bool) {
	rng := rand.New(rand.NewPCG(8, 8))
	s, inj, fatal := poisonedStore(t, func(base string) bool { return strings.HasPrefix(base, "MANIFEST") }, onFatal)
	inj.on.Store(true)
	// Poisoned is whether the Store has been poisoned: OnFatal ran (or exit did), or a write
	// returned ErrFsync.
	poisoned := func() bool { return s.fatal.Load() != nil }
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !poisoned(); i++ {
		if time.Now().After(deadline) {
			t.Fatal("no flush hit the failing MANIFEST sync")
		}
		// Random checkpoints fill the 1 MiB memtable quickly and force flushes.
		err := s.WriteCheckpoint(Checkpoint{Cell: uint64(i%4 + 1), Epoch: 1, Tick: uint32(i), Entities: genEntities(rng, 2000)})
		if err != nil && !errors.Is(err, ErrFsync) {
			t.Fatal(err)
		}
	}
	if onFatal {
		select {
		case err := <-fatal:
			var pf *pebbleFatal
			if !errors.Is(err, ErrFsync) || !errors.As(err, &pf) || pf.commit {
				t.Fatalf("OnFatal got %v, want a background failure wrapping ErrFsync", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("OnFatal not called")
		}
	}
	checkPoisoned(t, s)
	// Close waited for the database to shut down: Pebble has stopped retrying the flush.
	h := s.log.Handler().(*countingHandler)
	n := h.warnings.Load()
	time.Sleep(50 * time.Millisecond)
	if m := h.warnings.Load(); m != n {
		t.Fatalf("%d more Pebble warnings after Close: still retrying", m-n)
	}
}

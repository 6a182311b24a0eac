package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The local store: one Pebble database per cell server, holding the checkpoints of its cells
// and the outbox of critical events (doc.go).
//
// Key layout, format version 1. Every key starts with a one-byte prefix; integers in keys are
// big-endian, so that key order is numeric order and a prefix is a contiguous range.
//
//	0x01 'f'              format version: uint32 big-endian (storeFormatVersion); checked on
//	                      open, written when a store is created
//	0x01 's'              outbox high-water mark: the last event sequence number ever assigned,
//	                      uint64 big-endian; written in the same batch as the events it counts,
//	                      so sequence numbers grow across restarts even when the outbox is empty
//	0x02 cell:u64         a cell's checkpoint record (below)
//	0x03 seq:u64          a pending outbox event (outbox.go has the value layout)
//	0x04 idempotency key  the sequence number (uint64 big-endian) of the pending event with
//	                      that key; deleted with the event when it is acknowledged
//
// A checkpoint record is one value per cell:
//
//	kind:u8 | epoch:u64 big-endian | kind 1 only: tick:u32 big-endian | entity block
//
// kind 1 is a live checkpoint and the entity block is wire.AppendEntityBlockFast's encoding (a
// record count, then the zstd-compressed columns, with a checksum). kind 2 is a tombstone: the
// cell was given away at that epoch (DeleteCheckpoint), and the epoch stays as the cell's fence.
// A whole checkpoint is one value written by one synced batch, so a crash leaves either the
// previous record or the new one, never a mix.

// storeFormatVersion changes whenever stored bytes change meaning. Format 2: the entity block of
// wire's peer protocol 3 (playerID and hp columns). A store of another format is refused at open
// (ErrFormatVersion); its checkpoints are a restart's shortcut, not the authority, so the
// remedy is to remove the directory.
const storeFormatVersion uint32 = 2

const (
	prefixMeta       byte = 0x01
	prefixCheckpoint byte = 0x02
	prefixEvent      byte = 0x03
	prefixEventKey   byte = 0x04
)

var (
	formatKey  = []byte{prefixMeta, 'f'}
	lastSeqKey = []byte{prefixMeta, 's'}
)

// StoreOptions configures OpenStore. DefaultStoreOptions sets the sizes; the zero values of the
// other fields are the production choices.
type StoreOptions struct {
	// FS is the filesystem the database lives on. nil: the operating system's (vfs.Default).
	// Tests pass vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// CacheSize is Pebble's block cache, in bytes: [1 MiB, 1 TiB]. Reads are rare (recovery,
	// the outbox flusher), so it can be small.
	CacheSize int64
	// MemTableSize is the size of one Pebble memtable, in bytes: [1 MiB, 1 GiB]. It does not
	// change what is durable (every write is synced to the write-ahead log), only how often
	// Pebble flushes and switches to a new log. A checkpoint of 10 000 entities is about
	// 145 KB; on the development VM (ext4), with 4–8 MiB, synced checkpoints of that size were
	// ~0.3 ms faster at the median than with 32–128 MiB, and their p99 lower (write-ahead log
	// files are recycled more often, so a sync rarely has to extend a file).
	MemTableSize uint64
	// Logger receives Pebble's messages (Infof as Debug, Errorf as Warn) and the fatal error.
	// nil: slog.Default().
	Logger *slog.Logger
	// OnFatal, if set, is called once, with the error that poisoned the Store (it wraps
	// ErrFsync), from the goroutine that saw it: the caller of a failed synced commit (which
	// then also returns the error), or a Pebble background goroutine (a failed MANIFEST sync
	// during a flush, corruption found by a compaction), where no caller would learn of it
	// until its next call, and where writes may stall forever behind the failed flush. It
	// should stop the process (log, then os.Exit); it must not call into the Store.
	//
	// nil: a failed synced commit only poisons the Store (its caller gets ErrFsync and must
	// stop the process), but a fatal error in Pebble's background work logs and exits the
	// process with status 1, as Pebble's own default logger does.
	OnFatal func(error)
}

// DefaultStoreOptions returns the defaults: the OS filesystem, an 8 MiB block cache and 8 MiB
// memtables.
func DefaultStoreOptions() StoreOptions {
	return StoreOptions{
		CacheSize:    8 << 20,
		MemTableSize: 8 << 20,
	}
}

// Option bounds.
const (
	minCacheSize    = 1 << 20
	maxCacheSize    = 1 << 40
	minMemTableSize = 1 << 20
	maxMemTableSize = 1 << 30
)

// Validate names the first field that is out of bounds.
func (o StoreOptions) Validate() error {
	switch {
	case o.CacheSize < minCacheSize || o.CacheSize > maxCacheSize:
		return fmt.Errorf("%w: CacheSize %d, want [%d, %d] bytes", ErrInvalidOptions, o.CacheSize, int64(minCacheSize), int64(maxCacheSize))
	case o.MemTableSize < minMemTableSize || o.MemTableSize > maxMemTableSize:
		return fmt.Errorf("%w: MemTableSize %d, want [%d, %d] bytes", ErrInvalidOptions, o.MemTableSize, minMemTableSize, maxMemTableSize)
	}
	return nil
}

// Store is a cell server's local Pebble database: cell checkpoints (checkpoint.go) and the
// outbox of critical events (outbox.go). Every write is one batch committed with pebble.Sync
// (the write-ahead log is fsynced before the call returns: returned nil = durable); the WAL
// is never disabled.
//
// Its methods are safe for concurrent use. Writes to different cells, and outbox writes,
// proceed concurrently and share fsyncs through Pebble's group commit; writes to one cell are
// serialised (the epoch fence is a read-check-write).
//
// Once a synced commit fails, or Pebble reports a fatal error, the Store is poisoned: every
// method returns an error wrapping ErrFsync, nothing is retried, and the process must stop
// (see ErrFsync and StoreOptions.OnFatal). Its database is closed in the background as soon
// as no call is using it.
type Store struct {
	db  *pebble.DB
	log *slog.Logger

	onFatal   func(error)
	fatal     atomic.Pointer[error] // the poisoning error (wraps ErrFsync); nil while healthy
	fatalOnce sync.Once

	life     sync.RWMutex  // held shared by every method, exclusively by Close and OpenStore
	closed   bool          // Close was called
	dbClosed bool          // db.Close was called (by Close, OpenStore or shutdownPoisoned)
	stopped  chan struct{} // closed once a poisoned Store's database is shut down

	cellMu  [cellStripes]sync.Mutex // serialises the writes of one cell
	fenceMu sync.Mutex
	fences  map[uint64]fence // cached checkpoint record headers; guarded by fenceMu

	outMu   sync.Mutex // serialises outbox writes
	lastSeq uint64     // guarded by outMu
}

const cellStripes = 64

// OpenStore opens (creating it if needed) the local store in directory dir of opts.FS. It
// checks the store's format version, and that the options are valid.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	s := &Store{
		log:     opts.Logger,
		onFatal: opts.OnFatal,
		fences:  make(map[uint64]fence),
		stopped: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	// Held until the Store is ready, so that a fatal error during opening does not shut the
	// database down under us (shutdownPoisoned waits for it).
	s.life.Lock()
	defer s.life.Unlock()
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	db, err := pebble.Open(dir, &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s},
	})
	if err != nil {
		if e := s.fatal.Load(); e != nil {
			return nil, *e
		}
		return nil, fmt.Errorf("persistence: open %s: %w", dir, err)
	}
	s.db = db
	err = s.checkFormat()
	if err == nil {
		err = s.loadLastSeq()
	}
	if e := s.fatal.Load(); e != nil && err == nil {
		err = *e
	}
	if err != nil {
		s.closed, s.dbClosed = true, true
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// checkFormat reads the format version key, writing it if the database is empty.
func (s *Store) checkFormat() error {
	v, closer, err := s.db.Get(formatKey)
	switch {
	case err == nil:
		defer closer.Close()
		if len(v) != 4 {
			return fmt.Errorf("%w: format version value of %d bytes", ErrCorrupt, len(v))
		}
		if got := binary.BigEndian.Uint32(v); got != storeFormatVersion {
			return fmt.Errorf("%w: store is format %d, this build reads %d", ErrFormatVersion, got, storeFormatVersion)
		}
		return nil
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("persistence: read format version: %w", err)
	}
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("persistence: read format version: %w", err)
	}
	nonEmpty := it.First()
	var first []byte
	if nonEmpty {
		first = append(first, it.Key()...)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("persistence: read format version: %w", err)
	}
	if nonEmpty {
		return fmt.Errorf("%w: no format version key, but the store holds keys (first %x)", ErrCorrupt, first)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(formatKey, binary.BigEndian.AppendUint32(nil, storeFormatVersion), nil)
	return s.commit(b)
}

// Close closes the database. Every acknowledged write was synced, so nothing is lost. A
// poisoned Store returns its fatal error once its database has been shut down (see
// shutdownPoisoned). Later calls to any method return ErrClosed.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return ErrClosed
	}
	s.closed = true
	if e := s.fatal.Load(); e != nil {
		s.life.Unlock()
		<-s.stopped
		return *e
	}
	s.dbClosed = true
	err := s.db.Close()
	s.life.Unlock()
	if e := s.fatal.Load(); e != nil {
		return *e
	}
	if err != nil {
		return fmt.Errorf("persistence: close: %w", err)
	}
	return nil
}

// shutdownPoisoned closes the database of a poisoned Store as soon as no call is using it:
// no call will use it again, and Pebble would otherwise keep retrying a failed flush in a
// tight loop. Closing acknowledges nothing and deletes no data that is not already obsolete;
// what reached the disk is what the next process recovers. It runs on its own goroutine,
// started by poison.
func (s *Store) shutdownPoisoned() {
	defer close(s.stopped)
	s.life.Lock()
	defer s.life.Unlock()
	if s.db == nil || s.dbClosed {
		return
	}
	s.dbClosed = true
	if err := s.db.Close(); err != nil {
		s.log.Debug("persistence: closing the poisoned database", "err", err)
	}
}

// enter begins a method: the caller holds s.life shared.
func (s *Store) enter() error {
	if s.closed {
		return ErrClosed
	}
	if e := s.fatal.Load(); e != nil {
		return *e
	}
	return nil
}

// commit applies b with pebble.Sync. Any error poisons the Store: it is returned wrapped in
// ErrFsync, never retried. Pebble itself reports a failed WAL sync through Logger.Fatalf (see
// pebbleLogger) and then returns nil from Apply, so the poison flag is checked afterwards too.
func (s *Store) commit(b *pebble.Batch) error {
	err := s.db.Apply(b, pebble.Sync)
	if err != nil {
		return s.poison(fmt.Errorf("pebble: synced commit: %w", err))
	}
	if e := s.fatal.Load(); e != nil {
		return *e
	}
	return nil
}

// poison records cause as the Store's fatal error (the first one wins) and returns the
// recorded error, which wraps ErrFsync.
func (s *Store) poison(cause error) error {
	e := fmt.Errorf("%w: %w", ErrFsync, cause)
	s.fatal.CompareAndSwap(nil, &e)
	s.fatalOnce.Do(func() {
		err := *s.fatal.Load()
		s.log.Error("persistence: fatal storage error; the process must stop", "err", err)
		var pf *pebbleFatal
		switch {
		case s.onFatal != nil:
			s.onFatal(err)
		case errors.As(err, &pf) && !pf.commit:
			exit(1) // no caller will hear of it: stop here, as Pebble's default logger does
		}
		go s.shutdownPoisoned()
	})
	return *s.fatal.Load()
}

// pebbleLogger routes Pebble's log messages to the Store's logger. Pebble calls Fatalf for
// errors it cannot recover from (a failed WAL sync in a commit, a failed MANIFEST write,
// corruption); its default logger exits the process there. Ours poisons the Store instead and
// returns (Pebble's code returns an error after Fatalf on these paths), so that the commit in
// progress returns ErrFsync to its caller; the database is then shut down (shutdownPoisoned).
type pebbleLogger struct{ s *Store }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.s.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.s.log.Warn(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	e := &pebbleFatal{
		msg:    fmt.Sprintf(format, args...),
		commit: strings.HasPrefix(format, pebbleCommitFatal),
	}
	if !strings.HasPrefix(e.msg, "pebble") {
		e.msg = "pebble: " + e.msg
	}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.cause = err // keeps errors.Is working through the formatted message
			break
		}
	}
	l.s.poison(e)
}

// pebbleCommitFatal begins the format Pebble gives Fatalf when a commit fails (DB.Apply, on the
// committing goroutine, which then returns to our commit). If a Pebble upgrade changed it,
// commit failures would be taken for background ones: with OnFatal nil, the process would
// exit instead of returning ErrFsync (TestFsyncFailureCheckpoint checks the classification).
const pebbleCommitFatal = "pebble: fatal commit error"

// pebbleFatal is the message Pebble gave Fatalf, unwrapping to the error among its arguments.
type pebbleFatal struct {
	msg    string
	cause  error
	commit bool // from a commit, on the committing goroutine
}

func (e *pebbleFatal) Error() string { return e.msg }
func (e *pebbleFatal) Unwrap() error { return e.cause }

// exit is os.Exit; tests replace it.
var exit = os.Exit

// Scratch buffers for checkpoint values; big ones are not kept.
var valuePool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledValue = 8 << 20

package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/meridian-mmo/meridian/wire"
)

// Checkpoint is the state of one cell's entities at a tick, tagged with the cell's epoch.
type Checkpoint struct {
	Cell  uint64 // ≠ 0
	Epoch uint64 // the cell's epoch at the writer; fences older writers
	Tick  uint32 // the tick (wire.Tick) the entities were frozen at; stored, not interpreted
	// Entities, at most wire.MaxMigrateEntities, each valid (wire.EntityRecord.Validate) with
	// distinct ids. LoadCheckpoint returns them in ascending id order (nil for none).
	Entities []wire.EntityRecord
}

// Checkpoint record kinds (checkpoint_store.go has the layout).
const (
	recordLive      byte = 1
	recordGivenAway byte = 2

	recordHeaderSize = 1 + 8     // kind, epoch
	liveHeaderSize   = 1 + 8 + 4 // kind, epoch, tick
)

// fence is a cell's stored record header, cached: the epoch later writes are checked against.
type fence struct {
	exists bool   // a record (live or tombstone) is stored
	live   bool   // it is a live checkpoint
	epoch  uint64 // its epoch
}

func checkpointKey(cell uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixCheckpoint}, cell)
}

// WriteCheckpoint stores cp as cell cp.Cell's checkpoint, replacing the previous one, in one
// batch committed with pebble.Sync: when it returns nil the whole checkpoint is durable.
//
// Fencing: a checkpoint whose epoch is older than the cell's stored checkpoint, or not newer
// than the epoch the cell was given away at (DeleteCheckpoint), is rejected with
// ErrStaleEpoch; an equal epoch replaces the checkpoint (the same owner, a later tick). The
// encoding (wire.AppendEntityBlockFast, zstd at its fastest level) runs before any lock is taken.
func (s *Store) WriteCheckpoint(cp Checkpoint) error {
	if cp.Cell == 0 {
		return fmt.Errorf("%w: checkpoint of cell 0", ErrInvalidArgument)
	}
	bufp := valuePool.Get().(*[]byte)
	val := append((*bufp)[:0], recordLive)
	val = binary.BigEndian.AppendUint64(val, cp.Epoch)
	val = binary.BigEndian.AppendUint32(val, cp.Tick)
	val, err := wire.AppendEntityBlockFast(val, cp.Entities)
	defer func() {
		if cap(val) <= maxPooledValue {
			*bufp = val[:0]
			valuePool.Put(bufp)
		}
	}()
	if err != nil {
		return fmt.Errorf("%w: checkpoint of cell %d: %w", ErrInvalidArgument, cp.Cell, err)
	}

	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return err
	}
	mu := &s.cellMu[cp.Cell%cellStripes]
	mu.Lock()
	defer mu.Unlock()
	f, err := s.fenceOf(cp.Cell)
	if err != nil {
		return err
	}
	if f.exists && (cp.Epoch < f.epoch || !f.live && cp.Epoch == f.epoch) {
		return staleErr(cp.Cell, cp.Epoch, f)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(checkpointKey(cp.Cell), val, nil)
	if err := s.commit(b); err != nil {
		return err
	}
	s.setFence(cp.Cell, fence{exists: true, live: true, epoch: cp.Epoch})
	return nil
}

func staleErr(cell, epoch uint64, f fence) error {
	if f.live {
		return fmt.Errorf("%w: cell %d epoch %d, stored checkpoint has epoch %d", ErrStaleEpoch, cell, epoch, f.epoch)
	}
	return fmt.Errorf("%w: cell %d epoch %d, cell given away at epoch %d", ErrStaleEpoch, cell, epoch, f.epoch)
}

// DeleteCheckpoint removes cell's checkpoint because the cell was given away, leaving epoch as
// its fence: from then on WriteCheckpoint accepts only an epoch newer than epoch (the cell
// coming back after a later change). Pass the epoch of the change that took the cell away (the
// new owner's epoch), or at least the epoch of the last checkpoint. It returns ErrStaleEpoch,
// deleting nothing, if the stored record has a newer epoch. Deleting a cell without a
// checkpoint still records the fence. One synced batch.
func (s *Store) DeleteCheckpoint(cell, epoch uint64) error {
	if cell == 0 {
		return fmt.Errorf("%w: delete checkpoint of cell 0", ErrInvalidArgument)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return err
	}
	mu := &s.cellMu[cell%cellStripes]
	mu.Lock()
	defer mu.Unlock()
	f, err := s.fenceOf(cell)
	if err != nil {
		return err
	}
	if f.exists && epoch < f.epoch {
		return staleErr(cell, epoch, f)
	}
	if f.exists && !f.live && epoch == f.epoch {
		return nil // already given away at this epoch
	}
	val := append([]byte{recordGivenAway}, binary.BigEndian.AppendUint64(nil, epoch)...)
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(checkpointKey(cell), val, nil)
	if err := s.commit(b); err != nil {
		return err
	}
	s.setFence(cell, fence{exists: true, epoch: epoch})
	return nil
}

// LoadCheckpoint returns cell's checkpoint and true, or false if the cell has none (never
// written, or given away). The entities come in ascending id order.
func (s *Store) LoadCheckpoint(cell uint64) (Checkpoint, bool, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return Checkpoint{}, false, err
	}
	v, closer, err := s.db.Get(checkpointKey(cell))
	if errors.Is(err, pebble.ErrNotFound) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("persistence: load checkpoint of cell %d: %w", cell, err)
	}
	defer closer.Close()
	f, err := decodeRecordHeader(cell, v)
	if err != nil || !f.live {
		return Checkpoint{}, false, err
	}
	if len(v) < liveHeaderSize {
		return Checkpoint{}, false, fmt.Errorf("%w: checkpoint of cell %d: %d-byte record", ErrCorrupt, cell, len(v))
	}
	recs, err := wire.DecodeEntityBlock(v[liveHeaderSize:])
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("%w: checkpoint of cell %d: %w", ErrCorrupt, cell, err)
	}
	return Checkpoint{
		Cell:     cell,
		Epoch:    f.epoch,
		Tick:     binary.BigEndian.Uint32(v[recordHeaderSize:]),
		Entities: recs,
	}, true, nil
}

// Cells returns, in ascending order, the cells that have a checkpoint.
func (s *Store) Cells() ([]uint64, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixCheckpoint},
		UpperBound: []byte{prefixCheckpoint + 1},
	})
	if err != nil {
		return nil, fmt.Errorf("persistence: list cells: %w", err)
	}
	var cells []uint64
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return nil, fmt.Errorf("%w: checkpoint key %x", ErrCorrupt, k)
		}
		cell := binary.BigEndian.Uint64(k[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("persistence: list cells: %w", err)
		}
		f, err := decodeRecordHeader(cell, v)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		if f.live {
			cells = append(cells, cell)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("persistence: list cells: %w", err)
	}
	return cells, nil
}

func decodeRecordHeader(cell uint64, v []byte) (fence, error) {
	if len(v) < recordHeaderSize {
		return fence{}, fmt.Errorf("%w: checkpoint record of cell %d: %d bytes", ErrCorrupt, cell, len(v))
	}
	f := fence{exists: true, epoch: binary.BigEndian.Uint64(v[1:])}
	switch v[0] {
	case recordLive:
		f.live = true
	case recordGivenAway:
		if len(v) != recordHeaderSize {
			return fence{}, fmt.Errorf("%w: tombstone of cell %d: %d bytes", ErrCorrupt, cell, len(v))
		}
	default:
		return fence{}, fmt.Errorf("%w: checkpoint record of cell %d: kind %d", ErrCorrupt, cell, v[0])
	}
	return f, nil
}

// fenceOf returns cell's stored record header, from the cache or the database. The caller
// holds the cell's stripe lock.
func (s *Store) fenceOf(cell uint64) (fence, error) {
	s.fenceMu.Lock()
	f, ok := s.fences[cell]
	s.fenceMu.Unlock()
	if ok {
		return f, nil
	}
	v, closer, err := s.db.Get(checkpointKey(cell))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		f = fence{}
	case err != nil:
		return fence{}, fmt.Errorf("persistence: read checkpoint of cell %d: %w", cell, err)
	default:
		f, err = decodeRecordHeader(cell, v)
		closer.Close()
		if err != nil {
			return fence{}, err
		}
	}
	s.setFence(cell, f)
	return f, nil
}

func (s *Store) setFence(cell uint64, f fence) {
	s.fenceMu.Lock()
	s.fences[cell] = f
	s.fenceMu.Unlock()
}

package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// The outbox: critical events (loot, trade, death) a cell server writes to its local store
// before it acknowledges them to the game, and that a flusher later delivers to the
// authoritative store (PostgreSQL) and acknowledges here.
//
// An event value (key 0x03 seq, checkpoint_store.go has the key layout) is
//
//	cell:uvarint | epoch:uvarint | len(Key):uvarint | Key | len(Kind):uvarint | Kind | Payload
//
// Payload takes the rest of the value.

// Outbox limits.
const (
	// MaxEventKeyLen is the longest idempotency key, in bytes.
	MaxEventKeyLen = 128
	// MaxEventKindLen is the longest event kind, in bytes.
	MaxEventKindLen = 64
	// MaxEventPayload is the largest payload of one event, in bytes.
	MaxEventPayload = 1 << 20
	// MaxEventBatchBytes bounds the keys, kinds and payloads of one AppendEvents call.
	MaxEventBatchBytes = 64 << 20
)

// Event is a critical game event on its way to the authoritative store.
type Event struct {
	// Key is the event's idempotency key, 1..MaxEventKeyLen bytes: the authoritative store
	// applies an event once per key, and the outbox keeps one pending event per key.
	Key     string
	Kind    string // what happened ("loot", "trade", "death", ...), 1..MaxEventKindLen bytes
	Cell    uint64 // the cell it happened in
	Epoch   uint64 // that cell's epoch when it happened (the authoritative store fences by it)
	Payload []byte // at most MaxEventPayload bytes; opaque here
}

// StoredEvent is a pending event with the sequence number the outbox gave it.
type StoredEvent struct {
	Seq uint64 // ≥ 1, strictly increasing in the order events were appended, never reused
	Event
}

// Validate checks the bounds of the key, kind and payload.
func (e *Event) Validate() error {
	switch {
	case len(e.Key) == 0 || len(e.Key) > MaxEventKeyLen:
		return fmt.Errorf("%w: event key of %d bytes, want 1..%d", ErrInvalidArgument, len(e.Key), MaxEventKeyLen)
	case len(e.Kind) == 0 || len(e.Kind) > MaxEventKindLen:
		return fmt.Errorf("%w: event %q kind of %d bytes, want 1..%d", ErrInvalidArgument, e.Key, len(e.Kind), MaxEventKindLen)
	case len(e.Payload) > MaxEventPayload:
		return fmt.Errorf("%w: event %q payload of %d bytes, max %d", ErrInvalidArgument, e.Key, len(e.Payload), MaxEventPayload)
	}
	return nil
}

func eventKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixEvent}, seq)
}

func eventIndexKey(key string) []byte {
	return append([]byte{prefixEventKey}, key...)
}

func appendEventValue(dst []byte, e *Event) []byte {
	dst = binary.AppendUvarint(dst, e.Cell)
	dst = binary.AppendUvarint(dst, e.Epoch)
	dst = binary.AppendUvarint(dst, uint64(len(e.Key)))
	dst = append(dst, e.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(e.Kind)))
	dst = append(dst, e.Kind...)
	return append(dst, e.Payload...)
}

// decodeEventValue decodes an event value; the payload is copied (nil if empty).
func decodeEventValue(seq uint64, v []byte) (Event, error) {
	var e Event
	bad := func(what string) (Event, error) {
		return Event{}, fmt.Errorf("%w: outbox event %d: %s", ErrCorrupt, seq, what)
	}
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return 0, false
		}
		v = v[n:]
		return x, true
	}
	str := func(limit int) (string, bool) {
		n, ok := uv()
		if !ok || n == 0 || n > uint64(limit) || n > uint64(len(v)) {
			return "", false
		}
		s := string(v[:n])
		v = v[n:]
		return s, true
	}
	var ok bool
	if e.Cell, ok = uv(); !ok {
		return bad("cell")
	}
	if e.Epoch, ok = uv(); !ok {
		return bad("epoch")
	}
	if e.Key, ok = str(MaxEventKeyLen); !ok {
		return bad("key")
	}
	if e.Kind, ok = str(MaxEventKindLen); !ok {
		return bad("kind")
	}
	if len(v) > 0 {
		e.Payload = append([]byte(nil), v...)
	}
	return e, nil
}

// loadLastSeq reads the outbox high-water mark at open.
func (s *Store) loadLastSeq() error {
	v, closer, err := s.db.Get(lastSeqKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		s.lastSeq = 0
	case err != nil:
		return fmt.Errorf("persistence: read outbox sequence: %w", err)
	default:
		defer closer.Close()
		if len(v) != 8 {
			return fmt.Errorf("%w: outbox sequence value of %d bytes", ErrCorrupt, len(v))
		}
		s.lastSeq = binary.BigEndian.Uint64(v)
	}
	// The high-water mark is written with the events, so no event may lie beyond it.
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return fmt.Errorf("persistence: read outbox: %w", err)
	}
	var last []byte
	if it.Last() {
		last = append(last, it.Key()...)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("persistence: read outbox: %w", err)
	}
	if last != nil && (len(last) != 9 || binary.BigEndian.Uint64(last[1:]) > s.lastSeq) {
		return fmt.Errorf("%w: outbox event key %x beyond the sequence high-water mark %d", ErrCorrupt, last, s.lastSeq)
	}
	return nil
}

// AppendEvents appends evs to the outbox, in order, in one batch committed with pebble.Sync:
// when it returns nil every event is durable and may be acknowledged to the game. Each new
// event gets the next sequence number. An event whose key is already pending (appended and not
// yet acknowledged), or repeats a key earlier in evs, is skipped: not stored twice (the
// authoritative store deduplicates keys already delivered). If any event is invalid, nothing
// is written.
func (s *Store) AppendEvents(evs []Event) error {
	total := 0
	for i := range evs {
		if err := evs[i].Validate(); err != nil {
			return err
		}
		total += len(evs[i].Key) + len(evs[i].Kind) + len(evs[i].Payload)
	}
	if total > MaxEventBatchBytes {
		return fmt.Errorf("%w: %d events of %d bytes in one call, max %d", ErrInvalidArgument, len(evs), total, MaxEventBatchBytes)
	}
	if len(evs) == 0 {
		return nil
	}

	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return err
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()

	b := s.db.NewBatch()
	defer b.Close()
	seq := s.lastSeq
	var seen map[string]struct{}
	if len(evs) > 1 {
		seen = make(map[string]struct{}, len(evs))
	}
	var val []byte
	for i := range evs {
		e := &evs[i]
		if seen != nil {
			if _, dup := seen[e.Key]; dup {
				continue
			}
			seen[e.Key] = struct{}{}
		}
		idx := eventIndexKey(e.Key)
		_, closer, err := s.db.Get(idx)
		if err == nil {
			closer.Close()
			continue // pending already
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("persistence: read outbox key %q: %w", e.Key, err)
		}
		if seq == math.MaxUint64 {
			return fmt.Errorf("%w: outbox sequence exhausted", ErrInvalidArgument)
		}
		seq++
		val = appendEventValue(val[:0], e)
		_ = b.Set(eventKey(seq), val, nil)
		_ = b.Set(idx, binary.BigEndian.AppendUint64(nil, seq), nil)
	}
	if seq == s.lastSeq {
		return nil // every event was pending already
	}
	_ = b.Set(lastSeqKey, binary.BigEndian.AppendUint64(nil, seq), nil)
	if err := s.commit(b); err != nil {
		return err
	}
	s.lastSeq = seq
	return nil
}

// PendingEvents returns up to max (≥ 1) pending events with sequence numbers above after, in
// sequence order. The flusher pages through the outbox with after = the last Seq it got.
func (s *Store) PendingEvents(after uint64, max int) ([]StoredEvent, error) {
	return s.pendingEvents(after, max, 0)
}

// pendingEvents is PendingEvents, stopping also before the event that would take the
// encoded events returned (their stored values, payloads included) past maxBytes (0: no byte
// bound); the first event is always returned, whatever its size. The outbox flusher bounds
// its batches with it.
func (s *Store) pendingEvents(after uint64, max, maxBytes int) ([]StoredEvent, error) {
	if max < 1 {
		return nil, fmt.Errorf("%w: PendingEvents max %d, want ≥ 1", ErrInvalidArgument, max)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return nil, err
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: eventKey(after + 1),
		UpperBound: []byte{prefixEvent + 1},
	})
	if err != nil {
		return nil, fmt.Errorf("persistence: read outbox: %w", err)
	}
	var out []StoredEvent
	size := 0
	for ok := it.First(); ok && len(out) < max; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return nil, fmt.Errorf("%w: outbox key %x", ErrCorrupt, k)
		}
		seq := binary.BigEndian.Uint64(k[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("persistence: read outbox event %d: %w", seq, err)
		}
		if size += len(v); maxBytes > 0 && len(out) > 0 && size > maxBytes {
			break
		}
		e, err := decodeEventValue(seq, v)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, StoredEvent{Seq: seq, Event: e})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("persistence: read outbox: %w", err)
	}
	return out, nil
}

// AckEvents deletes every pending event with a sequence number ≤ upTo, in one synced batch:
// the flusher calls it once they are safely in the authoritative store. Their idempotency keys
// stop being pending (a later event with the same key is stored again). upTo beyond the last
// sequence number ever assigned is an error (ErrInvalidArgument): it acknowledges events that
// were never read.
func (s *Store) AckEvents(upTo uint64) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return err
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if upTo > s.lastSeq {
		return fmt.Errorf("%w: ack up to event %d, last assigned %d", ErrInvalidArgument, upTo, s.lastSeq)
	}
	if upTo == 0 {
		return nil
	}
	upper := []byte{prefixEvent + 1}
	if upTo < math.MaxUint64 {
		upper = eventKey(upTo + 1)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("persistence: read outbox: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return fmt.Errorf("%w: outbox key %x", ErrCorrupt, k)
		}
		seq := binary.BigEndian.Uint64(k[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("persistence: read outbox event %d: %w", seq, err)
		}
		e, err := decodeEventValue(seq, v)
		if err != nil {
			_ = it.Close()
			return err
		}
		_ = b.Delete(k, nil)
		_ = b.Delete(eventIndexKey(e.Key), nil)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("persistence: read outbox: %w", err)
	}
	if b.Empty() {
		return nil
	}
	return s.commit(b)
}

// pendingCount returns the number of pending events, knowing that none has a sequence number
// ≤ after (so that the count seeks past the tombstones of acknowledged events). Pending events
// are contiguous (appended at the end, acknowledged from the front by AckEvents), so they are
// the oldest pending one through the last sequence number assigned.
func (s *Store) pendingCount(after uint64) (uint64, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return 0, err
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if after >= s.lastSeq {
		return 0, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: eventKey(after + 1), UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return 0, fmt.Errorf("persistence: read outbox: %w", err)
	}
	var first uint64
	found := it.First()
	if found {
		if k := it.Key(); len(k) == 9 {
			first = binary.BigEndian.Uint64(k[1:])
		} else {
			found = false
			err = fmt.Errorf("%w: outbox key %x", ErrCorrupt, k)
		}
	}
	if err := errors.Join(err, it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("persistence: read outbox: %w", err)
	}
	if !found {
		return 0, nil
	}
	return s.lastSeq - first + 1, nil
}

// lastEventSeq returns the last sequence number assigned (0: none ever was).
func (s *Store) lastEventSeq() (uint64, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.enter(); err != nil {
		return 0, err
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.lastSeq, nil
}

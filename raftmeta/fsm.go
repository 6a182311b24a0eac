package raftmeta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// FSM is the partition map as hashicorp/raft's finite state machine (the contract is written at
// the top of state.go). raft calls Apply, Snapshot and Restore from its FSM goroutine; Map,
// Version, Index, WaitVersion and WaitIndex may be called from any goroutine.
type FSM struct {
	mu sync.RWMutex
	s  *state
	// versionCh is closed (and replaced) whenever the version changes, indexCh whenever the
	// index changes: blocked readers wait on the channel they saw, then re-check.
	versionCh chan struct{}
	indexCh   chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM holding the empty map (no world, no servers, version and index 0).
func NewFSM() *FSM {
	return &FSM{s: newState(), versionCh: make(chan struct{}), indexCh: make(chan struct{})}
}

// Apply applies a committed log entry. For a LogCommand entry it returns a *ApplyResult whose
// Err is the decoding or validation error, if any (the map is then unchanged but Index still
// advances to the entry's index). For any other entry type (raft hands a non-batching FSM only
// commands, but be safe) it returns nil and changes nothing, Index included: Index counts
// command entries only.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l == nil || l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	oldVersion, oldIndex := f.s.version, f.s.index
	var res *ApplyResult
	if err != nil {
		if l.Index > f.s.index {
			f.s.index = l.Index
		}
		res = &ApplyResult{Index: f.s.index, Version: f.s.version, Err: err}
	} else {
		res = f.s.apply(l.Index, c)
	}
	f.notify(oldVersion, oldIndex)
	return res
}

// notify wakes the waiters of whatever changed since (oldVersion, oldIndex). f.mu is held.
func (f *FSM) notify(oldVersion, oldIndex uint64) {
	if f.s.version != oldVersion {
		close(f.versionCh)
		f.versionCh = make(chan struct{})
	}
	if f.s.index != oldIndex {
		close(f.indexCh)
		f.indexCh = make(chan struct{})
	}
}

// Snapshot captures a deep copy of the state; the returned snapshot's Persist writes it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{data: f.s.snapshot()}, nil
}

// Restore replaces the state with the snapshot's. A snapshot that cannot be read, decoded or
// does not describe a valid map fails with ErrCorruptSnapshot and leaves the state as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("%w: reading: %v", ErrCorruptSnapshot, err)
	}
	var d snapshotData
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("%w: decoding: %v", ErrCorruptSnapshot, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data", ErrCorruptSnapshot)
	}
	s, err := restoreState(&d)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
	// Wake every waiter, whatever the numbers: they re-check against the new state.
	close(f.versionCh)
	f.versionCh = make(chan struct{})
	close(f.indexCh)
	f.indexCh = make(chan struct{})
	return nil
}

// Map returns a deep copy of the whole map (cells and servers sorted by ID, Tree filled); the
// caller may keep and modify it.
func (f *FSM) Map() Map {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.toMap()
}

// Version returns the map version: the index of the last entry that changed the map.
func (f *FSM) Version() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.version
}

// Index returns the index of the last entry applied.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.index
}

// WaitVersion is a blocking query: it returns the map as soon as its version is greater than
// after (at once if it already is). If ctx ends first it returns the current map and ctx.Err().
func (f *FSM) WaitVersion(ctx context.Context, after uint64) (Map, error) {
	for {
		f.mu.RLock()
		if f.s.version > after {
			m := f.s.toMap()
			f.mu.RUnlock()
			return m, nil
		}
		ch := f.versionCh
		f.mu.RUnlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return f.Map(), ctx.Err()
		}
	}
}

// WaitIndex returns nil as soon as the applied index is greater than after (at once if it
// already is), or ctx.Err() if ctx ends first.
func (f *FSM) WaitIndex(ctx context.Context, after uint64) error {
	for {
		f.mu.RLock()
		if f.s.index > after {
			f.mu.RUnlock()
			return nil
		}
		ch := f.indexCh
		f.mu.RUnlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fsmSnapshot is a captured state; Persist may run concurrently with later Applies, which do
// not touch it.
type fsmSnapshot struct{ data *snapshotData }

// Persist writes the snapshot as JSON to sink and closes it (cancels it on error).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(s.data)
	if err == nil {
		err = sink.Close()
	} else {
		_ = sink.Cancel()
	}
	if err != nil {
		return fmt.Errorf("raftmeta: persisting snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the snapshot holds no resource.
func (s *fsmSnapshot) Release() {}

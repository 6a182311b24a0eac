package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func ev(key string) Event {
	return Event{Key: key, Kind: "loot", Cell: 3, Epoch: 2, Payload: []byte("item:" + key)}
}

// pendingKeys returns the keys and sequence numbers of every pending event.
func pendingKeys(t *testing.T, s *Store) string {
	t.Helper()
	evs, err := s.PendingEvents(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%d:%s ", e.Seq, e.Key)
	}
	return strings.TrimSpace(b.String())
}

func TestOutbox(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, memOptions(fs))
	if err := s.AppendEvents(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents([]Event{ev("a"), ev("b"), ev("a"), ev("c")}); err != nil {
		t.Fatal(err)
	}
	if got := pendingKeys(t, s); got != "1:a 2:b 3:c" {
		t.Fatalf("pending = %q (a duplicate in one call is stored once)", got)
	}
	// Pending keys are not stored twice; new ones are.
	if err := s.AppendEvents([]Event{ev("b"), ev("d")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents([]Event{ev("c")}); err != nil {
		t.Fatal(err)
	}
	if got := pendingKeys(t, s); got != "1:a 2:b 3:c 4:d" {
		t.Fatalf("pending = %q", got)
	}
	// The fields come back as written.
	evs, err := s.PendingEvents(1, 2)
	if err != nil || len(evs) != 2 {
		t.Fatalf("PendingEvents(1, 2) = %+v, %v", evs, err)
	}
	want := ev("b")
	if e := evs[0]; e.Seq != 2 || e.Key != want.Key || e.Kind != want.Kind || e.Cell != want.Cell ||
		e.Epoch != want.Epoch || !bytes.Equal(e.Payload, want.Payload) {
		t.Fatalf("event 2 = %+v, want %+v", e, want)
	}
	if evs[1].Seq != 3 {
		t.Fatalf("second event seq %d", evs[1].Seq)
	}
	// Acknowledge a prefix: gone, and its keys may be appended again.
	if err := s.AckEvents(2); err != nil {
		t.Fatal(err)
	}
	if err := s.AckEvents(1); err != nil { // acknowledging again is harmless
		t.Fatal(err)
	}
	if err := s.AppendEvents([]Event{ev("a"), ev("c")}); err != nil {
		t.Fatal(err)
	}
	if got := pendingKeys(t, s); got != "3:c 4:d 5:a" {
		t.Fatalf("pending after ack = %q", got)
	}
	if err := s.AckEvents(6); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("AckEvents beyond the last seq = %v, want ErrInvalidArgument", err)
	}
	// Sequence numbers survive a restart, even with the outbox empty.
	if err := s.AckEvents(5); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s = openT(t, memOptions(fs))
	defer closeT(t, s)
	if got := pendingKeys(t, s); got != "" {
		t.Fatalf("pending after acking all and reopening = %q", got)
	}
	if err := s.AppendEvents([]Event{ev("a"), {Key: "e", Kind: "death"}}); err != nil {
		t.Fatal(err)
	}
	if got := pendingKeys(t, s); got != "6:a 7:e" {
		t.Fatalf("pending after reopen = %q", got)
	}
	evs, err = s.PendingEvents(6, 1)
	if err != nil || len(evs) != 1 || evs[0].Payload != nil {
		t.Fatalf("event without payload = %+v, %v", evs, err)
	}
	if evs, err := s.PendingEvents(7, 10); err != nil || len(evs) != 0 {
		t.Fatalf("PendingEvents past the end = %+v, %v", evs, err)
	}
	if _, err := s.PendingEvents(0, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("PendingEvents max 0 = %v", err)
	}
}

func TestEventValidate(t *testing.T) {
	s := openT(t, memOptions(nil))
	defer closeT(t, s)
	long := strings.Repeat("k", MaxEventKeyLen)
	for i, e := range []Event{
		{Kind: "loot"},
		{Key: long + "k", Kind: "loot"},
		{Key: "k"},
		{Key: "k", Kind: strings.Repeat("x", MaxEventKindLen+1)},
		{Key: "k", Kind: "loot", Payload: make([]byte, MaxEventPayload+1)},
	} {
		if err := e.Validate(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("case %d: Validate = %v", i, err)
		}
		// One bad event rejects the whole call.
		if err := s.AppendEvents([]Event{ev("ok"), e}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("case %d: AppendEvents = %v", i, err)
		}
	}
	if got := pendingKeys(t, s); got != "" {
		t.Fatalf("pending after rejected calls = %q", got)
	}
	big := make([]Event, MaxEventBatchBytes/MaxEventPayload+1)
	for i := range big {
		big[i] = Event{Key: fmt.Sprint(i), Kind: "x", Payload: make([]byte, MaxEventPayload)}
	}
	if err := s.AppendEvents(big); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("oversized call = %v", err)
	}
	max := Event{Key: long, Kind: strings.Repeat("x", MaxEventKindLen), Cell: 1<<64 - 1, Epoch: 1<<64 - 1, Payload: make([]byte, MaxEventPayload)}
	if err := s.AppendEvents([]Event{max}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.PendingEvents(0, 1)
	if err != nil || len(evs) != 1 || evs[0].Key != long || evs[0].Cell != max.Cell || len(evs[0].Payload) != MaxEventPayload {
		t.Fatalf("largest event: %v", err)
	}
}

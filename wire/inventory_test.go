package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
)

// mustInvOp encodes a valid InventoryOp (tests and seeds).
func mustInvOp(o InventoryOp) []byte {
	b, err := o.Append(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// mustInvResult encodes a valid InventoryResult (tests and seeds).
func mustInvResult(r InventoryResult) []byte {
	b, err := r.Append(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// invOpBytes builds InventoryOp data by hand: op | n | m | ids, whatever the values.
func invOpBytes(op, n, m byte, ids ...uint64) []byte {
	b := []byte{op, n, m}
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint64(b, id)
	}
	return b
}

// invResultBytes builds InventoryResult data by hand.
func invResultBytes(op, code byte, event uint64, moved byte) []byte {
	return append(binary.LittleEndian.AppendUint64([]byte{op, code}, event), moved)
}

// itemIDs returns n distinct valid item ids starting at first.
func itemIDs(first uint64, n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = first + uint64(i)
	}
	return ids
}

// validInventoryOps holds valid operations of every kind, edge values included. Empty sides
// are nil, as the decoder returns them.
func validInventoryOps() []InventoryOp {
	return []InventoryOp{
		{Op: InvLoot, Items: []uint64{1}},
		{Op: InvLoot, Items: []uint64{math.MaxInt64}},
		{Op: InvDrop, Items: []uint64{42}},
		{Op: InvGive, Items: []uint64{1 << 40}},
		{Op: InvTrade, Items: []uint64{5}, Want: []uint64{6}},
		{Op: InvTrade, Items: []uint64{5, 7, 9}, Want: []uint64{11}},               // three for one
		{Op: InvTrade, Items: []uint64{1 << 40}, Want: []uint64{math.MaxInt64, 1}}, // one for two, edge ids
		{Op: InvTrade, Items: itemIDs(1, MaxInventoryItems), // the largest operation
			Want: itemIDs(math.MaxInt64-MaxInventoryItems+1, MaxInventoryItems)},
	}
}

func validInventoryResults() []InventoryResult {
	var rs []InventoryResult
	for op := InvLoot; op <= maxInvOpKind; op++ {
		for code := InvOK; code <= maxInvCode; code++ {
			rs = append(rs, InventoryResult{Op: op, Code: code, Event: uint64(op)<<8 | uint64(code), Moved: uint8(code)})
		}
	}
	return append(rs,
		InventoryResult{Op: InvLoot, Code: InvUnavailable},                                      // no event recorded
		InventoryResult{Op: InvTrade, Code: InvOK, Event: math.MaxUint64, Moved: math.MaxUint8}, // any event and count
	)
}

func TestInventoryOpLayout(t *testing.T) {
	o := InventoryOp{Op: InvTrade, Items: []uint64{0x0102030405060708}, Want: []uint64{9, 10}}
	want := []byte{
		4, 1, 2, // trade, 1 + 2 items
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // Items[0]
		9, 0, 0, 0, 0, 0, 0, 0, // Want[0]
		10, 0, 0, 0, 0, 0, 0, 0, // Want[1]
	}
	got, err := o.Append([]byte{0xEE})
	if err != nil || !bytes.Equal(got, append([]byte{0xEE}, want...)) {
		t.Fatalf("Append: % x, %v; want ee % x", got, err, want)
	}
	r := InventoryResult{Op: InvGive, Code: InvNotOwner, Event: 0x1112131415161718, Moved: 3}
	wantR := []byte{3, 2, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, 3}
	if got, err := r.Append([]byte{0xEE}); err != nil || !bytes.Equal(got, append([]byte{0xEE}, wantR...)) {
		t.Fatalf("result Append: % x, %v; want ee % x", got, err, wantR)
	}
}

func TestInventoryOpRoundTrip(t *testing.T) {
	kinds := map[InventoryOpKind]bool{}
	for i, o := range validInventoryOps() {
		kinds[o.Op] = true
		if err := o.Validate(); err != nil {
			t.Fatalf("%d %+v: Validate: %v", i, o, err)
		}
		b, err := o.Append(nil)
		if err != nil {
			t.Fatalf("%d %+v: Append: %v", i, o, err)
		}
		if len(b) != 3+8*(len(o.Items)+len(o.Want)) || len(b) > MaxInteractData {
			t.Errorf("%d: %d bytes", i, len(b))
		}
		got, err := DecodeInventoryOp(b)
		if err != nil || !reflect.DeepEqual(got, o) {
			t.Errorf("%d: decoded %+v, %v; want %+v", i, got, err, o)
		}
		// Every strict prefix is truncated; any byte more is trailing.
		for n := range len(b) {
			if got, err := DecodeInventoryOp(b[:n]); !errors.Is(err, ErrTruncated) || !reflect.DeepEqual(got, InventoryOp{}) {
				t.Errorf("%d: cut to %d of %d bytes: %+v, %v", i, n, len(b), got, err)
			}
		}
		for extra := 1; extra <= 9; extra++ {
			if _, err := DecodeInventoryOp(append(slices.Clone(b), make([]byte, extra)...)); !errors.Is(err, ErrTrailingBytes) {
				t.Errorf("%d: %d bytes more: %v", i, extra, err)
			}
		}
	}
	for k := InvLoot; k <= maxInvOpKind; k++ {
		if !kinds[k] {
			t.Errorf("no round trip of %v", k)
		}
	}
	// Empty sides encode the same, nil or not, and decode as nil.
	b, err := (&InventoryOp{Op: InvGive, Items: []uint64{3}, Want: []uint64{}}).Append(nil)
	if err != nil || !bytes.Equal(b, invOpBytes(3, 1, 0, 3)) {
		t.Fatalf("empty Want: % x, %v", b, err)
	}
	if got, err := DecodeInventoryOp(b); err != nil || got.Want != nil {
		t.Fatalf("empty Want decodes to %#v, %v", got, err)
	}
}

func TestInventoryOpCopiesData(t *testing.T) {
	b := invOpBytes(byte(InvTrade), 1, 1, 5, 6)
	o, err := DecodeInventoryOp(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !slices.Equal(o.Items, []uint64{5}) || !slices.Equal(o.Want, []uint64{6}) {
		t.Fatalf("%+v changed with its data", o)
	}
}

func TestInventoryOpRejects(t *testing.T) {
	eight := itemIDs(100, MaxInventoryItems)
	nine := itemIDs(100, MaxInventoryItems+1)
	for _, c := range []struct {
		name string
		o    InventoryOp
	}{
		{"op 0", InventoryOp{Items: []uint64{1}}},
		{"op 5", InventoryOp{Op: maxInvOpKind + 1, Items: []uint64{1}}},
		{"op 255", InventoryOp{Op: 255, Items: []uint64{1}}},
		{"loot of none", InventoryOp{Op: InvLoot}},
		{"loot of two", InventoryOp{Op: InvLoot, Items: []uint64{1, 2}}},
		{"loot wanting", InventoryOp{Op: InvLoot, Items: []uint64{1}, Want: []uint64{2}}},
		{"loot of want only", InventoryOp{Op: InvLoot, Want: []uint64{2}}},
		{"drop of none", InventoryOp{Op: InvDrop}},
		{"drop of two", InventoryOp{Op: InvDrop, Items: []uint64{1, 2}}},
		{"drop wanting", InventoryOp{Op: InvDrop, Items: []uint64{1}, Want: []uint64{2}}},
		{"give of none", InventoryOp{Op: InvGive}},
		{"give of two", InventoryOp{Op: InvGive, Items: []uint64{1, 2}}},
		{"give wanting", InventoryOp{Op: InvGive, Items: []uint64{1}, Want: []uint64{2}}},
		{"trade of nothing", InventoryOp{Op: InvTrade}},
		{"trade of empty slices", InventoryOp{Op: InvTrade, Items: []uint64{}, Want: []uint64{}}},
		// A trade gives something on each side: a one-sided transfer is a give.
		{"trade wanting nothing", InventoryOp{Op: InvTrade, Items: []uint64{5, 7, 9}}},
		{"trade wanting an empty slice", InventoryOp{Op: InvTrade, Items: []uint64{5}, Want: []uint64{}}},
		{"trade offering nothing", InventoryOp{Op: InvTrade, Want: []uint64{math.MaxInt64, 1}}},
		{"trade of 8 for nothing", InventoryOp{Op: InvTrade, Items: eight}},
		{"trade of nothing for 8", InventoryOp{Op: InvTrade, Want: eight}},
		{"trade of 9 items", InventoryOp{Op: InvTrade, Items: nine, Want: []uint64{1}}},
		{"trade wanting 9", InventoryOp{Op: InvTrade, Items: []uint64{1}, Want: nine}},
		{"trade of 9 for nothing", InventoryOp{Op: InvTrade, Items: nine}},
		{"trade of 9 and 8", InventoryOp{Op: InvTrade, Items: nine, Want: itemIDs(500, 8)}},
		{"give of 9", InventoryOp{Op: InvGive, Items: nine}},
		{"id 0", InventoryOp{Op: InvLoot, Items: []uint64{0}}},
		{"id 0 wanted", InventoryOp{Op: InvTrade, Items: []uint64{1}, Want: []uint64{0}}},
		{"id 2^63", InventoryOp{Op: InvGive, Items: []uint64{math.MaxInt64 + 1}}},
		{"id 2^64-1 wanted", InventoryOp{Op: InvTrade, Items: []uint64{2}, Want: []uint64{1, math.MaxUint64}}},
		{"id 0 offered", InventoryOp{Op: InvTrade, Items: []uint64{0}, Want: []uint64{1}}},
		{"duplicate in Items", InventoryOp{Op: InvTrade, Items: []uint64{7, 8, 7}, Want: []uint64{9}}},
		{"duplicate in Want", InventoryOp{Op: InvTrade, Items: []uint64{9}, Want: []uint64{7, 7}}},
		{"duplicate across Items and Want", InventoryOp{Op: InvTrade, Items: []uint64{1, 2, 3}, Want: []uint64{4, 3}}},
		{"duplicate at the very ends", InventoryOp{Op: InvTrade, Items: eight, Want: append(itemIDs(900, 7), eight[0])}},
	} {
		if err := c.o.Validate(); !errors.Is(err, ErrValueOutOfRange) {
			t.Errorf("%s: Validate: %v", c.name, err)
		}
		dst := []byte{1, 2}
		if got, err := c.o.Append(dst); !errors.Is(err, ErrValueOutOfRange) || !bytes.Equal(got, dst) {
			t.Errorf("%s: Append: % x, %v; want an error and dst unchanged", c.name, got, err)
		}
		// The same operation by hand (the counts modulo 256, as the byte would hold them).
		b := invOpBytes(byte(c.o.Op), byte(len(c.o.Items)), byte(len(c.o.Want)), append(slices.Clone(c.o.Items), c.o.Want...)...)
		if got, err := DecodeInventoryOp(b); !errors.Is(err, ErrValueOutOfRange) || !reflect.DeepEqual(got, InventoryOp{}) {
			t.Errorf("%s: decoded %+v, %v", c.name, got, err)
		}
	}

	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"op only", []byte{1}, ErrTruncated},
		{"no want count", []byte{1, 1}, ErrTruncated},
		{"no item", invOpBytes(1, 1, 0), ErrTruncated},
		{"half an item", invOpBytes(1, 1, 0, 5)[:7], ErrTruncated},
		{"a wanted item short", invOpBytes(4, 1, 1, 5), ErrTruncated},
		{"an item more", invOpBytes(1, 1, 0, 5, 6), ErrTrailingBytes},
		{"a byte more", append(invOpBytes(1, 1, 0, 5), 0), ErrTrailingBytes},
		{"counts 0 with an item", invOpBytes(4, 0, 0, 5), ErrTrailingBytes},
		{"9 items", invOpBytes(4, 9, 0, nine...), ErrValueOutOfRange},
		{"9 wanted", invOpBytes(4, 0, 9, nine...), ErrValueOutOfRange},
		{"255 items, no data", invOpBytes(4, 255, 0), ErrValueOutOfRange},  // the counts before the size
		{"255 wanted, no data", invOpBytes(4, 0, 255), ErrValueOutOfRange}, // the counts before the size
		{"unknown op, no items", invOpBytes(9, 0, 0), ErrValueOutOfRange},
		{"unknown op, sized right", invOpBytes(0, 1, 0, 1), ErrValueOutOfRange},
	} {
		if got, err := DecodeInventoryOp(c.data); !errors.Is(err, c.want) || !reflect.DeepEqual(got, InventoryOp{}) {
			t.Errorf("%s: %+v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestInventoryResultRoundTrip(t *testing.T) {
	for i, r := range validInventoryResults() {
		if err := r.Validate(); err != nil {
			t.Fatalf("%d %+v: Validate: %v", i, r, err)
		}
		b, err := r.Append(nil)
		if err != nil || len(b) != inventoryResultSize {
			t.Fatalf("%d %+v: Append: %d bytes, %v", i, r, len(b), err)
		}
		if got, err := DecodeInventoryResult(b); err != nil || got != r {
			t.Errorf("%d: decoded %+v, %v; want %+v", i, got, err, r)
		}
		for n := range len(b) {
			if got, err := DecodeInventoryResult(b[:n]); !errors.Is(err, ErrTruncated) || got != (InventoryResult{}) {
				t.Errorf("%d: cut to %d bytes: %+v, %v", i, n, got, err)
			}
		}
		for extra := 1; extra <= 9; extra++ {
			if _, err := DecodeInventoryResult(append(slices.Clone(b), make([]byte, extra)...)); !errors.Is(err, ErrTrailingBytes) {
				t.Errorf("%d: %d bytes more: %v", i, extra, err)
			}
		}
	}
}

func TestInventoryResultRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		r    InventoryResult
	}{
		{"op 0", InventoryResult{Code: InvOK}},
		{"op 5", InventoryResult{Op: maxInvOpKind + 1, Code: InvOK}},
		{"op 255", InventoryResult{Op: 255, Code: InvOK}},
		{"code 0", InventoryResult{Op: InvLoot}},
		{"code 13", InventoryResult{Op: InvLoot, Code: maxInvCode + 1}},
		{"code 255", InventoryResult{Op: InvTrade, Code: 255, Event: 1, Moved: 1}},
	} {
		if err := c.r.Validate(); !errors.Is(err, ErrValueOutOfRange) {
			t.Errorf("%s: Validate: %v", c.name, err)
		}
		dst := []byte{1, 2}
		if got, err := c.r.Append(dst); !errors.Is(err, ErrValueOutOfRange) || !bytes.Equal(got, dst) {
			t.Errorf("%s: Append: % x, %v; want an error and dst unchanged", c.name, got, err)
		}
		b := invResultBytes(byte(c.r.Op), byte(c.r.Code), c.r.Event, c.r.Moved)
		if got, err := DecodeInventoryResult(b); !errors.Is(err, ErrValueOutOfRange) || got != (InventoryResult{}) {
			t.Errorf("%s: decoded %+v, %v", c.name, got, err)
		}
	}
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"no moved", invResultBytes(1, 1, 0, 0)[:10], ErrTruncated},
		{"a byte more", append(invResultBytes(1, 1, 0, 0), 0), ErrTrailingBytes},
		// The data carry no type: an operation of one item is 11 bytes, like a result, and may
		// decode as one. Kind 4 or 5 says which it is. One of two items is too long.
		{"an op of two items", invOpBytes(4, 1, 1, 5, 6), ErrTrailingBytes},
	} {
		if got, err := DecodeInventoryResult(c.data); !errors.Is(err, c.want) || got != (InventoryResult{}) {
			t.Errorf("%s: %+v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestInventoryNames: the names docs/wire.md and the metrics use.
func TestInventoryNames(t *testing.T) {
	codes := []string{"ok", "not_owner", "item_gone", "unknown_player", "unavailable", "contention", "invalid",
		"no_target", "busy", "no_store", "too_far", "no_offer"}
	if len(codes) != int(maxInvCode) {
		t.Fatalf("%d codes, %d names", maxInvCode, len(codes))
	}
	for i, want := range codes {
		if got := InventoryCode(i + 1).String(); got != want {
			t.Errorf("code %d: %q, want %q", i+1, got, want)
		}
	}
	for c, want := range map[InventoryCode]string{0: "code(0)", maxInvCode + 1: "code(13)", 255: "code(255)"} {
		if got := c.String(); got != want {
			t.Errorf("code %d: %q, want %q", uint8(c), got, want)
		}
	}
	for k, want := range map[InventoryOpKind]string{InvLoot: "loot", InvDrop: "drop", InvGive: "give", InvTrade: "trade",
		0: "op(0)", maxInvOpKind + 1: "op(5)", 255: "op(255)"} {
		if got := k.String(); got != want {
			t.Errorf("op %d: %q, want %q", uint8(k), got, want)
		}
	}
	if InvLoot != 1 || InvTrade != 4 || InvOK != 1 || InvNoStore != 10 || InvTooFar != 11 || InvNoOffer != 12 || maxInvCode != 12 ||
		InteractTrade != 3 || InteractInventory != 4 || InteractInventoryResult != 5 {
		t.Error("a value docs/wire.md gives changed")
	}
}

// TestInventoryInteractions: the interaction messages check the data of the inventory kinds, and
// a client may not send a result.
func TestInventoryInteractions(t *testing.T) {
	op := mustInvOp(InventoryOp{Op: InvGive, Items: []uint64{1001}})
	res := mustInvResult(InventoryResult{Op: InvGive, Code: InvOK, Event: 5001, Moved: 1})
	trade := mustInvOp(InventoryOp{Op: InvTrade, Items: []uint64{1}, Want: []uint64{2}})
	badOps := map[string][]byte{
		"no data":                 nil,
		"truncated":               op[:len(op)-1],
		"trailing":                append(slices.Clone(op), 0),
		"item 0":                  invOpBytes(byte(InvGive), 1, 0, 0),
		"item 2^63":               invOpBytes(byte(InvGive), 1, 0, 1<<63),
		"give of two":             invOpBytes(byte(InvGive), 2, 0, 1, 2),
		"duplicate":               invOpBytes(byte(InvTrade), 1, 1, 3, 3),
		"unknown op":              invOpBytes(7, 1, 0, 1),
		"9 items":                 invOpBytes(byte(InvTrade), 9, 0, itemIDs(1, 9)...),
		"one-sided trade":         invOpBytes(byte(InvTrade), 3, 0, 5, 7, 9),
		"trade for nothing given": invOpBytes(byte(InvTrade), 0, 1, 5),
		"a result":                res,
		"chat text":               []byte("hi!"),
		"max data size":           make([]byte, MaxInteractData),
	}
	badResults := map[string][]byte{
		"no data":   nil,
		"truncated": res[:len(res)-1],
		"trailing":  append(slices.Clone(res), 0),
		"op 0":      invResultBytes(0, 1, 0, 0),
		"code 0":    invResultBytes(1, 0, 0, 0),
		"code 13":   invResultBytes(1, 13, 0, 0),
		"an op":     trade,
	}
	type msg interface {
		Validate() error
		AppendFrame([]byte) []byte
	}
	decodeClient := func(m msg) error {
		frame := m.AppendFrame(nil)
		_, err := DecodeMessage(MsgType(frame[2]), frame[3:])
		return err
	}
	decodePeer := func(m *InteractMsg) error {
		// AppendFrame validates first: encode with valid data of the same length, then patch.
		data, kind := m.Data, m.Kind
		m.Data, m.Kind = make([]byte, len(data)), InteractTrade
		frame := encodePeer(t, m)
		m.Data, m.Kind = data, kind
		frame[PeerFrameHeaderSize+28] = byte(kind)
		copy(frame[PeerFrameHeaderSize+interactMsgHead:], data)
		_, err := DecodePeer(PeerInteract, frame[PeerFrameHeaderSize:])
		return err
	}
	check := func(name string, err error, ok bool) {
		t.Helper()
		switch {
		case ok && err != nil:
			t.Errorf("%s: %v", name, err)
		case !ok && !isPeerSentinel(err):
			t.Errorf("%s: %v, want a rejection", name, err)
		}
	}

	for _, c := range []struct {
		name string
		kind InteractKind
		data []byte
		// Whether the client's Interact, a client's Interaction and the peer Interact accept it.
		interact, interaction, peer bool
	}{
		{"op", InteractInventory, op, true, true, true},
		{"result", InteractInventoryResult, res, false, true, true},
		{"largest op", InteractInventory, mustInvOp(validInventoryOps()[7]), true, true, true},
		{"trade acceptance", InteractInventory, trade, true, true, true},
		{"too_far result", InteractInventoryResult, mustInvResult(InventoryResult{Op: InvLoot, Code: InvTooFar}), false, true, true},
		{"no_offer result", InteractInventoryResult, mustInvResult(InventoryResult{Op: InvTrade, Code: InvNoOffer}), false, true, true},
		// A trade offer (kind 3) carries the mirror InventoryOp, but the package does not check it:
		// an offer that is not a valid trade is carried and simply matches no acceptance.
		{"trade offer", InteractTrade, trade, true, true, true},
		{"one-sided trade offer", InteractTrade, invOpBytes(byte(InvTrade), 3, 0, 5, 7, 9), true, true, true},
		{"trade offer of a give", InteractTrade, op, true, true, true},
		{"trade offer of text", InteractTrade, []byte("2001 for 1002?"), true, true, true},
		{"trade offer of no data", InteractTrade, nil, true, true, true},
		{"trade offer of max data", InteractTrade, make([]byte, MaxInteractData), true, true, true},
	} {
		check(c.name+": Interact", (&Interact{Seq: 44, Target: 7, Kind: c.kind, Data: c.data}).Validate(), c.interact)
		check(c.name+": decoded Interact", decodeClient(&Interact{Seq: 44, Target: 7, Kind: c.kind, Data: c.data}), c.interact)
		check(c.name+": Interaction", (&Interaction{From: 42, Seq: 44, Tick: 9, Kind: c.kind, Data: c.data}).Validate(), c.interaction)
		check(c.name+": decoded Interaction", decodeClient(&Interaction{From: 42, Seq: 44, Tick: 9, Kind: c.kind, Data: c.data}), c.interaction)
		pm := &InteractMsg{Origin: 1, Actor: 42, Seq: 44, Target: 7, Kind: c.kind, Data: c.data}
		check(c.name+": peer Interact", pm.Validate(), c.peer)
		check(c.name+": decoded peer Interact", decodePeer(pm), c.peer)
	}
	// A client's Interact of kind 5 is refused whatever its data.
	for name, data := range map[string][]byte{"valid result": res, "no data": nil, "an op": op, "an op of two": trade} {
		if err := (&Interact{Seq: 1, Target: 1, Kind: InteractInventoryResult, Data: data}).Validate(); !errors.Is(err, ErrValueOutOfRange) {
			t.Errorf("Interact of kind 5 with %s: %v", name, err)
		}
	}
	for _, kd := range []struct {
		kind InteractKind
		bad  map[string][]byte
	}{{InteractInventory, badOps}, {InteractInventoryResult, badResults}} {
		for name, data := range kd.bad {
			name := fmt.Sprintf("kind %d %s", kd.kind, name)
			check(name+": Interact", (&Interact{Seq: 44, Target: 7, Kind: kd.kind, Data: data}).Validate(), false)
			check(name+": decoded Interact", decodeClient(&Interact{Seq: 44, Target: 7, Kind: kd.kind, Data: data}), false)
			check(name+": Interaction", (&Interaction{From: 42, Seq: 44, Kind: kd.kind, Data: data}).Validate(), false)
			check(name+": decoded Interaction", decodeClient(&Interaction{From: 42, Seq: 44, Kind: kd.kind, Data: data}), false)
			pm := &InteractMsg{Origin: 1, Actor: 42, Seq: 44, Target: 7, Kind: kd.kind, Data: data}
			check(name+": peer Interact", pm.Validate(), false)
			check(name+": decoded peer Interact", decodePeer(pm), false)
			dst := []byte{9}
			if got, err := pm.AppendFrame(dst); err == nil || !bytes.Equal(got, dst) {
				t.Errorf("%s: peer Interact encoded: %v", name, err)
			}
		}
	}
	// The other kinds carry any data, as before.
	for _, kind := range []InteractKind{InteractAttack, InteractTrade} {
		if err := (&Interact{Seq: 1, Target: 1, Kind: kind, Data: badOps["item 0"]}).Validate(); err != nil {
			t.Errorf("%v with inventory-like data: %v", kind, err)
		}
	}
}

// TestPlayerIDLayout: where PlayerID sits in the fixed record layout, the entity block and Join,
// and that every value, 0 included, survives each of them.
func TestPlayerIDLayout(t *testing.T) {
	for _, pid := range []PlayerID{0, 1, 127, 128, 300, 1<<56 + 3, math.MaxInt64, math.MaxUint64} {
		rec := EntityRecord{ID: 77, X: -1, Home: 9, Client: 3, LastSeq: 5, LastInputTick: 8, PlayerID: pid, HP: 0xBEEF}
		h := HandoffMsg{Transfer: 1, Cell: 2, Epoch: 3, Tick: 4, Entity: rec}
		p := encodePeer(t, &h)[PeerFrameHeaderSize:]
		if len(p) != handoffSize || handoffSize != 28+70 {
			t.Fatalf("handoff of %d bytes", len(p))
		}
		if got := binary.LittleEndian.Uint64(p[28+60:]); got != uint64(pid) {
			t.Errorf("player %d: record offset 60 holds %d", pid, got)
		}
		if got := binary.LittleEndian.Uint16(p[28+68:]); got != 0xBEEF { // HP follows, untouched
			t.Errorf("player %d: record offset 68 holds %#x", pid, got)
		}
		if got, err := DecodeHandoffMsg(p); err != nil || got != h {
			t.Errorf("player %d: handoff decodes to %+v, %v", pid, got, err)
		}

		ghost := rec
		ghost.Home, ghost.Client, ghost.LastSeq, ghost.LastInputTick = 0, 0, 0, 0
		g := GhostsMsg{Tick: 5, Entities: []EntityRecord{ghost, {ID: 78, PlayerID: pid / 2}}}
		gp := encodePeer(t, &g)[PeerFrameHeaderSize:]
		if len(gp) != 8+2*70 || binary.LittleEndian.Uint64(gp[8+60:]) != uint64(pid) || binary.LittleEndian.Uint64(gp[8+70+60:]) != uint64(pid/2) {
			t.Errorf("player %d: ghosts payload % x", pid, gp)
		}
		if got, err := DecodeGhostsMsg(gp); err != nil || !reflect.DeepEqual(got, g) {
			t.Errorf("player %d: ghosts decode to %+v, %v", pid, got, err)
		}

		// The entity block: the column before hp (the last), one uvarint per record.
		recs := []EntityRecord{rec, {ID: 80, PlayerID: 1}}
		raw := appendRawBlock(nil, recs)
		tail := binary.AppendUvarint(binary.AppendUvarint(nil, uint64(pid)), 1)
		tail = append(binary.AppendUvarint(tail, 0xBEEF), 0) // the hp column
		if !bytes.HasSuffix(raw, tail) {
			t.Errorf("player %d: raw block % x does not end with % x", pid, raw, tail)
		}
		block, err := AppendEntityBlock(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecodeEntityBlock(block); err != nil || !reflect.DeepEqual(got, recs) {
			t.Errorf("player %d: block decodes to %+v, %v", pid, got, err)
		}

		for _, j := range []JoinMsg{
			{Home: GatewayIDBase + 1, Client: 2, Kind: 1, X: 3, Z: 4, PlayerID: pid},
			{Home: GatewayIDBase + 1, Client: 2, Resume: 77, AuthEpoch: 6, LastSeq: 7, PlayerID: pid},
		} {
			jp := encodePeer(t, &j)[PeerFrameHeaderSize:]
			if len(jp) != 49 || binary.LittleEndian.Uint64(jp[41:]) != uint64(pid) {
				t.Errorf("player %d: join payload % x", pid, jp)
			}
			if got, err := DecodeJoinMsg(jp); err != nil || got != j {
				t.Errorf("player %d: join decodes to %+v, %v", pid, got, err)
			}
		}
	}
}

// TestEntityBlockLargestRecord: a record with every field at its largest (a 10-byte playerID
// varint and a 3-byte hp one included) fits the bound the decoder puts on a raw block
// (docs/wire.md §12.3.2: 16..87 bytes per record), and the bound is tight.
func TestEntityBlockLargestRecord(t *testing.T) {
	largest := extremeRecord        // HP 65535 included
	largest.LastInputTick = 1 << 31 // the largest zigzag difference from 0
	raw := appendRawBlock(nil, []EntityRecord{largest})
	if len(raw) != 87 {
		t.Fatalf("the largest record takes %d raw bytes, docs/wire.md says 87", len(raw))
	}
	if len(appendRawBlock(nil, []EntityRecord{{ID: 1}})) != 16 {
		t.Fatal("the smallest record does not take 16 raw bytes")
	}
	if maxRawRecord != len(raw) || minRawRecord != 16 {
		t.Fatalf("minRawRecord = %d, maxRawRecord = %d; want 16 and 87", minRawRecord, maxRawRecord)
	}
	// One byte beyond either bound is refused before the columns are parsed.
	if _, err := DecodeEntityBlock(rawBlock(1, append(slices.Clone(raw), 0))); !errors.Is(err, ErrTrailingBytes) {
		t.Errorf("88 raw bytes for one record: %v", err)
	}
	if _, err := DecodeEntityBlock(rawBlock(2, make([]byte, 31))); !errors.Is(err, ErrTruncated) {
		t.Errorf("31 raw bytes for two records: %v", err)
	}
	for _, recs := range [][]EntityRecord{{largest}, {extremeRecord}, {{ID: 1, PlayerID: math.MaxInt64, HP: 1}, largest}} {
		block, err := AppendEntityBlock(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecodeEntityBlock(block); err != nil || !reflect.DeepEqual(got, recs) {
			t.Errorf("%d records: %+v, %v", len(recs), got, err)
		}
	}
}

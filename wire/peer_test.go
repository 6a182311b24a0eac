package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"pgregory.net/rapid"
)

// extremeRecord uses the largest value of every field.
var extremeRecord = EntityRecord{
	ID: math.MaxUint64, X: math.MinInt32, Y: math.MaxInt32, Z: math.MinInt32, VX: math.MaxInt32, VZ: math.MinInt32,
	Yaw: YawSteps - 1, Kind: 255, Action: 255, AuthEpoch: math.MaxUint64, Home: math.MaxUint64,
	Client: math.MaxUint32, LastSeq: math.MaxUint32, LastInputTick: math.MaxUint32, PlayerID: math.MaxUint64,
	HP: math.MaxUint16,
}

// validPeerMessages holds at least one valid message of every peer type, edge values included.
func validPeerMessages() []PeerMessage {
	npc := EntityRecord{ID: 1}
	player := EntityRecord{ID: 77, X: 320000, Y: 768, Z: -192000, VX: 10, VZ: -3, Yaw: 300, Kind: 1, Action: 2,
		AuthEpoch: 4, Home: 9, Client: 1234, LastSeq: 99, LastInputTick: 1000, PlayerID: 123456789, HP: 850}
	return []PeerMessage{
		&PeerHelloMsg{Server: 1, Incarnation: 0, Version: PeerProtocolVersion},
		&PeerHelloMsg{Server: math.MaxUint64, Incarnation: math.MaxUint64, Version: math.MaxUint16},
		&MigrateMsg{Change: 5, Transfer: 0, Cell: 3, Epoch: 8, Tick: 1000}, // no entities: nil
		&MigrateMsg{Change: 6, Transfer: 1, Cell: 4, Epoch: 0, Tick: 1, Entities: []EntityRecord{npc}},
		&MigrateMsg{Change: math.MaxUint64, Transfer: math.MaxUint32, Cell: math.MaxUint64, Epoch: math.MaxUint64,
			Tick: math.MaxUint32, Entities: []EntityRecord{npc, player, {ID: 1 << 40, X: -5}, extremeRecord}},
		&MigrateMsg{Change: 7, Transfer: 2, Cell: 5, Epoch: 9, Tick: 2000, Entities: clusteredEntities(300, 1)},
		&HandoffMsg{Transfer: 1, Cell: 2, Epoch: 3, Tick: 4, Entity: player},
		&HandoffMsg{Transfer: math.MaxUint64, Cell: math.MaxUint64, Epoch: math.MaxUint64, Tick: math.MaxUint32, Entity: extremeRecord},
		&HandoffMsg{Transfer: 5, Cell: 6, Tick: 7, Entity: npc},
		&HandoffAckMsg{Transfer: 1, Result: HandoffAccepted},
		&HandoffAckMsg{Transfer: math.MaxUint64, Result: HandoffRejected},
		&HandoffAckMsg{Transfer: 12, Result: HandoffDuplicate},
		&InputMsg{Home: 1, Client: 1, Entity: 1, Input: Input{Seq: 1}},
		&InputMsg{Home: math.MaxUint64, Client: math.MaxUint32, Entity: math.MaxUint64,
			Input: Input{Seq: math.MaxUint32, ClientTick: math.MaxUint32, MoveX: -127, MoveZ: 127, Yaw: YawSteps - 1, Action: 255}},
		&AckMsg{Home: 3, Client: 4, Entity: 5, Tick: 6},
		&AckMsg{Home: math.MaxUint64, Client: math.MaxUint32, Entity: math.MaxUint64, Tick: math.MaxUint32},
		&LeaveMsg{Home: 3, Client: 4, Entity: 5},
		&LeaveMsg{Home: math.MaxUint64, Client: math.MaxUint32, Entity: math.MaxUint64},
		&FrameMsg{Client: 1, Entity: 2, AuthEpoch: 0, Frame: []byte{1, 0, byte(MsgSnapshot)}},
		&FrameMsg{Client: math.MaxUint32, Entity: math.MaxUint64, AuthEpoch: math.MaxUint64,
			LastSeq: math.MaxUint32, X: math.MinInt32, Z: math.MaxInt32,
			Frame: bytes.Repeat([]byte{0xA5}, MaxForwardedFrame)},
		&GhostsMsg{Tick: 1},
		&GhostsMsg{Tick: math.MaxUint32, Entities: []EntityRecord{npc, {ID: 7, X: -5, Z: 1 << 29, VX: -3, Yaw: 1, AuthEpoch: math.MaxUint64, PlayerID: 1<<62 + 5, HP: 128}}},
		&GhostGoneMsg{Entities: []GhostRef{{ID: 1}, {ID: math.MaxUint64, AuthEpoch: math.MaxUint64}}},
		&FrameMsg{Client: 3, Entity: 77, AuthEpoch: 4, LastSeq: 99, X: 320000, Z: -192000, Frame: []byte{1, 0, byte(MsgPong)}},
		&JoinMsg{Home: GatewayIDBase + 1, Client: 1, Kind: 1, X: -5, Z: 7, PlayerID: 1}, // a new player
		&JoinMsg{Home: math.MaxUint64, Client: math.MaxUint32, Kind: 255, X: math.MinInt32, Z: math.MaxInt32,
			Resume: math.MaxUint64, AuthEpoch: math.MaxUint64, LastSeq: math.MaxUint32, PlayerID: math.MaxUint64},
		&JoinMsg{Home: 1, Client: 2, Resume: 3}, // a resumed entity may have epoch and sequence 0; no player
		&RefuseMsg{Client: 1, Reason: ReasonServerFull},
		&RefuseMsg{Client: math.MaxUint32, Reason: ReasonEntityLost},
		&InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 4, Kind: InteractAttack}, // no data decodes as nil
		&InteractMsg{Origin: math.MaxUint64, Actor: math.MaxUint64, Seq: math.MaxUint32, Target: math.MaxUint64,
			Kind: InteractChat, Data: []byte(strings.Repeat("ü", MaxInteractData/2))},
		&InteractMsg{Origin: 5, Actor: 6, Seq: 7, Target: 8, Kind: InteractTrade, Data: []byte{0xFF, 0, 0xC0}},
		&InteractAckMsg{Actor: 1, Seq: 1, Delivered: true},
		&InteractAckMsg{Actor: math.MaxUint64, Seq: math.MaxUint32, Delivered: false},
		&ViewMsg{Entity: 1}, // an empty list decodes as nil
		&ViewMsg{Entity: math.MaxUint64, IDs: []EntityID{77, 1, math.MaxUint64, 1 << 40}}, // sent in this order
		&ViewMsg{Entity: 42, IDs: viewIDs(MaxViewIDs)},
		&DropMsg{Home: 1, Client: 1, Entity: 1}, // authority epoch 0
		&DropMsg{Home: math.MaxUint64, Client: math.MaxUint32, Entity: math.MaxUint64, AuthEpoch: math.MaxUint64},
		&DropMsg{Home: GatewayIDBase + 2, Client: 17, Entity: 42, AuthEpoch: 3},
		// Inventory interactions (peer protocol 3), after the rest so that the seed names of
		// the messages above stay put.
		&InteractMsg{Origin: GatewayIDBase + 1, Actor: 77, Seq: 12, Target: 77, Kind: InteractInventory,
			Data: mustInvOp(InventoryOp{Op: InvLoot, Items: []uint64{9001}})},
		&InteractMsg{Origin: 3, Actor: 77, Seq: 13, Target: 78, Kind: InteractInventory,
			Data: mustInvOp(InventoryOp{Op: InvTrade, Items: []uint64{1, 2, 3}, Want: []uint64{math.MaxInt64}})},
		&InteractMsg{Origin: 3, Actor: 77, Seq: 13, Target: 77, Kind: InteractInventoryResult,
			Data: mustInvResult(InventoryResult{Op: InvTrade, Code: InvOK, Event: 1 << 40, Moved: 4})},
		&JoinMsg{Home: GatewayIDBase + 3, Client: 9, Resume: 77, AuthEpoch: 5, LastSeq: 13, PlayerID: 123456789}, // a resumed player
	}
}

// viewIDs returns n distinct non-zero entity ids, as a ViewMsg of n ids would carry.
func viewIDs(n int) []EntityID {
	ids := make([]EntityID, n)
	for i := range ids {
		ids[i] = EntityID(1<<32 + 3*i + 1)
	}
	return ids
}

// invalidPeerMessages holds messages that Validate rejects, with the sentinel it gives.
func invalidPeerMessages() []struct {
	m    PeerMessage
	want error
} {
	ok := EntityRecord{ID: 1}
	return []struct {
		m    PeerMessage
		want error
	}{
		{&PeerHelloMsg{Server: 0}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 0, Tick: 1}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 0}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 1, Entities: []EntityRecord{{ID: 0}}}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 1, Entities: []EntityRecord{{ID: 3}, {ID: 1}, {ID: 3}}}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 1, Entities: []EntityRecord{{ID: 1, Yaw: YawSteps}}}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 1, Entities: []EntityRecord{{ID: 1, Home: 1}}}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 1, Entities: []EntityRecord{{ID: 1, Client: 1}}}, ErrValueOutOfRange},
		{&MigrateMsg{Cell: 1, Tick: 1, Entities: make([]EntityRecord, MaxMigrateEntities+1)}, ErrTooManyEntities},
		{&HandoffMsg{Transfer: 0, Cell: 1, Tick: 1, Entity: ok}, ErrValueOutOfRange},
		{&HandoffMsg{Transfer: 1, Cell: 0, Tick: 1, Entity: ok}, ErrValueOutOfRange},
		{&HandoffMsg{Transfer: 1, Cell: 1, Tick: 0, Entity: ok}, ErrValueOutOfRange},
		{&HandoffMsg{Transfer: 1, Cell: 1, Tick: 1}, ErrValueOutOfRange},
		{&HandoffMsg{Transfer: 1, Cell: 1, Tick: 1, Entity: EntityRecord{ID: 1, Yaw: 0xFFFF}}, ErrValueOutOfRange},
		{&HandoffAckMsg{Transfer: 0, Result: HandoffAccepted}, ErrValueOutOfRange},
		{&HandoffAckMsg{Transfer: 1, Result: 0}, ErrValueOutOfRange},
		{&HandoffAckMsg{Transfer: 1, Result: 4}, ErrValueOutOfRange},
		{&InputMsg{Home: 0, Client: 1, Entity: 1, Input: Input{Seq: 1}}, ErrValueOutOfRange},
		{&InputMsg{Home: 1, Client: 0, Entity: 1, Input: Input{Seq: 1}}, ErrValueOutOfRange},
		{&InputMsg{Home: 1, Client: 1, Entity: 0, Input: Input{Seq: 1}}, ErrValueOutOfRange},
		{&InputMsg{Home: 1, Client: 1, Entity: 1, Input: Input{Seq: 0}}, ErrValueOutOfRange},
		{&InputMsg{Home: 1, Client: 1, Entity: 1, Input: Input{Seq: 1, MoveX: -128}}, ErrValueOutOfRange},
		{&InputMsg{Home: 1, Client: 1, Entity: 1, Input: Input{Seq: 1, Yaw: YawSteps}}, ErrValueOutOfRange},
		{&AckMsg{Home: 1, Client: 1, Entity: 1, Tick: 0}, ErrValueOutOfRange},
		{&AckMsg{Home: 0, Client: 1, Entity: 1, Tick: 1}, ErrValueOutOfRange},
		{&LeaveMsg{Home: 1, Client: 1, Entity: 0}, ErrValueOutOfRange},
		{&FrameMsg{Client: 0, Entity: 1, Frame: []byte{1}}, ErrValueOutOfRange},
		{&FrameMsg{Client: 1, Entity: 0, Frame: []byte{1}}, ErrValueOutOfRange},
		{&FrameMsg{Client: 1, Entity: 1}, ErrValueOutOfRange},
		{&FrameMsg{Client: 1, Entity: 1, Frame: make([]byte, MaxForwardedFrame+1)}, ErrFrameTooLarge},
		{&JoinMsg{Home: 0, Client: 1}, ErrValueOutOfRange},
		{&JoinMsg{Home: 1, Client: 0}, ErrValueOutOfRange},
		{&JoinMsg{Home: 1, Client: 1, AuthEpoch: 1}, ErrValueOutOfRange},
		{&JoinMsg{Home: 1, Client: 1, LastSeq: 1}, ErrValueOutOfRange},
		{&RefuseMsg{Client: 0, Reason: ReasonServerFull}, ErrValueOutOfRange},
		{&RefuseMsg{Client: 1, Reason: ReasonNone}, ErrValueOutOfRange},
		{&RefuseMsg{Client: 1, Reason: maxReason + 1}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 0, Actor: 1, Seq: 1, Target: 1, Kind: InteractAttack}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 0, Seq: 1, Target: 1, Kind: InteractAttack}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 0, Target: 1, Kind: InteractAttack}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 1, Target: 0, Kind: InteractAttack}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 1, Target: 1, Kind: 0}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 1, Target: 1, Kind: maxInteractKind + 1}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 1, Target: 1, Kind: InteractAttack, Data: make([]byte, MaxInteractData+1)}, ErrValueOutOfRange},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 1, Target: 1, Kind: InteractChat, Data: []byte{0xFF}}, ErrValueOutOfRange},
		{&InteractAckMsg{Actor: 0, Seq: 1}, ErrValueOutOfRange},
		{&InteractAckMsg{Actor: 1, Seq: 0, Delivered: true}, ErrValueOutOfRange},
		{&ViewMsg{}, ErrValueOutOfRange},
		{&ViewMsg{Entity: 0, IDs: []EntityID{1}}, ErrValueOutOfRange},
		{&ViewMsg{Entity: 1, IDs: []EntityID{0}}, ErrValueOutOfRange},
		{&ViewMsg{Entity: 1, IDs: []EntityID{2, 3, 0}}, ErrValueOutOfRange},
		{&ViewMsg{Entity: 1, IDs: viewIDs(MaxViewIDs + 1)}, ErrTooManyEntities},
		{&ViewMsg{Entity: 0, IDs: make([]EntityID, math.MaxUint16+1)}, ErrTooManyEntities}, // would wrap the u16 count
		{&DropMsg{}, ErrValueOutOfRange},
		{&DropMsg{Home: 0, Client: 1, Entity: 1, AuthEpoch: 1}, ErrValueOutOfRange},
		{&DropMsg{Home: 1, Client: 0, Entity: 1, AuthEpoch: 1}, ErrValueOutOfRange},
		{&DropMsg{Home: 1, Client: 1, Entity: 0, AuthEpoch: math.MaxUint64}, ErrValueOutOfRange},
	}
}

// clusteredEntities returns n entities of a crowd around one hotspot, as a cell migration
// would ship them: ascending ids allocated in blocks, positions within ~100 m, most players
// walking, sessions on a few gateways, players with durable ids from a few million, most
// players and monsters at full hit points, townsfolk (kind 2) without any.
func clusteredEntities(n int, seed uint64) []EntityRecord {
	rng := rand.New(rand.NewPCG(seed, 0x6d696772))
	players := rand.New(rand.NewPCG(seed, 0x706c6179)) // apart, so the other fields stay as they were
	hps := rand.New(rand.NewPCG(seed, 0x6870))         // apart too
	hp := func(full int) uint16 {
		if hps.IntN(4) == 0 { // hurt
			return uint16(1 + hps.IntN(full))
		}
		return uint16(full)
	}
	const tick = 123456
	recs := make([]EntityRecord, n)
	id := EntityID(1 << 32)
	cx, cz := int32(8192*PosUnitsPerMetre), int32(4096*PosUnitsPerMetre)
	for i := range recs {
		id += EntityID(1 + rng.IntN(4))
		r := &recs[i]
		r.ID = id
		r.X = cx + int32(rng.NormFloat64()*40*PosUnitsPerMetre)
		r.Z = cz + int32(rng.NormFloat64()*40*PosUnitsPerMetre)
		r.Y = 768 + int32(rng.IntN(2*PosUnitsPerMetre))
		if rng.IntN(3) > 0 {
			r.VX, r.VZ = int32(rng.IntN(45))-22, int32(rng.IntN(45))-22
		}
		r.Yaw = uint16(rng.IntN(YawSteps))
		r.AuthEpoch = uint64(1 + rng.IntN(6))
		if rng.IntN(10) < 8 { // a player
			r.Kind = 1
			r.Home = uint64(101 + rng.IntN(4))
			r.Client = uint32(1 + rng.IntN(20000))
			r.LastSeq = uint32(rng.IntN(50000))
			r.LastInputTick = Tick(tick - rng.IntN(3))
			r.PlayerID = PlayerID(1 + players.IntN(5_000_000)) // a bigserial of a few million players
			if rng.IntN(8) == 0 {
				r.Action = uint8(1 + rng.IntN(5))
			}
			r.HP = hp(1000)
		} else {
			r.Kind = uint8(2 + rng.IntN(3))
			if r.Kind != 2 { // a monster; townsfolk cannot be hurt
				r.HP = hp(100 * int(r.Kind))
			}
		}
	}
	return recs
}

func encodePeer(t testing.TB, m PeerMessage) []byte {
	t.Helper()
	frame, err := m.AppendFrame(nil)
	if err != nil {
		t.Fatalf("%T: AppendFrame: %v", m, err)
	}
	return frame
}

// peerSentinels are the errors a peer decoder may wrap.
var peerSentinels = []error{ErrTruncated, ErrTrailingBytes, ErrValueOutOfRange, ErrNonCanonical,
	ErrTooManyEntities, ErrCorruptBlock, ErrFrameTooLarge, ErrUnknownMsgType}

func isPeerSentinel(err error) bool {
	for _, s := range peerSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func TestPeerRoundTrip(t *testing.T) {
	for i, m := range validPeerMessages() {
		if err := m.Validate(); err != nil {
			t.Fatalf("%d %T: Validate: %v", i, m, err)
		}
		frame, err := m.AppendFrame([]byte{0xEE})
		if err != nil {
			t.Fatalf("%d %T: %v", i, m, err)
		}
		frame = frame[1:]
		typ, payload, rest, err := SplitPeerFrame(frame)
		if err != nil || len(rest) != 0 || typ != m.Type() {
			t.Fatalf("%d %T: SplitPeerFrame: %v %v rest %d", i, m, typ, err, len(rest))
		}
		got, err := DecodePeer(typ, payload)
		if err != nil {
			t.Fatalf("%d %T: %v", i, m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%d round trip: got %+v, want %+v", i, got, m)
		}
		// Every strict prefix is rejected, and so is one more byte.
		for n := 0; n < len(payload); n++ {
			if _, err := DecodePeer(typ, payload[:n]); !isPeerSentinel(err) {
				t.Errorf("%d %T: payload cut to %d of %d bytes: %v", i, m, n, len(payload), err)
			}
		}
		_, err = DecodePeer(typ, append(payload[:len(payload):len(payload)], 0))
		if typ == PeerMigrate {
			if !isPeerSentinel(err) { // the zstd decoder sees a broken second frame
				t.Errorf("%d %T: trailing byte: %v", i, m, err)
			}
		} else if !errors.Is(err, ErrTrailingBytes) {
			t.Errorf("%d %T: trailing byte: %v", i, m, err)
		}
		// A decoded message re-encodes to the same frame (the compressed part included, with
		// the same zstd library).
		if again := encodePeer(t, got); !bytes.Equal(again, frame) {
			t.Errorf("%d %T: re-encoding differs", i, m)
		}
	}
}

func TestPeerSizes(t *testing.T) {
	for _, c := range []struct {
		m    PeerMessage
		size int
	}{
		{&PeerHelloMsg{Server: 1}, 18},
		{&HandoffMsg{Transfer: 1, Cell: 1, Tick: 1, Entity: EntityRecord{ID: 1}}, 98},
		{&HandoffAckMsg{Transfer: 1, Result: 1}, 9},
		{&InputMsg{Home: 1, Client: 1, Entity: 1, Input: Input{Seq: 1}}, 33},
		{&AckMsg{Home: 1, Client: 1, Entity: 1, Tick: 1}, 24},
		{&LeaveMsg{Home: 1, Client: 1, Entity: 1}, 20},
		{&FrameMsg{Client: 1, Entity: 1, Frame: []byte{1, 2, 3}}, 39},
		{&JoinMsg{Home: 1, Client: 1}, 49},
		{&GhostsMsg{Tick: 1, Entities: []EntityRecord{{ID: 1}, {ID: 2}}}, 8 + 2*70},
		{&GhostsMsg{Tick: 1, Entities: []EntityRecord{{ID: 1, HP: math.MaxUint16}}}, 8 + 70},
		{&RefuseMsg{Client: 1, Reason: ReasonBadToken}, 5},
		{&InteractMsg{Origin: 1, Actor: 1, Seq: 1, Target: 1, Kind: InteractChat, Data: []byte("abc")}, 33},
		{&InteractAckMsg{Actor: 1, Seq: 1}, 13},
		{&ViewMsg{Entity: 1}, 10},
		{&ViewMsg{Entity: 1, IDs: []EntityID{1, 2, 3}}, 34},
		{&ViewMsg{Entity: 1, IDs: viewIDs(MaxViewIDs)}, 10 + 8*MaxViewIDs},
		{&DropMsg{Home: 1, Client: 1, Entity: 1}, 28},
		{&MigrateMsg{Cell: 1, Tick: 1}, 33},
	} {
		if got := len(encodePeer(t, c.m)) - PeerFrameHeaderSize; got != c.size {
			t.Errorf("%T: payload of %d bytes, docs/wire.md says %d", c.m, got, c.size)
		}
	}
}

func TestPeerInvalidNotEncoded(t *testing.T) {
	for i, c := range invalidPeerMessages() {
		err := c.m.Validate()
		if !errors.Is(err, c.want) {
			t.Errorf("%d %T: Validate: %v, want %v", i, c.m, err, c.want)
		}
		dst := []byte{1, 2, 3}
		got, err2 := c.m.AppendFrame(dst)
		if !errors.Is(err2, c.want) || !bytes.Equal(got, dst) {
			t.Errorf("%d %T: AppendFrame: %v, %d bytes; want %v and dst unchanged", i, c.m, err2, len(got), c.want)
		}
	}
}

// TestPeerDecodeRejectsFields patches single fields of valid payloads to invalid values.
func TestPeerDecodeRejectsFields(t *testing.T) {
	input := encodePeer(t, &InputMsg{Home: 1, Client: 2, Entity: 3, Input: Input{Seq: 4}})[PeerFrameHeaderSize:]
	handoff := encodePeer(t, &HandoffMsg{Transfer: 1, Cell: 2, Tick: 3, Entity: EntityRecord{ID: 4, Home: 5, Client: 6}})[PeerFrameHeaderSize:]
	frame := encodePeer(t, &FrameMsg{Client: 1, Entity: 2, Frame: []byte{9}})[PeerFrameHeaderSize:]
	join := encodePeer(t, &JoinMsg{Home: 1, Client: 2, Kind: 3, X: 4, Z: 5, Resume: 6, AuthEpoch: 7, LastSeq: 8})[PeerFrameHeaderSize:]
	refuse := encodePeer(t, &RefuseMsg{Client: 1, Reason: ReasonServerFull})[PeerFrameHeaderSize:]
	interact := encodePeer(t, &InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 4, Kind: InteractChat, Data: []byte("hi")})[PeerFrameHeaderSize:]
	interactAck := encodePeer(t, &InteractAckMsg{Actor: 1, Seq: 2, Delivered: true})[PeerFrameHeaderSize:]
	drop := encodePeer(t, &DropMsg{Home: 1, Client: 2, Entity: 3, AuthEpoch: 4})[PeerFrameHeaderSize:]
	patch := func(p []byte, off int, b ...byte) []byte {
		p = slices.Clone(p)
		copy(p[off:], b)
		return p
	}
	long := append(patch(interact[:interactMsgHead], 28, byte(InteractAttack), MaxInteractData+1), make([]byte, MaxInteractData+1)...)
	for _, c := range []struct {
		name    string
		typ     PeerType
		payload []byte
		want    error
	}{
		{"hello server 0", PeerHello, make([]byte, peerHelloSize), ErrValueOutOfRange},
		{"input home 0", PeerInput, patch(input, 0, 0), ErrValueOutOfRange},
		{"input seq 0", PeerInput, patch(input, 20, 0), ErrValueOutOfRange},
		{"input yaw", PeerInput, patch(input, 30, 0, 4), ErrValueOutOfRange},
		{"input move -128", PeerInput, patch(input, 28, 0x80), ErrValueOutOfRange},
		{"handoff entity 0", PeerHandoff, patch(handoff, 28, 0, 0, 0, 0, 0, 0, 0, 0), ErrValueOutOfRange},
		{"handoff yaw", PeerHandoff, patch(handoff, 28+28, 0, 4), ErrValueOutOfRange},
		{"handoff client without home", PeerHandoff, patch(handoff, 28+40, 0), ErrValueOutOfRange},
		{"handoff tick 0", PeerHandoff, patch(handoff, 24, 0), ErrValueOutOfRange},
		{"ack result 9", PeerHandoffAck, []byte{1, 0, 0, 0, 0, 0, 0, 0, 9}, ErrValueOutOfRange},
		{"frame empty", PeerFrame, patch(frame, 32, 0)[:frameMsgHead], ErrValueOutOfRange},
		{"frame length too big", PeerFrame, patch(frame, 32, 0x02, 0x00, 0x01, 0x00), ErrFrameTooLarge},
		{"frame length short", PeerFrame, patch(frame, 32, 2), ErrTruncated},
		{"frame length huge", PeerFrame, patch(frame, 32, 0xFF, 0xFF, 0xFF, 0xFF), ErrFrameTooLarge},
		{"frame client 0", PeerFrame, patch(frame, 0, 0), ErrValueOutOfRange},
		{"frame entity 0", PeerFrame, patch(frame, 4, 0), ErrValueOutOfRange},
		{"join home 0", PeerJoin, patch(join, 0, 0), ErrValueOutOfRange},
		{"join client 0", PeerJoin, patch(join, 8, 0), ErrValueOutOfRange},
		{"join new entity with epoch", PeerJoin, patch(join, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrValueOutOfRange},
		{"join new entity with sequence", PeerJoin, patch(join, 21, 0, 0, 0, 0, 0, 0, 0, 0, 7), ErrValueOutOfRange},
		{"refuse client 0", PeerRefuse, patch(refuse, 0, 0), ErrValueOutOfRange},
		{"refuse reason none", PeerRefuse, patch(refuse, 4, byte(ReasonNone)), ErrValueOutOfRange},
		{"refuse reason unknown", PeerRefuse, patch(refuse, 4, byte(maxReason+1)), ErrValueOutOfRange},
		{"refuse reason 255", PeerRefuse, patch(refuse, 4, 255), ErrValueOutOfRange},
		{"interact origin 0", PeerInteract, patch(interact, 0, 0), ErrValueOutOfRange},
		{"interact actor 0", PeerInteract, patch(interact, 8, 0), ErrValueOutOfRange},
		{"interact seq 0", PeerInteract, patch(interact, 16, 0), ErrValueOutOfRange},
		{"interact target 0", PeerInteract, patch(interact, 20, 0), ErrValueOutOfRange},
		{"interact kind 0", PeerInteract, patch(interact, 28, 0), ErrValueOutOfRange},
		{"interact kind unknown", PeerInteract, patch(interact, 28, byte(maxInteractKind+1)), ErrValueOutOfRange},
		{"interact chat not UTF-8", PeerInteract, patch(interact, 30, 0xFF), ErrValueOutOfRange},
		{"interact data too long", PeerInteract, long, ErrValueOutOfRange},
		{"interact data length 255", PeerInteract, patch(interact, 29, 255), ErrValueOutOfRange},
		{"interact data length short", PeerInteract, patch(interact, 29, 1), ErrTrailingBytes},
		{"interact data length long", PeerInteract, patch(interact, 29, 3), ErrTruncated},
		{"interact ack actor 0", PeerInteractAck, patch(interactAck, 0, 0), ErrValueOutOfRange},
		{"interact ack seq 0", PeerInteractAck, patch(interactAck, 8, 0), ErrValueOutOfRange},
		{"interact ack delivered 2", PeerInteractAck, patch(interactAck, 12, 2), ErrValueOutOfRange},
		{"interact ack delivered 255", PeerInteractAck, patch(interactAck, 12, 255), ErrValueOutOfRange},
		{"drop home 0", PeerDrop, patch(drop, 0, 0), ErrValueOutOfRange},
		{"drop client 0", PeerDrop, patch(drop, 8, 0), ErrValueOutOfRange},
		{"drop entity 0", PeerDrop, patch(drop, 12, 0), ErrValueOutOfRange},
		{"migrate cell 0", PeerMigrate, make([]byte, migrateHead+1), ErrValueOutOfRange},
	} {
		if _, err := DecodePeer(c.typ, c.payload); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDecodePeerUnknownTypes(t *testing.T) {
	for _, typ := range []PeerType{0, PeerDrop + 1, 100, 255} {
		if m, err := DecodePeer(typ, []byte{1, 2, 3}); !errors.Is(err, ErrUnknownMsgType) || m != nil {
			t.Errorf("type %d: %v %v", typ, m, err)
		}
	}
	if s := PeerType(200).String(); s != "peer(200)" {
		t.Errorf("String: %q", s)
	}
	for typ, want := range map[PeerType]string{PeerHandoffAck: "handoff-ack", PeerJoin: "join", PeerRefuse: "refuse",
		PeerInteract: "interact", PeerInteractAck: "interact-ack", PeerView: "view", PeerDrop: "drop"} {
		if s := typ.String(); s != want {
			t.Errorf("String: %q, want %q", s, want)
		}
	}
}

func TestFrameMsgAliasesPayload(t *testing.T) {
	frame := encodePeer(t, &FrameMsg{Client: 1, Entity: 2, Frame: []byte("abc")})
	m, err := DecodeFrameMsg(frame[PeerFrameHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	frame[len(frame)-1] = 'X'
	if string(m.Frame) != "abX" {
		t.Fatalf("Frame %q does not alias the payload", m.Frame)
	}
	if cap(m.Frame) != len(m.Frame) {
		t.Fatal("an append to Frame could overwrite the buffer after it")
	}
}

func TestInteractMsgAliasesPayload(t *testing.T) {
	frame := encodePeer(t, &InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 4, Kind: InteractChat, Data: []byte("abc")})
	m, err := DecodeInteractMsg(frame[PeerFrameHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	frame[len(frame)-1] = 'X'
	if string(m.Data) != "abX" {
		t.Fatalf("Data %q does not alias the payload", m.Data)
	}
	if cap(m.Data) != len(m.Data) {
		t.Fatal("an append to Data could overwrite the buffer after it")
	}
}

// viewPayload builds a View payload by hand: entity | count | ids, whatever the values.
func viewPayload(entity uint64, count uint16, ids ...uint64) []byte {
	p := binary.LittleEndian.AppendUint64(nil, entity)
	p = binary.LittleEndian.AppendUint16(p, count)
	for _, id := range ids {
		p = binary.LittleEndian.AppendUint64(p, id)
	}
	return p
}

// TestViewMsg: the layout, the decoder's rejection of every rule with hand-built payloads, and
// truncation and trailing bytes (beyond TestPeerRoundTrip's checks, with the exact sentinel).
func TestViewMsg(t *testing.T) {
	m := ViewMsg{Entity: 0x0102030405060708, IDs: []EntityID{9, 1 << 63}}
	want := viewPayload(0x0102030405060708, 2, 9, 1<<63)
	frame := encodePeer(t, &m)
	if !bytes.Equal(frame[:PeerFrameHeaderSize], []byte{byte(1 + len(want)), 0, 0, 0, byte(PeerView)}) ||
		!bytes.Equal(frame[PeerFrameHeaderSize:], want) {
		t.Fatalf("frame % x, want payload % x", frame, want)
	}
	if got, err := DecodeViewMsg(want); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	// An empty list, nil or not, encodes as count 0 and decodes as nil.
	empty := encodePeer(t, &ViewMsg{Entity: 5, IDs: []EntityID{}})
	if !bytes.Equal(empty[PeerFrameHeaderSize:], viewPayload(5, 0)) {
		t.Fatalf("empty list: % x", empty)
	}
	if got, err := DecodeViewMsg(viewPayload(5, 0)); err != nil || got.IDs != nil || got.Entity != 5 {
		t.Fatalf("empty list decodes to %#v, %v", got, err)
	}
	// The largest list.
	maxIDs := make([]uint64, MaxViewIDs)
	for i := range maxIDs {
		maxIDs[i] = uint64(i + 1)
	}
	if got, err := DecodeViewMsg(viewPayload(1, MaxViewIDs, maxIDs...)); err != nil || len(got.IDs) != MaxViewIDs || got.IDs[MaxViewIDs-1] != MaxViewIDs {
		t.Fatalf("%d ids: %v", MaxViewIDs, err)
	}

	for _, c := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"entity 0", viewPayload(0, 2, 1, 2), ErrValueOutOfRange},
		{"entity 0, no ids", viewPayload(0, 0), ErrValueOutOfRange},
		{"first id 0", viewPayload(1, 2, 0, 2), ErrValueOutOfRange},
		{"last id 0", viewPayload(1, 3, 1, 2, 0), ErrValueOutOfRange},
		{"count MaxViewIDs+1", viewPayload(1, MaxViewIDs+1, append(maxIDs, 1)...), ErrTooManyEntities},
		{"count 65535, no ids", viewPayload(1, math.MaxUint16), ErrTooManyEntities}, // before the size
		{"count above the ids", viewPayload(1, 3, 1, 2), ErrTruncated},
		{"count below the ids", viewPayload(1, 1, 1, 2), ErrTrailingBytes},
		{"count 0 with an id", viewPayload(1, 0, 1), ErrTrailingBytes},
		{"half an id more", append(viewPayload(1, 1, 1), 1, 2, 3, 4), ErrTrailingBytes},
		{"half an id less", viewPayload(1, 2, 1, 2)[:viewHead+12], ErrTruncated},
		{"count cut", viewPayload(1, 1, 1)[:9], ErrTruncated},
		{"empty", nil, ErrTruncated},
	} {
		got, err := DecodePeer(PeerView, c.payload)
		if !errors.Is(err, c.want) || got != nil {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}

	// Every prefix of a valid payload is truncated; any byte more is trailing.
	for n := range len(want) {
		if _, err := DecodeViewMsg(want[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("cut to %d of %d bytes: %v", n, len(want), err)
		}
	}
	for extra := 1; extra <= 9; extra++ {
		if _, err := DecodeViewMsg(append(slices.Clone(want), make([]byte, extra)...)); !errors.Is(err, ErrTrailingBytes) {
			t.Errorf("%d bytes more: %v", extra, err)
		}
	}
}

// TestViewMsgCopiesPayload: unlike FrameMsg.Frame and InteractMsg.Data, the decoded IDs do not
// alias the payload.
func TestViewMsgCopiesPayload(t *testing.T) {
	p := viewPayload(1, 2, 5, 6)
	m, err := DecodeViewMsg(p)
	if err != nil {
		t.Fatal(err)
	}
	clear(p)
	if m.Entity != 1 || !slices.Equal(m.IDs, []EntityID{5, 6}) {
		t.Fatalf("%+v changed with the payload", m)
	}
}

// TestDropMsg: the layout, any authority epoch, the decoder's rejection of each field 0, and
// truncation and trailing bytes (beyond TestPeerRoundTrip's checks, with the exact sentinel).
func TestDropMsg(t *testing.T) {
	m := DropMsg{Home: 0x0102030405060708, Client: 0x090a0b0c, Entity: 0x1112131415161718, AuthEpoch: 0x2122232425262728}
	want := []byte{
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // home
		0x0c, 0x0b, 0x0a, 0x09, // client
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // entity
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, // authEpoch
	}
	frame := encodePeer(t, &m)
	if !bytes.Equal(frame[:PeerFrameHeaderSize], []byte{29, 0, 0, 0, byte(PeerDrop)}) ||
		!bytes.Equal(frame[PeerFrameHeaderSize:], want) {
		t.Fatalf("frame % x, want payload % x", frame, want)
	}
	if got, err := DecodePeer(PeerDrop, want); err != nil || !reflect.DeepEqual(got, &m) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	for _, epoch := range []uint64{0, 1, math.MaxUint64} {
		p := binary.LittleEndian.AppendUint64(slices.Clone(want[:20]), epoch)
		if got, err := DecodeDropMsg(p); err != nil || got.AuthEpoch != epoch {
			t.Errorf("authority epoch %d: %+v, %v", epoch, got, err)
		}
	}

	zero := func(off, n int) []byte {
		p := slices.Clone(want)
		clear(p[off : off+n])
		return p
	}
	for _, c := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"home 0", zero(0, 8), ErrValueOutOfRange},
		{"client 0", zero(8, 4), ErrValueOutOfRange},
		{"entity 0", zero(12, 8), ErrValueOutOfRange},
		{"all 0", make([]byte, dropSize), ErrValueOutOfRange},
		{"empty", nil, ErrTruncated},
	} {
		if got, err := DecodePeer(PeerDrop, c.payload); !errors.Is(err, c.want) || got != nil {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for n := range len(want) {
		if _, err := DecodeDropMsg(want[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("cut to %d of %d bytes: %v", n, len(want), err)
		}
	}
	for extra := 1; extra <= 9; extra++ {
		if _, err := DecodeDropMsg(append(slices.Clone(want), make([]byte, extra)...)); !errors.Is(err, ErrTrailingBytes) {
			t.Errorf("%d bytes more: %v", extra, err)
		}
	}
}

func TestGatewayIDs(t *testing.T) {
	if IsGatewayID(GatewayIDBase-1) || !IsGatewayID(GatewayIDBase) || !IsGatewayID(math.MaxUint64) || IsGatewayID(1) {
		t.Fatal("IsGatewayID")
	}
	if GatewayIDBase != 1<<48 {
		t.Fatalf("GatewayIDBase %d: docs/wire.md says 2^48", GatewayIDBase)
	}
}

// --- Entity blocks ---

func genRecord(id EntityID) *rapid.Generator[EntityRecord] {
	return rapid.Custom(func(t *rapid.T) EntityRecord {
		i32 := rapid.OneOf(rapid.Int32(), rapid.Int32Range(-100, 100),
			rapid.SampledFrom([]int32{math.MinInt32, math.MaxInt32, 0, -1}))
		r := EntityRecord{
			ID: id,
			X:  i32.Draw(t, "x"), Y: i32.Draw(t, "y"), Z: i32.Draw(t, "z"),
			VX: i32.Draw(t, "vx"), VZ: i32.Draw(t, "vz"),
			Yaw:           rapid.Uint16Range(0, YawSteps-1).Draw(t, "yaw"),
			Kind:          rapid.Uint8().Draw(t, "kind"),
			Action:        rapid.Uint8().Draw(t, "action"),
			AuthEpoch:     rapid.OneOf(rapid.Uint64Range(0, 10), rapid.Uint64()).Draw(t, "authEpoch"),
			LastInputTick: Tick(rapid.Uint32().Draw(t, "lastInputTick")),
			PlayerID:      PlayerID(rapid.OneOf(rapid.Uint64Range(0, 1000), rapid.Uint64()).Draw(t, "playerID")),
			HP: rapid.OneOf(rapid.Uint16Range(0, 1000), rapid.Uint16(),
				rapid.SampledFrom([]uint16{0, 127, 128, 16383, 16384, math.MaxUint16})).Draw(t, "hp"),
		}
		if rapid.Bool().Draw(t, "hasClient") {
			r.Home = rapid.OneOf(rapid.Uint64Range(1, 10), rapid.Uint64Min(1)).Draw(t, "home")
			r.Client = rapid.Uint32Min(1).Draw(t, "client")
			r.LastSeq = rapid.Uint32().Draw(t, "lastSeq")
		}
		return r
	})
}

func genRecords(t *rapid.T, maxLen int) []EntityRecord {
	idGen := rapid.OneOf(rapid.Uint64Range(1, 1000), rapid.Uint64Min(1),
		rapid.SampledFrom([]uint64{1, math.MaxUint64, math.MaxUint64 - 1, 1 << 63}))
	n := rapid.OneOf(rapid.IntRange(0, 3), rapid.IntRange(0, maxLen)).Draw(t, "n")
	ids := rapid.SliceOfNDistinct(idGen, n, n, func(v uint64) uint64 { return v }).Draw(t, "ids")
	recs := make([]EntityRecord, len(ids))
	for i, id := range ids {
		recs[i] = genRecord(EntityID(id)).Draw(t, "record")
	}
	return recs
}

func sortByID(recs []EntityRecord) []EntityRecord {
	s := slices.Clone(recs)
	slices.SortFunc(s, func(a, b EntityRecord) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	if len(s) == 0 {
		return nil
	}
	return s
}

// TestEntityRecordsProperty: decode(encode(x)) == x for random records, as a Migrate (in any
// order; decoded sorted by id), as a bare entity block and, one at a time, as a Handoff.
func TestEntityRecordsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		recs := genRecords(t, 200)
		m := MigrateMsg{
			Change:   rapid.Uint64().Draw(t, "change"),
			Transfer: rapid.Uint32().Draw(t, "transfer"),
			Cell:     rapid.Uint64Min(1).Draw(t, "cell"),
			Epoch:    rapid.Uint64().Draw(t, "epoch"),
			Tick:     Tick(rapid.Uint32Min(1).Draw(t, "tick")),
			Entities: recs,
		}
		frame, err := m.AppendFrame(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMigrateMsg(frame[PeerFrameHeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		want := m
		want.Entities = sortByID(recs)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("migrate round trip:\n got %+v\nwant %+v", got, want)
		}
		block, err := AppendEntityBlock([]byte("prefix"), recs)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeEntityBlock(block[len("prefix"):])
		if err != nil || !reflect.DeepEqual(back, want.Entities) {
			t.Fatalf("block round trip: %v", err)
		}
		for _, r := range recs {
			h := HandoffMsg{Transfer: 1, Cell: 2, Epoch: 3, Tick: 4, Entity: r}
			f, err := h.AppendFrame(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := DecodeHandoffMsg(f[PeerFrameHeaderSize:]); err != nil || got != h {
				t.Fatalf("handoff round trip: %+v, %v; want %+v", got, err, h)
			}
		}
	})
}

func TestEntityBlockDoesNotReorderInput(t *testing.T) {
	recs := []EntityRecord{{ID: 9}, {ID: 2, X: 5}, {ID: 7}}
	orig := slices.Clone(recs)
	block, err := AppendEntityBlock(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs, orig) {
		t.Fatal("AppendEntityBlock reordered its input")
	}
	got, err := DecodeEntityBlock(block)
	if err != nil || !slices.Equal(got, sortByID(orig)) {
		t.Fatalf("%+v %v", got, err)
	}
}

// rawBlock compresses raw by hand behind a count, to build blocks the encoder never makes.
func rawBlock(count uint64, raw []byte) []byte {
	b := binary.AppendUvarint(nil, count)
	return zstdEncoder().EncodeAll(raw, b)
}

// oneRaw is the raw block of one record with the given column values (16 columns, id first).
func oneRaw(cols ...[]byte) []byte {
	var raw []byte
	for _, c := range cols {
		raw = append(raw, c...)
	}
	return raw
}

func TestEntityBlockRejects(t *testing.T) {
	b1 := []byte{1}
	zero := []byte{0}
	good := [][]byte{b1, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero}
	if len(good) != 16 {
		t.Fatal("the hand-made record has not 16 columns")
	}
	with := func(col int, v []byte) []byte {
		cols := slices.Clone(good)
		cols[col] = v
		return oneRaw(cols...)
	}
	if recs, err := DecodeEntityBlock(rawBlock(1, oneRaw(good...))); err != nil || len(recs) != 1 || recs[0] != (EntityRecord{ID: 1}) {
		t.Fatalf("hand-made block: %+v %v", recs, err)
	}
	if recs, err := DecodeEntityBlock(rawBlock(1, with(14, []byte{0xac, 0x02}))); err != nil || len(recs) != 1 || recs[0] != (EntityRecord{ID: 1, PlayerID: 300}) {
		t.Fatalf("hand-made block with player 300: %+v %v", recs, err)
	}
	for _, c := range []struct {
		col []byte
		hp  uint16
	}{{[]byte{0x7f}, 127}, {[]byte{0x80, 0x01}, 128}, {[]byte{0xe8, 0x07}, 1000}, {[]byte{0xff, 0xff, 0x03}, math.MaxUint16}} {
		if recs, err := DecodeEntityBlock(rawBlock(1, with(15, c.col))); err != nil || len(recs) != 1 || recs[0] != (EntityRecord{ID: 1, HP: c.hp}) {
			t.Fatalf("hand-made block with hp %d: %+v %v", c.hp, recs, err)
		}
	}
	// A block of two records: the hp column holds one value per record, after the playerID column.
	two := oneRaw([]byte{1, 1}, make([]byte, 13*2), []byte{1, 0x80, 0x01}, []byte{0xac, 0x02, 0})
	if recs, err := DecodeEntityBlock(rawBlock(2, two)); err != nil ||
		!slices.Equal(recs, []EntityRecord{{ID: 1, PlayerID: 1, HP: 300}, {ID: 2, PlayerID: 128}}) {
		t.Fatalf("hand-made block of two: %+v %v", recs, err)
	}
	valid, _ := AppendEntityBlock(nil, clusteredEntities(50, 3))
	for _, c := range []struct {
		name  string
		block []byte
		want  error
	}{
		{"empty input", nil, ErrTruncated},
		{"count over the limit", binary.AppendUvarint(nil, MaxMigrateEntities+1), ErrTooManyEntities},
		{"huge count", append(binary.AppendUvarint(nil, math.MaxUint64), valid[1:]...), ErrTooManyEntities},
		{"count varint overflow", []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02}, ErrValueOutOfRange},
		{"count non-canonical", []byte{0x80, 0x00}, ErrNonCanonical},
		{"count without data", []byte{3}, ErrTruncated},
		{"data after count 0", []byte{0, 1}, ErrTrailingBytes},
		{"not zstd", []byte{1, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ErrCorruptBlock},
		{"count above the records", append([]byte{51}, valid[1:]...), nil}, // columns misaligned
		{"count far above the records", append([]byte{0x80, 0x01}, valid[1:]...), ErrCorruptBlock},
		{"count below the records", append([]byte{2}, valid[1:]...), ErrCorruptBlock}, // content size check
		{"raw too short", rawBlock(2, oneRaw(good...)), ErrTruncated},
		{"raw trailing byte", rawBlock(1, append(oneRaw(good...), 0)), ErrTrailingBytes},
		{"id 0", rawBlock(1, with(0, zero)), ErrValueOutOfRange},
		{"duplicate id", rawBlock(2, oneRaw(slices.Repeat([][]byte{{1, 0}}, 16)...)), ErrValueOutOfRange},
		{"id overflow", rawBlock(2, oneRaw(append([][]byte{{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 1}}, slices.Repeat([][]byte{{0, 0}}, 15)...)...)), ErrValueOutOfRange},
		{"non-canonical x", rawBlock(1, with(1, []byte{0x80, 0x00})), ErrNonCanonical},
		{"x beyond 32 bits", rawBlock(1, with(1, []byte{0x80, 0x80, 0x80, 0x80, 0x10})), ErrValueOutOfRange},
		{"yaw 1024", rawBlock(1, with(6, []byte{0x80, 0x08})), ErrValueOutOfRange},
		{"home without client", rawBlock(1, with(10, b1)), ErrValueOutOfRange},
		{"client without home", rawBlock(1, with(11, b1)), ErrValueOutOfRange},
		{"non-canonical playerID", rawBlock(1, with(14, []byte{0x80, 0x00})), ErrNonCanonical},
		{"playerID varint overflow", rawBlock(1, with(14, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02})), ErrValueOutOfRange},
		{"playerID cut in a varint", rawBlock(1, append(oneRaw(good[:14]...), 0x80, 0x80)), ErrTruncated},
		{"hp 65536", rawBlock(1, with(15, []byte{0x80, 0x80, 0x04})), ErrValueOutOfRange},
		{"hp 2^21", rawBlock(1, with(15, []byte{0x80, 0x80, 0x80, 0x01})), ErrValueOutOfRange},
		{"hp 2^64-1", rawBlock(1, with(15, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})), ErrValueOutOfRange},
		{"hp varint overflow", rawBlock(1, with(15, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02})), ErrValueOutOfRange},
		{"hp 65536 in the second record", rawBlock(2, oneRaw([]byte{1, 1}, make([]byte, 14*2), []byte{0, 0x80, 0x80, 0x04})), ErrValueOutOfRange},
		{"non-canonical hp", rawBlock(1, with(15, []byte{0x80, 0x00})), ErrNonCanonical},
		{"non-canonical hp 127", rawBlock(1, with(15, []byte{0xFF, 0x00})), ErrNonCanonical},
		{"non-canonical hp 3 bytes", rawBlock(1, with(15, []byte{0x81, 0x80, 0x00})), ErrNonCanonical},
		{"no hp column", rawBlock(1, oneRaw(good[:15]...)), ErrTruncated},                                                // 15 raw bytes: under the bound
		{"hp column missing after a long playerID", rawBlock(1, append(oneRaw(good[:14]...), 0xac, 0x02)), ErrTruncated}, // 16 bytes: parsed
		{"hp column short", rawBlock(2, oneRaw(bytes.Repeat([]byte{1}, 15*2), []byte{0x80, 0x01})), ErrTruncated},
		{"hp cut in a varint", rawBlock(1, with(15, []byte{0x80})), ErrTruncated},
		{"hp cut in a 3-byte varint", rawBlock(1, with(15, []byte{0xFF, 0xFF})), ErrTruncated},
		{"no playerID and hp columns", rawBlock(1, oneRaw(good[:14]...)), ErrTruncated}, // a version 2 record
	} {
		recs, err := DecodeEntityBlock(c.block)
		if c.want == nil && isPeerSentinel(err) && recs == nil {
			continue
		}
		if !errors.Is(err, c.want) || recs != nil {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if strings.HasPrefix(c.name, "hp ") && (err == nil || !strings.Contains(err.Error(), "column hp")) {
			t.Errorf("%s: %v, want an error in column hp", c.name, err)
		}
	}
}

// TestEntityBlockCorruption flips every bit of a compressed block: each one is rejected or,
// if it only touches what zstd does not check (e.g. an unused header bit), decodes to the
// same records. Never other records.
func TestEntityBlockCorruption(t *testing.T) {
	recs := clusteredEntities(40, 5)
	block, err := AppendEntityBlock(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	rejected := 0
	for i := 1; i < len(block); i++ { // block[0] is the count
		for bit := range 8 {
			b := slices.Clone(block)
			b[i] ^= 1 << bit
			got, err := DecodeEntityBlock(b)
			switch {
			case err != nil:
				if !isPeerSentinel(err) {
					t.Fatalf("byte %d bit %d: unclassified error %v", i, bit, err)
				}
				rejected++
			case !slices.Equal(got, recs):
				t.Fatalf("byte %d bit %d: decodes to other records", i, bit)
			}
		}
	}
	if rejected < 8*(len(block)-1)*9/10 {
		t.Errorf("only %d of %d bit flips rejected", rejected, 8*(len(block)-1))
	}
}

func TestEntityBlockCompresses(t *testing.T) {
	recs := clusteredEntities(1000, 7)
	block, err := AppendEntityBlock(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	raw := appendRawBlock(nil, recs)
	if len(block) >= len(raw) || len(raw) >= len(recs)*recordSize {
		t.Errorf("1000 clustered entities: fixed layout %d B, raw block %d B, compressed %d B",
			len(recs)*recordSize, len(raw), len(block))
	}
	t.Logf("1000 clustered entities: fixed layout %d B, raw block %d B, compressed %d B (%.1f B/entity)",
		len(recs)*recordSize, len(raw), len(block), float64(len(block))/1000)
}

// TestMigrateTooLarge: a Migrate that does not fit in one frame is refused, not truncated.
func TestMigrateTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes ~20 MB")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]EntityRecord, 300_000)
	for i := range recs {
		recs[i] = EntityRecord{ID: EntityID(rng.Uint64() | 1), X: int32(rng.Uint32()), Y: int32(rng.Uint32()),
			Z: int32(rng.Uint32()), VX: int32(rng.Uint32()), VZ: int32(rng.Uint32()), AuthEpoch: rng.Uint64(),
			Home: rng.Uint64() | 1, Client: rng.Uint32() | 1, LastSeq: rng.Uint32(), LastInputTick: Tick(rng.Uint32()),
			HP: uint16(rng.Uint32())}
	}
	m := MigrateMsg{Cell: 1, Tick: 1, Entities: sortByID(recs)}
	dst := []byte("x")
	got, err := m.AppendFrame(dst)
	if !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(got, dst) {
		t.Fatalf("%v, %d bytes", err, len(got))
	}
	m.Entities = m.Entities[:len(m.Entities)/4]
	frame, err := m.AppendFrame(nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeMigrateMsg(frame[PeerFrameHeaderSize:])
	if err != nil || !slices.Equal(back.Entities, m.Entities) {
		t.Fatalf("75 000 incompressible entities: %v", err)
	}
}

// TestPeerCodecConcurrent runs encoders and decoders on many goroutines (for -race).
func TestPeerCodecConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				recs := clusteredEntities(50+g*10+i, uint64(g*100+i))
				m := MigrateMsg{Cell: 1, Tick: 1, Entities: recs}
				frame, err := m.AppendFrame(nil)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := DecodeMigrateMsg(frame[PeerFrameHeaderSize:])
				if err != nil || !slices.Equal(got.Entities, recs) {
					t.Errorf("goroutine %d: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// --- Framing ---

func TestPeerFrameHelpers(t *testing.T) {
	f, err := AppendPeerFrame([]byte{9}, PeerLeave, []byte{1, 2, 3})
	if err != nil || !bytes.Equal(f, []byte{9, 4, 0, 0, 0, 7, 1, 2, 3}) {
		t.Fatalf("AppendPeerFrame: % x %v", f, err)
	}
	buf, start := BeginPeerFrame([]byte{9}, PeerLeave)
	buf = append(buf, 1, 2, 3)
	if buf, err = EndPeerFrame(buf, start); err != nil || !bytes.Equal(buf, f) {
		t.Fatalf("Begin/EndPeerFrame: % x %v", buf, err)
	}
	if _, err := EndPeerFrame([]byte{1, 2}, 0); !errors.Is(err, ErrTruncated) {
		t.Errorf("EndPeerFrame without a header: %v", err)
	}
	big := make([]byte, MaxPeerFrame)
	if got, err := AppendPeerFrame([]byte{1}, PeerFrame, big); !errors.Is(err, ErrFrameTooLarge) || len(got) != 1 {
		t.Errorf("AppendPeerFrame of %d bytes: %v", len(big), err)
	}
	if got, err := AppendPeerFrame(nil, PeerFrame, big[:MaxPeerFrame-1]); err != nil || len(got) != MaxPeerFrame+4 {
		t.Errorf("AppendPeerFrame of the largest payload: %v", err)
	}
	buf, start = BeginPeerFrame([]byte{7}, PeerFrame)
	buf = append(buf, big...)
	if got, err := EndPeerFrame(buf, start); !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(got, []byte{7}) {
		t.Errorf("EndPeerFrame too large: %v", err)
	}

	for _, c := range []struct {
		in   []byte
		want error
	}{
		{nil, ErrTruncated},
		{[]byte{1, 0, 0}, ErrTruncated},
		{[]byte{0, 0, 0, 0, 1}, ErrFrameEmpty},
		{[]byte{2, 0, 0, 0, 1}, ErrTruncated},
		{[]byte{1, 0, 0, 1, 1}, ErrFrameTooLarge},
	} {
		if _, _, rest, err := SplitPeerFrame(c.in); !errors.Is(err, c.want) || !bytes.Equal(rest, c.in) {
			t.Errorf("SplitPeerFrame(% x): %v, want %v", c.in, err, c.want)
		}
	}
	typ, payload, rest, err := SplitPeerFrame([]byte{1, 0, 0, 0, 6, 0xAA})
	if err != nil || typ != PeerAck || len(payload) != 0 || !bytes.Equal(rest, []byte{0xAA}) {
		t.Errorf("SplitPeerFrame of an empty payload: %v %v % x % x", typ, err, payload, rest)
	}
}

func peerStream(t testing.TB) ([]byte, [][]byte) {
	var stream []byte
	var frames [][]byte
	for _, m := range validPeerMessages() {
		f := encodePeer(t, m)
		frames = append(frames, f)
		stream = append(stream, f...)
	}
	return stream, frames
}

func TestPeerReader(t *testing.T) {
	stream, frames := peerStream(t)
	readers := map[string]func(io.Reader) io.Reader{
		"whole":   func(r io.Reader) io.Reader { return r },
		"one":     iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		if name == "one" && testing.Short() {
			continue
		}
		pr := NewPeerReader(wrap(bytes.NewReader(stream)))
		for i, f := range frames {
			typ, payload, err := pr.Next()
			if err != nil || typ != PeerType(f[4]) || !bytes.Equal(payload, f[5:]) {
				t.Fatalf("%s: frame %d: %v %v", name, i, typ, err)
			}
		}
		if _, _, err := pr.Next(); err != io.EOF {
			t.Fatalf("%s: at the end: %v", name, err)
		}
		if _, _, err := pr.Next(); err != io.EOF {
			t.Fatalf("%s: EOF not sticky: %v", name, err)
		}
	}

	for _, c := range []struct {
		name  string
		data  []byte
		limit int
		want  error
	}{
		{"truncated length", []byte{1, 0}, MaxPeerFrame, io.ErrUnexpectedEOF},
		{"truncated payload", []byte{3, 0, 0, 0, 1, 2}, MaxPeerFrame, io.ErrUnexpectedEOF},
		{"zero length", []byte{0, 0, 0, 0, 1}, MaxPeerFrame, ErrFrameEmpty},
		{"over MaxPeerFrame", []byte{1, 0, 0, 1, 1}, MaxPeerFrame, ErrFrameTooLarge},
		{"over the limit", []byte{9, 0, 0, 0, 1}, 8, ErrFrameTooLarge},
		{"huge announced", []byte{0xFF, 0xFF, 0xFF, 0xFF}, MaxPeerFrame, ErrFrameTooLarge},
	} {
		pr := NewPeerReaderLimit(bytes.NewReader(c.data), c.limit)
		_, _, err := pr.Next()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if _, _, err2 := pr.Next(); err2 != err {
			t.Errorf("%s: error not sticky: %v", c.name, err2)
		}
	}
	// A reader error is passed on after the data that came with it.
	boom := errors.New("boom")
	pr := NewPeerReader(io.MultiReader(bytes.NewReader(frames[0]), iotest.ErrReader(boom)))
	if _, _, err := pr.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pr.Next(); err != boom {
		t.Fatalf("%v, want boom", err)
	}
}

// TestPeerReaderMemory: a peer that announces a big frame and sends little costs little, and
// the buffer shrinks again after a big frame.
func TestPeerReaderMemory(t *testing.T) {
	pr := NewPeerReader(bytes.NewReader([]byte{0xFF, 0xFF, 0xFF, 0x00, 1, 2, 3}))
	if _, _, err := pr.Next(); err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	if len(pr.buf) > peerReaderInitialBuf {
		t.Errorf("buffer of %d bytes for 7 received", len(pr.buf))
	}

	big, _ := AppendPeerFrame(nil, PeerFrame, make([]byte, 3<<20))
	small := encodePeer(t, &AckMsg{Home: 1, Client: 1, Entity: 1, Tick: 1})
	stream := append(slices.Clone(big), small...)
	stream = append(stream, small...)
	pr = NewPeerReader(iotest.HalfReader(bytes.NewReader(stream)))
	for i := range 3 {
		if _, _, err := pr.Next(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i == 0 && len(pr.buf) < 3<<20 {
			t.Fatal("buffer did not grow")
		}
	}
	// The buffer is replaced the next time it runs out of frames.
	if _, _, err := pr.Next(); err != io.EOF {
		t.Fatal(err)
	}
	if len(pr.buf) > peerReaderKeepBuf {
		t.Errorf("buffer of %d bytes kept after the big frame", len(pr.buf))
	}
}

// --- docs/wire.md ---

const (
	docHandoffAckHex = "0a0000000415cd5b070000000001"
	docPeerInputHex  = "22000000050300000000000000110000002a000000000000002a000000e80300007fc0000101"
	docFrameMsgHex   = "3a00000008110000002a0000000000000003000000000000002a00000064e204009c11fdff15000000130005000003eb88000000a8012e0e707400810180"
)

var (
	docHandoffAck = HandoffAckMsg{Transfer: 123456789, Result: HandoffAccepted}
	docPeerInput  = InputMsg{Home: 3, Client: 17, Entity: 42, Input: docInput}
	// The delta snapshot of docs/wire.md §9.4, sent to client 17's home by the owner of its
	// entity 42 after applying input 42.
	docFrameMsg = FrameMsg{Client: 17, Entity: 42, AuthEpoch: 3, LastSeq: 42, X: 320100, Z: -192100,
		Frame: func() []byte { b, _ := hex.DecodeString(docDeltaHex); return b }()}
)

func TestPeerDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/wire.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, want string
		m          PeerMessage
	}{
		{"handoff ack", docHandoffAckHex, &docHandoffAck},
		{"peer input", docPeerInputHex, &docPeerInput},
		{"peer frame", docFrameMsgHex, &docFrameMsg},
	} {
		if got := hex.EncodeToString(encodePeer(t, c.m)); got != c.want {
			t.Errorf("%s: encoder gives\n%s\nthe test says\n%s", c.name, got, c.want)
		}
		if !strings.Contains(string(doc), "`"+c.want+"`") {
			t.Errorf("docs/wire.md does not show `%s`", c.want)
		}
		b, _ := hex.DecodeString(c.want)
		typ, payload, _, err := SplitPeerFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := DecodePeer(typ, payload); err != nil || !reflect.DeepEqual(m, c.m) {
			t.Errorf("%s: decodes to %+v, %v", c.name, m, err)
		}
	}
}

// TestPeerDocRecordLayout: the sizes and bounds docs/wire.md §12.3 and §12.4 give for entity
// records are the package's, and so is the bytes-per-entity figure of §12.3.2 (computed as
// BenchmarkMigrateEncode does: frame bytes of 10 000 clustered entities, and the share of the
// player ids and hit points as what the frame loses without them).
func TestPeerDocRecordLayout(t *testing.T) {
	doc, err := os.ReadFile("../docs/wire.md")
	if err != nil {
		t.Fatal(err)
	}
	perEntity := func(drop func(*EntityRecord)) float64 {
		recs := clusteredEntities(benchMigrateEntities, 42)
		for i := range recs {
			drop(&recs[i])
		}
		m := MigrateMsg{Change: 1, Transfer: 1, Cell: 2, Epoch: 3, Tick: 123456, Entities: recs}
		return float64(len(encodePeer(t, &m))) / benchMigrateEntities
	}
	all := perEntity(func(*EntityRecord) {})
	players := all - perEntity(func(r *EntityRecord) { r.PlayerID = 0 })
	hp := all - perEntity(func(r *EntityRecord) { r.HP = 0 })
	for _, want := range []string{
		fmt.Sprintf("#### 12.3.1 Fixed layout (Handoff, Ghosts), %d bytes", recordSize),
		"| 60 | u64 | `playerID` |\n| 68 | u16 | `hp` |\n\n",
		fmt.Sprintf("`count` × %d..%d bytes", minRawRecord, maxRawRecord),
		fmt.Sprintf("beyond %d × 2^20 bytes", maxRawRecord),
		fmt.Sprintf("| raw entity block | %d bytes per declared record |", maxRawRecord),
		"| 15 | `playerID` | `playerID` | uvarint | 1..10 |\n| 16 | `hp` | `hp`, 0..65 535 | uvarint | 1..3 |\n\n",
		"ends exactly after the last value of\ncolumn 16.",
		fmt.Sprintf("| 3 | Handoff | old owner → new owner of an entity | %d |", handoffSize),
		fmt.Sprintf("| 28 | %d bytes | entity |", recordSize),
		fmt.Sprintf("| 9 | Ghosts | entity owner → neighbouring server | 8 + %d × count |", recordSize),
		fmt.Sprintf("the payload is exactly 8 + %d × count bytes", recordSize),
		fmt.Sprintf("≈ %.1f bytes per\nentity (%d in the fixed layout; ≈ %.1f of the %.1f are the player ids, which do not compress, and\n≈ %.1f the hit points)",
			all, recordSize, players, all, hp),
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/wire.md does not say %q", want)
		}
	}
}

// --- Benchmarks ---

const benchMigrateEntities = 10_000

func BenchmarkMigrateEncode(b *testing.B) {
	m := MigrateMsg{Change: 1, Transfer: 1, Cell: 2, Epoch: 3, Tick: 123456, Entities: clusteredEntities(benchMigrateEntities, 42)}
	var buf []byte
	var err error
	b.ReportAllocs()
	for b.Loop() {
		buf, err = m.AppendFrame(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf))/benchMigrateEntities, "B/entity")
	b.ReportMetric(float64(len(buf)), "B/frame")
}

func BenchmarkMigrateDecode(b *testing.B) {
	m := MigrateMsg{Change: 1, Transfer: 1, Cell: 2, Epoch: 3, Tick: 123456, Entities: clusteredEntities(benchMigrateEntities, 42)}
	frame := encodePeer(b, &m)
	payload := frame[PeerFrameHeaderSize:]
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := DecodeMigrateMsg(payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(frame))/benchMigrateEntities, "B/entity")
}

// TestHPLayout: where HP sits in the fixed record layout (Handoff, Ghosts) and in the entity
// block, and that every value, 0 included, survives each of them.
func TestHPLayout(t *testing.T) {
	base := EntityRecord{ID: 77, X: -1, Home: 9, Client: 3, LastSeq: 5, LastInputTick: 8, PlayerID: math.MaxUint64}
	h0 := HandoffMsg{Transfer: 1, Cell: 2, Epoch: 3, Tick: 4, Entity: base}
	p0 := encodePeer(t, &h0)[PeerFrameHeaderSize:]
	if len(p0) != 98 || recordSize != 70 {
		t.Fatalf("handoff of %d bytes, record of %d", len(p0), recordSize)
	}
	// The decoder reads offset 68 of the record, whatever the encoder does.
	patched := slices.Clone(p0)
	patched[28+68], patched[28+69] = 0x34, 0x12
	if got, err := DecodeHandoffMsg(patched); err != nil || got.Entity.HP != 0x1234 || got.Entity.PlayerID != math.MaxUint64 {
		t.Fatalf("handoff with hp bytes 34 12: %+v, %v", got, err)
	}
	raw0 := appendRawBlock(nil, []EntityRecord{base, {ID: 80}})

	for _, hp := range []uint16{0, 1, 127, 128, 300, 16383, 16384, 0xBEEF, math.MaxUint16} {
		rec := base
		rec.HP = hp
		h := HandoffMsg{Transfer: 1, Cell: 2, Epoch: 3, Tick: 4, Entity: rec}
		p := encodePeer(t, &h)[PeerFrameHeaderSize:]
		if len(p) != 98 || binary.LittleEndian.Uint16(p[28+68:]) != hp {
			t.Errorf("hp %d: handoff payload % x", hp, p)
		}
		if !bytes.Equal(p[:28+68], p0[:28+68]) { // nothing else moved
			t.Errorf("hp %d: handoff differs before offset 68 of the record", hp)
		}
		if got, err := DecodeHandoffMsg(p); err != nil || got != h {
			t.Errorf("hp %d: handoff decodes to %+v, %v", hp, got, err)
		}

		// Ghosts carry hit points.
		ghost := rec
		ghost.Home, ghost.Client, ghost.LastSeq, ghost.LastInputTick = 0, 0, 0, 0
		g := GhostsMsg{Tick: 5, Entities: []EntityRecord{ghost, {ID: 78, HP: hp / 2}}}
		gp := encodePeer(t, &g)[PeerFrameHeaderSize:]
		if len(gp) != 8+2*70 || binary.LittleEndian.Uint16(gp[8+68:]) != hp || binary.LittleEndian.Uint16(gp[8+70+68:]) != hp/2 {
			t.Errorf("hp %d: ghosts payload % x", hp, gp)
		}
		if got, err := DecodeGhostsMsg(gp); err != nil || !reflect.DeepEqual(got, g) {
			t.Errorf("hp %d: ghosts decode to %+v, %v", hp, got, err)
		}

		// The entity block: the last column, one uvarint per record, after playerID.
		recs := []EntityRecord{rec, {ID: 80, HP: hp / 3}}
		raw := appendRawBlock(nil, recs)
		tail := binary.AppendUvarint(binary.AppendUvarint(nil, uint64(hp)), uint64(hp/3))
		if !bytes.HasSuffix(raw, tail) || !bytes.Equal(raw[:len(raw)-len(tail)], raw0[:len(raw0)-2]) {
			t.Errorf("hp %d: raw block % x, want % x then % x", hp, raw, raw0[:len(raw0)-2], tail)
		}
		block, err := AppendEntityBlock(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecodeEntityBlock(block); err != nil || !reflect.DeepEqual(got, recs) {
			t.Errorf("hp %d: block decodes to %+v, %v", hp, got, err)
		}
	}
}

// TestGhostMessages: round trips, and the rejections of malformed ghost messages.
func TestGhostMessages(t *testing.T) {
	g := GhostsMsg{Tick: 77, Entities: []EntityRecord{
		{ID: 5, X: -3, Y: 1, Z: 1 << 20, VX: 9, VZ: -9, Yaw: 1023, Kind: 2, Action: 1, AuthEpoch: 4, PlayerID: 31337, HP: 640}, // a player's ghost
		{ID: 1 << 60, AuthEpoch: 1, HP: math.MaxUint16},
		{ID: 1<<60 + 1, AuthEpoch: 1}, // cannot be hurt
	}}
	gone := GhostGoneMsg{Entities: []GhostRef{{ID: 5, AuthEpoch: 4}, {ID: 9, AuthEpoch: 0}}}
	for _, m := range []PeerMessage{&g, &GhostsMsg{Tick: 1}, &gone} {
		b, err := m.AppendFrame(nil)
		if err != nil {
			t.Fatal(err)
		}
		typ, payload, rest, err := SplitPeerFrame(b)
		if err != nil || len(rest) != 0 || typ != m.Type() {
			t.Fatalf("%v: split: %v", m.Type(), err)
		}
		got, err := DecodePeer(typ, payload)
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%v: decoded %+v, want %+v", m.Type(), got, m)
		}
		for cut := 0; cut < len(payload); cut++ {
			if _, err := DecodePeer(typ, payload[:cut]); err == nil {
				t.Fatalf("%v cut at %d decoded", m.Type(), cut)
			}
		}
		if _, err := DecodePeer(typ, append(slices.Clone(payload), 0)); err == nil {
			t.Fatalf("%v with a trailing byte decoded", m.Type())
		}
	}
	for name, m := range map[string]PeerMessage{
		"tick 0":         &GhostsMsg{},
		"session fields": &GhostsMsg{Tick: 1, Entities: []EntityRecord{{ID: 1, Home: 2, Client: 3}}},
		"entity 0":       &GhostsMsg{Tick: 1, Entities: []EntityRecord{{}}},
		"no references":  &GhostGoneMsg{},
		"reference to 0": &GhostGoneMsg{Entities: []GhostRef{{}}},
	} {
		if _, err := m.AppendFrame(nil); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	huge := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 1), MaxGhosts+1)
	if _, err := DecodeGhostsMsg(huge); !errors.Is(err, ErrTooManyEntities) {
		t.Fatalf("a count beyond MaxGhosts: %v", err)
	}
}

// TestEntityBlockFast: the fast encoding decodes to the same records as the default one.
func TestEntityBlockFast(t *testing.T) {
	recs := clusteredEntities(2000, 3)
	slow, err := AppendEntityBlock(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := AppendEntityBlockFast(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	a, errA := DecodeEntityBlock(slow)
	b, errB := DecodeEntityBlock(fast)
	if errA != nil || errB != nil || !reflect.DeepEqual(a, b) || len(a) != len(recs) {
		t.Fatalf("decoded %d/%d records (%v, %v), or they differ", len(a), len(b), errA, errB)
	}
	t.Logf("%d entities: %d bytes default, %d fast", len(recs), len(slow), len(fast))
}

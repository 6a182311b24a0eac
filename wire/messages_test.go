package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// validMessages holds at least one valid message of every type, edge values included.
func validMessages() []Message {
	return []Message{
		&Hello{Version: ProtocolVersion, Token: []byte("secret-token")},
		&Hello{Version: 0xFFFF}, // an empty token decodes as nil
		&Hello{Version: 1, Token: bytes.Repeat([]byte{0xA5}, MaxTokenLength)},
		&Welcome{Version: 1, Entity: 42, ServerTick: 1000, TickHz: 20,
			WorldMin: [2]int32{-1 << 20, -1 << 20}, WorldMax: [2]int32{1 << 20, 1 << 20}},
		&Welcome{Version: 1, Entity: math.MaxUint64, ServerTick: math.MaxUint32, TickHz: 255,
			WorldMin: [2]int32{math.MinInt32, 5}, WorldMax: [2]int32{math.MaxInt32, 5}},
		&Input{Seq: 1, ClientTick: 77, MoveX: -127, MoveZ: 127, Yaw: YawSteps - 1, Action: 3},
		&Input{Seq: math.MaxUint32, ClientTick: 0, MoveX: 0, MoveZ: -1, Yaw: 0, Action: 255},
		&Ack{Tick: 1},
		&Ack{Tick: math.MaxUint32},
		&Ping{ClientTimeMicros: 0},
		&Ping{ClientTimeMicros: 1<<63 + 12345},
		&Pong{ClientTimeMicros: 1, ServerTimeMicros: 2, ServerTick: 3},
		&Disconnect{Reason: ReasonShutdown, Message: "server restarting ✓"},
		&Disconnect{Reason: ReasonNone},
		&Disconnect{Reason: ReasonKicked, Message: strings.Repeat("x", MaxReasonLen)},
		&Disconnect{Reason: ReasonEntityLost, Message: "entity lost"},
		&Interact{Seq: 1, Target: 1, Kind: InteractAttack}, // no data decodes as nil
		&Interact{Seq: math.MaxUint32, Target: math.MaxUint64, Kind: InteractChat, Data: []byte(strings.Repeat("é", MaxInteractData/2))},
		&Interact{Seq: 7, Target: 1 << 40, Kind: InteractTrade, Data: bytes.Repeat([]byte{0xFF}, MaxInteractData)}, // not UTF-8: fine for a trade
		&Interaction{From: 1, Seq: 1, Tick: 0, Kind: InteractAttack},
		&Interaction{From: math.MaxUint64, Seq: math.MaxUint32, Tick: math.MaxUint32, Kind: InteractChat, Data: []byte("hello ✓")},
		&Interaction{From: 9, Seq: 3, Tick: 1000, Kind: InteractTrade, Data: []byte{0, 0xC0, 0xFF}},
		&Interact{Seq: 44, Target: 7, Kind: InteractInventory, Data: mustInvOp(InventoryOp{Op: InvGive, Items: []uint64{1001}})},
		&Interact{Seq: 45, Target: 42, Kind: InteractInventory, Data: mustInvOp(validInventoryOps()[7])}, // the largest
		&Interaction{From: 42, Seq: 44, Tick: 1010, Kind: InteractInventoryResult,
			Data: mustInvResult(InventoryResult{Op: InvGive, Code: InvOK, Event: 5001, Moved: 1})},
		&Interaction{From: math.MaxUint64, Seq: math.MaxUint32, Kind: InteractInventoryResult,
			Data: mustInvResult(InventoryResult{Op: InvTrade, Code: InvNoStore})},
		// A trade: entity 7 offers entity 42 its item 2001 for 42's item 1002 (kind 3, data the
		// mirror InventoryOp); 42 accepts (kind 4, the same trade seen from its side) and is
		// answered; another acceptance finds no offer, a loot lies too far.
		&Interaction{From: 7, Seq: 90, Tick: 1020, Kind: InteractTrade,
			Data: mustInvOp(InventoryOp{Op: InvTrade, Items: []uint64{2001}, Want: []uint64{1002}})},
		&Interact{Seq: 46, Target: 7, Kind: InteractInventory,
			Data: mustInvOp(InventoryOp{Op: InvTrade, Items: []uint64{1002}, Want: []uint64{2001}})},
		&Interaction{From: 42, Seq: 46, Tick: 1025, Kind: InteractInventoryResult,
			Data: mustInvResult(InventoryResult{Op: InvTrade, Code: InvOK, Event: 5002, Moved: 2})},
		&Interaction{From: 42, Seq: 47, Tick: 1030, Kind: InteractInventoryResult,
			Data: mustInvResult(InventoryResult{Op: InvTrade, Code: InvNoOffer})},
		&Interaction{From: 42, Seq: 48, Tick: 1031, Kind: InteractInventoryResult,
			Data: mustInvResult(InventoryResult{Op: InvLoot, Code: InvTooFar})},
		// Kind 3 data is not checked: a one-sided "offer" is a valid message that matches nothing.
		&Interact{Seq: 49, Target: 7, Kind: InteractTrade, Data: invOpBytes(byte(InvTrade), 3, 0, 5, 7, 9)},
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	for _, m := range validMessages() {
		if err := m.Validate(); err != nil {
			t.Fatalf("%T: Validate: %v", m, err)
		}
		frame := m.AppendFrame([]byte{0xEE})[1:]
		typ, payload, rest, err := SplitFrame(frame)
		if err != nil || len(rest) != 0 || typ != m.Type() {
			t.Fatalf("%T: SplitFrame: %v %v rest %d", m, typ, err, len(rest))
		}
		got, err := DecodeMessage(typ, payload)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
		// Every strict prefix is truncated; one more byte is trailing.
		for n := 0; n < len(payload); n++ {
			if _, err := DecodeMessage(typ, payload[:n]); !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTrailingBytes) {
				t.Errorf("%T: payload cut to %d bytes: %v", m, n, err)
			}
		}
		if _, err := DecodeMessage(typ, append(payload[:len(payload):len(payload)], 0)); !errors.Is(err, ErrTrailingBytes) {
			t.Errorf("%T: trailing byte: %v", m, err)
		}
	}
}

func TestDecodeCopiesBytes(t *testing.T) {
	m := Hello{Version: 1, Token: []byte("abc")}
	frame := m.AppendFrame(nil)
	got, err := DecodeHello(frame[3:])
	if err != nil {
		t.Fatal(err)
	}
	frame[len(frame)-1] = 'X'
	if string(got.Token) != "abc" {
		t.Fatal("decoded token aliases the payload")
	}
	in := (&Interact{Seq: 1, Target: 2, Kind: InteractChat, Data: []byte("hi")}).AppendFrame(nil)
	gi, err := DecodeInteract(in[3:])
	if err != nil {
		t.Fatal(err)
	}
	in[len(in)-1] = 'X'
	if string(gi.Data) != "hi" {
		t.Fatal("decoded interact data aliases the payload")
	}
	ia := (&Interaction{From: 1, Seq: 2, Kind: InteractChat, Data: []byte("yo")}).AppendFrame(nil)
	ga, err := DecodeInteraction(ia[3:])
	if err != nil {
		t.Fatal(err)
	}
	ia[len(ia)-1] = 'X'
	if string(ga.Data) != "yo" {
		t.Fatal("decoded interaction data aliases the payload")
	}
}

func TestDecodeMessageUnknownTypes(t *testing.T) {
	for _, typ := range []MsgType{0, MsgSnapshot, MsgInteraction + 1, 255} {
		if m, err := DecodeMessage(typ, nil); !errors.Is(err, ErrUnknownMsgType) || m != nil {
			t.Errorf("type %d: %v, %v", typ, m, err)
		}
	}
	if m, err := DecodeMessage(MsgAck, nil); m != nil || err == nil {
		t.Errorf("failed decode returned %v", m)
	}
}

func TestMessagesRejectOutOfRange(t *testing.T) {
	cases := []struct {
		m    Message
		want error
	}{
		{&Welcome{Entity: 0, TickHz: 20}, ErrValueOutOfRange},
		{&Welcome{Entity: 1, TickHz: 0}, ErrValueOutOfRange},
		{&Welcome{Entity: 1, TickHz: 20, WorldMin: [2]int32{1, 0}}, ErrValueOutOfRange},
		{&Welcome{Entity: 1, TickHz: 20, WorldMin: [2]int32{0, 1}}, ErrValueOutOfRange},
		{&Input{Seq: 0}, ErrValueOutOfRange},
		{&Input{Seq: 1, MoveX: -128}, ErrValueOutOfRange},
		{&Input{Seq: 1, MoveZ: -128}, ErrValueOutOfRange},
		{&Ack{Tick: 0}, ErrValueOutOfRange},
		{&Disconnect{Reason: maxReason + 1}, ErrValueOutOfRange},
		{&Interact{Seq: 0, Target: 1, Kind: InteractAttack}, ErrValueOutOfRange},
		{&Interact{Seq: 1, Target: 0, Kind: InteractAttack}, ErrValueOutOfRange},
		{&Interact{Seq: 1, Target: 1, Kind: 0}, ErrValueOutOfRange},
		{&Interact{Seq: 1, Target: 1, Kind: maxInteractKind + 1}, ErrValueOutOfRange},
		{&Interact{Seq: 1, Target: 1, Kind: 255}, ErrValueOutOfRange},
		{&Interact{Seq: 1, Target: 1, Kind: InteractChat, Data: []byte{'a', 0xFF}}, ErrValueOutOfRange},
		{&Interact{Seq: 1, Target: 1, Kind: InteractChat, Data: []byte("\xe2\x82")}, ErrValueOutOfRange}, // a cut character
		{&Interaction{From: 0, Seq: 1, Kind: InteractAttack}, ErrValueOutOfRange},
		{&Interaction{From: 1, Seq: 0, Kind: InteractAttack}, ErrValueOutOfRange},
		{&Interaction{From: 1, Seq: 1, Kind: 0}, ErrValueOutOfRange},
		{&Interaction{From: 1, Seq: 1, Kind: maxInteractKind + 1}, ErrValueOutOfRange},
		{&Interaction{From: 1, Seq: 1, Kind: InteractChat, Data: []byte{0xC0, 0x80}}, ErrValueOutOfRange}, // overlong NUL
	}
	for _, c := range cases {
		if err := c.m.Validate(); !errors.Is(err, c.want) {
			t.Errorf("%+v: Validate = %v, want %v", c.m, err, c.want)
		}
		frame := c.m.AppendFrame(nil)
		if _, err := DecodeMessage(c.m.Type(), frame[3:]); !errors.Is(err, c.want) {
			t.Errorf("%+v: decode = %v, want %v", c.m, err, c.want)
		}
	}
	// Fields the layout cannot express are only reachable by hand-made payloads.
	input := (&Input{Seq: 1}).AppendFrame(nil)
	input[3+10], input[3+11] = 0x00, 0x04 // yaw 1024
	if _, err := DecodeInput(input[3:]); !errors.Is(err, ErrValueOutOfRange) {
		t.Errorf("yaw 1024: %v", err)
	}
	if err := (&Input{Seq: 1, Yaw: YawSteps}).Validate(); !errors.Is(err, ErrValueOutOfRange) {
		t.Errorf("Validate yaw 1024: %v", err)
	}
	if err := (&Hello{Token: make([]byte, MaxTokenLength+1)}).Validate(); !errors.Is(err, ErrTokenTooLong) {
		t.Errorf("long token: %v", err)
	}
	if err := (&Disconnect{Message: strings.Repeat("x", MaxReasonLen+1)}).Validate(); !errors.Is(err, ErrReasonTooLong) {
		t.Errorf("long reason: %v", err)
	}
	// Interaction data beyond MaxInteractData: the encoders cut it, so only by hand.
	long := make([]byte, MaxInteractData+1)
	for _, m := range []Message{
		&Interact{Seq: 1, Target: 1, Kind: InteractAttack, Data: long},
		&Interaction{From: 1, Seq: 1, Kind: InteractAttack, Data: long},
	} {
		if err := m.Validate(); !errors.Is(err, ErrValueOutOfRange) {
			t.Errorf("%T with %d bytes of data: Validate = %v", m, len(long), err)
		}
		frame := m.AppendFrame(nil) // data cut to MaxInteractData
		payload := append(frame[3:len(frame)-MaxInteractData-1], MaxInteractData+1)
		payload = append(payload, long...)
		if _, err := DecodeMessage(m.Type(), payload); !errors.Is(err, ErrValueOutOfRange) {
			t.Errorf("%T with %d bytes of data: decode = %v", m, len(long), err)
		}
		payload[len(payload)-len(long)-1] = 255 // the largest length byte, with too little data
		if _, err := DecodeMessage(m.Type(), payload); !errors.Is(err, ErrValueOutOfRange) {
			t.Errorf("%T with data length 255: decode = %v", m, err)
		}
	}
}

func TestEncodersCutWhatDoesNotFit(t *testing.T) {
	h := Hello{Version: 1, Token: bytes.Repeat([]byte{'t'}, 300)}
	got, err := DecodeHello(h.AppendFrame(nil)[3:])
	if err != nil || len(got.Token) != MaxTokenLength {
		t.Fatalf("long token: %d bytes, %v", len(got.Token), err)
	}
	// 254 ASCII bytes then a 3-byte character straddling the limit: cut before it.
	d := Disconnect{Reason: ReasonKicked, Message: strings.Repeat("a", 254) + "€€"}
	gd, err := DecodeDisconnect(d.AppendFrame(nil)[3:])
	if err != nil || gd.Message != strings.Repeat("a", 254) || !utf8.ValidString(gd.Message) {
		t.Fatalf("long message: %q, %v", gd.Message, err)
	}
	in := Input{Seq: 1, Yaw: YawSteps + 5}
	gi, err := DecodeInput(in.AppendFrame(nil)[3:])
	if err != nil || gi.Yaw != 5 {
		t.Fatalf("yaw: %d, %v", gi.Yaw, err)
	}
	// Chat text is cut at a character boundary, other data at MaxInteractData bytes.
	chat := Interact{Seq: 1, Target: 2, Kind: InteractChat, Data: []byte(strings.Repeat("a", MaxInteractData-1) + "€€")}
	gc, err := DecodeInteract(chat.AppendFrame(nil)[3:])
	if err != nil || string(gc.Data) != strings.Repeat("a", MaxInteractData-1) {
		t.Fatalf("long chat: %q, %v", gc.Data, err)
	}
	trade := Interaction{From: 1, Seq: 2, Kind: InteractTrade, Data: bytes.Repeat([]byte{0xE2}, 300)}
	gt, err := DecodeInteraction(trade.AppendFrame(nil)[3:])
	if err != nil || !bytes.Equal(gt.Data, trade.Data[:MaxInteractData]) {
		t.Fatalf("long trade data: %d bytes, %v", len(gt.Data), err)
	}
}

func TestMsgTypeString(t *testing.T) {
	if MsgSnapshot.String() != "snapshot" || MsgType(77).String() != "msg(77)" || MsgType(0).String() != "msg(0)" {
		t.Error(MsgSnapshot.String(), MsgType(77).String(), MsgType(0).String())
	}
	if ReasonBadToken.String() != "bad token" || DisconnectReason(200).String() != "reason(200)" {
		t.Error(ReasonBadToken.String(), DisconnectReason(200).String())
	}
	if MsgInteract.String() != "interact" || MsgInteraction.String() != "interaction" || ReasonEntityLost.String() != "entity-lost" {
		t.Error(MsgInteract.String(), MsgInteraction.String(), ReasonEntityLost.String())
	}
	if (maxReason + 1).String() != "reason(9)" {
		t.Error((maxReason + 1).String())
	}
}

func TestMessageEncodersNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	msgs := validMessages()
	allocs := testing.AllocsPerRun(50, func() {
		b := buf[:0]
		for _, m := range msgs {
			b = m.AppendFrame(b)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations", allocs)
	}
}

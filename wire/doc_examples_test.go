package wire

import (
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The worked examples of docs/wire.md, produced by the real encoders. If this test fails, the
// encoders changed the protocol: update the document (and think about ProtocolVersion).
const (
	docHelloHex = "0b000101000773336372337421"
	docInputHex = "0e00032a000000e80300007fc0000101"
	docFullHex  = "390005000003e800000014802e000000070004e200000003000002ee00c16c9600807800000009502f9000002724000000180000175c0100010000"
	docDeltaHex = "130005000003eb88000000a8012e0e707400810180"
	docAckHex   = "050004eb030000"

	docInteractHex    = "1200092b00000007000000000000000203686921"
	docInteractionHex = "16000a2a000000000000002b000000ec0300000203686921"

	docInvGiveHex   = "1a00092c0000000700000000000000040b030100e903000000000000"
	docInvResultHex = "1e000a2a000000000000002c000000f2030000050b0301891300000000000001"

	docTradeOfferHex   = "2200095a0000002a000000000000000313040101d107000000000000ea03000000000000"
	docTradeOfferedHex = "26000a07000000000000005a000000fc0300000313040101d107000000000000ea03000000000000"
	docTradeAcceptHex  = "2200092d00000007000000000000000413040101ea03000000000000d107000000000000"
	docTradeResultHex  = "1e000a2a000000000000002d00000001040000050b04018a1300000000000002"
)

var (
	docHello = Hello{Version: 1, Token: []byte("s3cr3t!")}
	docInput = Input{Seq: 42, ClientTick: 1000, MoveX: 127, MoveZ: -64, Yaw: 256, Action: 1}
	// The client of docInput (entity 42) says "hi!" to entity 7 with the next sequence; entity
	// 7's client receives it at tick 1004.
	docInteract    = Interact{Seq: 43, Target: 7, Kind: InteractChat, Data: []byte("hi!")}
	docInteraction = Interaction{From: 42, Seq: 43, Tick: 1004, Kind: InteractChat, Data: []byte("hi!")}
	// Its next message gives item 1001 to entity 7; the result reaches it at tick 1010, the
	// operation logged as event 5001.
	docInvGive   = Interact{Seq: 44, Target: 7, Kind: InteractInventory, Data: mustInvOp(InventoryOp{Op: InvGive, Items: []uint64{1001}})}
	docInvResult = Interaction{From: 42, Seq: 44, Tick: 1010, Kind: InteractInventoryResult,
		Data: mustInvResult(InventoryResult{Op: InvGive, Code: InvOK, Event: 5001, Moved: 1})}
	// A trade (§9.7): entity 7 (B) offers entity 42 (A) its item 2001 for A's item 1002; A's
	// client receives the offer at tick 1020 and accepts with its next sequence, 45, the same
	// trade seen from its side; the result reaches it at tick 1025, logged as event 5002.
	docTradeOffer = Interact{Seq: 90, Target: 42, Kind: InteractTrade,
		Data: mustInvOp(InventoryOp{Op: InvTrade, Items: []uint64{2001}, Want: []uint64{1002}})}
	docTradeOffered = Interaction{From: 7, Seq: 90, Tick: 1020, Kind: InteractTrade, Data: docTradeOffer.Data}
	docTradeAccept  = Interact{Seq: 45, Target: 7, Kind: InteractInventory,
		Data: mustInvOp(InventoryOp{Op: InvTrade, Items: []uint64{1002}, Want: []uint64{2001}})}
	docTradeResult = Interaction{From: 42, Seq: 45, Tick: 1025, Kind: InteractInventoryResult,
		Data: mustInvResult(InventoryResult{Op: InvTrade, Code: InvOK, Event: 5002, Moved: 2})}
	// Two entities at tick 1000: the second has an id ≥ 2^32.
	docView1000 = []ViewSlot{
		{ID: 7, State: EntityState{X: 320000, Y: 768, Z: 192000, VX: 10, VZ: -3, Yaw: 300, Kind: 1}},
		{ID: 5_000_000_000, State: EntityState{X: 320640, Y: 768, Z: 191360, VX: 0, VZ: 0, Yaw: 512, Kind: 2}},
	}
	docFullHeader = SnapshotHeader{ServerTick: 1000, LastInputSeq: 41, SlotCount: 2}
	// Tick 1003, delta against 1000: entity 7 kept moving as predicted (1 bit); entity 5e9
	// started walking along +x at 12 units/tick a tick ago, turned and began action 3.
	docView1003 = []ViewSlot{
		{ID: 7, State: EntityState{X: 320030, Y: 768, Z: 191991, VX: 10, VZ: -3, Yaw: 300, Kind: 1}},
		{ID: 5_000_000_000, State: EntityState{X: 320652, Y: 768, Z: 191360, VX: 12, VZ: 0, Yaw: 0, Kind: 2, Action: 3}},
	}
	docDeltaHeader = SnapshotHeader{ServerTick: 1003, BaselineTick: 1000, LastInputSeq: 42, SlotCount: 2}
)

func TestDocExamples(t *testing.T) {
	check := func(name, want string, got []byte) {
		t.Helper()
		if h := hex.EncodeToString(got); h != want {
			t.Errorf("%s: encoder gives\n%s\nthe document says\n%s", name, h, want)
		}
	}
	check("hello", docHelloHex, docHello.AppendFrame(nil))
	check("input", docInputHex, docInput.AppendFrame(nil))
	check("ack", docAckHex, (&Ack{Tick: 1003}).AppendFrame(nil))
	check("interact", docInteractHex, docInteract.AppendFrame(nil))
	check("interaction", docInteractionHex, docInteraction.AppendFrame(nil))
	check("inventory give", docInvGiveHex, docInvGive.AppendFrame(nil))
	check("inventory result", docInvResultHex, docInvResult.AppendFrame(nil))
	check("trade offer", docTradeOfferHex, docTradeOffer.AppendFrame(nil))
	check("trade offer delivered", docTradeOfferedHex, docTradeOffered.AppendFrame(nil))
	check("trade acceptance", docTradeAcceptHex, docTradeAccept.AppendFrame(nil))
	check("trade result", docTradeResultHex, docTradeResult.AppendFrame(nil))
	// The acceptance mirrors the offer: its items are what the offer wants, and the reverse.
	offer, err1 := DecodeInventoryOp(docTradeOffered.Data)
	accept, err2 := DecodeInventoryOp(docTradeAccept.Data)
	if err1 != nil || err2 != nil || offer.Op != InvTrade || accept.Op != InvTrade ||
		!reflect.DeepEqual(offer.Items, accept.Want) || !reflect.DeepEqual(offer.Want, accept.Items) ||
		docTradeAccept.Target != docTradeOffered.From || docTradeOffer.Target != docTradeResult.From {
		t.Errorf("the acceptance %+v (%v) does not mirror the offer %+v (%v)", accept, err2, offer, err1)
	}
	for _, c := range []struct {
		hex string
		m   Message
	}{{docInteractHex, &docInteract}, {docInteractionHex, &docInteraction}, {docInvGiveHex, &docInvGive}, {docInvResultHex, &docInvResult},
		{docTradeOfferHex, &docTradeOffer}, {docTradeOfferedHex, &docTradeOffered}, {docTradeAcceptHex, &docTradeAccept}, {docTradeResultHex, &docTradeResult}} {
		b, _ := hex.DecodeString(c.hex)
		typ, payload, _, err := SplitFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := DecodeMessage(typ, payload); err != nil || !reflect.DeepEqual(m, c.m) {
			t.Errorf("%v: decodes to %+v, %v", typ, m, err)
		}
	}
	full, err := AppendSnapshot(nil, docFullHeader, nil, docView1000)
	if err != nil {
		t.Fatal(err)
	}
	check("full snapshot", docFullHex, full)
	delta, err := AppendSnapshot(nil, docDeltaHeader, docView1000, docView1003)
	if err != nil {
		t.Fatal(err)
	}
	check("delta snapshot", docDeltaHex, delta)

	// The document shows these bytes: compact for the small frames, as rows of 32 spaced
	// bytes for the snapshots.
	doc, err := os.ReadFile("../docs/wire.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`" + docHelloHex + "`", "`" + docInputHex + "`", spacedHex(docFullHex), spacedHex(docDeltaHex), "`" + spacedHex(docAckHex) + "`",
		"`" + docInteractHex + "`", "`" + docInteractionHex + "`", "`" + docInvGiveHex + "`", "`" + docInvResultHex + "`",
		"`" + docTradeOfferHex + "`", "`" + docTradeOfferedHex + "`", "`" + docTradeAcceptHex + "`", "`" + docTradeResultHex + "`"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/wire.md does not show\n%s", want)
		}
	}

	// And the client side: decoding the documented bytes gives the documented views.
	var client ViewRing
	var s Snapshot
	for _, c := range []struct {
		hex  string
		view []ViewSlot
	}{{docFullHex, docView1000}, {docDeltaHex, docView1003}} {
		b, _ := hex.DecodeString(c.hex)
		_, payload, _, err := SplitFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Decode(payload, &s); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.Slots, c.view) {
			t.Errorf("decoded %+v, want %+v", s.Slots, c.view)
		}
	}
}

// spacedHex formats hex as the document does: bytes separated by spaces, 32 to a line.
func spacedHex(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		switch {
		case i == 0:
		case i%64 == 0:
			b.WriteByte('\n')
		default:
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, h[i:i+2])
	}
	return b.String()
}

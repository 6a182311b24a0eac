package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"testing/iotest"
)

// Fuzz targets of the peer link. Their seed corpora live in testdata/fuzz/<FuzzName>/ and are
// regenerated with the client protocol's (TestFuzzCorpus and TestFuzzCorpusPeer both match):
//
//	go test ./wire -run TestFuzzCorpus -args -regen-corpus
//
// The Migrate seeds hold zstd output, so a new version of klauspost/compress may change them.
// Fuzz with e.g. go test ./wire -run='^$' -fuzz=FuzzDecodePeer -fuzztime=20s.

// FuzzDecodePeer decodes payload as a peer message of type typ. Decoding must not panic, every
// error must wrap a sentinel, and a message that decodes must be valid and re-encode to a frame
// that decodes to the same message: the same bytes, except for the compressed part of a
// Migrate (zstd has many encodings of the same data).
func FuzzDecodePeer(f *testing.F) {
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		m, err := DecodePeer(PeerType(typ), payload)
		if err != nil {
			if m != nil {
				t.Fatal("message returned with an error")
			}
			if !isPeerSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if m.Type() != PeerType(typ) {
			t.Fatalf("type %v, want %v", m.Type(), PeerType(typ))
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded message invalid: %v", err)
		}
		frame, err := m.AppendFrame(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		typ2, payload2, rest, err := SplitPeerFrame(frame)
		if err != nil || len(rest) != 0 || typ2 != m.Type() {
			t.Fatalf("re-encoded frame: %v %v rest %d", typ2, err, len(rest))
		}
		if m.Type() == PeerMigrate {
			if !bytes.Equal(payload2[:migrateHead], payload[:migrateHead]) {
				t.Fatalf("migrate header re-encodes differently:\n got % x\nwant % x", payload2[:migrateHead], payload[:migrateHead])
			}
		} else if !bytes.Equal(payload2, payload) {
			t.Fatalf("re-encoding differs:\n got % x\nwant % x", payload2, payload)
		}
		m2, err := DecodePeer(typ2, payload2)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m2, m) {
			t.Fatalf("re-encoded message decodes to\n%+v\nwant\n%+v", m2, m)
		}
	})
}

// FuzzEntityBlockRaw reaches the raw entity block parser, which FuzzDecodePeer rarely gets past
// zstd to: it compresses raw as the block of count records. A raw block that decodes must be
// canonical: the records re-encode to exactly raw.
func FuzzEntityBlockRaw(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte, count uint8) {
		recs, err := DecodeEntityBlock(rawBlock(uint64(count), raw))
		if err != nil {
			if recs != nil {
				t.Fatal("records returned with an error")
			}
			if !isPeerSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if len(recs) != int(count) {
			t.Fatalf("%d records, count %d", len(recs), count)
		}
		if count == 0 {
			return
		}
		if _, err := sortedRecords(recs, nil); err != nil {
			t.Fatalf("decoded records invalid: %v", err)
		}
		if again := appendRawBlock(nil, recs); !bytes.Equal(again, raw) {
			t.Fatalf("raw block re-encodes differently:\n got % x\nwant % x", again, raw)
		}
	})
}

// FuzzPeerReader reads data through a PeerReader in chunks chosen by the fuzzer, with a frame
// limit chosen by the fuzzer, and checks it against SplitPeerFrame.
func FuzzPeerReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, chunking uint8) {
		var r io.Reader = bytes.NewReader(data)
		switch chunking % 4 {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.HalfReader(r)
		case 3:
			r = iotest.DataErrReader(r)
		}
		limit := [...]int{MaxPeerFrame, 1, 40, 1000}[chunking/4%4]
		pr := NewPeerReaderLimit(r, limit)
		rest := data
		for {
			typ, payload, err := pr.Next()
			if len(rest) == 0 {
				if err != io.EOF {
					t.Fatalf("at the end: %v, want io.EOF", err)
				}
				return
			}
			if len(rest) < 4 {
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("%d bytes left: %v, want io.ErrUnexpectedEOF", len(rest), err)
				}
				return
			}
			n := binary.LittleEndian.Uint32(rest)
			wantTyp, wantPayload, r, wantErr := SplitPeerFrame(rest)
			switch {
			case n == 0:
				if !errors.Is(err, ErrFrameEmpty) {
					t.Fatalf("zero length: %v", err)
				}
				return
			case uint64(n) > uint64(limit):
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("length %d over limit %d: %v", n, limit, err)
				}
				return
			case wantErr != nil:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("truncated frame: %v (SplitPeerFrame: %v), want io.ErrUnexpectedEOF", err, wantErr)
				}
				return
			}
			if err != nil || typ != wantTyp || !bytes.Equal(payload, wantPayload) {
				t.Fatalf("frame: %v %d % x; want %d % x", err, typ, payload, wantTyp, wantPayload)
			}
			rest = r
		}
	})
}

// --- Seed corpora ---

// peerSeedTooBig leaves the biggest valid messages out of the seed corpora.
func peerSeedTooBig(m PeerMessage) bool {
	switch m := m.(type) {
	case *FrameMsg:
		return len(m.Frame) > 1000
	case *ViewMsg:
		return len(m.IDs) > 100
	}
	return false
}

func peerMessageSeeds(t testing.TB) []corpusEntry {
	rng := rand.New(rand.NewPCG(17, 18))
	var seeds []corpusEntry
	add := func(name string, typ PeerType, payload []byte) {
		seeds = append(seeds, corpusEntry{name, []any{uint8(typ), payload}})
	}
	msgs := validPeerMessages()
	for i, m := range msgs {
		if peerSeedTooBig(m) {
			continue // keep the corpus small
		}
		add(fmt.Sprintf("valid-%02d-%v", i, m.Type()), m.Type(), encodePeer(t, m)[PeerFrameHeaderSize:])
	}
	small := encodePeer(t, &MigrateMsg{Change: 1, Transfer: 2, Cell: 3, Epoch: 4, Tick: 5, Entities: clusteredEntities(20, 9)})
	handoff := encodePeer(t, msgs[6])
	input := encodePeer(t, &docPeerInput)
	view := encodePeer(t, &ViewMsg{Entity: 7, IDs: []EntityID{1, 2, 3}})[PeerFrameHeaderSize:]
	drop := encodePeer(t, &DropMsg{Home: 1, Client: 2, Entity: 3, AuthEpoch: 4})[PeerFrameHeaderSize:]
	dropZero := func(off, n int) []byte {
		p := slices.Clone(drop)
		clear(p[off : off+n])
		return p
	}
	bad := []struct {
		name    string
		typ     PeerType
		payload []byte
	}{
		{"migrate-truncated", PeerMigrate, small[PeerFrameHeaderSize : len(small)-7]},
		{"migrate-trailing", PeerMigrate, append(slices.Clone(small[PeerFrameHeaderSize:]), 0)},
		{"migrate-count-over", PeerMigrate, append(slices.Clone(small[PeerFrameHeaderSize:PeerFrameHeaderSize+migrateHead]), 0x81, 0x80, 0x40)},
		{"migrate-bit-flip", PeerMigrate, func() []byte {
			p := slices.Clone(small[PeerFrameHeaderSize:])
			p[len(p)/2] ^= 4
			return p
		}()},
		{"migrate-not-zstd", PeerMigrate, append(slices.Clone(small[PeerFrameHeaderSize:PeerFrameHeaderSize+migrateHead]), 2, 1, 2, 3)},
		{"handoff-short", PeerHandoff, handoff[PeerFrameHeaderSize : len(handoff)-1]},
		{"input-bad-yaw", PeerInput, func() []byte {
			p := slices.Clone(input[PeerFrameHeaderSize:])
			p[31] = 4
			return p
		}()},
		{"ack-result-0", PeerHandoffAck, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"frame-length-over", PeerFrame, append(make([]byte, frameMsgHead-4), 0xFF, 0xFF, 0xFF, 0xFF)},
		{"join-new-with-epoch", PeerJoin, func() []byte {
			p := encodePeer(t, &JoinMsg{Home: 1, Client: 2, Resume: 3, AuthEpoch: 4})[PeerFrameHeaderSize:]
			p[21] = 0 // resume 0
			return p
		}()},
		{"join-trailing-player", PeerJoin, append(encodePeer(t, &JoinMsg{Home: 1, Client: 2, PlayerID: 3})[PeerFrameHeaderSize:], 0)},
		{"join-no-player", PeerJoin, encodePeer(t, &JoinMsg{Home: 1, Client: 2, PlayerID: 3})[PeerFrameHeaderSize : PeerFrameHeaderSize+41]}, // a version 2 Join
		{"handoff-no-player", PeerHandoff, handoff[PeerFrameHeaderSize : len(handoff)-10]},                                                   // a version 2 Handoff
		{"refuse-reason-none", PeerRefuse, []byte{1, 0, 0, 0, 0}},
		{"interact-data-long", PeerInteract, func() []byte {
			p := encodePeer(t, &InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 4, Kind: InteractAttack, Data: make([]byte, MaxInteractData)})[PeerFrameHeaderSize:]
			p[interactMsgHead-1]++
			return append(p, 0)
		}()},
		{"interact-chat-not-utf8", PeerInteract, func() []byte {
			p := encodePeer(t, &InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 4, Kind: InteractChat, Data: []byte("héllo")})[PeerFrameHeaderSize:]
			p[interactMsgHead+2] = 0x41 // the second byte of é
			return p
		}()},
		{"interact-inventory-id-0", PeerInteract, func() []byte {
			p := encodePeer(t, &InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 4, Kind: InteractInventory,
				Data: mustInvOp(InventoryOp{Op: InvGive, Items: []uint64{5}})})[PeerFrameHeaderSize:]
			clear(p[interactMsgHead+3:])
			return p
		}()},
		{"interact-inventory-result-short", PeerInteract, func() []byte {
			p := encodePeer(t, &InteractMsg{Origin: 1, Actor: 2, Seq: 3, Target: 2, Kind: InteractInventoryResult,
				Data: mustInvResult(InventoryResult{Op: InvGive, Code: InvOK})})[PeerFrameHeaderSize:]
			p[interactMsgHead-1]--
			return p[:len(p)-1]
		}()},
		{"ghosts-no-player", PeerGhosts, func() []byte {
			p := encodePeer(t, &GhostsMsg{Tick: 1, Entities: []EntityRecord{{ID: 1, PlayerID: 2, HP: 3}}})[PeerFrameHeaderSize:]
			return p[:len(p)-10] // a version 2 record
		}()},
		{"interact-ack-delivered-2", PeerInteractAck, []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2}},
		{"view-entity-0", PeerView, append(make([]byte, 8), view[8:]...)},
		{"view-id-0", PeerView, append(slices.Clone(view[:len(view)-8]), make([]byte, 8)...)},
		{"view-count-over", PeerView, binary.LittleEndian.AppendUint16(slices.Clone(view[:8]), MaxViewIDs+1)},
		{"view-count-short", PeerView, append(slices.Clone(view[:8]), append([]byte{2, 0}, view[viewHead:]...)...)},
		{"view-truncated", PeerView, view[:len(view)-3]},
		{"view-trailing", PeerView, append(slices.Clone(view), 0)},
		{"drop-home-0", PeerDrop, dropZero(0, 8)},
		{"drop-client-0", PeerDrop, dropZero(8, 4)},
		{"drop-entity-0", PeerDrop, dropZero(12, 8)},
		{"drop-truncated", PeerDrop, drop[:len(drop)-1]},
		{"drop-trailing", PeerDrop, append(slices.Clone(drop), 0)},
		// Records of 68 bytes, without HP.
		{"handoff-no-hp", PeerHandoff, handoff[PeerFrameHeaderSize : len(handoff)-2]},
		{"ghosts-no-hp", PeerGhosts, func() []byte {
			p := encodePeer(t, &GhostsMsg{Tick: 1, Entities: []EntityRecord{{ID: 1, PlayerID: 2, HP: 3}, {ID: 4, HP: 5}}})[PeerFrameHeaderSize:]
			binary.LittleEndian.PutUint32(p[4:], 2)
			return append(p[:8+68:8+68], p[8+70:8+70+68]...)
		}()},
		{"unknown", 0xEE, []byte{1, 2, 3}},
		{"garbage", PeerMigrate, garbage(rng, 60)},
	}
	for _, b := range bad {
		add(b.name, b.typ, b.payload)
	}
	return seeds
}

func peerReaderSeeds(t testing.TB) []corpusEntry {
	rng := rand.New(rand.NewPCG(19, 20))
	var stream []byte
	for _, m := range validPeerMessages() {
		if peerSeedTooBig(m) {
			continue
		}
		stream = append(stream, encodePeer(t, m)...)
	}
	ack := encodePeer(t, &docHandoffAck)
	cases := []struct {
		name string
		data []byte
	}{
		{"messages", stream},
		{"one-frame", ack},
		{"unknown-type", []byte{3, 0, 0, 0, 200, 1, 2}},
		{"zero-length", []byte{2, 0, 0, 0, 6, 1, 0, 0, 0, 0, 7}},
		{"truncated", stream[:len(stream)-3]},
		{"half-length", []byte{1, 0}},
		{"big-length", []byte{0xFF, 0xFF, 0xFF, 0x00, 5, 1, 2, 3}},
		{"over-max", []byte{0x01, 0x00, 0x00, 0x01, 5}},
		{"empty", nil},
		{"garbage", garbage(rng, 100)},
	}
	var seeds []corpusEntry
	for i, c := range cases {
		seeds = append(seeds, corpusEntry{c.name, []any{c.data, uint8(i * 5)}})
	}
	return seeds
}

func entityBlockRawSeeds() []corpusEntry {
	rng := rand.New(rand.NewPCG(21, 22))
	var seeds []corpusEntry
	add := func(name string, raw []byte, count int) {
		seeds = append(seeds, corpusEntry{name, []any{raw, uint8(count)}})
	}
	for i, recs := range [][]EntityRecord{
		{{ID: 1}},
		{extremeRecord},
		{{ID: 5, X: -1, Y: 2, Z: -3, Home: 1, Client: 2, LastInputTick: 9, PlayerID: 300}, {ID: 6, X: 1 << 30, Yaw: 1023}, {ID: 1 << 40}},
		clusteredEntities(12, 23),
		{{ID: 1, PlayerID: math.MaxInt64}, {ID: 2, Home: 3, Client: 4, PlayerID: 1}}, // players only
		// hit points
		{{ID: 1, HP: 100}, {ID: 2, Kind: 3, HP: math.MaxUint16}, {ID: 3, PlayerID: 7, HP: 128}, {ID: 4, HP: 127}},
	} {
		add(fmt.Sprintf("valid-%d", i), appendRawBlock(nil, recs), len(recs))
	}
	one := appendRawBlock(nil, []EntityRecord{{ID: 1}})
	add("count-mismatch", one, 2)
	add("trailing", append(slices.Clone(one), 0), 1)
	add("non-canonical", append([]byte{0x81, 0x00}, one[1:]...), 1)
	add("no-player-column", one[:len(one)-2], 1) // a version 2 block
	add("non-canonical-player", append(slices.Clone(one[:len(one)-2]), 0x80, 0x00, 0x00), 1)
	add("no-hp-column", one[:len(one)-1], 1)
	add("non-canonical-hp", append(slices.Clone(one[:len(one)-1]), 0x80, 0x00), 1)
	add("hp-over", append(slices.Clone(one[:len(one)-1]), 0x80, 0x80, 0x04), 1)
	add("hp-max", append(slices.Clone(one[:len(one)-1]), 0xFF, 0xFF, 0x03), 1)
	add("empty", nil, 0)
	add("garbage", garbage(rng, 70), 3)
	return seeds
}

// TestFuzzCorpusPeer checks that the committed peer seed corpora are what the seed generators
// produce (or, with -regen-corpus, rewrites them).
func TestFuzzCorpusPeer(t *testing.T) {
	for fuzzer, seeds := range map[string][]corpusEntry{
		"FuzzDecodePeer":     peerMessageSeeds(t),
		"FuzzPeerReader":     peerReaderSeeds(t),
		"FuzzEntityBlockRaw": entityBlockRawSeeds(),
	} {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if *regenCorpus {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds {
			want := marshalSeed(s.vals...)
			path := filepath.Join(dir, s.name)
			if *regenCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: missing or stale (%v); run with -args -regen-corpus", path, err)
			}
		}
	}
}

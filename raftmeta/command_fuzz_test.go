package raftmeta

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// sampleCommands is one command of every type, with every field set.
func sampleCommands() []Command {
	return []Command{
		InitWorld{World: World{Min: [2]float64{-8192, -8192}, Max: [2]float64{8192, 8192}}, MinCellSize: 64},
		Register{Server: 3, Addr: "10.0.0.3:7000", ClientAddr: "10.0.0.3:7001", Capacity: 5000, Now: 1_700_000_000_000_000_000, LeaseTTL: 3e9},
		Heartbeat{Server: 3, Now: 1_700_000_001_000_000_000, LeaseTTL: 3e9, Load: Load{
			Entities: 1200, TickP99Micros: 8000, BytesOut: 1 << 20,
			Cells: []CellLoad{
				{Cell: 1, Epoch: 7, Entities: 700, TickP99Micros: 5000, BytesOut: 600_000,
					HistX: []int32{0, 0, 1, 5, 40, 100, 200, 200, 100, 40, 10, 4, 0, 0, 0, 0},
					HistZ: []int32{700, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
				{Cell: 4, Entities: 500},
			},
		}},
		Deregister{Server: 3},
		Split{Cell: 1, Epoch: 4, Axis: AxisZ, At: 1234.5, NewOwner: 2},
		Merge{Low: 1, LowEpoch: 5, High: 9, HighEpoch: 6},
		Shift{Node: 3, At: -17.25, Epochs: map[CellID]Epoch{1: 5, 9: 6, 12: 1}},
		Move{Cell: 9, Epoch: 6, To: 4},
		Drain{Server: 2, Migrate: true},
		MarkDead{Server: 2, Now: 1_700_000_010_000_000_000},
		Prepare{Op: []byte("\b{\"cell\":9,\"epoch\":6,\"to\":4}"), Now: 1_700_000_020_000_000_000, Timeout: 5e9},
		Staged{Change: 41, Transfer: 1, Server: 4},
		Abort{Change: 41, Reason: "deadline passed"},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	seen := map[CommandType]bool{}
	for _, c := range sampleCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if CommandType(b[0]) != c.Type() {
			t.Fatalf("%T: type byte %d, want %d", c, b[0], c.Type())
		}
		seen[c.Type()] = true
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%T: decode %s: %v", c, b[1:], err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip %#v → %#v", c, got)
		}
		// A pointer encodes the same bytes; decoding always gives a value.
		p := reflect.New(reflect.TypeOf(c))
		p.Elem().Set(reflect.ValueOf(c))
		pb, err := EncodeCommand(p.Interface().(Command))
		if err != nil || !bytes.Equal(pb, b) {
			t.Fatalf("*%T encodes %q, %v; the value %q", c, pb, err, b)
		}
	}
	if len(seen) != len(decoders) {
		t.Fatalf("samples cover %d of %d registered command types", len(seen), len(decoders))
	}
}

func TestCommandWireFormat(t *testing.T) {
	// The payload is the JSON of types.go's tags: pinned, since the log outlives releases.
	b, err := EncodeCommand(Split{Cell: 1, Epoch: 2, Axis: AxisX, At: 512, NewOwner: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := "\x05" + `{"cell":1,"epoch":2,"axis":"x","at":512,"new_owner":3}`
	if string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
	// No HTML escaping: addresses and the like stay as they are.
	b, _ = EncodeCommand(Register{Server: 1, Addr: "<a>&", LeaseTTL: 1})
	if !bytes.Contains(b, []byte(`"addr":"<a>&"`)) {
		t.Fatalf("%q", b)
	}
}

func TestEncodeCommandRejects(t *testing.T) {
	var nilSplit *Split
	for name, c := range map[string]Command{
		"nil":         nil,
		"nil pointer": nilSplit,
		"NaN at":      Split{Cell: 1, Epoch: 1, Axis: AxisX, At: math.NaN()},
		"Inf at":      Shift{Node: 1, At: math.Inf(1)},
		"Inf world":   &InitWorld{World: World{Max: [2]float64{math.Inf(1), 1}}, MinCellSize: 1},
		"NaN min":     InitWorld{World: World{Max: [2]float64{1, 1}}, MinCellSize: math.NaN()},
		"too large":   Register{Server: 1, Addr: strings.Repeat("a", MaxCommandSize)},
	} {
		if _, err := EncodeCommand(c); !errors.Is(err, ErrMalformedCommand) {
			t.Errorf("%s: %v, want ErrMalformedCommand", name, err)
		}
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	huge := append([]byte{byte(CmdRegister)}, []byte(`{"addr":"`+strings.Repeat("a", MaxCommandSize)+`"}`)...)
	for name, tc := range map[string]struct {
		data string
		want error
	}{
		"empty":             {"", ErrMalformedCommand},
		"type 0":            {"\x00{}", ErrUnknownCommand},
		"type 14":           {"\x0e{}", ErrUnknownCommand},
		"no payload":        {"\x05", ErrMalformedCommand},
		"array":             {"\x05[]", ErrMalformedCommand},
		"null":              {"\x05null", ErrMalformedCommand},
		"string":            {"\x05\"x\"", ErrMalformedCommand},
		"unknown field":     {"\x05{\"cell\":1,\"colour\":2}", ErrMalformedCommand},
		"trailing object":   {"\x05{}{}", ErrMalformedCommand},
		"trailing garbage":  {"\x05{} x", ErrMalformedCommand},
		"truncated":         {"\x05{\"cell\":", ErrMalformedCommand},
		"wrong type":        {"\x05{\"cell\":\"one\"}", ErrMalformedCommand},
		"negative id":       {"\x05{\"cell\":-1}", ErrMalformedCommand},
		"out of range":      {"\x05{\"at\":1e400}", ErrMalformedCommand},
		"bad epochs key":    {"\x07{\"epochs\":{\"x\":1}}", ErrMalformedCommand},
		"too large":         {string(huge), ErrMalformedCommand},
		"nested unknown":    {"\x03{\"load\":{\"cpu\":1}}", ErrMalformedCommand},
		"invalid utf8 lead": {"\x05\xff{}", ErrMalformedCommand},
	} {
		if _, err := DecodeCommand([]byte(tc.data)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// Whitespace around the object is fine.
	if c, err := DecodeCommand([]byte("\x08 \n{\"cell\":2,\"epoch\":3,\"to\":4}\n ")); err != nil || c != (Move{Cell: 2, Epoch: 3, To: 4}) {
		t.Fatalf("%#v, %v", c, err)
	}
}

// FuzzDecodeCommand: DecodeCommand never panics, fails only with the codec's two errors, and
// whatever it accepts re-encodes to bytes that decode to the same command (and re-encode to the
// same bytes). Seeds: testdata/fuzz/FuzzDecodeCommand (every command type and some garbage).
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedCommand) && !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("decode error %v is neither malformed nor unknown", err)
			}
			if c != nil {
				t.Fatalf("decode failed (%v) but returned %#v", err, c)
			}
			return
		}
		b, err := EncodeCommand(c)
		if err != nil {
			// Re-encoding may grow a payload (invalid UTF-8 becomes \ufffd), so only one near
			// the size limit may fail to re-encode.
			if len(data) < MaxCommandSize/6 {
				t.Fatalf("re-encoding %#v: %v", c, err)
			}
			return
		}
		c2, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decoding the re-encoding %q of %#v: %v", b, c, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip %#v → %q → %#v", c, b, c2)
		}
		if b2, err := EncodeCommand(c2); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not stable: %q then %q (%v)", b, b2, err)
		}
	})
}

package raftmeta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
)

// MaxCommandSize bounds an encoded command's payload (the bytes after the type byte).
const MaxCommandSize = 1 << 20

// decoders is the registration table of the codec (Consul's shape): one decoder per command
// type. A command type that is not here is ErrUnknownCommand. Types are never reused: a new
// command gets a new CommandType, an old one keeps decoding forever (the log outlives releases).
var decoders = map[CommandType]func(payload []byte) (Command, error){
	CmdInitWorld:  decodeAs[InitWorld],
	CmdRegister:   decodeAs[Register],
	CmdHeartbeat:  decodeAs[Heartbeat],
	CmdDeregister: decodeAs[Deregister],
	CmdSplit:      decodeAs[Split],
	CmdMerge:      decodeAs[Merge],
	CmdShift:      decodeAs[Shift],
	CmdMove:       decodeAs[Move],
	CmdDrain:      decodeAs[Drain],
	CmdMarkDead:   decodeAs[MarkDead],
	CmdPrepare:    decodeAs[Prepare],
	CmdStaged:     decodeAs[Staged],
	CmdAbort:      decodeAs[Abort],
}

// EncodeCommand encodes c as a Raft log entry's data: one CommandType byte followed by c's JSON
// payload. c may be a command value or a pointer to one. It fails with ErrMalformedCommand if
// c is nil, has a non-finite coordinate, or encodes to more than MaxCommandSize, and with
// ErrUnknownCommand if c's type is not registered.
func EncodeCommand(c Command) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil command", ErrMalformedCommand)
	}
	if v := reflect.ValueOf(c); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("%w: nil %T", ErrMalformedCommand, c)
	}
	t := c.Type()
	if _, ok := decoders[t]; !ok {
		return nil, fmt.Errorf("%w: type %d (%T)", ErrUnknownCommand, t, c)
	}
	if err := checkFinite(c); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteByte(byte(t))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("%w: encoding %T: %v", ErrMalformedCommand, c, err)
	}
	b := buf.Bytes()
	b = b[:len(b)-1] // Encoder.Encode appends a newline
	if len(b)-1 > MaxCommandSize {
		return nil, fmt.Errorf("%w: %T payload is %d bytes, more than %d", ErrMalformedCommand, c, len(b)-1, MaxCommandSize)
	}
	return b, nil
}

// DecodeCommand decodes a Raft log entry's data made by EncodeCommand. It returns the command
// as a value (InitWorld, Split, ...), never a pointer. Decoding is strict: an unregistered type
// byte is ErrUnknownCommand; an empty entry, a payload over MaxCommandSize, anything but one JSON
// object, unknown fields, trailing data or non-finite coordinates are ErrMalformedCommand,
// wrapped with detail. It never panics.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrMalformedCommand)
	}
	t := CommandType(b[0])
	dec, ok := decoders[t]
	if !ok {
		return nil, fmt.Errorf("%w: type %d", ErrUnknownCommand, t)
	}
	payload := b[1:]
	if len(payload) > MaxCommandSize {
		return nil, fmt.Errorf("%w: type %d payload is %d bytes, more than %d", ErrMalformedCommand, t, len(payload), MaxCommandSize)
	}
	return dec(payload)
}

// decodeAs decodes payload strictly as a T.
func decodeAs[T Command](payload []byte) (Command, error) {
	var c T
	if i := bytes.IndexFunc(payload, func(r rune) bool { return !isJSONSpace(r) }); i < 0 || payload[i] != '{' {
		return nil, fmt.Errorf("%w: %T payload is not a JSON object", ErrMalformedCommand, c)
	}
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %T: %v", ErrMalformedCommand, c, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %T: trailing data after the JSON object", ErrMalformedCommand, c)
	}
	if err := checkFinite(c); err != nil {
		return nil, err
	}
	return normalize(c), nil
}

func isJSONSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// normalize makes decode∘encode the identity on decoded commands: an empty load report list
// or histogram is omitted by the encoder, so it decodes as nil.
func normalize(c Command) Command {
	h, ok := c.(Heartbeat)
	if !ok {
		return c
	}
	if len(h.Load.Cells) == 0 {
		h.Load.Cells = nil
	}
	for i := range h.Load.Cells {
		cl := &h.Load.Cells[i]
		if len(cl.HistX) == 0 {
			cl.HistX = nil
		}
		if len(cl.HistZ) == 0 {
			cl.HistZ = nil
		}
	}
	return h
}

// checkFinite rejects NaN and ±Inf coordinates (JSON cannot carry them, but a command built in
// Go can).
func checkFinite(c Command) error {
	var fs []float64
	switch c := deref(c).(type) {
	case InitWorld:
		fs = []float64{c.World.Min[0], c.World.Min[1], c.World.Max[0], c.World.Max[1], c.MinCellSize}
	case Split:
		fs = []float64{c.At}
	case Shift:
		fs = []float64{c.At}
	}
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: %T has a non-finite coordinate (%v)", ErrMalformedCommand, c, f)
		}
	}
	return nil
}

// deref returns the command value a pointer command points to (c itself if it is a value).
func deref(c Command) Command {
	switch p := c.(type) {
	case *InitWorld:
		return *p
	case *Register:
		return *p
	case *Heartbeat:
		return *p
	case *Deregister:
		return *p
	case *Split:
		return *p
	case *Merge:
		return *p
	case *Shift:
		return *p
	case *Move:
		return *p
	case *Drain:
		return *p
	case *MarkDead:
		return *p
	case *Prepare:
		return *p
	case *Staged:
		return *p
	case *Abort:
		return *p
	}
	return c
}

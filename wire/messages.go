package wire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Messages other than snapshots are byte-aligned: fixed-width little-endian fields in struct
// order, and byte strings prefixed by a uint8 length. docs/wire.md has their layouts.
//
// Each message type has:
//   - AppendFrame, which appends the whole frame (length prefix, type byte, payload). It encodes
//     the fields as they are, except that what the layout cannot hold is cut to fit: a token or
//     disconnect message beyond 255 bytes, or interaction data beyond MaxInteractData bytes, is
//     truncated (a message or chat text at a UTF-8 boundary), a yaw is reduced modulo YawSteps
//     (the same angle). A message that fails Validate may therefore
//     encode to bytes the receiver rejects;
//   - Validate, which returns the error the receiver's decoder would return for its fields;
//   - a DecodeX function taking the payload (the bytes after the type byte), which rejects
//     short input, trailing bytes and out-of-range fields.

// Payload sizes of the fixed-size messages.
const (
	welcomeSize = 2 + 8 + 4 + 1 + 4*4
	inputSize   = 4 + 4 + 1 + 1 + 2 + 1
	ackSize     = 4
	pingSize    = 8
	pongSize    = 8 + 8 + 4
)

// Message is implemented by the pointer types of the byte-aligned messages (*Hello, *Welcome,
// *Input, *Ack, *Ping, *Pong, *Disconnect, *Interact, *Interaction). Snapshots are not Messages:
// decoding one needs a baseline view (see DecodeSnapshot).
type Message interface {
	Type() MsgType
	AppendFrame(dst []byte) []byte
	Validate() error
}

var msgNames = [...]string{
	MsgHello:       "hello",
	MsgWelcome:     "welcome",
	MsgInput:       "input",
	MsgAck:         "ack",
	MsgSnapshot:    "snapshot",
	MsgPing:        "ping",
	MsgPong:        "pong",
	MsgDisconnect:  "disconnect",
	MsgInteract:    "interact",
	MsgInteraction: "interaction",
}

// String returns the message type's name, or "msg(N)" for an unknown type.
func (t MsgType) String() string {
	if int(t) < len(msgNames) && msgNames[t] != "" {
		return msgNames[t]
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

var reasonNames = [...]string{
	ReasonNone:          "none",
	ReasonBadVersion:    "bad version",
	ReasonBadToken:      "bad token",
	ReasonProtocolError: "protocol error",
	ReasonServerFull:    "server full",
	ReasonShutdown:      "shutdown",
	ReasonKicked:        "kicked",
	ReasonEntityLost:    "entity-lost",
	ReasonUnavailable:   "unavailable",
}

// String returns the reason's name, or "reason(N)" for an unknown reason.
func (r DisconnectReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// DecodeMessage decodes the payload of a frame of type t into the matching message. It returns
// ErrUnknownMsgType for MsgSnapshot (use DecodeSnapshot) and for types it does not know.
func DecodeMessage(t MsgType, payload []byte) (Message, error) {
	switch t {
	case MsgHello:
		return decodeAs(DecodeHello, payload)
	case MsgWelcome:
		return decodeAs(DecodeWelcome, payload)
	case MsgInput:
		return decodeAs(DecodeInput, payload)
	case MsgAck:
		return decodeAs(DecodeAck, payload)
	case MsgPing:
		return decodeAs(DecodePing, payload)
	case MsgPong:
		return decodeAs(DecodePong, payload)
	case MsgDisconnect:
		return decodeAs(DecodeDisconnect, payload)
	case MsgInteract:
		return decodeAs(DecodeInteract, payload)
	case MsgInteraction:
		return decodeAs(DecodeInteraction, payload)
	case MsgSnapshot:
		return nil, fmt.Errorf("%w: snapshot (decode it with DecodeSnapshot)", ErrUnknownMsgType)
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownMsgType, uint8(t))
}

// decodeAs runs decode and returns a pointer to its result, or nil and the error.
func decodeAs[T any, PT interface {
	*T
	Message
}](decode func([]byte) (T, error), payload []byte) (Message, error) {
	m, err := decode(payload)
	if err != nil {
		return nil, err
	}
	return PT(&m), nil
}

// checkSize returns the error for a fixed-size payload (of a client or a peer message type) of
// the wrong length.
func checkSize[T MsgType | PeerType](t T, payload []byte, want int) error {
	switch {
	case len(payload) < want:
		return fmt.Errorf("%w: %v payload of %d bytes, want %d", ErrTruncated, t, len(payload), want)
	case len(payload) > want:
		return fmt.Errorf("%w: %v payload of %d bytes, want %d", ErrTrailingBytes, t, len(payload), want)
	}
	return nil
}

// appendFixed starts a frame of a fixed-size message whose payload is size bytes and returns
// the buffer and the payload to fill in. Fixed-size messages are far below MaxFrameSize, so the
// length is known up front.
func appendFixed(dst []byte, t MsgType, size int) (buf, payload []byte) {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(size+1))
	dst = append(dst, byte(t))
	n := len(dst)
	dst = append(dst, make([]byte, size)...) // does not allocate: append's make idiom
	return dst, dst[n:]
}

// --- Hello ---

// Type returns MsgHello.
func (m *Hello) Type() MsgType { return MsgHello }

// AppendFrame appends m as a frame: version:u16 | len:u8 | token. A token longer than
// MaxTokenLength is truncated.
func (m *Hello) AppendFrame(dst []byte) []byte {
	tok := m.Token
	if len(tok) > MaxTokenLength {
		tok = tok[:MaxTokenLength]
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(2+1+len(tok)+1))
	dst = append(dst, byte(MsgHello))
	dst = binary.LittleEndian.AppendUint16(dst, m.Version)
	dst = append(dst, byte(len(tok)))
	return append(dst, tok...)
}

// Validate reports a token longer than MaxTokenLength.
func (m *Hello) Validate() error {
	if len(m.Token) > MaxTokenLength {
		return fmt.Errorf("%w: hello token of %d bytes, max %d", ErrTokenTooLong, len(m.Token), MaxTokenLength)
	}
	return nil
}

// DecodeHello decodes a Hello payload. The token is copied out of payload. The version is not
// checked here: the server answers an unsupported one with Disconnect{ReasonBadVersion}.
func DecodeHello(payload []byte) (Hello, error) {
	if len(payload) < 3 {
		return Hello{}, fmt.Errorf("%w: hello payload of %d bytes, want at least 3", ErrTruncated, len(payload))
	}
	n := int(payload[2])
	if n > MaxTokenLength {
		return Hello{}, fmt.Errorf("%w: hello token of %d bytes, max %d", ErrTokenTooLong, n, MaxTokenLength)
	}
	if err := checkSize(MsgHello, payload, 3+n); err != nil {
		return Hello{}, err
	}
	return Hello{
		Version: binary.LittleEndian.Uint16(payload),
		Token:   append([]byte(nil), payload[3:]...),
	}, nil
}

// --- Welcome ---

// Type returns MsgWelcome.
func (m *Welcome) Type() MsgType { return MsgWelcome }

// AppendFrame appends m as a frame: version:u16 | entity:u64 | serverTick:u32 | tickHz:u8 |
// minX:i32 | minZ:i32 | maxX:i32 | maxZ:i32.
func (m *Welcome) AppendFrame(dst []byte) []byte {
	dst, p := appendFixed(dst, MsgWelcome, welcomeSize)
	binary.LittleEndian.PutUint16(p[0:], m.Version)
	binary.LittleEndian.PutUint64(p[2:], uint64(m.Entity))
	binary.LittleEndian.PutUint32(p[10:], uint32(m.ServerTick))
	p[14] = m.TickHz
	binary.LittleEndian.PutUint32(p[15:], uint32(m.WorldMin[0]))
	binary.LittleEndian.PutUint32(p[19:], uint32(m.WorldMin[1]))
	binary.LittleEndian.PutUint32(p[23:], uint32(m.WorldMax[0]))
	binary.LittleEndian.PutUint32(p[27:], uint32(m.WorldMax[1]))
	return dst
}

// Validate requires an entity, a non-zero tick rate and WorldMin ≤ WorldMax on both axes.
func (m *Welcome) Validate() error {
	switch {
	case m.Entity == 0:
		return fmt.Errorf("%w: welcome without an entity", ErrValueOutOfRange)
	case m.TickHz == 0:
		return fmt.Errorf("%w: welcome with tick rate 0", ErrValueOutOfRange)
	case m.WorldMin[0] > m.WorldMax[0] || m.WorldMin[1] > m.WorldMax[1]:
		return fmt.Errorf("%w: welcome world bounds min %v > max %v", ErrValueOutOfRange, m.WorldMin, m.WorldMax)
	}
	return nil
}

// DecodeWelcome decodes a Welcome payload.
func DecodeWelcome(payload []byte) (Welcome, error) {
	if err := checkSize(MsgWelcome, payload, welcomeSize); err != nil {
		return Welcome{}, err
	}
	p := payload
	m := Welcome{
		Version:    binary.LittleEndian.Uint16(p[0:]),
		Entity:     EntityID(binary.LittleEndian.Uint64(p[2:])),
		ServerTick: Tick(binary.LittleEndian.Uint32(p[10:])),
		TickHz:     p[14],
		WorldMin:   [2]int32{int32(binary.LittleEndian.Uint32(p[15:])), int32(binary.LittleEndian.Uint32(p[19:]))},
		WorldMax:   [2]int32{int32(binary.LittleEndian.Uint32(p[23:])), int32(binary.LittleEndian.Uint32(p[27:]))},
	}
	if err := m.Validate(); err != nil {
		return Welcome{}, err
	}
	return m, nil
}

// --- Input ---

// Type returns MsgInput.
func (m *Input) Type() MsgType { return MsgInput }

// AppendFrame appends m as a frame: seq:u32 | clientTick:u32 | moveX:i8 | moveZ:i8 | yaw:u16 |
// action:u8. Yaw is reduced modulo YawSteps.
func (m *Input) AppendFrame(dst []byte) []byte {
	dst, p := appendFixed(dst, MsgInput, inputSize)
	binary.LittleEndian.PutUint32(p[0:], m.Seq)
	binary.LittleEndian.PutUint32(p[4:], uint32(m.ClientTick))
	p[8] = byte(m.MoveX)
	p[9] = byte(m.MoveZ)
	binary.LittleEndian.PutUint16(p[10:], m.Yaw&(YawSteps-1))
	p[12] = m.Action
	return dst
}

// Validate requires Seq ≥ 1 (0 is "no input" in SnapshotHeader.LastInputSeq), move intents in
// −127..127 and Yaw < YawSteps.
func (m *Input) Validate() error {
	switch {
	case m.Seq == 0:
		return fmt.Errorf("%w: input sequence 0 (sequences start at 1)", ErrValueOutOfRange)
	case m.MoveX == -128 || m.MoveZ == -128:
		return fmt.Errorf("%w: input move (%d, %d), each must be in -127..127", ErrValueOutOfRange, m.MoveX, m.MoveZ)
	case m.Yaw >= YawSteps:
		return fmt.Errorf("%w: input yaw %d, max %d", ErrValueOutOfRange, m.Yaw, YawSteps-1)
	}
	return nil
}

// DecodeInput decodes an Input payload.
func DecodeInput(payload []byte) (Input, error) {
	if err := checkSize(MsgInput, payload, inputSize); err != nil {
		return Input{}, err
	}
	p := payload
	m := Input{
		Seq:        binary.LittleEndian.Uint32(p[0:]),
		ClientTick: Tick(binary.LittleEndian.Uint32(p[4:])),
		MoveX:      int8(p[8]),
		MoveZ:      int8(p[9]),
		Yaw:        binary.LittleEndian.Uint16(p[10:]),
		Action:     p[12],
	}
	if err := m.Validate(); err != nil {
		return Input{}, err
	}
	return m, nil
}

// --- Ack ---

// Type returns MsgAck.
func (m *Ack) Type() MsgType { return MsgAck }

// AppendFrame appends m as a frame: tick:u32.
func (m *Ack) AppendFrame(dst []byte) []byte {
	dst, p := appendFixed(dst, MsgAck, ackSize)
	binary.LittleEndian.PutUint32(p, uint32(m.Tick))
	return dst
}

// Validate requires a tick: 0 names no snapshot.
func (m *Ack) Validate() error {
	if m.Tick == 0 {
		return fmt.Errorf("%w: ack of tick 0", ErrValueOutOfRange)
	}
	return nil
}

// DecodeAck decodes an Ack payload.
func DecodeAck(payload []byte) (Ack, error) {
	if err := checkSize(MsgAck, payload, ackSize); err != nil {
		return Ack{}, err
	}
	m := Ack{Tick: Tick(binary.LittleEndian.Uint32(payload))}
	if err := m.Validate(); err != nil {
		return Ack{}, err
	}
	return m, nil
}

// --- Ping ---

// Type returns MsgPing.
func (m *Ping) Type() MsgType { return MsgPing }

// AppendFrame appends m as a frame: clientTimeMicros:u64.
func (m *Ping) AppendFrame(dst []byte) []byte {
	dst, p := appendFixed(dst, MsgPing, pingSize)
	binary.LittleEndian.PutUint64(p, m.ClientTimeMicros)
	return dst
}

// Validate accepts every Ping.
func (m *Ping) Validate() error { return nil }

// DecodePing decodes a Ping payload.
func DecodePing(payload []byte) (Ping, error) {
	if err := checkSize(MsgPing, payload, pingSize); err != nil {
		return Ping{}, err
	}
	return Ping{ClientTimeMicros: binary.LittleEndian.Uint64(payload)}, nil
}

// --- Pong ---

// Type returns MsgPong.
func (m *Pong) Type() MsgType { return MsgPong }

// AppendFrame appends m as a frame: clientTimeMicros:u64 | serverTimeMicros:u64 |
// serverTick:u32.
func (m *Pong) AppendFrame(dst []byte) []byte {
	dst, p := appendFixed(dst, MsgPong, pongSize)
	binary.LittleEndian.PutUint64(p[0:], m.ClientTimeMicros)
	binary.LittleEndian.PutUint64(p[8:], m.ServerTimeMicros)
	binary.LittleEndian.PutUint32(p[16:], uint32(m.ServerTick))
	return dst
}

// Validate accepts every Pong.
func (m *Pong) Validate() error { return nil }

// DecodePong decodes a Pong payload.
func DecodePong(payload []byte) (Pong, error) {
	if err := checkSize(MsgPong, payload, pongSize); err != nil {
		return Pong{}, err
	}
	return Pong{
		ClientTimeMicros: binary.LittleEndian.Uint64(payload[0:]),
		ServerTimeMicros: binary.LittleEndian.Uint64(payload[8:]),
		ServerTick:       Tick(binary.LittleEndian.Uint32(payload[16:])),
	}, nil
}

// --- Disconnect ---

// Type returns MsgDisconnect.
func (m *Disconnect) Type() MsgType { return MsgDisconnect }

// AppendFrame appends m as a frame: reason:u8 | len:u8 | message (UTF-8). A message longer
// than MaxReasonLen bytes is truncated at a UTF-8 character boundary.
func (m *Disconnect) AppendFrame(dst []byte) []byte {
	msg := m.Message
	if len(msg) > MaxReasonLen {
		n := MaxReasonLen
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n-- // msg[n] continues the character that straddles the limit: cut before it
		}
		msg = msg[:n]
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(1+2+len(msg)))
	dst = append(dst, byte(MsgDisconnect), byte(m.Reason), byte(len(msg)))
	return append(dst, msg...)
}

// Validate requires a known reason and a message of at most MaxReasonLen bytes.
func (m *Disconnect) Validate() error {
	if m.Reason > maxReason {
		return fmt.Errorf("%w: disconnect reason %d", ErrValueOutOfRange, uint8(m.Reason))
	}
	if len(m.Message) > MaxReasonLen {
		return fmt.Errorf("%w: %d bytes, max %d", ErrReasonTooLong, len(m.Message), MaxReasonLen)
	}
	return nil
}

// DecodeDisconnect decodes a Disconnect payload. The message is taken as it is: it should be
// UTF-8 but is not checked.
func DecodeDisconnect(payload []byte) (Disconnect, error) {
	if len(payload) < 2 {
		return Disconnect{}, fmt.Errorf("%w: disconnect payload of %d bytes, want at least 2", ErrTruncated, len(payload))
	}
	n := int(payload[1])
	if n > MaxReasonLen {
		return Disconnect{}, fmt.Errorf("%w: %d bytes, max %d", ErrReasonTooLong, n, MaxReasonLen)
	}
	if err := checkSize(MsgDisconnect, payload, 2+n); err != nil {
		return Disconnect{}, err
	}
	m := Disconnect{Reason: DisconnectReason(payload[0]), Message: string(payload[2:])}
	if err := m.Validate(); err != nil {
		return Disconnect{}, err
	}
	return m, nil
}

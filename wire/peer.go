package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// The peer link: the TCP streams between cell servers (and gateways). docs/wire.md §12 has the
// layouts. A peer stream is a sequence of frames
//
//	length:uint32 little-endian | type:uint8 | payload
//
// where length counts the type byte and the payload (1..MaxPeerFrame). The payloads are
// byte-aligned like the client messages (fixed-width little-endian fields in struct order),
// except Migrate's entity block, which is a compact column-wise encoding compressed with zstd.
//
// Every peer message has:
//   - AppendFrame, which appends the whole frame (length prefix, type byte, payload). Unlike the
//     client messages' encoders it validates first: a message the receiver would reject (or a
//     Migrate too large for one frame) is not encoded; AppendFrame returns dst unchanged and
//     the error. So no server ever sends a peer bytes it must reject;
//   - Validate, which returns the error the receiver's decoder would return for its fields;
//   - a DecodeX function taking the payload (the bytes after the type byte), which rejects
//     short input, trailing bytes and out-of-range fields. DecodePeer dispatches on the type.

// PeerProtocolVersion is carried in PeerHelloMsg; a server closes a link of another version.
// Version 2 added LastSeq, X and Z to FrameMsg, the gateway and interaction messages
// (PeerJoin..PeerInteractAck), PeerView and PeerDrop; version 3 added PlayerID to EntityRecord
// (handoffs, migrations, ghosts, checkpoints) and to JoinMsg, and HP to EntityRecord.
const PeerProtocolVersion uint16 = 3

// Peer link limits.
const (
	// MaxPeerFrame is the largest peer frame, in bytes after the length prefix (type byte
	// included): 16 MiB.
	MaxPeerFrame = 16 << 20
	// PeerFrameHeaderSize is the bytes in front of a peer payload: length prefix and type.
	PeerFrameHeaderSize = 5
	// MaxMigrateEntities is the most records an entity block may declare. A Migrate of that
	// many entities does not fit in one frame unless they compress to 16 bytes each; senders
	// split large migrations over several messages.
	MaxMigrateEntities = 1 << 20
	// MaxForwardedFrame is the largest client frame a FrameMsg carries: one whole client frame,
	// length prefix included (2 + MaxFrameSize = 65537 bytes).
	MaxForwardedFrame = 2 + MaxFrameSize
)

// PeerType is the type byte of a peer frame.
type PeerType uint8

const (
	PeerHello      PeerType = 1  // either way, first frame of a link
	PeerMigrate    PeerType = 2  // source → target of a cell split / merge / move
	PeerHandoff    PeerType = 3  // old owner → new owner of one entity
	PeerHandoffAck PeerType = 4  // new owner → old owner
	PeerInput      PeerType = 5  // session home → entity owner (forwarded client input)
	PeerAck        PeerType = 6  // session home → entity owner (forwarded snapshot ack)
	PeerLeave      PeerType = 7  // session home → entity owner (the client went away)
	PeerFrame      PeerType = 8  // entity owner → session home (a snapshot frame for the client)
	PeerGhosts     PeerType = 9  // entity owner → neighbour: this tick's state of its ghosts there
	PeerGhostGone  PeerType = 10 // entity owner → neighbour: stop ghosting these entities
)

var peerNames = [...]string{
	PeerHello:       "peer-hello",
	PeerMigrate:     "migrate",
	PeerHandoff:     "handoff",
	PeerHandoffAck:  "handoff-ack",
	PeerInput:       "peer-input",
	PeerAck:         "peer-ack",
	PeerLeave:       "leave",
	PeerFrame:       "peer-frame",
	PeerGhosts:      "ghosts",
	PeerGhostGone:   "ghost-gone",
	PeerJoin:        "join",
	PeerRefuse:      "refuse",
	PeerInteract:    "interact",
	PeerInteractAck: "interact-ack",
	PeerView:        "view",
	PeerDrop:        "drop",
}

// String returns the peer message type's name, or "peer(N)" for an unknown type.
func (t PeerType) String() string {
	if int(t) < len(peerNames) && peerNames[t] != "" {
		return peerNames[t]
	}
	return fmt.Sprintf("peer(%d)", uint8(t))
}

// EntityRecord is a real entity's full state as it moves between servers.
type EntityRecord struct {
	ID            EntityID // ≠ 0
	X, Y, Z       int32    // position, in 1/PosUnitsPerMetre m
	VX, VZ        int32    // velocity, position units per tick
	Yaw           uint16   // 0..YawSteps-1
	Kind, Action  uint8
	AuthEpoch     uint64 // the entity's authority epoch; grows with every handoff
	Home          uint64 // the server holding the controlling client's session; 0: none
	Client        uint32 // that client's id on Home; 0 exactly when Home is 0
	LastSeq       uint32 // the last input sequence applied for the client
	LastInputTick Tick   // the tick that input was applied at; 0: none
	// PlayerID is the durable player the entity embodies (the id PostgreSQL keys the player's
	// position and inventory by; DESIGN.md §1a); 0: not a player (an NPC, or no
	// authentication). Ghosts carry it too, so that a neighbour can trade with the player.
	PlayerID PlayerID
	// HP is the entity's hit points (0: it has none: it cannot be hurt); a ghost carries them
	// so that a neighbour can show them.
	HP uint16
}

// Validate requires an id, Yaw < YawSteps and Home and Client both 0 or both non-zero.
func (r *EntityRecord) Validate() error {
	switch {
	case r.ID == 0:
		return fmt.Errorf("%w: entity record with id 0", ErrValueOutOfRange)
	case r.Yaw >= YawSteps:
		return fmt.Errorf("%w: entity %d yaw %d, max %d", ErrValueOutOfRange, r.ID, r.Yaw, YawSteps-1)
	case (r.Home == 0) != (r.Client == 0):
		return fmt.Errorf("%w: entity %d home %d client %d (both 0 or neither)", ErrValueOutOfRange, r.ID, r.Home, r.Client)
	}
	return nil
}

// HandoffAckMsg results.
const (
	HandoffAccepted  uint8 = 1 // the receiver now owns the entity
	HandoffRejected  uint8 = 2 // the receiver does not own the target cell; the sender keeps it
	HandoffDuplicate uint8 = 3 // the receiver already had this transfer: treat as accepted
)

// PeerHelloMsg opens a peer link, in both directions.
type PeerHelloMsg struct {
	Server      uint64 // the sender's server id; ≠ 0
	Incarnation uint64 // changes every time the sender's process starts
	Version     uint16 // PeerProtocolVersion (not checked by the decoder)
}

// MigrateMsg ships the entities of a cell being split, merged or moved, frozen at Tick and
// tagged with the cell's new Epoch. A migration may take several messages (same Change,
// different Transfer).
type MigrateMsg struct {
	Change   uint64 // the map change this migration carries out
	Transfer uint32 // part number within the change
	Cell     uint64 // the cell the entities go to; ≠ 0
	Epoch    uint64 // that cell's epoch after the change
	Tick     Tick   // the tick boundary the entities were frozen at; ≠ 0
	Entities []EntityRecord
}

// HandoffMsg hands one real entity to the server that owns the cell it entered.
type HandoffMsg struct {
	Transfer uint64 // ≠ 0; a retried transfer keeps its id
	Cell     uint64 // the target cell; ≠ 0
	Epoch    uint64 // the target cell's epoch as the sender knows it
	Tick     Tick   // the tick boundary of the handoff; ≠ 0
	Entity   EntityRecord
}

// HandoffAckMsg answers a HandoffMsg.
type HandoffAckMsg struct {
	Transfer uint64 // ≠ 0
	Result   uint8  // HandoffAccepted, HandoffRejected or HandoffDuplicate
}

// InputMsg forwards a client's input from its session's home to the entity's owner.
type InputMsg struct {
	Home   uint64 // ≠ 0
	Client uint32 // ≠ 0
	Entity EntityID
	Input  Input // valid as a client Input
}

// AckMsg forwards a client's snapshot ack from its session's home to the entity's owner.
type AckMsg struct {
	Home   uint64 // ≠ 0
	Client uint32 // ≠ 0
	Entity EntityID
	Tick   Tick // ≠ 0
}

// LeaveMsg tells an entity's owner that the client controlling it has gone.
type LeaveMsg struct {
	Home   uint64 // ≠ 0
	Client uint32 // ≠ 0
	Entity EntityID
}

// FrameMsg forwards a client frame (a snapshot, usually) from the entity's owner to the
// session's home, which writes Frame to the client as it is. LastSeq, X and Z tell the home
// where the session stands, so that it can ask for the entity to be re-created (a JoinMsg with
// Resume) if its owner dies.
type FrameMsg struct {
	Client    uint32 // ≠ 0
	Entity    EntityID
	AuthEpoch uint64 // the entity's authority epoch at the owner: the home drops older ones
	LastSeq   uint32 // the last input sequence the owner applied for the client; 0: none
	X, Z      int32  // the entity's position at the tick of Frame, position units
	Frame     []byte // one whole client frame, 1..MaxForwardedFrame bytes; aliases the payload when decoded
}

// PeerMessage is implemented by the pointer types of the peer messages.
type PeerMessage interface {
	Type() PeerType
	AppendFrame(dst []byte) ([]byte, error)
	Validate() error
}

// --- Framing ---

// AppendPeerFrame appends a peer frame holding payload to dst. If the frame would exceed
// MaxPeerFrame it returns dst unchanged and ErrFrameTooLarge.
func AppendPeerFrame(dst []byte, t PeerType, payload []byte) ([]byte, error) {
	if len(payload) >= MaxPeerFrame {
		return dst, fmt.Errorf("%w: %d-byte peer payload", ErrFrameTooLarge, len(payload))
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)+1))
	dst = append(dst, byte(t))
	return append(dst, payload...), nil
}

// BeginPeerFrame appends a peer frame header with a placeholder length to dst and returns the
// extended slice and the offset of the frame in it; append the payload, then call
// EndPeerFrame(buf, start).
func BeginPeerFrame(dst []byte, t PeerType) (buf []byte, start int) {
	start = len(dst)
	return append(dst, 0, 0, 0, 0, byte(t)), start
}

// EndPeerFrame fills in the length of the peer frame that BeginPeerFrame started at offset
// start, which extends to the end of buf. If the frame is too large, or start does not point
// at a frame header in buf, it returns buf[:start] (buf unchanged for a bad start) and an
// error.
func EndPeerFrame(buf []byte, start int) ([]byte, error) {
	if start < 0 || start > len(buf)-PeerFrameHeaderSize {
		return buf, fmt.Errorf("%w: no peer frame header at offset %d of %d bytes", ErrTruncated, start, len(buf))
	}
	n := len(buf) - start - 4 // type byte + payload
	if n > MaxPeerFrame {
		return buf[:start], fmt.Errorf("%w: %d-byte peer frame, max %d", ErrFrameTooLarge, n, MaxPeerFrame)
	}
	binary.LittleEndian.PutUint32(buf[start:], uint32(n))
	return buf, nil
}

// SplitPeerFrame parses the first peer frame of b: its type, its payload (aliasing b) and the
// bytes after it. It returns ErrTruncated if b does not hold a whole frame, ErrFrameEmpty for a
// zero length and ErrFrameTooLarge for a length over MaxPeerFrame. An empty b gives
// ErrTruncated; callers loop while len(rest) > 0.
func SplitPeerFrame(b []byte) (t PeerType, payload, rest []byte, err error) {
	if len(b) < 4 {
		return 0, nil, b, fmt.Errorf("%w: %d bytes, want a 4-byte peer frame length", ErrTruncated, len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	switch {
	case n == 0:
		return 0, nil, b, ErrFrameEmpty
	case n > MaxPeerFrame:
		return 0, nil, b, fmt.Errorf("%w: %d bytes announced, max %d", ErrFrameTooLarge, n, MaxPeerFrame)
	case uint64(len(b)-4) < uint64(n):
		return 0, nil, b, fmt.Errorf("%w: peer frame of %d bytes, %d present", ErrTruncated, n, len(b)-4)
	}
	end := 4 + int(n)
	return PeerType(b[4]), b[5:end:end], b[end:], nil
}

// PeerReader reads peer frames from a byte stream such as a TCP connection. Like FrameReader
// it reads ahead into its own buffer (the connection needs no bufio), which grows only as
// bytes actually arrive, never because of a length prefix, up to MaxPeerFrame+4 bytes; after a
// large frame it shrinks back, so an idle link holds little memory.
//
// A PeerReader is not safe for concurrent use.
type PeerReader struct {
	r          io.Reader
	buf        []byte // buf[start:end] is read but not yet returned
	start, end int
	err        error // sticky: the error Next returned
	readErr    error // an error the reader returned along with data, reported once the data is used
	limit      int   // largest frame length accepted (type byte included)
}

const (
	peerReaderInitialBuf = 4096
	peerReaderKeepBuf    = 256 << 10 // a buffer larger than this is dropped when nearly empty
	peerReaderMaxBuf     = MaxPeerFrame + 4
)

// NewPeerReader returns a PeerReader reading from r that accepts frames up to MaxPeerFrame.
func NewPeerReader(r io.Reader) *PeerReader {
	return &PeerReader{r: r, limit: MaxPeerFrame}
}

// NewPeerReaderLimit returns a PeerReader that rejects, with ErrFrameTooLarge, any frame whose
// length prefix exceeds limit (1..MaxPeerFrame), before reading its payload.
func NewPeerReaderLimit(r io.Reader, limit int) *PeerReader {
	return &PeerReader{r: r, limit: max(1, min(limit, MaxPeerFrame))}
}

// Next returns the next frame's type and payload. The payload aliases the reader's buffer and
// is valid until the next call to Next. At the end of the stream Next returns io.EOF if the
// stream ended on a frame boundary and io.ErrUnexpectedEOF if it ended inside a frame. Framing
// errors (ErrFrameEmpty, ErrFrameTooLarge) and read errors are sticky: the stream cannot be
// resynchronised.
func (p *PeerReader) Next() (PeerType, []byte, error) {
	if p.err != nil {
		return 0, nil, p.err
	}
	if err := p.fill(4); err != nil {
		return 0, nil, p.setErr(err)
	}
	n := binary.LittleEndian.Uint32(p.buf[p.start:])
	if n == 0 {
		return 0, nil, p.setErr(ErrFrameEmpty)
	}
	if uint64(n) > uint64(p.limit) {
		return 0, nil, p.setErr(fmt.Errorf("%w: %d-byte peer frame announced, limit %d", ErrFrameTooLarge, n, p.limit))
	}
	size := 4 + int(n)
	if err := p.fill(size); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, p.setErr(err)
	}
	frame := p.buf[p.start : p.start+size : p.start+size]
	p.start += size
	return PeerType(frame[4]), frame[5:], nil
}

func (p *PeerReader) setErr(err error) error {
	p.err = err
	return err
}

// fill makes at least want bytes available in buf[start:end]. It returns io.EOF if the stream
// ends before that with no byte of the frame read, io.ErrUnexpectedEOF if it ends within the
// frame, or the reader's error.
func (p *PeerReader) fill(want int) error {
	if p.end-p.start >= want {
		return nil
	}
	// The previous payload is no longer valid: move what is left to the front, into a smaller
	// buffer if a big frame grew this one and little is left.
	if rem := p.end - p.start; len(p.buf) > peerReaderKeepBuf && rem <= peerReaderKeepBuf/2 {
		nb := make([]byte, peerReaderKeepBuf)
		p.end = copy(nb, p.buf[p.start:p.end])
		p.buf, p.start = nb, 0
	} else if p.start > 0 {
		p.end = copy(p.buf, p.buf[p.start:p.end])
		p.start = 0
	}
	empty := 0
	for p.end < want {
		if p.readErr != nil {
			err := p.readErr
			if err == io.EOF && p.end > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if p.end == len(p.buf) {
			p.grow()
		}
		n, err := p.r.Read(p.buf[p.end:])
		if n < 0 || n > len(p.buf)-p.end {
			return fmt.Errorf("wire: PeerReader: invalid count %d from Read", n)
		}
		p.end += n
		if err != nil {
			p.readErr = err
		} else if n == 0 {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// grow doubles buf, which is full of received bytes, up to peerReaderMaxBuf: the memory held
// is at most twice what the peer actually sent (or peerReaderInitialBuf).
func (p *PeerReader) grow() {
	size := min(max(2*len(p.buf), peerReaderInitialBuf), peerReaderMaxBuf)
	nb := make([]byte, size)
	copy(nb, p.buf[:p.end])
	p.buf = nb
}

// --- Dispatch ---

// DecodePeer decodes the payload of a peer frame of type t into the matching message (a
// *PeerHelloMsg, *MigrateMsg, ..., *InteractAckMsg). It returns ErrUnknownMsgType for a type it
// does not know.
func DecodePeer(t PeerType, payload []byte) (PeerMessage, error) {
	switch t {
	case PeerHello:
		return decodePeerAs(DecodePeerHelloMsg, payload)
	case PeerMigrate:
		return decodePeerAs(DecodeMigrateMsg, payload)
	case PeerHandoff:
		return decodePeerAs(DecodeHandoffMsg, payload)
	case PeerHandoffAck:
		return decodePeerAs(DecodeHandoffAckMsg, payload)
	case PeerInput:
		return decodePeerAs(DecodeInputMsg, payload)
	case PeerAck:
		return decodePeerAs(DecodeAckMsg, payload)
	case PeerLeave:
		return decodePeerAs(DecodeLeaveMsg, payload)
	case PeerFrame:
		return decodePeerAs(DecodeFrameMsg, payload)
	case PeerGhosts:
		return decodePeerAs(DecodeGhostsMsg, payload)
	case PeerGhostGone:
		return decodePeerAs(DecodeGhostGoneMsg, payload)
	case PeerJoin:
		return decodePeerAs(DecodeJoinMsg, payload)
	case PeerRefuse:
		return decodePeerAs(DecodeRefuseMsg, payload)
	case PeerInteract:
		return decodePeerAs(DecodeInteractMsg, payload)
	case PeerInteractAck:
		return decodePeerAs(DecodeInteractAckMsg, payload)
	case PeerView:
		return decodePeerAs(DecodeViewMsg, payload)
	case PeerDrop:
		return decodePeerAs(DecodeDropMsg, payload)
	}
	return nil, fmt.Errorf("%w: peer type %d", ErrUnknownMsgType, uint8(t))
}

func decodePeerAs[T any, PT interface {
	*T
	PeerMessage
}](decode func([]byte) (T, error), payload []byte) (PeerMessage, error) {
	m, err := decode(payload)
	if err != nil {
		return nil, err
	}
	return PT(&m), nil
}

// Payload sizes of the fixed-size peer messages.
const (
	peerHelloSize  = 8 + 8 + 2
	recordSize     = 8 + 5*4 + 2 + 1 + 1 + 8 + 8 + 4 + 4 + 4 + 8 + 2 // EntityRecord, fixed layout
	handoffSize    = 8 + 8 + 8 + 4 + recordSize
	handoffAckSize = 8 + 1
	peerInputSize  = 8 + 4 + 8 + inputSize
	peerAckSize    = 8 + 4 + 8 + 4
	leaveSize      = 8 + 4 + 8
	frameMsgHead   = 4 + 8 + 8 + 4 + 4 + 4 + 4
	migrateHead    = 8 + 4 + 8 + 8 + 4
)

// appendPeerFixed starts a frame of a fixed-size peer message whose payload is size bytes and
// returns the buffer and the payload to fill in.
func appendPeerFixed(dst []byte, t PeerType, size int) (buf, payload []byte) {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(size+1))
	dst = append(dst, byte(t))
	n := len(dst)
	dst = append(dst, make([]byte, size)...)
	return dst, dst[n:]
}

// clientFields checks the (home, client, entity) triple that names a client's entity.
func clientFields(t PeerType, home uint64, client uint32, entity EntityID) error {
	if home == 0 || client == 0 || entity == 0 {
		return fmt.Errorf("%w: %v home %d client %d entity %d (none may be 0)", ErrValueOutOfRange, t, home, client, entity)
	}
	return nil
}

// --- PeerHello ---

// Type returns PeerHello.
func (m *PeerHelloMsg) Type() PeerType { return PeerHello }

// AppendFrame appends m as a frame: server:u64 | incarnation:u64 | version:u16.
func (m *PeerHelloMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerHello, peerHelloSize)
	binary.LittleEndian.PutUint64(p[0:], m.Server)
	binary.LittleEndian.PutUint64(p[8:], m.Incarnation)
	binary.LittleEndian.PutUint16(p[16:], m.Version)
	return dst, nil
}

// Validate requires a server id.
func (m *PeerHelloMsg) Validate() error {
	if m.Server == 0 {
		return fmt.Errorf("%w: peer hello from server 0", ErrValueOutOfRange)
	}
	return nil
}

// DecodePeerHelloMsg decodes a PeerHello payload. The version is not checked here.
func DecodePeerHelloMsg(payload []byte) (PeerHelloMsg, error) {
	if err := checkSize(PeerHello, payload, peerHelloSize); err != nil {
		return PeerHelloMsg{}, err
	}
	m := PeerHelloMsg{
		Server:      binary.LittleEndian.Uint64(payload[0:]),
		Incarnation: binary.LittleEndian.Uint64(payload[8:]),
		Version:     binary.LittleEndian.Uint16(payload[16:]),
	}
	if err := m.Validate(); err != nil {
		return PeerHelloMsg{}, err
	}
	return m, nil
}

// --- Migrate ---

// Type returns PeerMigrate.
func (m *MigrateMsg) Type() PeerType { return PeerMigrate }

// AppendFrame appends m as a frame: change:u64 | transfer:u32 | cell:u64 | epoch:u64 |
// tick:u32 | entity block (AppendEntityBlock). The entities are sent in ascending id order
// (m.Entities itself is not reordered). Besides Validate's errors it fails with
// ErrFrameTooLarge if the frame would exceed MaxPeerFrame: split the migration.
func (m *MigrateMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.validateHeader(); err != nil {
		return dst, err
	}
	buf, start := BeginPeerFrame(dst, PeerMigrate)
	buf = binary.LittleEndian.AppendUint64(buf, m.Change)
	buf = binary.LittleEndian.AppendUint32(buf, m.Transfer)
	buf = binary.LittleEndian.AppendUint64(buf, m.Cell)
	buf = binary.LittleEndian.AppendUint64(buf, m.Epoch)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(m.Tick))
	buf, err := AppendEntityBlock(buf, m.Entities)
	if err != nil {
		return buf[:start], err
	}
	return EndPeerFrame(buf, start)
}

func (m *MigrateMsg) validateHeader() error {
	switch {
	case m.Cell == 0:
		return fmt.Errorf("%w: migrate to cell 0", ErrValueOutOfRange)
	case m.Tick == 0:
		return fmt.Errorf("%w: migrate at tick 0", ErrValueOutOfRange)
	}
	return nil
}

// Validate requires a cell and a tick, at most MaxMigrateEntities valid records and no two
// records with the same id. It does not compress, so it cannot tell whether the frame fits in
// MaxPeerFrame; AppendFrame does.
func (m *MigrateMsg) Validate() error {
	if err := m.validateHeader(); err != nil {
		return err
	}
	_, err := sortedRecords(m.Entities, nil)
	return err
}

// DecodeMigrateMsg decodes a Migrate payload. Entities come in ascending id order (nil if
// there are none).
func DecodeMigrateMsg(payload []byte) (MigrateMsg, error) {
	if len(payload) < migrateHead+1 {
		return MigrateMsg{}, fmt.Errorf("%w: migrate payload of %d bytes, want at least %d", ErrTruncated, len(payload), migrateHead+1)
	}
	p := payload
	m := MigrateMsg{
		Change:   binary.LittleEndian.Uint64(p[0:]),
		Transfer: binary.LittleEndian.Uint32(p[8:]),
		Cell:     binary.LittleEndian.Uint64(p[12:]),
		Epoch:    binary.LittleEndian.Uint64(p[20:]),
		Tick:     Tick(binary.LittleEndian.Uint32(p[28:])),
	}
	if err := m.validateHeader(); err != nil {
		return MigrateMsg{}, err
	}
	recs, err := DecodeEntityBlock(p[migrateHead:])
	if err != nil {
		return MigrateMsg{}, err
	}
	m.Entities = recs
	return m, nil
}

// --- Handoff ---

// Type returns PeerHandoff.
func (m *HandoffMsg) Type() PeerType { return PeerHandoff }

// AppendFrame appends m as a frame: transfer:u64 | cell:u64 | epoch:u64 | tick:u32 | record
// (the 60-byte fixed layout of docs/wire.md §12.3.1).
func (m *HandoffMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerHandoff, handoffSize)
	binary.LittleEndian.PutUint64(p[0:], m.Transfer)
	binary.LittleEndian.PutUint64(p[8:], m.Cell)
	binary.LittleEndian.PutUint64(p[16:], m.Epoch)
	binary.LittleEndian.PutUint32(p[24:], uint32(m.Tick))
	putRecord(p[28:], &m.Entity)
	return dst, nil
}

// Validate requires a transfer id, a cell, a tick and a valid record.
func (m *HandoffMsg) Validate() error {
	switch {
	case m.Transfer == 0:
		return fmt.Errorf("%w: handoff transfer id 0", ErrValueOutOfRange)
	case m.Cell == 0:
		return fmt.Errorf("%w: handoff to cell 0", ErrValueOutOfRange)
	case m.Tick == 0:
		return fmt.Errorf("%w: handoff at tick 0", ErrValueOutOfRange)
	}
	return m.Entity.Validate()
}

// DecodeHandoffMsg decodes a Handoff payload.
func DecodeHandoffMsg(payload []byte) (HandoffMsg, error) {
	if err := checkSize(PeerHandoff, payload, handoffSize); err != nil {
		return HandoffMsg{}, err
	}
	p := payload
	m := HandoffMsg{
		Transfer: binary.LittleEndian.Uint64(p[0:]),
		Cell:     binary.LittleEndian.Uint64(p[8:]),
		Epoch:    binary.LittleEndian.Uint64(p[16:]),
		Tick:     Tick(binary.LittleEndian.Uint32(p[24:])),
		Entity:   getRecord(p[28:]),
	}
	if err := m.Validate(); err != nil {
		return HandoffMsg{}, err
	}
	return m, nil
}

// putRecord writes r in the fixed layout into p[:recordSize].
func putRecord(p []byte, r *EntityRecord) {
	_ = p[recordSize-1]
	binary.LittleEndian.PutUint64(p[0:], uint64(r.ID))
	binary.LittleEndian.PutUint32(p[8:], uint32(r.X))
	binary.LittleEndian.PutUint32(p[12:], uint32(r.Y))
	binary.LittleEndian.PutUint32(p[16:], uint32(r.Z))
	binary.LittleEndian.PutUint32(p[20:], uint32(r.VX))
	binary.LittleEndian.PutUint32(p[24:], uint32(r.VZ))
	binary.LittleEndian.PutUint16(p[28:], r.Yaw)
	p[30] = r.Kind
	p[31] = r.Action
	binary.LittleEndian.PutUint64(p[32:], r.AuthEpoch)
	binary.LittleEndian.PutUint64(p[40:], r.Home)
	binary.LittleEndian.PutUint32(p[48:], r.Client)
	binary.LittleEndian.PutUint32(p[52:], r.LastSeq)
	binary.LittleEndian.PutUint32(p[56:], uint32(r.LastInputTick))
	binary.LittleEndian.PutUint64(p[60:], uint64(r.PlayerID))
	binary.LittleEndian.PutUint16(p[68:], r.HP)
}

// getRecord reads a record in the fixed layout from p[:recordSize].
func getRecord(p []byte) EntityRecord {
	_ = p[recordSize-1]
	return EntityRecord{
		ID:            EntityID(binary.LittleEndian.Uint64(p[0:])),
		X:             int32(binary.LittleEndian.Uint32(p[8:])),
		Y:             int32(binary.LittleEndian.Uint32(p[12:])),
		Z:             int32(binary.LittleEndian.Uint32(p[16:])),
		VX:            int32(binary.LittleEndian.Uint32(p[20:])),
		VZ:            int32(binary.LittleEndian.Uint32(p[24:])),
		Yaw:           binary.LittleEndian.Uint16(p[28:]),
		Kind:          p[30],
		Action:        p[31],
		AuthEpoch:     binary.LittleEndian.Uint64(p[32:]),
		Home:          binary.LittleEndian.Uint64(p[40:]),
		Client:        binary.LittleEndian.Uint32(p[48:]),
		LastSeq:       binary.LittleEndian.Uint32(p[52:]),
		LastInputTick: Tick(binary.LittleEndian.Uint32(p[56:])),
		PlayerID:      PlayerID(binary.LittleEndian.Uint64(p[60:])),
		HP:            binary.LittleEndian.Uint16(p[68:]),
	}
}

// --- HandoffAck ---

// Type returns PeerHandoffAck.
func (m *HandoffAckMsg) Type() PeerType { return PeerHandoffAck }

// AppendFrame appends m as a frame: transfer:u64 | result:u8.
func (m *HandoffAckMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerHandoffAck, handoffAckSize)
	binary.LittleEndian.PutUint64(p[0:], m.Transfer)
	p[8] = m.Result
	return dst, nil
}

// Validate requires a transfer id and a known result.
func (m *HandoffAckMsg) Validate() error {
	switch {
	case m.Transfer == 0:
		return fmt.Errorf("%w: handoff ack of transfer 0", ErrValueOutOfRange)
	case m.Result < HandoffAccepted || m.Result > HandoffDuplicate:
		return fmt.Errorf("%w: handoff ack result %d", ErrValueOutOfRange, m.Result)
	}
	return nil
}

// DecodeHandoffAckMsg decodes a HandoffAck payload.
func DecodeHandoffAckMsg(payload []byte) (HandoffAckMsg, error) {
	if err := checkSize(PeerHandoffAck, payload, handoffAckSize); err != nil {
		return HandoffAckMsg{}, err
	}
	m := HandoffAckMsg{Transfer: binary.LittleEndian.Uint64(payload), Result: payload[8]}
	if err := m.Validate(); err != nil {
		return HandoffAckMsg{}, err
	}
	return m, nil
}

// --- Input ---

// Type returns PeerInput.
func (m *InputMsg) Type() PeerType { return PeerInput }

// AppendFrame appends m as a frame: home:u64 | client:u32 | entity:u64 | the 13-byte client
// Input payload (seq:u32 | clientTick:u32 | moveX:i8 | moveZ:i8 | yaw:u16 | action:u8).
func (m *InputMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerInput, peerInputSize)
	binary.LittleEndian.PutUint64(p[0:], m.Home)
	binary.LittleEndian.PutUint32(p[8:], m.Client)
	binary.LittleEndian.PutUint64(p[12:], uint64(m.Entity))
	in := p[20:]
	binary.LittleEndian.PutUint32(in[0:], m.Input.Seq)
	binary.LittleEndian.PutUint32(in[4:], uint32(m.Input.ClientTick))
	in[8] = byte(m.Input.MoveX)
	in[9] = byte(m.Input.MoveZ)
	binary.LittleEndian.PutUint16(in[10:], m.Input.Yaw)
	in[12] = m.Input.Action
	return dst, nil
}

// Validate requires home, client and entity, and an Input that Input.Validate accepts.
func (m *InputMsg) Validate() error {
	if err := clientFields(PeerInput, m.Home, m.Client, m.Entity); err != nil {
		return err
	}
	return m.Input.Validate()
}

// DecodeInputMsg decodes a peer Input payload.
func DecodeInputMsg(payload []byte) (InputMsg, error) {
	if err := checkSize(PeerInput, payload, peerInputSize); err != nil {
		return InputMsg{}, err
	}
	p := payload
	m := InputMsg{
		Home:   binary.LittleEndian.Uint64(p[0:]),
		Client: binary.LittleEndian.Uint32(p[8:]),
		Entity: EntityID(binary.LittleEndian.Uint64(p[12:])),
	}
	if err := clientFields(PeerInput, m.Home, m.Client, m.Entity); err != nil {
		return InputMsg{}, err
	}
	in, err := DecodeInput(p[20:])
	if err != nil {
		return InputMsg{}, err
	}
	m.Input = in
	return m, nil
}

// --- Ack ---

// Type returns PeerAck.
func (m *AckMsg) Type() PeerType { return PeerAck }

// AppendFrame appends m as a frame: home:u64 | client:u32 | entity:u64 | tick:u32.
func (m *AckMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerAck, peerAckSize)
	binary.LittleEndian.PutUint64(p[0:], m.Home)
	binary.LittleEndian.PutUint32(p[8:], m.Client)
	binary.LittleEndian.PutUint64(p[12:], uint64(m.Entity))
	binary.LittleEndian.PutUint32(p[20:], uint32(m.Tick))
	return dst, nil
}

// Validate requires home, client, entity and tick.
func (m *AckMsg) Validate() error {
	if err := clientFields(PeerAck, m.Home, m.Client, m.Entity); err != nil {
		return err
	}
	if m.Tick == 0 {
		return fmt.Errorf("%w: peer ack of tick 0", ErrValueOutOfRange)
	}
	return nil
}

// DecodeAckMsg decodes a peer Ack payload.
func DecodeAckMsg(payload []byte) (AckMsg, error) {
	if err := checkSize(PeerAck, payload, peerAckSize); err != nil {
		return AckMsg{}, err
	}
	p := payload
	m := AckMsg{
		Home:   binary.LittleEndian.Uint64(p[0:]),
		Client: binary.LittleEndian.Uint32(p[8:]),
		Entity: EntityID(binary.LittleEndian.Uint64(p[12:])),
		Tick:   Tick(binary.LittleEndian.Uint32(p[20:])),
	}
	if err := m.Validate(); err != nil {
		return AckMsg{}, err
	}
	return m, nil
}

// --- Leave ---

// Type returns PeerLeave.
func (m *LeaveMsg) Type() PeerType { return PeerLeave }

// AppendFrame appends m as a frame: home:u64 | client:u32 | entity:u64.
func (m *LeaveMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerLeave, leaveSize)
	binary.LittleEndian.PutUint64(p[0:], m.Home)
	binary.LittleEndian.PutUint32(p[8:], m.Client)
	binary.LittleEndian.PutUint64(p[12:], uint64(m.Entity))
	return dst, nil
}

// Validate requires home, client and entity.
func (m *LeaveMsg) Validate() error {
	return clientFields(PeerLeave, m.Home, m.Client, m.Entity)
}

// DecodeLeaveMsg decodes a Leave payload.
func DecodeLeaveMsg(payload []byte) (LeaveMsg, error) {
	if err := checkSize(PeerLeave, payload, leaveSize); err != nil {
		return LeaveMsg{}, err
	}
	p := payload
	m := LeaveMsg{
		Home:   binary.LittleEndian.Uint64(p[0:]),
		Client: binary.LittleEndian.Uint32(p[8:]),
		Entity: EntityID(binary.LittleEndian.Uint64(p[12:])),
	}
	if err := m.Validate(); err != nil {
		return LeaveMsg{}, err
	}
	return m, nil
}

// --- Frame ---

// Type returns PeerFrame.
func (m *FrameMsg) Type() PeerType { return PeerFrame }

// AppendFrame appends m as a frame: client:u32 | entity:u64 | authEpoch:u64 | lastSeq:u32 |
// x:i32 | z:i32 | frameLen:u32 | frame.
func (m *FrameMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+frameMsgHead+len(m.Frame)))
	dst = append(dst, byte(PeerFrame))
	dst = binary.LittleEndian.AppendUint32(dst, m.Client)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Entity))
	dst = binary.LittleEndian.AppendUint64(dst, m.AuthEpoch)
	dst = binary.LittleEndian.AppendUint32(dst, m.LastSeq)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.X))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Z))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Frame)))
	return append(dst, m.Frame...), nil
}

// Validate requires client and entity and a frame of 1..MaxForwardedFrame bytes. LastSeq, X and
// Z take any value.
func (m *FrameMsg) Validate() error {
	switch {
	case m.Client == 0 || m.Entity == 0:
		return fmt.Errorf("%w: peer frame for client %d entity %d (neither may be 0)", ErrValueOutOfRange, m.Client, m.Entity)
	case len(m.Frame) == 0:
		return fmt.Errorf("%w: peer frame carrying no client frame", ErrValueOutOfRange)
	case len(m.Frame) > MaxForwardedFrame:
		return fmt.Errorf("%w: forwarded client frame of %d bytes, max %d", ErrFrameTooLarge, len(m.Frame), MaxForwardedFrame)
	}
	return nil
}

// DecodeFrameMsg decodes a peer Frame payload. Frame aliases payload.
func DecodeFrameMsg(payload []byte) (FrameMsg, error) {
	if len(payload) < frameMsgHead {
		return FrameMsg{}, fmt.Errorf("%w: peer frame payload of %d bytes, want at least %d", ErrTruncated, len(payload), frameMsgHead)
	}
	p := payload
	n := binary.LittleEndian.Uint32(p[32:])
	if n > MaxForwardedFrame {
		return FrameMsg{}, fmt.Errorf("%w: forwarded client frame of %d bytes, max %d", ErrFrameTooLarge, n, MaxForwardedFrame)
	}
	if err := checkSize(PeerFrame, payload, frameMsgHead+int(n)); err != nil {
		return FrameMsg{}, err
	}
	m := FrameMsg{
		Client:    binary.LittleEndian.Uint32(p[0:]),
		Entity:    EntityID(binary.LittleEndian.Uint64(p[4:])),
		AuthEpoch: binary.LittleEndian.Uint64(p[12:]),
		LastSeq:   binary.LittleEndian.Uint32(p[20:]),
		X:         int32(binary.LittleEndian.Uint32(p[24:])),
		Z:         int32(binary.LittleEndian.Uint32(p[28:])),
		Frame:     p[frameMsgHead:len(p):len(p)],
	}
	if err := m.Validate(); err != nil {
		return FrameMsg{}, err
	}
	return m, nil
}

// --- Entity blocks ---

// An entity block is count:uvarint followed, if count > 0, by one zstd frame (RFC 8878)
// holding the raw block: the records in ascending id order, written column by column (all
// ids, then all x, ...), each value a varint. docs/wire.md §12.3.2 has the columns. Every
// column takes at least one byte per record and at most the bytes below, which bounds what
// a block may decompress to before a single record is allocated.
const (
	minRawRecord = 16
	maxRawRecord = 10 + 5*5 + 2 + 1 + 1 + 10 + 10 + 5 + 5 + 5 + 10 + 3 // 87
	// maxRawBlock bounds the zstd decoder's output: the raw block of MaxMigrateEntities
	// records of maximal size.
	maxRawBlock = MaxMigrateEntities * maxRawRecord
)

// The zstd codecs: one of each per process, created on first use. Both are safe for
// concurrent use (EncodeAll and DecodeAll run on the caller's goroutine; with concurrency 1
// concurrent calls wait for each other) and start no goroutines.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderCRC(true))
		if err != nil {
			panic("wire: zstd encoder: " + err.Error()) // constant options: cannot happen
		}
		return e
	})
	zstdFastEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderCRC(true))
		if err != nil {
			panic("wire: zstd encoder: " + err.Error()) // constant options: cannot happen
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(maxRawBlock))
		if err != nil {
			panic("wire: zstd decoder: " + err.Error()) // constant options: cannot happen
		}
		return d
	})
)

// Scratch buffers for raw blocks and sorted copies; big ones are not kept.
var (
	rawPool  = sync.Pool{New: func() any { return new([]byte) }}
	recsPool = sync.Pool{New: func() any { return new([]EntityRecord) }}
)

const maxPooledRaw = 4 << 20

// sortedRecords returns recs in strictly ascending id order, checking every record and the
// count: recs itself if it is already sorted, otherwise a sorted copy in *scratch (or a fresh
// slice if scratch is nil).
func sortedRecords(recs []EntityRecord, scratch *[]EntityRecord) ([]EntityRecord, error) {
	if len(recs) > MaxMigrateEntities {
		return nil, fmt.Errorf("%w: %d entities, max %d", ErrTooManyEntities, len(recs), MaxMigrateEntities)
	}
	sorted := true
	for i := range recs {
		if err := recs[i].Validate(); err != nil {
			return nil, err
		}
		if i > 0 && recs[i].ID <= recs[i-1].ID {
			sorted = false
		}
	}
	if sorted {
		return recs, nil
	}
	var s []EntityRecord
	if scratch != nil {
		s = append((*scratch)[:0], recs...)
		*scratch = s
	} else {
		s = slices.Clone(recs)
	}
	slices.SortFunc(s, func(a, b EntityRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	for i := 1; i < len(s); i++ {
		if s[i].ID == s[i-1].ID {
			return nil, fmt.Errorf("%w: entity %d twice in one block", ErrValueOutOfRange, s[i].ID)
		}
	}
	return s, nil
}

// AppendEntityBlock appends the entity block of recs to dst: the records in ascending id
// order (recs itself is not reordered), compressed. It fails, returning dst unchanged, if
// there are more than MaxMigrateEntities records, a record fails Validate or two have the
// same id.
func AppendEntityBlock(dst []byte, recs []EntityRecord) ([]byte, error) {
	return appendEntityBlock(dst, recs, zstdEncoder())
}

// AppendEntityBlockFast is AppendEntityBlock with zstd's fastest level: about half the
// encoding time for about 15 % more bytes (10 000 entities: ~1.0 ms and 171 KB instead of
// ~1.8 ms and 149 KB). For local checkpoints, where the time matters and the bytes never
// cross a network; DecodeEntityBlock reads both.
func AppendEntityBlockFast(dst []byte, recs []EntityRecord) ([]byte, error) {
	return appendEntityBlock(dst, recs, zstdFastEncoder())
}

func appendEntityBlock(dst []byte, recs []EntityRecord, enc *zstd.Encoder) ([]byte, error) {
	scratch := recsPool.Get().(*[]EntityRecord)
	defer func() {
		if cap(*scratch) <= maxPooledRaw/64 { // EntityRecord holds no pointers: no need to clear
			*scratch = (*scratch)[:0]
			recsPool.Put(scratch)
		}
	}()
	sorted, err := sortedRecords(recs, scratch)
	if err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(sorted)))
	if len(sorted) == 0 {
		return dst, nil
	}
	rawp := rawPool.Get().(*[]byte)
	raw := appendRawBlock((*rawp)[:0], sorted)
	dst = enc.EncodeAll(raw, dst)
	if cap(raw) <= maxPooledRaw {
		*rawp = raw[:0]
		rawPool.Put(rawp)
	}
	return dst, nil
}

func zigzag32(v int32) uint64 { return uint64(uint32(v<<1) ^ uint32(v>>31)) }

func unzigzag32(u uint64) int32 { return int32(uint32(u>>1)) ^ -int32(u&1) }

// appendRawBlock appends the columns of recs, which are sorted and valid.
func appendRawBlock(raw []byte, recs []EntityRecord) []byte {
	raw = slices.Grow(raw, len(recs)*24)
	var prevID EntityID
	for i := range recs {
		raw = binary.AppendUvarint(raw, uint64(recs[i].ID-prevID))
		prevID = recs[i].ID
	}
	// Positions: differences from the previous record, wrapping mod 2^32.
	for _, col := range [3]func(*EntityRecord) int32{
		func(r *EntityRecord) int32 { return r.X },
		func(r *EntityRecord) int32 { return r.Z },
		func(r *EntityRecord) int32 { return r.Y },
	} {
		var prev int32
		for i := range recs {
			v := col(&recs[i])
			raw = binary.AppendUvarint(raw, zigzag32(v-prev))
			prev = v
		}
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, zigzag32(recs[i].VX))
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, zigzag32(recs[i].VZ))
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, uint64(recs[i].Yaw))
	}
	for i := range recs {
		raw = append(raw, recs[i].Kind)
	}
	for i := range recs {
		raw = append(raw, recs[i].Action)
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, recs[i].AuthEpoch)
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, recs[i].Home)
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, uint64(recs[i].Client))
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, uint64(recs[i].LastSeq))
	}
	var prevTick int32
	for i := range recs {
		t := int32(recs[i].LastInputTick)
		raw = binary.AppendUvarint(raw, zigzag32(t-prevTick))
		prevTick = t
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, uint64(recs[i].PlayerID))
	}
	for i := range recs {
		raw = binary.AppendUvarint(raw, uint64(recs[i].HP))
	}
	return raw
}

// DecodeEntityBlock decodes an entity block that makes up all of b. The records come in
// ascending id order; an empty block gives nil. The declared count is checked against
// MaxMigrateEntities before anything is decompressed, and the decompressed size against the
// count before the records are allocated.
func DecodeEntityBlock(b []byte) ([]EntityRecord, error) {
	count, k, err := readUvarint(b)
	if err != nil {
		return nil, fmt.Errorf("%w: entity block count", err)
	}
	if count > MaxMigrateEntities {
		return nil, fmt.Errorf("%w: entity block of %d records, max %d", ErrTooManyEntities, count, MaxMigrateEntities)
	}
	n := int(count)
	z := b[k:]
	if n == 0 {
		if len(z) != 0 {
			return nil, fmt.Errorf("%w: %d bytes after an empty entity block", ErrTrailingBytes, len(z))
		}
		return nil, nil
	}
	if len(z) == 0 {
		return nil, fmt.Errorf("%w: entity block of %d records without data", ErrTruncated, n)
	}
	var h zstd.Header
	if h.Decode(z) == nil && h.HasFCS && (h.FrameContentSize > uint64(n*maxRawRecord) || h.FrameContentSize < uint64(n*minRawRecord)) {
		return nil, fmt.Errorf("%w: %d records declared, %d raw bytes announced", ErrCorruptBlock, n, h.FrameContentSize)
	}
	rawp := rawPool.Get().(*[]byte)
	raw, err := zstdDecoder().DecodeAll(z, (*rawp)[:0])
	defer func() {
		if cap(raw) <= maxPooledRaw {
			*rawp = raw[:0]
			rawPool.Put(rawp)
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptBlock, err)
	}
	switch {
	case len(raw) < n*minRawRecord:
		return nil, fmt.Errorf("%w: %d raw bytes for %d records, want at least %d", ErrTruncated, len(raw), n, n*minRawRecord)
	case len(raw) > n*maxRawRecord:
		return nil, fmt.Errorf("%w: %d raw bytes for %d records, want at most %d", ErrTrailingBytes, len(raw), n, n*maxRawRecord)
	}
	recs := make([]EntityRecord, n)
	if err := parseRawBlock(raw, recs); err != nil {
		return nil, err
	}
	return recs, nil
}

// blockCursor reads varints from a raw block; the first error sticks.
type blockCursor struct {
	b   []byte
	off int
	err error
}

func (c *blockCursor) uvarint() uint64 {
	if c.off < len(c.b) && c.b[c.off] < 0x80 { // one byte: the common case
		v := c.b[c.off]
		c.off++
		return uint64(v)
	}
	if c.err != nil {
		return 0
	}
	v, n, err := readUvarint(c.b[c.off:])
	if err != nil {
		c.err = err
		c.off = len(c.b)
		return 0
	}
	c.off += n
	return v
}

func (c *blockCursor) uvarint32() uint32 {
	v := c.uvarint()
	if v > math.MaxUint32 && c.err == nil {
		c.err = fmt.Errorf("%w: varint %d does not fit 32 bits", ErrValueOutOfRange, v)
		c.off = len(c.b)
	}
	return uint32(v)
}

func (c *blockCursor) byte() uint8 {
	if c.off >= len(c.b) {
		if c.err == nil {
			c.err = ErrTruncated
		}
		return 0
	}
	v := c.b[c.off]
	c.off++
	return v
}

// parseRawBlock fills recs from the columns in raw, which must be used up exactly.
func parseRawBlock(raw []byte, recs []EntityRecord) error {
	c := blockCursor{b: raw}
	col := func(name string) error {
		if c.err != nil {
			return fmt.Errorf("%w: entity block, column %s", c.err, name)
		}
		return nil
	}
	var id EntityID
	for i := range recs {
		d := c.uvarint()
		if d == 0 && c.err == nil {
			c.err = fmt.Errorf("%w: entity ids not strictly ascending at record %d", ErrValueOutOfRange, i)
		}
		next := id + EntityID(d)
		if next < id && c.err == nil {
			c.err = fmt.Errorf("%w: entity id overflows 64 bits at record %d", ErrValueOutOfRange, i)
		}
		id = next
		recs[i].ID = id
	}
	if err := col("id"); err != nil {
		return err
	}
	for k, name := range [3]string{"x", "z", "y"} {
		var prev int32
		for i := range recs {
			v := prev + unzigzag32(uint64(c.uvarint32()))
			switch k {
			case 0:
				recs[i].X = v
			case 1:
				recs[i].Z = v
			default:
				recs[i].Y = v
			}
			prev = v
		}
		if err := col(name); err != nil {
			return err
		}
	}
	for i := range recs {
		recs[i].VX = unzigzag32(uint64(c.uvarint32()))
	}
	if err := col("vx"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].VZ = unzigzag32(uint64(c.uvarint32()))
	}
	if err := col("vz"); err != nil {
		return err
	}
	for i := range recs {
		y := c.uvarint()
		if y >= YawSteps && c.err == nil {
			c.err = fmt.Errorf("%w: yaw %d at record %d", ErrValueOutOfRange, y, i)
		}
		recs[i].Yaw = uint16(y)
	}
	if err := col("yaw"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].Kind = c.byte()
	}
	if err := col("kind"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].Action = c.byte()
	}
	if err := col("action"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].AuthEpoch = c.uvarint()
	}
	if err := col("authEpoch"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].Home = c.uvarint()
	}
	if err := col("home"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].Client = c.uvarint32()
	}
	if err := col("client"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].LastSeq = c.uvarint32()
	}
	if err := col("lastSeq"); err != nil {
		return err
	}
	var prevTick int32
	for i := range recs {
		t := prevTick + unzigzag32(uint64(c.uvarint32()))
		recs[i].LastInputTick = Tick(t)
		prevTick = t
	}
	if err := col("lastInputTick"); err != nil {
		return err
	}
	for i := range recs {
		recs[i].PlayerID = PlayerID(c.uvarint())
	}
	if err := col("playerID"); err != nil {
		return err
	}
	for i := range recs {
		hp := c.uvarint()
		if hp > math.MaxUint16 && c.err == nil {
			c.err = fmt.Errorf("%w: hp %d at record %d", ErrValueOutOfRange, hp, i)
		}
		recs[i].HP = uint16(hp)
	}
	if err := col("hp"); err != nil {
		return err
	}
	if c.off != len(raw) {
		return fmt.Errorf("%w: %d bytes after the last column of an entity block", ErrTrailingBytes, len(raw)-c.off)
	}
	for i := range recs {
		if (recs[i].Home == 0) != (recs[i].Client == 0) {
			return fmt.Errorf("%w: entity %d home %d client %d (both 0 or neither)", ErrValueOutOfRange, recs[i].ID, recs[i].Home, recs[i].Client)
		}
	}
	return nil
}

// readUvarint reads an unsigned LEB128 varint in its shortest form from the front of b.
func readUvarint(b []byte) (v uint64, n int, err error) {
	var shift uint
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 {
			switch {
			case c > 1:
				return 0, 0, fmt.Errorf("%w: varint overflows 64 bits", ErrValueOutOfRange)
			case c == 0:
				return 0, 0, fmt.Errorf("%w: varint with a zero last byte", ErrNonCanonical)
			}
			return v | uint64(c)<<63, 10, nil
		}
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, 0, fmt.Errorf("%w: varint with a zero last byte", ErrNonCanonical)
			}
			return v | uint64(c)<<shift, i + 1, nil
		}
		v |= uint64(c&0x7F) << shift
		shift += 7
	}
	return 0, 0, fmt.Errorf("%w: varint", ErrTruncated)
}

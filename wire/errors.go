package wire

import "errors"

// Sentinel errors. Every error this package returns is, or wraps (with fmt.Errorf("%w: ...")),
// one of these, so callers classify failures with errors.Is. A peer that sends bytes producing
// any of them other than ErrBadBaseline is broken or hostile: the gateway ends its session with
// ReasonProtocolError.
var (
	// ErrFrameTooLarge: a frame would exceed MaxFrameSize bytes (type byte included).
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrFrameEmpty: a frame's length prefix is 0 (every frame has at least its type byte).
	ErrFrameEmpty = errors.New("wire: empty frame")
	// ErrTruncated: the input ends before the value being read does.
	ErrTruncated = errors.New("wire: truncated input")
	// ErrUnknownMsgType: a type byte no message decoder knows.
	ErrUnknownMsgType = errors.New("wire: unknown message type")
	// ErrTrailingBytes: bytes left over after a complete message.
	ErrTrailingBytes = errors.New("wire: trailing bytes")
	// ErrTooManySlots: a snapshot with more than MaxViewSlots slots (or a negative count), or a
	// baseline view longer than MaxViewSlots.
	ErrTooManySlots = errors.New("wire: too many view slots")
	// ErrSlotCount: SnapshotEncoder.Slot was not called exactly SlotCount times, or
	// AppendSnapshot's cur does not have SlotCount slots.
	ErrSlotCount = errors.New("wire: slot count mismatch")
	// ErrBadBaseline: a snapshot's baseline is unusable: its tick is not before the server tick,
	// the receiver no longer has (or never had) the view for it, or the snapshot's records do
	// not fit the view given (an update or leave of an empty base slot).
	ErrBadBaseline = errors.New("wire: bad or missing baseline")
	// ErrTokenTooLong: a Hello token longer than MaxTokenLength bytes.
	ErrTokenTooLong = errors.New("wire: token too long")
	// ErrReasonTooLong: a Disconnect message longer than MaxReasonLen bytes.
	ErrReasonTooLong = errors.New("wire: disconnect message too long")
	// ErrValueOutOfRange: a field outside its documented range (yaw ≥ YawSteps, tick 0 where a
	// tick is required, entity id 0 where an entity is required, an unknown disconnect
	// reason, ...).
	ErrValueOutOfRange = errors.New("wire: value out of range")
	// ErrNonCanonical: a well-formed but non-canonical encoding (a longer prefix code than the
	// value needs, non-zero padding bits, a redundant snapshot record). Decoders accept only
	// the one encoding the encoders produce.
	ErrNonCanonical = errors.New("wire: non-canonical encoding")
	// ErrTooManyEntities: an entity block (a peer Migrate) declaring more than
	// MaxMigrateEntities records, checked before anything is decompressed or allocated; also a
	// peer Ghosts or GhostGone with more than MaxGhosts entries, or a View with more than
	// MaxViewIDs ids, checked before anything is allocated.
	ErrTooManyEntities = errors.New("wire: too many entities")
	// ErrCorruptBlock: the compressed part of an entity block is not valid zstd, fails its
	// checksum or decompresses to more than its record count allows.
	ErrCorruptBlock = errors.New("wire: corrupt compressed block")
)

// ErrShortBuffer is another name for ErrTruncated.
var ErrShortBuffer = ErrTruncated

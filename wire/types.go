package wire

// This file is the contract other packages code against: identifiers, the quantised entity
// state, the message structs and the limits. Encoders and decoders live beside it.

// ProtocolVersion is carried in Hello and Welcome; a server refuses any other version.
const ProtocolVersion uint16 = 1

// Quantisation of the world. Positions are fixed-point integers on one world-wide grid that does
// not depend on cells: PosUnitsPerMetre units per metre (1/64 m = 1.5625 cm resolution).
// Velocities are whole position units per tick, so that integer extrapolation
// (position + velocity × ticks) is exact on every machine.
const (
	PosUnitsPerMetre = 64
	YawBits          = 10 // yaw is an angle in [0, 2π) quantised to 1 << YawBits steps
	YawSteps         = 1 << YawBits
)

// Limits. Decoders reject anything beyond them before allocating.
const (
	MaxFrameSize   = 65535 // bytes in one frame, type byte included (the length prefix is a uint16)
	MaxViewSlots   = 1024  // slots in one client's view
	MaxTokenLength = 255   // bytes in a session token
	MaxReasonLen   = 255   // bytes in a disconnect reason
)

// EntityID names an entity cluster-wide; it is never reused. 0 means "no entity".
type EntityID uint64

// PlayerID is a player's durable id: the key of the player's row in PostgreSQL (position,
// stats, inventory), distinct from the in-world EntityID and the same across sessions and
// servers (DESIGN.md §1a). 0 means "no player". At most math.MaxInt64 (PostgreSQL's bigint).
type PlayerID uint64

// Tick is a logical tick number on the cluster-wide 50 ms grid. 0 is reserved for "none".
type Tick uint32

// EntityState is an entity's state as the wire carries it, already quantised.
type EntityState struct {
	X, Y, Z int32  // position, in 1/PosUnitsPerMetre m; Y is height (carried, not partitioned)
	VX, VZ  int32  // horizontal velocity, in position units per tick
	Yaw     uint16 // facing, 0..YawSteps-1
	Kind    uint8  // entity kind (player, npc, ...), game-defined
	Action  uint8  // current action / animation, game-defined; 0 = none
}

// Predict returns s extrapolated by dt ticks at its own velocity: the state a receiver expects
// when nothing but time has changed. Delta records encode the difference from this prediction.
func (s EntityState) Predict(dt uint32) EntityState {
	s.X += s.VX * int32(dt)
	s.Z += s.VZ * int32(dt)
	return s
}

// MsgType is the first byte of every frame.
type MsgType uint8

const (
	MsgHello      MsgType = 1 // client → server
	MsgWelcome    MsgType = 2 // server → client
	MsgInput      MsgType = 3 // client → server
	MsgAck        MsgType = 4 // client → server
	MsgSnapshot   MsgType = 5 // server → client
	MsgPing       MsgType = 6 // client → server
	MsgPong       MsgType = 7 // server → client
	MsgDisconnect MsgType = 8 // either way
)

// Hello opens a session.
type Hello struct {
	Version uint16
	Token   []byte // opaque session token, at most MaxTokenLength bytes
}

// Welcome accepts a session and tells the client who it is and where.
type Welcome struct {
	Version    uint16
	Entity     EntityID // the client's own entity
	ServerTick Tick     // the tick the server was on when it accepted
	TickHz     uint8
	WorldMin   [2]int32 // x, z in position units
	WorldMax   [2]int32
}

// Input is one client command: an intent, never a position.
type Input struct {
	Seq        uint32 // strictly increasing per session; the server acks the last one it applied
	ClientTick Tick   // the server tick the client believed it was on (for lag compensation)
	MoveX      int8   // move intent, −127..127 on each axis; the server scales and clamps it
	MoveZ      int8
	Yaw        uint16 // desired facing, 0..YawSteps-1
	Action     uint8
}

// Ack acknowledges the newest snapshot the client has decoded; the server deltas against it.
type Ack struct {
	Tick Tick
}

// Ping carries the client's clock; Pong echoes it with the server's clock and tick, from which
// the client computes RTT and clock offset (NTP-style).
type Ping struct {
	ClientTimeMicros uint64
}

type Pong struct {
	ClientTimeMicros uint64
	ServerTimeMicros uint64
	ServerTick       Tick
}

// DisconnectReason says why a session ends.
type DisconnectReason uint8

const (
	ReasonNone DisconnectReason = iota
	ReasonBadVersion
	ReasonBadToken
	ReasonProtocolError
	ReasonServerFull
	ReasonShutdown
	ReasonKicked
	ReasonEntityLost // the session's entity is gone and could not be found or re-created
	// ReasonUnavailable: the player's durable state could not be read (PostgreSQL is
	// unreachable); the client may retry later.
	ReasonUnavailable
	maxReason = ReasonUnavailable
)

type Disconnect struct {
	Reason  DisconnectReason
	Message string // at most MaxReasonLen bytes
}

// ViewSlot is one slot of a client's view. A client's view is a small array of slots; an
// entity keeps its slot while it stays in view, so records name slots, not 64-bit ids.
type ViewSlot struct {
	ID    EntityID // 0: slot empty
	State EntityState
}

// SnapshotHeader opens a snapshot.
type SnapshotHeader struct {
	ServerTick   Tick
	BaselineTick Tick   // 0: no baseline (full state); otherwise a tick the client acked
	LastInputSeq uint32 // the last input sequence the server applied for this client
	SlotCount    int    // slots in this snapshot, 0..MaxViewSlots
}

// SlotEventKind classifies a slot's record in a decoded snapshot.
type SlotEventKind uint8

const (
	EventEnter  SlotEventKind = 1 // a new entity took the slot (full state was sent)
	EventUpdate SlotEventKind = 2 // same entity, changed relative to the prediction
	EventLeave  SlotEventKind = 3 // the entity left the view
)

// SlotEvent is one enter / update / leave record of a decoded snapshot.
type SlotEvent struct {
	Kind SlotEventKind
	Slot uint16
	ID   EntityID
}

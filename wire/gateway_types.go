package wire

// The messages of the gateway (DESIGN.md §4) and of interactions between entities. Their
// encoders and decoders are in peer_gateway.go (peer link) and interact.go (client).

// GatewayIDBase is the first id a gateway uses on the peer link: a gateway with id n says hello
// as GatewayIDBase + n and homes its sessions there. Cell server ids are below it, so a cell
// server tells a gateway's connection from a peer's by the id alone. A gateway dials each cell
// server's peer address and sends its PeerHelloMsg; the server answers on the same connection,
// with its own PeerHelloMsg first, then FrameMsg and RefuseMsg for the gateway's sessions.
const GatewayIDBase uint64 = 1 << 48

// IsGatewayID reports whether a peer-link id names a gateway.
func IsGatewayID(id uint64) bool { return id >= GatewayIDBase }

// Client messages for interactions (client ↔ server through the gateway).
const (
	MsgInteract     MsgType = 9  // client → server: an interaction aimed at another entity
	MsgInteraction  MsgType = 10 // server → client: an interaction aimed at the client's entity
	MaxInteractData         = 200
)

// InteractKind says what an interaction is. The server routes every kind the same way; the
// game gives them meaning.
type InteractKind uint8

const (
	InteractAttack InteractKind = 1
	InteractChat   InteractKind = 2 // Data is UTF-8 text
	InteractTrade  InteractKind = 3 // a trade offer: an InvTrade InventoryOp the target may accept (any other data is the game's own; not checked)
	// InteractInventory: Data is an InventoryOp (loot, drop, give, trade) the actor's owner
	// runs as one PostgreSQL transaction. Its result comes back to the actor's client as an
	// Interaction of kind InteractInventoryResult with the same (From, Seq).
	InteractInventory InteractKind = 4
	// InteractInventoryResult: Data is an InventoryResult. Only servers send it; a client's
	// Interact of this kind is rejected.
	InteractInventoryResult InteractKind = 5
	maxInteractKind                      = InteractInventoryResult
)

// Interact is an interaction a client aims at another entity, real or ghost: an attack, a chat
// message, a trade request. Seq shares the sequence space of Input (one counter per session, both
// kinds of message numbered from it), so the entity's owner applies inputs and interactions in
// one order, each exactly once, and the snapshot's LastInputSeq acknowledges both.
type Interact struct {
	Seq    uint32   // ≥ 1, shared with Input.Seq
	Target EntityID // ≠ 0
	Kind   InteractKind
	Data   []byte // ≤ MaxInteractData bytes; valid UTF-8 for InteractChat
}

// Interaction is an interaction delivered to the client whose entity it was aimed at.
type Interaction struct {
	From EntityID // the actor; ≠ 0
	Seq  uint32   // the actor's Interact.Seq; (From, Seq) names the interaction cluster-wide
	Tick Tick     // the tick it was delivered at
	Kind InteractKind
	Data []byte // ≤ MaxInteractData bytes; valid UTF-8 for InteractChat
}

// Peer message types of the gateway and of interactions.
const (
	PeerJoin        PeerType = 11 // gateway → cell server: open a session's entity
	PeerRefuse      PeerType = 12 // cell server → gateway: a join refused
	PeerInteract    PeerType = 13 // actor's owner → target's owner (possibly via servers holding a ghost or a forward)
	PeerInteractAck PeerType = 14 // target's owner → the actor's owner that sent it: delivered
)

// JoinMsg asks a cell server to create (or, after its owner died, re-create) the entity of a
// session homed at Home (a gateway). The server answers with frames for the session (the first
// one a Welcome) from whichever server ends up owning the entity, or with a RefuseMsg. A repeated
// JoinMsg for a session the server already joined is ignored.
type JoinMsg struct {
	Home   uint64 // the gateway's id (GatewayIDBase + n); ≠ 0
	Client uint32 // the session's id at Home; ≠ 0
	Kind   uint8  // the entity kind
	X, Z   int32  // spawn position, position units
	// Resume ≠ 0: re-create entity Resume (its owner died) with authority epoch above AuthEpoch,
	// inputs numbered after LastSeq, at X, Z. Resume = 0: a new entity; AuthEpoch and LastSeq
	// are 0.
	Resume    EntityID
	AuthEpoch uint64
	LastSeq   uint32
	// PlayerID is the durable player the gateway authenticated the session as (0: none; a
	// cell server then keeps nothing of the entity beyond the session).
	PlayerID PlayerID
}

// RefuseMsg tells a gateway that its JoinMsg was refused.
type RefuseMsg struct {
	Client uint32 // ≠ 0
	Reason DisconnectReason
}

// InteractMsg carries an interaction between servers: from the actor's owner toward the owner
// of Target, passing through servers that hold a ghost of Target or know where it went.
// The actor's owner resends it until an InteractAckMsg arrives (every few ticks: the cell
// server's retry interval); receivers deliver (Actor, Seq) at most once. A gateway sends one too
// (Origin = the gateway) to the owner of its session's entity Actor: the client's Interact, in
// the session's input sequence, acknowledged by FrameMsg.LastSeq rather than an InteractAckMsg.
// Data aliases the payload when decoded.
type InteractMsg struct {
	Origin uint64   // the actor's owner that sends and resends it, and gets the ack (or the session's gateway); ≠ 0
	Actor  EntityID // ≠ 0
	Seq    uint32   // ≠ 0
	Target EntityID // ≠ 0
	Kind   InteractKind
	Data   []byte // ≤ MaxInteractData bytes; valid UTF-8 for InteractChat
}

// InteractAckMsg tells the actor's owner that an interaction was delivered (or is
// undeliverable: Target no longer exists; Delivered false).
type InteractAckMsg struct {
	Actor     EntityID // ≠ 0
	Seq       uint32   // ≠ 0
	Delivered bool
}

// PeerView is the type of ViewMsg.
const PeerView PeerType = 15 // old owner → new owner of a client's entity, just before its handoff

// MaxViewIDs bounds the entity ids in a ViewMsg (a client's view is capped well below it).
const MaxViewIDs = 1024

// ViewMsg tells the server an entity is being handed to which entities its client sees, so
// the client's first view there keeps them (while they are within the leave radius) and
// nothing in its view blinks out and back at the border. Sent on the same link right before
// the HandoffMsg; a receiver that never gets it falls back to the leave radius.
type ViewMsg struct {
	Entity EntityID   // the entity being handed off; ≠ 0
	IDs    []EntityID // the entities in its client's view (itself excluded), each ≠ 0; ≤ MaxViewIDs
}

// PeerDrop is the type of DropMsg.
const PeerDrop PeerType = 16 // gateway → a cell server that sent it a stale frame

// DropMsg tells a cell server that sent a session's frames with an authority epoch below the
// newest the gateway has seen that its copy of the entity is not the real one any more (a
// second copy after a resume, or one taken back when a handoff's target died): it drops the
// entity if it holds it with an authority epoch ≤ AuthEpoch. Unlike a LeaveMsg it is never
// forwarded, so a late frame from a server the entity legitimately left is harmless.
type DropMsg struct {
	Home      uint64   // the gateway; ≠ 0
	Client    uint32   // the session's id there; ≠ 0
	Entity    EntityID // ≠ 0
	AuthEpoch uint64   // drop a copy whose authority epoch is at most this
}

package wire

import (
	"encoding/binary"
	"fmt"
)

// The peer messages of the gateway, of interactions, of a handed-off client's view and of a
// gateway dropping a stale copy of an entity (types in gateway_types.go), with the rules of
// every peer message (peer.go): AppendFrame validates first and encodes nothing invalid,
// Validate returns the decoder's error, DecodeX is strict.

// Payload sizes of the gateway and interaction peer messages (InteractMsg: without its data).
const (
	joinSize        = 8 + 4 + 1 + 4 + 4 + 8 + 8 + 4 + 8
	refuseSize      = 4 + 1
	interactMsgHead = 8 + 8 + 4 + 8 + 1 + 1
	interactAckSize = 8 + 4 + 1
	viewHead        = 8 + 2
	viewIDSize      = 8
	dropSize        = 8 + 4 + 8 + 8
)

// --- Join ---

// Type returns PeerJoin.
func (m *JoinMsg) Type() PeerType { return PeerJoin }

// AppendFrame appends m as a frame: home:u64 | client:u32 | kind:u8 | x:i32 | z:i32 |
// resume:u64 | authEpoch:u64 | lastSeq:u32 | playerID:u64.
func (m *JoinMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerJoin, joinSize)
	binary.LittleEndian.PutUint64(p[0:], m.Home)
	binary.LittleEndian.PutUint32(p[8:], m.Client)
	p[12] = m.Kind
	binary.LittleEndian.PutUint32(p[13:], uint32(m.X))
	binary.LittleEndian.PutUint32(p[17:], uint32(m.Z))
	binary.LittleEndian.PutUint64(p[21:], uint64(m.Resume))
	binary.LittleEndian.PutUint64(p[29:], m.AuthEpoch)
	binary.LittleEndian.PutUint32(p[37:], m.LastSeq)
	binary.LittleEndian.PutUint64(p[41:], uint64(m.PlayerID))
	return dst, nil
}

// Validate requires home and client, and AuthEpoch and LastSeq 0 for a new entity (Resume 0).
func (m *JoinMsg) Validate() error {
	switch {
	case m.Home == 0 || m.Client == 0:
		return fmt.Errorf("%w: join from home %d client %d (neither may be 0)", ErrValueOutOfRange, m.Home, m.Client)
	case m.Resume == 0 && (m.AuthEpoch != 0 || m.LastSeq != 0):
		return fmt.Errorf("%w: join of a new entity with authority epoch %d, last sequence %d (both must be 0)", ErrValueOutOfRange, m.AuthEpoch, m.LastSeq)
	}
	return nil
}

// DecodeJoinMsg decodes a Join payload.
func DecodeJoinMsg(payload []byte) (JoinMsg, error) {
	if err := checkSize(PeerJoin, payload, joinSize); err != nil {
		return JoinMsg{}, err
	}
	p := payload
	m := JoinMsg{
		Home:      binary.LittleEndian.Uint64(p[0:]),
		Client:    binary.LittleEndian.Uint32(p[8:]),
		Kind:      p[12],
		X:         int32(binary.LittleEndian.Uint32(p[13:])),
		Z:         int32(binary.LittleEndian.Uint32(p[17:])),
		Resume:    EntityID(binary.LittleEndian.Uint64(p[21:])),
		AuthEpoch: binary.LittleEndian.Uint64(p[29:]),
		LastSeq:   binary.LittleEndian.Uint32(p[37:]),
		PlayerID:  PlayerID(binary.LittleEndian.Uint64(p[41:])),
	}
	if err := m.Validate(); err != nil {
		return JoinMsg{}, err
	}
	return m, nil
}

// --- Refuse ---

// Type returns PeerRefuse.
func (m *RefuseMsg) Type() PeerType { return PeerRefuse }

// AppendFrame appends m as a frame: client:u32 | reason:u8.
func (m *RefuseMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerRefuse, refuseSize)
	binary.LittleEndian.PutUint32(p[0:], m.Client)
	p[4] = byte(m.Reason)
	return dst, nil
}

// Validate requires a client and a known reason other than ReasonNone.
func (m *RefuseMsg) Validate() error {
	switch {
	case m.Client == 0:
		return fmt.Errorf("%w: refuse of client 0", ErrValueOutOfRange)
	case m.Reason == ReasonNone || m.Reason > maxReason:
		return fmt.Errorf("%w: refuse with reason %d", ErrValueOutOfRange, uint8(m.Reason))
	}
	return nil
}

// DecodeRefuseMsg decodes a Refuse payload.
func DecodeRefuseMsg(payload []byte) (RefuseMsg, error) {
	if err := checkSize(PeerRefuse, payload, refuseSize); err != nil {
		return RefuseMsg{}, err
	}
	m := RefuseMsg{Client: binary.LittleEndian.Uint32(payload), Reason: DisconnectReason(payload[4])}
	if err := m.Validate(); err != nil {
		return RefuseMsg{}, err
	}
	return m, nil
}

// --- Interact ---

// Type returns PeerInteract.
func (m *InteractMsg) Type() PeerType { return PeerInteract }

// AppendFrame appends m as a frame: origin:u64 | actor:u64 | seq:u32 | target:u64 | kind:u8 |
// dataLen:u8 | data.
func (m *InteractMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+interactMsgHead+len(m.Data)))
	dst = append(dst, byte(PeerInteract))
	dst = binary.LittleEndian.AppendUint64(dst, m.Origin)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Actor))
	dst = binary.LittleEndian.AppendUint32(dst, m.Seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Target))
	dst = append(dst, byte(m.Kind), byte(len(m.Data)))
	return append(dst, m.Data...), nil
}

// Validate requires origin, actor, sequence and target, a known kind and at most
// MaxInteractData bytes of data, valid UTF-8 for InteractChat.
func (m *InteractMsg) Validate() error {
	if m.Origin == 0 || m.Actor == 0 || m.Seq == 0 || m.Target == 0 {
		return fmt.Errorf("%w: peer interact origin %d actor %d seq %d target %d (none may be 0)",
			ErrValueOutOfRange, m.Origin, m.Actor, m.Seq, m.Target)
	}
	return checkInteraction(PeerInteract, m.Kind, m.Data)
}

// DecodeInteractMsg decodes a peer Interact payload. Data aliases payload (like FrameMsg.Frame;
// its capacity ends with it); empty data decodes as nil.
func DecodeInteractMsg(payload []byte) (InteractMsg, error) {
	if err := checkInteractSize(PeerInteract, payload, interactMsgHead); err != nil {
		return InteractMsg{}, err
	}
	p := payload
	m := InteractMsg{
		Origin: binary.LittleEndian.Uint64(p[0:]),
		Actor:  EntityID(binary.LittleEndian.Uint64(p[8:])),
		Seq:    binary.LittleEndian.Uint32(p[16:]),
		Target: EntityID(binary.LittleEndian.Uint64(p[20:])),
		Kind:   InteractKind(p[28]),
	}
	if len(p) > interactMsgHead {
		m.Data = p[interactMsgHead:len(p):len(p)]
	}
	if err := m.Validate(); err != nil {
		return InteractMsg{}, err
	}
	return m, nil
}

// --- InteractAck ---

// Type returns PeerInteractAck.
func (m *InteractAckMsg) Type() PeerType { return PeerInteractAck }

// AppendFrame appends m as a frame: actor:u64 | seq:u32 | delivered:u8 (1 true, 0 false).
func (m *InteractAckMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerInteractAck, interactAckSize)
	binary.LittleEndian.PutUint64(p[0:], uint64(m.Actor))
	binary.LittleEndian.PutUint32(p[8:], m.Seq)
	if m.Delivered {
		p[12] = 1
	}
	return dst, nil
}

// Validate requires actor and sequence.
func (m *InteractAckMsg) Validate() error {
	if m.Actor == 0 || m.Seq == 0 {
		return fmt.Errorf("%w: interact ack of actor %d seq %d (neither may be 0)", ErrValueOutOfRange, m.Actor, m.Seq)
	}
	return nil
}

// DecodeInteractAckMsg decodes an InteractAck payload. The delivered byte must be 0 or 1.
func DecodeInteractAckMsg(payload []byte) (InteractAckMsg, error) {
	if err := checkSize(PeerInteractAck, payload, interactAckSize); err != nil {
		return InteractAckMsg{}, err
	}
	p := payload
	if p[12] > 1 {
		return InteractAckMsg{}, fmt.Errorf("%w: interact ack delivered byte %d (0 or 1)", ErrValueOutOfRange, p[12])
	}
	m := InteractAckMsg{
		Actor:     EntityID(binary.LittleEndian.Uint64(p[0:])),
		Seq:       binary.LittleEndian.Uint32(p[8:]),
		Delivered: p[12] == 1,
	}
	if err := m.Validate(); err != nil {
		return InteractAckMsg{}, err
	}
	return m, nil
}

// --- View ---

// Type returns PeerView.
func (m *ViewMsg) Type() PeerType { return PeerView }

// AppendFrame appends m as a frame: entity:u64 | count:u16 | count × id:u64. The ids are sent
// in m.IDs' order.
func (m *ViewMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerView, viewHead+len(m.IDs)*viewIDSize)
	binary.LittleEndian.PutUint64(p[0:], uint64(m.Entity))
	binary.LittleEndian.PutUint16(p[8:], uint16(len(m.IDs)))
	for i, id := range m.IDs {
		binary.LittleEndian.PutUint64(p[viewHead+i*viewIDSize:], uint64(id))
	}
	return dst, nil
}

// Validate requires at most MaxViewIDs ids, an entity, and no id 0. Duplicates and the entity
// itself are not checked for.
func (m *ViewMsg) Validate() error {
	if len(m.IDs) > MaxViewIDs {
		return fmt.Errorf("%w: view of %d ids, max %d", ErrTooManyEntities, len(m.IDs), MaxViewIDs)
	}
	if m.Entity == 0 {
		return fmt.Errorf("%w: view of entity 0", ErrValueOutOfRange)
	}
	for i, id := range m.IDs {
		if id == 0 {
			return fmt.Errorf("%w: view of entity %d: id 0 at index %d", ErrValueOutOfRange, m.Entity, i)
		}
	}
	return nil
}

// DecodeViewMsg decodes a View payload. The count is checked against MaxViewIDs and the
// payload's size before anything is allocated. IDs is a new slice (it does not alias payload);
// an empty list decodes as nil.
func DecodeViewMsg(payload []byte) (ViewMsg, error) {
	if len(payload) < viewHead {
		return ViewMsg{}, fmt.Errorf("%w: view payload of %d bytes, want at least %d", ErrTruncated, len(payload), viewHead)
	}
	n := int(binary.LittleEndian.Uint16(payload[8:]))
	if n > MaxViewIDs {
		return ViewMsg{}, fmt.Errorf("%w: view of %d ids, max %d", ErrTooManyEntities, n, MaxViewIDs)
	}
	if err := checkSize(PeerView, payload, viewHead+n*viewIDSize); err != nil {
		return ViewMsg{}, err
	}
	m := ViewMsg{Entity: EntityID(binary.LittleEndian.Uint64(payload[0:]))}
	if n > 0 {
		m.IDs = make([]EntityID, n)
		for i := range m.IDs {
			m.IDs[i] = EntityID(binary.LittleEndian.Uint64(payload[viewHead+i*viewIDSize:]))
		}
	}
	if err := m.Validate(); err != nil {
		return ViewMsg{}, err
	}
	return m, nil
}

// --- Drop ---

// Type returns PeerDrop.
func (m *DropMsg) Type() PeerType { return PeerDrop }

// AppendFrame appends m as a frame: home:u64 | client:u32 | entity:u64 | authEpoch:u64.
func (m *DropMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerDrop, dropSize)
	binary.LittleEndian.PutUint64(p[0:], m.Home)
	binary.LittleEndian.PutUint32(p[8:], m.Client)
	binary.LittleEndian.PutUint64(p[12:], uint64(m.Entity))
	binary.LittleEndian.PutUint64(p[20:], m.AuthEpoch)
	return dst, nil
}

// Validate requires home, client and entity; any authority epoch is valid.
func (m *DropMsg) Validate() error {
	return clientFields(PeerDrop, m.Home, m.Client, m.Entity)
}

// DecodeDropMsg decodes a Drop payload.
func DecodeDropMsg(payload []byte) (DropMsg, error) {
	if err := checkSize(PeerDrop, payload, dropSize); err != nil {
		return DropMsg{}, err
	}
	p := payload
	m := DropMsg{
		Home:      binary.LittleEndian.Uint64(p[0:]),
		Client:    binary.LittleEndian.Uint32(p[8:]),
		Entity:    EntityID(binary.LittleEndian.Uint64(p[12:])),
		AuthEpoch: binary.LittleEndian.Uint64(p[20:]),
	}
	if err := m.Validate(); err != nil {
		return DropMsg{}, err
	}
	return m, nil
}

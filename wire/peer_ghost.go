package wire

import (
	"encoding/binary"
	"fmt"
)

// Ghost messages (DESIGN.md §3): every tick, the owner of a real entity near a cell another
// server owns sends that server the entity's state; the receiver keeps a read-only ghost of it.
// The records use EntityRecord's fixed 70-byte layout (docs/wire.md §12.3.1) with Home, Client,
// LastSeq and LastInputTick zero: a ghost carries no session (PlayerID and HP it does carry).

// MaxGhosts is the most records one Ghosts message carries (a sender splits larger batches).
const MaxGhosts = 1 << 16

// GhostsMsg is one tick's ghost updates from an owner to a neighbour.
type GhostsMsg struct {
	Tick     Tick           // the owner's tick the states are of
	Entities []EntityRecord // AuthEpoch: the owner's authority epoch of each entity
}

// GhostGoneMsg tells a neighbour to drop its ghosts of Entities: they moved away from its cells
// (or left the world). Each carries the sender's authority epoch: a receiver whose ghost came
// from a newer owner keeps it.
type GhostGoneMsg struct {
	Entities []GhostRef
}

// GhostRef names an entity at an authority epoch.
type GhostRef struct {
	ID        EntityID
	AuthEpoch uint64
}

// Type returns PeerGhosts.
func (m *GhostsMsg) Type() PeerType { return PeerGhosts }

// AppendFrame appends m as a frame: tick:u32 | count:u32 | count × record.
func (m *GhostsMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerGhosts, 8+len(m.Entities)*recordSize)
	binary.LittleEndian.PutUint32(p[0:], uint32(m.Tick))
	binary.LittleEndian.PutUint32(p[4:], uint32(len(m.Entities)))
	for i := range m.Entities {
		putRecord(p[8+i*recordSize:], &m.Entities[i])
	}
	return dst, nil
}

// Validate requires a tick, at most MaxGhosts records, each valid and without a session.
func (m *GhostsMsg) Validate() error {
	if m.Tick == 0 {
		return fmt.Errorf("%w: ghosts at tick 0", ErrValueOutOfRange)
	}
	if len(m.Entities) > MaxGhosts {
		return fmt.Errorf("%w: %d ghosts, max %d", ErrTooManyEntities, len(m.Entities), MaxGhosts)
	}
	for i := range m.Entities {
		r := &m.Entities[i]
		if err := r.Validate(); err != nil {
			return err
		}
		if r.Home != 0 || r.Client != 0 || r.LastSeq != 0 || r.LastInputTick != 0 {
			return fmt.Errorf("%w: ghost %d carries session fields", ErrValueOutOfRange, r.ID)
		}
	}
	return nil
}

// DecodeGhostsMsg decodes a Ghosts payload. The count is checked against the payload's size
// before anything is allocated.
func DecodeGhostsMsg(payload []byte) (GhostsMsg, error) {
	if len(payload) < 8 {
		return GhostsMsg{}, fmt.Errorf("%w: ghosts payload of %d bytes", ErrTruncated, len(payload))
	}
	n := int(binary.LittleEndian.Uint32(payload[4:]))
	if n > MaxGhosts {
		return GhostsMsg{}, fmt.Errorf("%w: %d ghosts, max %d", ErrTooManyEntities, n, MaxGhosts)
	}
	if err := checkSize(PeerGhosts, payload, 8+n*recordSize); err != nil {
		return GhostsMsg{}, err
	}
	m := GhostsMsg{Tick: Tick(binary.LittleEndian.Uint32(payload[0:]))}
	if n > 0 {
		m.Entities = make([]EntityRecord, n)
		for i := range m.Entities {
			m.Entities[i] = getRecord(payload[8+i*recordSize:])
		}
	}
	if err := m.Validate(); err != nil {
		return GhostsMsg{}, err
	}
	return m, nil
}

// Type returns PeerGhostGone.
func (m *GhostGoneMsg) Type() PeerType { return PeerGhostGone }

const ghostRefSize = 16

// AppendFrame appends m as a frame: count:u32 | count × (id:u64 | auth_epoch:u64).
func (m *GhostGoneMsg) AppendFrame(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, p := appendPeerFixed(dst, PeerGhostGone, 4+len(m.Entities)*ghostRefSize)
	binary.LittleEndian.PutUint32(p[0:], uint32(len(m.Entities)))
	for i, e := range m.Entities {
		binary.LittleEndian.PutUint64(p[4+i*ghostRefSize:], uint64(e.ID))
		binary.LittleEndian.PutUint64(p[12+i*ghostRefSize:], e.AuthEpoch)
	}
	return dst, nil
}

// Validate requires 1..MaxGhosts references with non-zero ids.
func (m *GhostGoneMsg) Validate() error {
	if len(m.Entities) == 0 || len(m.Entities) > MaxGhosts {
		return fmt.Errorf("%w: %d ghost references, want 1..%d", ErrValueOutOfRange, len(m.Entities), MaxGhosts)
	}
	for _, e := range m.Entities {
		if e.ID == 0 {
			return fmt.Errorf("%w: ghost reference to entity 0", ErrValueOutOfRange)
		}
	}
	return nil
}

// DecodeGhostGoneMsg decodes a GhostGone payload.
func DecodeGhostGoneMsg(payload []byte) (GhostGoneMsg, error) {
	if len(payload) < 4 {
		return GhostGoneMsg{}, fmt.Errorf("%w: ghost-gone payload of %d bytes", ErrTruncated, len(payload))
	}
	n := int(binary.LittleEndian.Uint32(payload))
	if n > MaxGhosts {
		return GhostGoneMsg{}, fmt.Errorf("%w: %d ghost references, max %d", ErrTooManyEntities, n, MaxGhosts)
	}
	if err := checkSize(PeerGhostGone, payload, 4+n*ghostRefSize); err != nil {
		return GhostGoneMsg{}, err
	}
	m := GhostGoneMsg{Entities: make([]GhostRef, n)}
	for i := range m.Entities {
		m.Entities[i] = GhostRef{
			ID:        EntityID(binary.LittleEndian.Uint64(payload[4+i*ghostRefSize:])),
			AuthEpoch: binary.LittleEndian.Uint64(payload[12+i*ghostRefSize:]),
		}
	}
	if err := m.Validate(); err != nil {
		return GhostGoneMsg{}, err
	}
	return m, nil
}

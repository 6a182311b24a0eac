package wire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// The client messages of interactions (types in gateway_types.go). They follow the rules at the
// top of messages.go: AppendFrame cuts Data beyond MaxInteractData bytes (chat text at a UTF-8
// boundary), Validate returns the decoder's error, DecodeX is strict and copies Data out of the
// payload.

// Payload sizes of the interaction messages, without their data.
const (
	interactHead    = 4 + 8 + 1 + 1
	interactionHead = 8 + 4 + 4 + 1 + 1
)

// checkInteraction checks the kind and data that every interaction message carries: a known
// kind, at most MaxInteractData bytes and, for InteractChat, valid UTF-8. what names the message
// in the error.
func checkInteraction(what fmt.Stringer, kind InteractKind, data []byte) error {
	switch {
	case kind == 0 || kind > maxInteractKind:
		return fmt.Errorf("%w: %v kind %d", ErrValueOutOfRange, what, uint8(kind))
	case len(data) > MaxInteractData:
		return fmt.Errorf("%w: %v data of %d bytes, max %d", ErrValueOutOfRange, what, len(data), MaxInteractData)
	case kind == InteractChat && !utf8.Valid(data):
		return fmt.Errorf("%w: %v chat text is not valid UTF-8", ErrValueOutOfRange, what)
	case kind == InteractInventory:
		if _, err := DecodeInventoryOp(data); err != nil {
			return fmt.Errorf("%v: %w", what, err)
		}
	case kind == InteractInventoryResult:
		if _, err := DecodeInventoryResult(data); err != nil {
			return fmt.Errorf("%v: %w", what, err)
		}
	}
	return nil
}

// cutInteractData returns data cut to MaxInteractData bytes; chat text is cut at a UTF-8
// character boundary.
func cutInteractData(kind InteractKind, data []byte) []byte {
	if len(data) <= MaxInteractData {
		return data
	}
	n := MaxInteractData
	if kind == InteractChat {
		for n > 0 && !utf8.RuneStart(data[n]) {
			n-- // data[n] continues the character that straddles the limit: cut before it
		}
	}
	return data[:n]
}

// checkInteractSize checks the size of an interaction payload whose fixed part, ending with the
// data length byte, is head bytes: a data length of at most MaxInteractData, and exactly that
// much data after the fixed part.
func checkInteractSize[T MsgType | PeerType](t T, payload []byte, head int) error {
	if len(payload) < head {
		return fmt.Errorf("%w: %v payload of %d bytes, want at least %d", ErrTruncated, t, len(payload), head)
	}
	if n := int(payload[head-1]); n > MaxInteractData {
		return fmt.Errorf("%w: %v data of %d bytes, max %d", ErrValueOutOfRange, t, n, MaxInteractData)
	}
	return checkSize(t, payload, head+int(payload[head-1]))
}

// --- Interact ---

// Type returns MsgInteract.
func (m *Interact) Type() MsgType { return MsgInteract }

// AppendFrame appends m as a frame: seq:u32 | target:u64 | kind:u8 | dataLen:u8 | data. Data
// longer than MaxInteractData is truncated (chat text at a UTF-8 character boundary).
func (m *Interact) AppendFrame(dst []byte) []byte {
	data := cutInteractData(m.Kind, m.Data)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(1+interactHead+len(data)))
	dst = append(dst, byte(MsgInteract))
	dst = binary.LittleEndian.AppendUint32(dst, m.Seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Target))
	dst = append(dst, byte(m.Kind), byte(len(data)))
	return append(dst, data...)
}

// Validate requires Seq ≥ 1 (the sequence is shared with Input), a target, a known kind and at
// most MaxInteractData bytes of data, valid UTF-8 for InteractChat, a valid InventoryOp for
// InteractInventory; InteractInventoryResult is refused (only servers send results).
func (m *Interact) Validate() error {
	switch {
	case m.Seq == 0:
		return fmt.Errorf("%w: interact sequence 0 (sequences start at 1)", ErrValueOutOfRange)
	case m.Target == 0:
		return fmt.Errorf("%w: interact without a target", ErrValueOutOfRange)
	case m.Kind == InteractInventoryResult:
		return fmt.Errorf("%w: interact of kind %d (inventory results come from servers only)", ErrValueOutOfRange, uint8(m.Kind))
	}
	return checkInteraction(MsgInteract, m.Kind, m.Data)
}

// DecodeInteract decodes an Interact payload. Data is copied out of payload; empty data decodes
// as nil.
func DecodeInteract(payload []byte) (Interact, error) {
	if err := checkInteractSize(MsgInteract, payload, interactHead); err != nil {
		return Interact{}, err
	}
	p := payload
	m := Interact{
		Seq:    binary.LittleEndian.Uint32(p[0:]),
		Target: EntityID(binary.LittleEndian.Uint64(p[4:])),
		Kind:   InteractKind(p[12]),
		Data:   p[interactHead:],
	}
	if err := m.Validate(); err != nil {
		return Interact{}, err
	}
	m.Data = append([]byte(nil), m.Data...)
	return m, nil
}

// --- Interaction ---

// Type returns MsgInteraction.
func (m *Interaction) Type() MsgType { return MsgInteraction }

// AppendFrame appends m as a frame: from:u64 | seq:u32 | tick:u32 | kind:u8 | dataLen:u8 | data.
// Data longer than MaxInteractData is truncated (chat text at a UTF-8 character boundary).
func (m *Interaction) AppendFrame(dst []byte) []byte {
	data := cutInteractData(m.Kind, m.Data)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(1+interactionHead+len(data)))
	dst = append(dst, byte(MsgInteraction))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.From))
	dst = binary.LittleEndian.AppendUint32(dst, m.Seq)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Tick))
	dst = append(dst, byte(m.Kind), byte(len(data)))
	return append(dst, data...)
}

// Validate requires an actor (From), Seq ≥ 1, a known kind and at most MaxInteractData bytes of
// data, valid UTF-8 for InteractChat. Tick is not checked.
func (m *Interaction) Validate() error {
	switch {
	case m.From == 0:
		return fmt.Errorf("%w: interaction from entity 0", ErrValueOutOfRange)
	case m.Seq == 0:
		return fmt.Errorf("%w: interaction sequence 0 (sequences start at 1)", ErrValueOutOfRange)
	}
	return checkInteraction(MsgInteraction, m.Kind, m.Data)
}

// DecodeInteraction decodes an Interaction payload. Data is copied out of payload; empty data
// decodes as nil.
func DecodeInteraction(payload []byte) (Interaction, error) {
	if err := checkInteractSize(MsgInteraction, payload, interactionHead); err != nil {
		return Interaction{}, err
	}
	p := payload
	m := Interaction{
		From: EntityID(binary.LittleEndian.Uint64(p[0:])),
		Seq:  binary.LittleEndian.Uint32(p[8:]),
		Tick: Tick(binary.LittleEndian.Uint32(p[12:])),
		Kind: InteractKind(p[16]),
		Data: p[interactionHead:],
	}
	if err := m.Validate(); err != nil {
		return Interaction{}, err
	}
	m.Data = append([]byte(nil), m.Data...)
	return m, nil
}

package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Inventory operations ride in interactions (DESIGN.md §5): a client sends an Interact of kind
// InteractInventory whose Data is an InventoryOp; the actor's owner runs it as one PostgreSQL
// transaction off the tick, keyed by (actor, Seq) so that a resend or a resume after a server
// died applies it once; a later tick sends the actor's client an Interaction of kind
// InteractInventoryResult, same From and Seq, whose Data is an InventoryResult.
//
// InventoryOp data:     op:u8 | n:u8 | m:u8 | n × item:u64 | m × item:u64   (Items, then Want)
// InventoryResult data: op:u8 | code:u8 | event:u64 | moved:u8
//
// All integers little-endian. Decoders are strict: exact sizes, known op and code, item ids in
// [1, 2^63−1], no id twice in one operation.

// InventoryOpKind says what an inventory operation does.
type InventoryOpKind uint8

const (
	// InvLoot: the actor picks up Items[0] from the ground. Target is the actor itself.
	InvLoot InventoryOpKind = 1
	// InvDrop: the actor drops Items[0] where it stands. Target is the actor itself.
	InvDrop InventoryOpKind = 2
	// InvGive: the actor gives Items[0] to Target (a player).
	InvGive InventoryOpKind = 3
	// InvTrade: the actor swaps Items (its own) for Want (Target's), all or nothing. It is the
	// acceptance of an offer: Target must first have sent the actor an Interact of kind
	// InteractTrade whose Data is the mirror InventoryOp (Op InvTrade, Items = this Want, Want
	// = these Items), else the answer is InvNoOffer. Both sides hold at least one item.
	InvTrade        InventoryOpKind = 4
	maxInvOpKind                    = InvTrade
	inventoryOpHead                 = 3
)

// MaxInventoryItems is the most items on each side of one operation.
const MaxInventoryItems = 8

// InventoryOp is the Data of an InteractInventory.
type InventoryOp struct {
	Op    InventoryOpKind
	Items []uint64 // loot: the ground item; drop, give: the actor's item; trade: what the actor hands over
	Want  []uint64 // trade only: what the actor receives from Target
}

// InventoryCode is the outcome of an inventory operation.
type InventoryCode uint8

const (
	InvOK            InventoryCode = 1  // applied (or applied before: a replay of the same key)
	InvNotOwner      InventoryCode = 2  // an item is not held by the player it would be taken from
	InvItemGone      InventoryCode = 3  // an item does not exist, or (loot) someone took it first
	InvUnknownPlayer InventoryCode = 4  // a player is not known to PostgreSQL
	InvUnavailable   InventoryCode = 5  // PostgreSQL is unreachable: nothing was done; retry later
	InvContention    InventoryCode = 6  // conflicts persisted after retries: nothing was done
	InvInvalid       InventoryCode = 7  // the request cannot be run (a player id missing, ...)
	InvNoTarget      InventoryCode = 8  // the target is not in view of the actor's server
	InvBusy          InventoryCode = 9  // the server's queue of operations is full: nothing was done
	InvNoStore       InventoryCode = 10 // the server runs without PostgreSQL: no inventory
	InvTooFar        InventoryCode = 11 // loot: the item lies out of the actor's reach
	InvNoOffer       InventoryCode = 12 // trade: the target has not offered this trade to the actor
	maxInvCode                     = InvNoOffer
)

var invCodeNames = [...]string{"", "ok", "not_owner", "item_gone", "unknown_player", "unavailable",
	"contention", "invalid", "no_target", "busy", "no_store", "too_far", "no_offer"}

// String names the code (as metrics label it).
func (c InventoryCode) String() string {
	if c == 0 || c > maxInvCode {
		return fmt.Sprintf("code(%d)", uint8(c))
	}
	return invCodeNames[c]
}

var invOpNames = [...]string{"", "loot", "drop", "give", "trade"}

// String names the operation.
func (k InventoryOpKind) String() string {
	if k == 0 || k > maxInvOpKind {
		return fmt.Sprintf("op(%d)", uint8(k))
	}
	return invOpNames[k]
}

// InventoryResult is the Data of an InteractInventoryResult.
type InventoryResult struct {
	Op    InventoryOpKind
	Code  InventoryCode
	Event uint64 // the event log's sequence number of the operation; 0: none recorded
	Moved uint8  // items moved
}

const inventoryResultSize = 1 + 1 + 8 + 1

// Validate checks the op, the item counts for it, the id range and that no id appears twice.
func (o *InventoryOp) Validate() error {
	switch {
	case o.Op == 0 || o.Op > maxInvOpKind:
		return fmt.Errorf("%w: inventory op %d", ErrValueOutOfRange, uint8(o.Op))
	case len(o.Items) > MaxInventoryItems || len(o.Want) > MaxInventoryItems:
		return fmt.Errorf("%w: inventory %v of %d+%d items, max %d each", ErrValueOutOfRange, o.Op, len(o.Items), len(o.Want), MaxInventoryItems)
	case o.Op == InvTrade && (len(o.Items) == 0 || len(o.Want) == 0):
		return fmt.Errorf("%w: inventory trade of %d+%d items (each side gives at least one; a gift is InvGive)", ErrValueOutOfRange, len(o.Items), len(o.Want))
	case o.Op != InvTrade && (len(o.Items) != 1 || len(o.Want) != 0):
		return fmt.Errorf("%w: inventory %v of %d+%d items, want exactly 1+0", ErrValueOutOfRange, o.Op, len(o.Items), len(o.Want))
	}
	var seen [2 * MaxInventoryItems]uint64
	n := 0
	for _, side := range [2][]uint64{o.Items, o.Want} {
		for _, id := range side {
			if id == 0 || id > math.MaxInt64 {
				return fmt.Errorf("%w: inventory item id %d, want 1..2^63-1", ErrValueOutOfRange, id)
			}
			for _, s := range seen[:n] {
				if s == id {
					return fmt.Errorf("%w: inventory item %d twice in one %v", ErrValueOutOfRange, id, o.Op)
				}
			}
			seen[n] = id
			n++
		}
	}
	return nil
}

// Append appends o's encoding to dst, or fails (dst unchanged) if o is not valid.
func (o *InventoryOp) Append(dst []byte) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return dst, err
	}
	dst = append(dst, byte(o.Op), byte(len(o.Items)), byte(len(o.Want)))
	for _, id := range o.Items {
		dst = binary.LittleEndian.AppendUint64(dst, id)
	}
	for _, id := range o.Want {
		dst = binary.LittleEndian.AppendUint64(dst, id)
	}
	return dst, nil
}

// DecodeInventoryOp decodes InventoryOp data (the whole of b).
func DecodeInventoryOp(b []byte) (InventoryOp, error) {
	if len(b) < inventoryOpHead {
		return InventoryOp{}, fmt.Errorf("%w: inventory op of %d bytes, want at least %d", ErrTruncated, len(b), inventoryOpHead)
	}
	n, m := int(b[1]), int(b[2])
	if n > MaxInventoryItems || m > MaxInventoryItems {
		return InventoryOp{}, fmt.Errorf("%w: inventory op of %d+%d items, max %d each", ErrValueOutOfRange, n, m, MaxInventoryItems)
	}
	want := inventoryOpHead + 8*(n+m)
	switch {
	case len(b) < want:
		return InventoryOp{}, fmt.Errorf("%w: inventory op of %d bytes, want %d", ErrTruncated, len(b), want)
	case len(b) > want:
		return InventoryOp{}, fmt.Errorf("%w: %d bytes after an inventory op", ErrTrailingBytes, len(b)-want)
	}
	o := InventoryOp{Op: InventoryOpKind(b[0])}
	ids := func(k, off int) []uint64 {
		if k == 0 {
			return nil
		}
		s := make([]uint64, k)
		for i := range s {
			s[i] = binary.LittleEndian.Uint64(b[off+8*i:])
		}
		return s
	}
	o.Items = ids(n, inventoryOpHead)
	o.Want = ids(m, inventoryOpHead+8*n)
	if err := o.Validate(); err != nil {
		return InventoryOp{}, err
	}
	return o, nil
}

// Validate checks the op and code.
func (r *InventoryResult) Validate() error {
	switch {
	case r.Op == 0 || r.Op > maxInvOpKind:
		return fmt.Errorf("%w: inventory result of op %d", ErrValueOutOfRange, uint8(r.Op))
	case r.Code == 0 || r.Code > maxInvCode:
		return fmt.Errorf("%w: inventory result code %d", ErrValueOutOfRange, uint8(r.Code))
	}
	return nil
}

// Append appends r's encoding to dst, or fails (dst unchanged) if r is not valid.
func (r *InventoryResult) Append(dst []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return dst, err
	}
	dst = append(dst, byte(r.Op), byte(r.Code))
	dst = binary.LittleEndian.AppendUint64(dst, r.Event)
	return append(dst, r.Moved), nil
}

// DecodeInventoryResult decodes InventoryResult data (the whole of b).
func DecodeInventoryResult(b []byte) (InventoryResult, error) {
	switch {
	case len(b) < inventoryResultSize:
		return InventoryResult{}, fmt.Errorf("%w: inventory result of %d bytes, want %d", ErrTruncated, len(b), inventoryResultSize)
	case len(b) > inventoryResultSize:
		return InventoryResult{}, fmt.Errorf("%w: %d bytes after an inventory result", ErrTrailingBytes, len(b)-inventoryResultSize)
	}
	r := InventoryResult{Op: InventoryOpKind(b[0]), Code: InventoryCode(b[1]), Event: binary.LittleEndian.Uint64(b[2:]), Moved: b[10]}
	if err := r.Validate(); err != nil {
		return InventoryResult{}, err
	}
	return r, nil
}

package persistence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Inventory transactions (DESIGN.md §5): loot, drop, give and trade, each one PostgreSQL
// transaction carrying an idempotency key, recorded in the events log in that same
// transaction. doc.go ("Inventory transactions") states the guarantees; in short:
//
//   - In one round trip (a pipelined batch): BEGIN (READ COMMITTED), look the key up in
//     events, check the players exist, and lock the items with SELECT … WHERE id = ANY(…)
//     ORDER BY id FOR UPDATE — every transaction locks its items in ascending id order, so two of them never
//     wait on each other in a cycle. Every decision (who holds what) is taken on locked rows.
//   - A key already in events: nothing is applied; the outcome stored in its payload is
//     returned (Replayed), or ErrDuplicateKeyMismatch if it was recorded for another request.
//   - Otherwise, in one round trip: one UPDATE of all the items (version + 1 each) and the
//     INSERT of the event (kind "loot"/"drop"/"give"/"trade", the request, the outcome and the
//     items' new owners and versions) and COMMIT. A refusal about the items (ErrNotOwner,
//     ErrItemGone, ErrTooFar) inserts its event and changes no item.
//   - Outcome reads an event back by its key alone, for a caller that lost the first answer.
//   - Two transactions with the same key: the second's INSERT hits the UNIQUE idem_key of the
//     first and fails; it is rolled back and run again, finding the key (a replay).
//   - Serialization failures and deadlocks (40001, 40P01: not expected among these
//     transactions, with their ordered locks under READ COMMITTED, but another writer of
//     items — a manual fix, a future tool — may lock in another order) and that key collision are retried invTxAttempts times in all, with jittered exponential backoff.

// Inventory limits.
const (
	// MaxTradeItems is the most items one side of a trade may give.
	MaxTradeItems = 64
	// MaxItemKindLen is the longest item kind, in bytes.
	MaxItemKindLen = 64
)

// Event kinds of the inventory transactions.
const (
	EventLoot  = "loot"
	EventDrop  = "drop"
	EventGive  = "give"
	EventTrade = "trade"
)

// Outcomes recorded in an inventory event's payload ("outcome").
const (
	outcomeOK       = "ok"
	outcomeNotOwner = "not_owner"
	outcomeGone     = "item_gone"
	outcomeTooFar   = "too_far"
)

// Retries of an inventory transaction (serialization failure, deadlock, key collision).
const (
	invTxAttempts   = 8
	invBackoffFirst = 2 * time.Millisecond
	invBackoffMax   = 200 * time.Millisecond
)

// Item is an item as PostgreSQL holds it: owned by a player (Owner ≥ 1), or lying on the
// ground (Owner 0) in Cell at (X, Y, Z).
type Item struct {
	ID    int64  // ≥ 1
	Kind  string // 1..MaxItemKindLen bytes ("sword", "coin", ...)
	Owner int64  // the player holding it; 0: on the ground
	// Where it lies when Owner is 0 (Cell ≤ math.MaxInt64; finite position); zero otherwise.
	Cell    uint64
	X, Y, Z float64
	// Attributes is a JSON object, opaque here. Empty: {}.
	Attributes json.RawMessage
	// Version is 1 when created and grows by one with every change (set by the store;
	// CreateItem ignores it).
	Version int64
}

// ItemMove is one item an inventory operation moved: its new holder and version.
type ItemMove struct {
	ID      int64  `json:"id"`
	Kind    string `json:"kind"`
	Owner   int64  `json:"owner,omitempty"` // the new holder; 0: dropped on the ground
	Version int64  `json:"version"`         // the item's version after the operation
}

// InvOutcome is the result of an inventory operation. The same key always gives the same
// outcome: the first call's, read back from the event log by every retry.
type InvOutcome struct {
	// Seq is the sequence number of the event that records the operation (events.seq), also
	// when it was refused with ErrNotOwner, ErrItemGone or ErrTooFar.
	Seq int64
	// Replayed: the key had already been applied (or refused) by an earlier call; this call
	// applied nothing and returns the recorded outcome.
	Replayed bool
	// Moved lists the items moved, in ascending id order; empty when refused.
	Moved []ItemMove
}

// Near is where a looter stands, for Loot's reach check: its cell and its horizontal position
// (X, Z, in metres; height is ignored), and how far from there it can pick an item up (Reach,
// in metres, measured in x/z).
type Near struct {
	Cell  uint64  `json:"cell"`  // ≤ math.MaxInt64
	X     float64 `json:"x"`     // finite
	Z     float64 `json:"z"`     // finite
	Reach float64 `json:"reach"` // > 0, finite
}

// reaches reports whether a ground item lies in n's cell within n.Reach of (X, Z). An item
// without a stored position (x or z NULL: NaN here) compares false: out of reach.
func (n *Near) reaches(it *lockedItem) bool {
	return it.cell == int64(n.Cell) && math.Hypot(it.x-n.X, it.z-n.Z) <= n.Reach
}

// invRequest is what an operation asks for; it is stored in the event's payload, and a key
// found again is only replayed for an identical request (same). Item lists are sorted.
type invRequest struct {
	Player int64       `json:"player"`            // loot, drop: the player; give: the giver; trade: a
	To     int64       `json:"to,omitempty"`      // give: the receiver; trade: b
	Items  []int64     `json:"items"`             // loot, drop, give: [the item]; trade: a's items
	ItemsB []int64     `json:"items_b,omitempty"` // trade: b's items
	Cell   *uint64     `json:"cell,omitempty"`    // drop: where it is dropped
	Pos    *[3]float64 `json:"pos,omitempty"`     // drop: (x, y, z)
	// Near: loot, where the looter stood (nil: no reach check). Recorded for audit only, not
	// part of the request's identity (same ignores it): a resend of the loot from a slightly
	// different position is the same request and replays the first outcome.
	Near *Near `json:"near,omitempty"`
}

// same reports whether r and o are the same request: every field but Near.
func (r *invRequest) same(o *invRequest) bool {
	return r.Player == o.Player && r.To == o.To &&
		slices.Equal(r.Items, o.Items) && slices.Equal(r.ItemsB, o.ItemsB) &&
		(r.Cell == nil) == (o.Cell == nil) && (r.Cell == nil || *r.Cell == *o.Cell) &&
		(r.Pos == nil) == (o.Pos == nil) && (r.Pos == nil || *r.Pos == *o.Pos)
}

func (r *invRequest) players() []int64 {
	if r.To != 0 {
		return []int64{r.Player, r.To}
	}
	return []int64{r.Player}
}

func (r *invRequest) itemIDs() []int64 {
	ids := slices.Concat(r.Items, r.ItemsB)
	slices.Sort(ids)
	return ids
}

// invPayload is an inventory event's payload.
type invPayload struct {
	Op string `json:"op"`
	invRequest
	Outcome string     `json:"outcome"`
	Failed  int64      `json:"failed_item,omitempty"` // refused: the item that failed
	Moved   []ItemMove `json:"moved,omitempty"`       // ok: the items moved
}

// lockedItem is an item row as the transaction locked it.
type lockedItem struct {
	kind    string
	owner   int64   // 0: on the ground
	cell    int64   // on the ground: its cell
	x, z    float64 // on the ground: its horizontal position; NaN if not stored
	version int64
}

// decision is what an operation decided on its locked rows: a refusal, or the moves.
type decision struct {
	outcome string
	failed  int64
	cell    *int64 // the event's cell: where a loot came from, where a drop went
	moves   []move
}

type move struct {
	id      int64
	owner   int64 // 0: to the ground at cell/pos
	cell    uint64
	pos     [3]float64
	kind    string
	version int64 // after
}

// Loot moves a ground item into player's inventory. It fails with ErrItemGone when the item
// is not on the ground (another player took it, or it does not exist).
//
// near is where the looter stands; nil means no reach check (setup and admin tools). With
// near, an item on the ground in another cell than near.Cell, or farther than near.Reach
// metres from (near.X, near.Z) — the horizontal distance, in x/z — is refused with ErrTooFar
// (recorded like ErrItemGone, which is checked first; a ground item without a stored position
// is out of reach). near is recorded in the event's payload for audit but is not part of the
// request: a retry with the same key from another position, or without near, replays the
// first call's outcome (it is not ErrDuplicateKeyMismatch, and is not checked again). A near
// with a non-finite X or Z, a Reach that is not finite and > 0, or a Cell over math.MaxInt64
// fails with ErrInvalidArgument.
func (p *PG) Loot(ctx context.Context, key string, player, itemID int64, near *Near) (InvOutcome, error) {
	req := invRequest{Player: player, Items: []int64{itemID}}
	if err := checkIDs(EventLoot, key, req.Player, req.Items); err != nil {
		return InvOutcome{}, err
	}
	if near != nil {
		n := *near // the caller's struct is not kept
		switch {
		case n.Cell > math.MaxInt64:
			return InvOutcome{}, fmt.Errorf("%w: loot %q: near cell %d over %d", ErrInvalidArgument, key, n.Cell, int64(math.MaxInt64))
		case !finite(n.X) || !finite(n.Z):
			return InvOutcome{}, fmt.Errorf("%w: loot %q: near position (%v, %v) is not finite", ErrInvalidArgument, key, n.X, n.Z)
		case !(n.Reach > 0) || math.IsInf(n.Reach, 1):
			return InvOutcome{}, fmt.Errorf("%w: loot %q: reach %v, want finite and > 0", ErrInvalidArgument, key, n.Reach)
		}
		req.Near = &n
	}
	return p.runInventory(ctx, EventLoot, key, req, func(rows map[int64]*lockedItem) decision {
		it := rows[itemID]
		if it == nil || it.owner != 0 {
			return decision{outcome: outcomeGone, failed: itemID}
		}
		if req.Near != nil && !req.Near.reaches(it) {
			return decision{outcome: outcomeTooFar, failed: itemID}
		}
		return decision{outcome: outcomeOK, cell: &it.cell, moves: []move{{id: itemID, owner: player}}}
	})
}

// Drop moves an item from player's inventory to the ground of cell at (x, y, z). It fails with
// ErrNotOwner when player does not hold it, ErrItemGone when it does not exist.
func (p *PG) Drop(ctx context.Context, key string, player, itemID int64, cell uint64, x, y, z float64) (InvOutcome, error) {
	pos := [3]float64{x, y, z}
	req := invRequest{Player: player, Items: []int64{itemID}, Cell: &cell, Pos: &pos}
	if err := checkIDs(EventDrop, key, req.Player, req.Items); err != nil {
		return InvOutcome{}, err
	}
	if cell > math.MaxInt64 {
		return InvOutcome{}, fmt.Errorf("%w: drop %q: cell %d over %d", ErrInvalidArgument, key, cell, int64(math.MaxInt64))
	}
	if !finite(x) || !finite(y) || !finite(z) {
		return InvOutcome{}, fmt.Errorf("%w: drop %q: position (%v, %v, %v) is not finite", ErrInvalidArgument, key, x, y, z)
	}
	c := int64(cell)
	return p.runInventory(ctx, EventDrop, key, req, func(rows map[int64]*lockedItem) decision {
		if d, refused := requireOwned(rows, player, req.Items); refused {
			return d
		}
		return decision{outcome: outcomeOK, cell: &c, moves: []move{{id: itemID, cell: cell, pos: pos}}}
	})
}

// Give moves an item from from's inventory to to's. It fails with ErrNotOwner when from does
// not hold it, ErrItemGone when it does not exist.
func (p *PG) Give(ctx context.Context, key string, from, to, itemID int64) (InvOutcome, error) {
	req := invRequest{Player: from, To: to, Items: []int64{itemID}}
	if err := checkIDs(EventGive, key, req.Player, req.Items); err != nil {
		return InvOutcome{}, err
	}
	if to < 1 || to == from {
		return InvOutcome{}, fmt.Errorf("%w: give %q: receiver %d (giver %d)", ErrInvalidArgument, key, to, from)
	}
	return p.runInventory(ctx, EventGive, key, req, func(rows map[int64]*lockedItem) decision {
		if d, refused := requireOwned(rows, from, req.Items); refused {
			return d
		}
		return decision{outcome: outcomeOK, moves: []move{{id: itemID, owner: to}}}
	})
}

// Trade swaps itemsA, held by a, for itemsB, held by b, atomically: either every item of
// itemsA was a's and is now b's and every item of itemsB was b's and is now a's, or nothing
// changed (ErrNotOwner, ErrItemGone: the first item in id order that failed). One side may be
// empty (a gift), not both; at most MaxTradeItems a side; an item appears once.
func (p *PG) Trade(ctx context.Context, key string, a, b int64, itemsA, itemsB []int64) (InvOutcome, error) {
	req := invRequest{Player: a, To: b, Items: sortedOrNil(itemsA), ItemsB: sortedOrNil(itemsB)}
	if err := checkIDs(EventTrade, key, a, nil); err != nil {
		return InvOutcome{}, err
	}
	switch {
	case b < 1 || b == a:
		return InvOutcome{}, fmt.Errorf("%w: trade %q between players %d and %d", ErrInvalidArgument, key, a, b)
	case len(itemsA)+len(itemsB) == 0:
		return InvOutcome{}, fmt.Errorf("%w: trade %q of no items", ErrInvalidArgument, key)
	case len(itemsA) > MaxTradeItems || len(itemsB) > MaxTradeItems:
		return InvOutcome{}, fmt.Errorf("%w: trade %q of %d and %d items, max %d a side", ErrInvalidArgument, key, len(itemsA), len(itemsB), MaxTradeItems)
	}
	all := req.itemIDs()
	for i, id := range all {
		if id < 1 {
			return InvOutcome{}, fmt.Errorf("%w: trade %q: item id %d", ErrInvalidArgument, key, id)
		}
		if i > 0 && all[i-1] == id {
			return InvOutcome{}, fmt.Errorf("%w: trade %q: item %d appears twice", ErrInvalidArgument, key, id)
		}
	}
	return p.runInventory(ctx, EventTrade, key, req, func(rows map[int64]*lockedItem) decision {
		for _, id := range all { // refuse on the first failing item in id order
			want := a
			if _, ok := slices.BinarySearch(req.ItemsB, id); ok {
				want = b
			}
			if d, refused := requireOwned(rows, want, []int64{id}); refused {
				return d
			}
		}
		d := decision{outcome: outcomeOK}
		for _, id := range all {
			to := b
			if _, ok := slices.BinarySearch(req.ItemsB, id); ok {
				to = a
			}
			d.moves = append(d.moves, move{id: id, owner: to})
		}
		return d
	})
}

// requireOwned refuses unless player holds every item of ids.
func requireOwned(rows map[int64]*lockedItem, player int64, ids []int64) (decision, bool) {
	for _, id := range ids {
		it := rows[id]
		switch {
		case it == nil:
			return decision{outcome: outcomeGone, failed: id}, true
		case it.owner != player:
			return decision{outcome: outcomeNotOwner, failed: id}, true
		}
	}
	return decision{}, false
}

func sortedOrNil(ids []int64) []int64 {
	if len(ids) == 0 {
		return nil
	}
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

// checkKey checks an idempotency key: 1..MaxEventKeyLen bytes of UTF-8 without NUL (a
// PostgreSQL text value).
func checkKey(op, key string) error {
	if len(key) == 0 || len(key) > MaxEventKeyLen || !utf8.ValidString(key) || bytes.IndexByte([]byte(key), 0) >= 0 {
		return fmt.Errorf("%w: %s: idempotency key %q: want 1..%d bytes of UTF-8 without NUL", ErrInvalidArgument, op, key, MaxEventKeyLen)
	}
	return nil
}

func checkIDs(op, key string, player int64, items []int64) error {
	if err := checkKey(op, key); err != nil {
		return err
	}
	if player < 1 {
		return fmt.Errorf("%w: %s %q: player id %d", ErrInvalidArgument, op, key, player)
	}
	for _, id := range items {
		if id < 1 {
			return fmt.Errorf("%w: %s %q: item id %d", ErrInvalidArgument, op, key, id)
		}
	}
	return nil
}

// invFault, when set (tests only), is called in every inventory transaction just before its
// COMMIT, with the transaction's connection; an error it returns aborts the transaction.
var invFault atomic.Pointer[func(ctx context.Context, conn *pgx.Conn) error]

// errKeyTaken: the event INSERT met a concurrent transaction's event with the same key.
var errKeyTaken = errors.New("idempotency key committed concurrently")

// runInventory runs one inventory operation: the transaction, retried on conflicts.
func (p *PG) runInventory(ctx context.Context, op, key string, req invRequest, decide func(map[int64]*lockedItem) decision) (InvOutcome, error) {
	backoff := invBackoffFirst
	var last error
	for attempt := 1; ; attempt++ {
		out, err := p.inventoryTx(ctx, op, key, &req, decide)
		if err == nil || !retryable(err) {
			return out, classify(ctx, fmt.Sprintf("%s %q", op, key), err)
		}
		last = err
		if attempt == invTxAttempts {
			break
		}
		d := backoff/2 + rand.N(backoff/2+1) // jitter: [backoff/2, backoff]
		backoff = min(2*backoff, invBackoffMax)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return InvOutcome{}, fmt.Errorf("persistence: %s %q: %w (after %d attempts; last: %v)", op, key, ctx.Err(), attempt, last)
		case <-t.C:
		}
	}
	return InvOutcome{}, fmt.Errorf("%w: %s %q: %d attempts, last: %v", ErrContention, op, key, invTxAttempts, last)
}

// retryable: a serialization failure, a deadlock, or the key committed concurrently.
func retryable(err error) bool {
	if errors.Is(err, errKeyTaken) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// classify wraps an error of one attempt with the operation and, for PostgreSQL being out of
// reach, ErrUnavailable. A refusal (one of the package's sentinels) is returned as it is.
// what names the operation in the message.
func classify(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrNotOwner, ErrItemGone, ErrTooFar, ErrUnknownPlayer, ErrDuplicateKeyMismatch, ErrInvalidArgument, ErrCorrupt} {
		if errors.Is(err, s) {
			return err
		}
	}
	if ctx.Err() != nil { // the caller gave up: not PostgreSQL's fault
		return fmt.Errorf("persistence: %s: %w (%v)", what, ctx.Err(), err)
	}
	var pe *pgconn.PgError
	if unavailable(err) || !errors.As(err, &pe) { // no PgError: no answer from the server
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("persistence: %s: %w", what, err)
}

// unavailable reports whether err says PostgreSQL is out of reach: a failed connection, or
// the server refusing work (shutting down, starting, out of connections or resources).
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code[:2] == "08", // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // admin/crash shutdown, cannot connect now
			pe.Code[:2] == "53": // insufficient resources (too many connections, disk full, ...)
			return true
		}
	}
	return false
}

// inventoryTx is one attempt: one transaction, in two round trips (pipelined batches):
// BEGIN + the reads and locks; then the writes + COMMIT. A transaction that does not reach
// its COMMIT is rolled back (or, if that fails, its connection is closed by the pool).
func (p *PG) inventoryTx(ctx context.Context, op, key string, req *invRequest, decide func(map[int64]*lockedItem) decision) (InvOutcome, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return InvOutcome{}, err
	}
	defer conn.Release() // destroys the connection if it is still in a transaction
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}()
	ids := req.itemIDs()
	players := req.players()

	// Round trip 1: BEGIN; the key; the players; the items locked in id order.
	var (
		b       pgx.Batch
		seq     int64
		kind    string
		payload []byte
		found   bool
		missing []int64
	)
	rows := make(map[int64]*lockedItem, len(ids))
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	b.Queue(`SELECT seq, kind, payload FROM events WHERE idem_key = $1`, key).QueryRow(func(r pgx.Row) error {
		switch err := r.Scan(&seq, &kind, &payload); {
		case err == nil:
			found = true
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		return nil
	})
	b.Queue(`SELECT coalesce(array_agg(q.id ORDER BY q.id) FILTER (WHERE p.id IS NULL), '{}')
	         FROM unnest($1::bigint[]) AS q(id) LEFT JOIN players p ON p.id = q.id`, players).
		QueryRow(func(r pgx.Row) error { return r.Scan(&missing) })
	b.Queue(`SELECT id, kind, coalesce(owner, 0), coalesce(cell, 0), coalesce(x, 'NaN'), coalesce(z, 'NaN'), version
	         FROM items WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).
		Query(func(r pgx.Rows) error {
			var id int64
			var it lockedItem
			_, err := pgx.ForEachRow(r, []any{&id, &it.kind, &it.owner, &it.cell, &it.x, &it.z, &it.version}, func() error {
				c := it
				rows[id] = &c
				return nil
			})
			return err
		})
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return InvOutcome{}, err
	}
	if found {
		return replay(op, key, req, seq, kind, payload) // nothing written; rolled back
	}
	if len(missing) > 0 {
		return InvOutcome{}, fmt.Errorf("%w: %s %q: player %d", ErrUnknownPlayer, op, key, missing[0])
	}

	// Round trip 2: the items' UPDATE (unless refused), the event, COMMIT.
	d := decide(rows)
	pl := invPayload{Op: op, invRequest: *req, Outcome: d.outcome, Failed: d.failed}
	b = pgx.Batch{}
	if d.outcome == outcomeOK {
		n := len(d.moves)
		var (
			mids   = make([]int64, n)
			owners = make([]*int64, n)
			cells  = make([]*int64, n)
			xs     = make([]*float64, n)
			ys     = make([]*float64, n)
			zs     = make([]*float64, n)
		)
		for i := range d.moves {
			m := &d.moves[i]
			it := rows[m.id]
			m.kind, m.version = it.kind, it.version+1
			mids[i] = m.id
			if m.owner != 0 {
				owners[i] = &m.owner
			} else {
				c := int64(m.cell)
				cells[i], xs[i], ys[i], zs[i] = &c, &m.pos[0], &m.pos[1], &m.pos[2]
			}
			pl.Moved = append(pl.Moved, ItemMove{ID: m.id, Kind: m.kind, Owner: m.owner, Version: m.version})
		}
		b.Queue(`UPDATE items AS i
		         SET owner = u.owner, cell = u.cell, x = u.x, y = u.y, z = u.z,
		             version = i.version + 1, updated_at = now()
		         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[], $6::float8[])
		              AS u(id, owner, cell, x, y, z)
		         WHERE i.id = u.id`, mids, owners, cells, xs, ys, zs).
			Exec(func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() != int64(n) {
					return fmt.Errorf("persistence: %s %q: updated %d of %d locked items", op, key, tag.RowsAffected(), n)
				}
				return nil
			})
	}
	js, err := json.Marshal(&pl)
	if err != nil {
		return InvOutcome{}, err
	}
	var out InvOutcome
	b.Queue(`INSERT INTO events (idem_key, kind, player, cell, payload) VALUES ($1, $2, $3, $4, $5) RETURNING seq`,
		key, op, req.Player, d.cell, js).QueryRow(func(r pgx.Row) error { return r.Scan(&out.Seq) })
	fault := invFault.Load()
	commit := func(b *pgx.Batch) {
		b.Queue(`COMMIT`).Exec(func(tag pgconn.CommandTag) error {
			if tag.String() != "COMMIT" { // COMMIT of a failed transaction answers ROLLBACK
				return fmt.Errorf("persistence: %s %q: COMMIT answered %q", op, key, tag.String())
			}
			return nil
		})
	}
	if fault == nil {
		commit(&b)
	}
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "events_idem_key_key" {
			return InvOutcome{}, fmt.Errorf("%w: %v", errKeyTaken, err)
		}
		return InvOutcome{}, err
	}
	if fault != nil {
		if err := (*fault)(ctx, conn.Conn()); err != nil {
			return InvOutcome{}, err
		}
		b = pgx.Batch{}
		commit(&b)
		if err := conn.SendBatch(ctx, &b).Close(); err != nil {
			return InvOutcome{}, err
		}
	}
	out.Moved = pl.Moved
	return out, refusalError(op, key, &pl, out.Seq, false)
}

// replay turns the event found under key into the outcome it recorded.
func replay(op, key string, req *invRequest, seq int64, kind string, payload []byte) (InvOutcome, error) {
	pl, err := decodeInvEvent(op, key, seq, kind, payload)
	if err != nil {
		return InvOutcome{}, err
	}
	if !pl.invRequest.same(req) {
		return InvOutcome{}, fmt.Errorf("%w: %s %q: event %d recorded %s %s", ErrDuplicateKeyMismatch, op, key, seq, op, payload)
	}
	return InvOutcome{Seq: seq, Replayed: true, Moved: pl.Moved}, refusalError(op, key, &pl, seq, true)
}

// decodeInvEvent decodes the event found under key (seq, kind, payload) as the record of an
// inventory operation op: ErrDuplicateKeyMismatch if it is an event of another kind,
// ErrCorrupt if its payload is not an inventory outcome.
func decodeInvEvent(op, key string, seq int64, kind string, payload []byte) (invPayload, error) {
	var pl invPayload
	if kind != op {
		return pl, fmt.Errorf("%w: %s %q: the key is event %d of kind %q", ErrDuplicateKeyMismatch, op, key, seq, kind)
	}
	if err := json.Unmarshal(payload, &pl); err != nil || pl.Op != op {
		return pl, fmt.Errorf("%w: %s %q: event %d's payload is not an inventory outcome (%v)", ErrCorrupt, op, key, seq, err)
	}
	switch pl.Outcome {
	case outcomeOK, outcomeNotOwner, outcomeGone, outcomeTooFar:
	default:
		return pl, fmt.Errorf("%w: %s %q: event %d has outcome %q", ErrCorrupt, op, key, seq, pl.Outcome)
	}
	return pl, nil
}

// Outcome reads what the inventory operation recorded under key (events.idem_key) answered
// its first call, for a caller that lost that answer and has only the key (a retry of the
// operation itself needs the whole request, which it checks against the recorded one). It
// applies and records nothing.
//
// found is false when nothing is committed under key: the operation never ran, was not
// recorded (ErrUnknownPlayer, an invalid argument, rolled back), or has not committed yet — a
// call still in flight may commit it later. Otherwise out is what a retry with the key
// returns (Seq, Replayed = true, Moved) and refusal is nil for an applied operation, or the
// recorded refusal, ErrNotOwner, ErrItemGone or ErrTooFar, wrapped as the retry wraps it.
//
// err: ErrInvalidArgument for a key that is not 1..MaxEventKeyLen bytes of UTF-8 without NUL;
// ErrDuplicateKeyMismatch when the key records another kind of event (the outbox's "death",
// ...); ErrCorrupt for an inventory event whose payload does not decode; ErrUnavailable when
// PostgreSQL is out of reach. When err is not nil, the other results are zero.
func (p *PG) Outcome(ctx context.Context, key string) (out InvOutcome, refusal error, found bool, err error) {
	if err := checkKey("outcome", key); err != nil {
		return InvOutcome{}, nil, false, err
	}
	var (
		seq     int64
		kind    string
		payload []byte
	)
	switch err := p.pool.QueryRow(ctx, `SELECT seq, kind, payload FROM events WHERE idem_key = $1`, key).Scan(&seq, &kind, &payload); {
	case errors.Is(err, pgx.ErrNoRows):
		return InvOutcome{}, nil, false, nil
	case err != nil:
		return InvOutcome{}, nil, false, classify(ctx, fmt.Sprintf("outcome %q", key), err)
	}
	switch kind {
	case EventLoot, EventDrop, EventGive, EventTrade:
	default:
		return InvOutcome{}, nil, false, fmt.Errorf("%w: outcome %q: the key is event %d of kind %q, not an inventory operation",
			ErrDuplicateKeyMismatch, key, seq, kind)
	}
	pl, err := decodeInvEvent(kind, key, seq, kind, payload)
	if err != nil {
		return InvOutcome{}, nil, false, err
	}
	return InvOutcome{Seq: seq, Replayed: true, Moved: pl.Moved}, refusalError(kind, key, &pl, seq, true), true, nil
}

func refusalError(op, key string, pl *invPayload, seq int64, replayed bool) error {
	var s error
	switch pl.Outcome {
	case outcomeNotOwner:
		s = ErrNotOwner
	case outcomeGone:
		s = ErrItemGone
	case outcomeTooFar:
		s = ErrTooFar
	default:
		return nil
	}
	how := "refused"
	if replayed {
		how = "refused earlier"
	}
	return fmt.Errorf("%w: %s %q: item %d (%s, event %d)", s, op, key, pl.Failed, how, seq)
}

// CreatePlayer inserts a player with the given id and account, at the origin of cell 0 with
// epoch 0 (the position flusher moves it). For setup and tests; a player that exists (id or
// account) fails with ErrInvalidArgument.
func (p *PG) CreatePlayer(ctx context.Context, id int64, account string) error {
	r := PlayerRow{ID: id, Account: account}
	if err := r.validate(); err != nil {
		return err
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO players (id, account, cell, epoch) VALUES ($1, $2, 0, 0)`, id, account)
	if pgCode := pgErrCode(err); pgCode == "23505" {
		return fmt.Errorf("%w: player %d or account %q exists", ErrInvalidArgument, id, account)
	}
	return classify(ctx, fmt.Sprintf("creating player %d", id), err)
}

// CreateItem inserts an item at version 1 (it.Version is ignored), held by it.Owner or, when
// Owner is 0, on the ground of it.Cell at (X, Y, Z). For setup and tests (spawning is not an
// inventory operation and records no event). An existing id fails with ErrInvalidArgument,
// an unknown owner with ErrUnknownPlayer.
func (p *PG) CreateItem(ctx context.Context, it Item) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: item %d: %s", ErrInvalidArgument, it.ID, fmt.Sprintf(format, args...))
	}
	attrs := it.Attributes
	if len(bytes.TrimSpace(attrs)) == 0 {
		attrs = emptyObject
	}
	switch s := bytes.TrimSpace(attrs); {
	case it.ID < 1:
		return bad("id must be ≥ 1")
	case len(it.Kind) == 0 || len(it.Kind) > MaxItemKindLen || !utf8.ValidString(it.Kind) || bytes.IndexByte([]byte(it.Kind), 0) >= 0:
		return bad("kind %q, want 1..%d bytes of UTF-8 without NUL", it.Kind, MaxItemKindLen)
	case it.Owner < 0:
		return bad("owner %d", it.Owner)
	case it.Owner == 0 && it.Cell > math.MaxInt64:
		return bad("cell %d over %d", it.Cell, int64(math.MaxInt64))
	case it.Owner == 0 && (!finite(it.X) || !finite(it.Y) || !finite(it.Z)):
		return bad("position (%v, %v, %v) is not finite", it.X, it.Y, it.Z)
	case it.Owner != 0 && (it.Cell != 0 || it.X != 0 || it.Y != 0 || it.Z != 0):
		return bad("held by player %d and placed on the ground", it.Owner)
	case s[0] != '{' || !json.Valid(s):
		return bad("attributes are not a JSON object")
	}
	var owner, cell *int64
	var x, y, z *float64
	if it.Owner != 0 {
		owner = &it.Owner
	} else {
		c := int64(it.Cell)
		cell, x, y, z = &c, &it.X, &it.Y, &it.Z
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO items (id, owner, cell, x, y, z, kind, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		it.ID, owner, cell, x, y, z, it.Kind, attrs)
	switch pgErrCode(err) {
	case "23505":
		return bad("exists")
	case "23503":
		return fmt.Errorf("%w: item %d: owner %d", ErrUnknownPlayer, it.ID, it.Owner)
	}
	return classify(ctx, fmt.Sprintf("creating item %d", it.ID), err)
}

// Inventory returns the items player holds, in ascending id order. An unknown player fails
// with ErrUnknownPlayer.
func (p *PG) Inventory(ctx context.Context, player int64) ([]Item, error) {
	rows, _ := p.pool.Query(ctx, `SELECT id, kind, attributes, version FROM items WHERE owner = $1 ORDER BY id`, player)
	var items []Item
	var it Item
	_, err := pgx.ForEachRow(rows, []any{&it.ID, &it.Kind, &it.Attributes, &it.Version}, func() error {
		c := it
		c.Owner = player
		c.Attributes = slices.Clone(it.Attributes)
		items = append(items, c)
		return nil
	})
	if err != nil {
		return nil, classify(ctx, fmt.Sprintf("inventory of player %d", player), err)
	}
	if len(items) == 0 {
		var exists bool
		if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM players WHERE id = $1)`, player).Scan(&exists); err != nil {
			return nil, classify(ctx, fmt.Sprintf("inventory of player %d", player), err)
		}
		if !exists {
			return nil, fmt.Errorf("%w: inventory of player %d", ErrUnknownPlayer, player)
		}
	}
	return items, nil
}

// CountItems returns the number of items of each kind, held or on the ground.
func (p *PG) CountItems(ctx context.Context) (map[string]int, error) {
	rows, _ := p.pool.Query(ctx, `SELECT kind, count(*) FROM items GROUP BY kind`)
	counts := map[string]int{}
	var kind string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
		counts[kind] = n
		return nil
	}); err != nil {
		return nil, classify(ctx, "counting items", err)
	}
	return counts, nil
}

func pgErrCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

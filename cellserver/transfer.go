package cellserver

import (
	"fmt"

	"github.com/meridian-mmo/meridian/wire"
)

// This file moves entities in and out of a World between Steps: what handoffs and cell
// migrations (member.go) are built on. An exported entity leaves the World completely (its
// client too, with the client's view); an imported one arrives with its full state and, if a
// client controls it, a fresh view (its first snapshot is a full one).

// Exported is an entity's full state as it leaves a World.
type Exported struct {
	ID      wire.EntityID
	State   wire.EntityState
	Client  ClientID // the World's id of the controlling client; 0: none (an NPC)
	LastSeq uint32   // the client's last applied input sequence
	// LastTick is the last tick the entity was simulated (and its client sent a snapshot)
	// where it comes from; Import sends the client no snapshot for ticks up to it.
	LastTick wire.Tick
	// View, on Import, lists what the client saw where it comes from: its first view here keeps
	// those within the leave radius (nil: it admits everything within the leave radius).
	View []wire.EntityID
}

// Export removes the entities ids (as of the next Step) with their clients and appends their
// state to dst. Unknown ids and ghosts are skipped. Call it between Steps.
func (w *World) Export(dst []Exported, ids ...wire.EntityID) []Exported {
	for _, id := range ids {
		r, ok := w.st.lookup(id)
		if !ok || w.st.ghost[r] {
			continue
		}
		e := Exported{ID: id, State: w.st.state(r), LastTick: w.tick}
		if ci := w.st.owner[r]; ci != noRow {
			c := &w.clients[ci]
			e.Client, e.LastSeq = c.id, c.lastSeq
			w.dropClient(ci)
		}
		w.removeRow(r, w.tick+1)
		dst = append(dst, e)
	}
	return dst
}

// dropClient removes client i (its entity stays; the caller removes it).
func (w *World) dropClient(i int32) {
	c := &w.clients[i]
	if len(c.wait) > 0 {
		w.waiting-- // its waiting inputs go with it: the gateway resends what was not applied
	}
	w.st.owner[c.row] = noRow
	c.log.reset()
	w.spare = append(w.spare, c.log)
	delete(w.byClient, c.id)
	last := int32(len(w.clients) - 1)
	if i != last {
		w.clients[i] = w.clients[last]
		w.byClient[w.clients[i].id] = i
		w.st.owner[w.clients[i].row] = i
	}
	w.clients[last] = client{}
	w.clients = w.clients[:last]
}

// Import adds an entity exported from a World (here or on another server) with its state; if
// e.Client is not 0 that client controls it from now on, its inputs numbered after e.LastSeq.
// It fails, changing nothing, if the id or the client is already present, the position is
// outside the world or a velocity component is out of bounds; a full World (MaxClients) takes
// it anyway. Call it between Steps.
func (w *World) Import(e Exported) error {
	if err := w.validState(e.ID, e.State); err != nil {
		return err
	}
	if _, dup := w.st.lookup(e.ID); dup {
		return fmt.Errorf("%w: entity %d", ErrDuplicateEntity, e.ID)
	}
	// MaxClients is not checked: it refuses joins, never an entity another server hands
	// over (refusing it at commit would lose it; the partitioner weighs capacity instead).
	if e.Client != 0 && w.hasClient(e.Client) {
		return fmt.Errorf("%w: client %d already present", ErrBadImport, e.Client)
	}
	r := w.st.add(e.ID)
	w.setState(r, e.State)
	w.grid.insert(&w.st, r)
	if e.Client != 0 {
		w.addClient(e.Client, r, e.LastSeq, e.LastTick, e.View)
	}
	return nil
}

// validState checks an entity's state for Import and UpsertGhost.
func (w *World) validState(id wire.EntityID, s wire.EntityState) error {
	switch {
	case id == 0:
		return fmt.Errorf("%w: entity id 0", ErrBadImport)
	case s.X < w.minX || s.X > w.maxX || s.Z < w.minZ || s.Z > w.maxZ:
		return fmt.Errorf("%w: entity %d at (%d, %d) is outside the world", ErrBadImport, id, s.X, s.Z)
	case s.VX < -maxVelUnits || s.VX > maxVelUnits || s.VZ < -maxVelUnits || s.VZ > maxVelUnits:
		return fmt.Errorf("%w: entity %d velocity (%d, %d) out of bounds", ErrBadImport, id, s.VX, s.VZ)
	case s.Yaw >= wire.YawSteps:
		return fmt.Errorf("%w: entity %d yaw %d out of bounds", ErrBadImport, id, s.Yaw)
	}
	return nil
}

// setState writes a row's components (the caller keeps the AOI grid in step).
func (w *World) setState(r int32, s wire.EntityState) {
	w.st.x[r], w.st.y[r], w.st.z[r] = s.X, s.Y, s.Z
	w.st.vx[r], w.st.vz[r] = s.VX, s.VZ
	w.st.yaw[r], w.st.kind[r], w.st.action[r] = s.Yaw, s.Kind, s.Action
}

// EntityPos is an entity's position (position units), whether a client controls it, and
// whether it is a ghost.
type EntityPos struct {
	ID     wire.EntityID
	X, Z   int32
	Client ClientID // 0: none
	Ghost  bool
}

// Positions appends every entity's position to dst, in the store's order (deterministic for a
// given history of Steps, Exports and Imports).
func (w *World) Positions(dst []EntityPos) []EntityPos {
	for _, r := range w.st.alive {
		p := EntityPos{ID: w.st.ids[r], X: w.st.x[r], Z: w.st.z[r], Ghost: w.st.ghost[r]}
		if ci := w.st.owner[r]; ci != noRow {
			p.Client = w.clients[ci].id
		}
		dst = append(dst, p)
	}
	return dst
}

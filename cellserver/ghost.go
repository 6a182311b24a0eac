package cellserver

import (
	"fmt"
	"slices"

	"github.com/meridian-mmo/meridian/wire"
)

// Ghosts (DESIGN.md §3): a ghost is a read-only copy of an entity another server owns, kept
// here because it is near this server's cells, so that this server's clients see across the
// border. A ghost is an ordinary row of the store for the AOI and the snapshots — clients
// cannot tell it from a real entity — but no client controls it, inputs never reach it, it is
// never exported or handed off, and its owner's updates (UpsertGhost, every tick) overwrite
// whatever this World extrapolated. At a handoff the receiver promotes its ghost in place
// (Promote: the same row, so every view that holds it keeps it, without a leave and an enter)
// and the sender may demote its real entity to a ghost in place (Demote).

// Ghost is a ghost's state as its owner last sent it.
type Ghost struct {
	ID    wire.EntityID
	State wire.EntityState
}

// UpsertGhost adds a ghost or overwrites its state. It fails, changing nothing, for an id that
// is a real entity here or for an invalid state. Call it between Steps.
func (w *World) UpsertGhost(g Ghost) error {
	if err := w.validState(g.ID, g.State); err != nil {
		return err
	}
	if r, ok := w.st.lookup(g.ID); ok {
		if !w.st.ghost[r] {
			return fmt.Errorf("%w: entity %d is real here", ErrNotGhost, g.ID)
		}
		w.setState(r, g.State)
		w.grid.moved(&w.st, r)
		return nil
	}
	r := w.st.add(g.ID)
	w.setState(r, g.State)
	w.st.ghost[r] = true
	w.ghosts++
	w.grid.insert(&w.st, r)
	return nil
}

// extrapolate returns s moved dt ticks at its own velocity as move() would move it (an axis
// stopped by a world bound loses its velocity); a negative dt moves it back (clamped into the
// world). A state outside the world or with a velocity out of bounds is returned unchanged (the
// caller's validation rejects it).
func (w *World) extrapolate(s wire.EntityState, dt int) wire.EntityState {
	if dt == 0 || (s.VX == 0 && s.VZ == 0) || w.validState(1, s) != nil {
		return s
	}
	axis := func(p, v *int32, lo, hi int32) {
		q := int64(*p) + int64(*v)*int64(dt)
		switch {
		case q < int64(lo):
			q = int64(lo)
			if dt > 0 {
				*v = 0
			}
		case q > int64(hi):
			q = int64(hi)
			if dt > 0 {
				*v = 0
			}
		}
		*p = int32(q)
	}
	axis(&s.X, &s.VX, w.minX, w.maxX)
	axis(&s.Z, &s.VZ, w.minZ, w.maxZ)
	return s
}

// RemoveGhost removes a ghost as of the next Step; false if id is not a ghost here.
func (w *World) RemoveGhost(id wire.EntityID) bool {
	r, ok := w.st.lookup(id)
	if !ok || !w.st.ghost[r] {
		return false
	}
	w.ghosts--
	w.removeRow(r, w.tick+1)
	return true
}

// IsGhost reports whether id is a ghost here.
func (w *World) IsGhost(id wire.EntityID) bool {
	r, ok := w.st.lookup(id)
	return ok && w.st.ghost[r]
}

// GhostIDs returns the ids of the ghosts, ascending, in a new slice.
func (w *World) GhostIDs() []wire.EntityID {
	ids := make([]wire.EntityID, 0, w.ghosts)
	for _, r := range w.st.alive {
		if w.st.ghost[r] {
			ids = append(ids, w.st.ids[r])
		}
	}
	slices.Sort(ids)
	return ids
}

// Promote makes e real here. If e.ID is a ghost here, the ghost's row becomes the real entity
// (views that hold it keep it in the same slot: no leave, no enter); otherwise it is Imported.
// It fails, changing nothing, as Import does. Call it between Steps.
func (w *World) Promote(e Exported) error {
	r, ok := w.st.lookup(e.ID)
	if !ok {
		return w.Import(e)
	}
	if !w.st.ghost[r] {
		return fmt.Errorf("%w: entity %d", ErrDuplicateEntity, e.ID)
	}
	if err := w.validState(e.ID, e.State); err != nil {
		return err
	}
	if e.Client != 0 && w.hasClient(e.Client) {
		return fmt.Errorf("%w: client %d already present", ErrBadImport, e.Client)
	}
	w.setState(r, e.State)
	w.grid.moved(&w.st, r)
	w.st.ghost[r] = false
	w.ghosts--
	if e.Client != 0 {
		w.addClient(e.Client, r, e.LastSeq, e.LastTick, e.View)
	}
	return nil
}

// Demote turns real entity id into a ghost in place and appends its state (as Export would) to
// dst; its client, if any, leaves this World (its session follows the entity to its new
// owner). It reports false, changing nothing, for an unknown id or a ghost. Call it between
// Steps.
func (w *World) Demote(dst []Exported, id wire.EntityID) ([]Exported, bool) {
	r, ok := w.st.lookup(id)
	if !ok || w.st.ghost[r] {
		return dst, false
	}
	e := Exported{ID: id, State: w.st.state(r), LastTick: w.tick}
	if ci := w.st.owner[r]; ci != noRow {
		c := &w.clients[ci]
		e.Client, e.LastSeq = c.id, c.lastSeq
		w.dropClient(ci)
	}
	w.st.ghost[r] = true
	w.ghosts++
	return append(dst, e), true
}

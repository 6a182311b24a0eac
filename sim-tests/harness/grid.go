package harness

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// The static partitioning: the world cut into a g × g grid by the meta nodes' own split
// operations, then dealt round robin by moves, the way sim-tests/cluster cuts and deals its
// static grid (columns first, then each column from low z to high; cell number i by id goes to
// server i%n+1), so the same Config gives the same cells, ids and owners.

// gridLine is one cut of the grid: the cell holding the point (px, pz) must have a bound at
// At on Axis (its low edge).
type gridLine struct {
	px, pz float64
	axis   raftmeta.Axis
	at     float64
}

// gridLines lists the grid's cuts in the order they are made.
func gridLines(w raftmeta.World, g int) []gridLine {
	x0, z0 := w.Min[0], w.Min[1]
	sx, sz := (w.Max[0]-x0)/float64(g), (w.Max[1]-z0)/float64(g)
	var lines []gridLine
	for i := 1; i < g; i++ { // columns
		lines = append(lines, gridLine{px: x0 + sx*float64(i) + sx/2, pz: z0 + sz/2, axis: raftmeta.AxisX, at: x0 + sx*float64(i)})
	}
	for col := range g {
		for j := 1; j < g; j++ {
			lines = append(lines, gridLine{px: x0 + sx*float64(col) + sx/2, pz: z0 + sz*float64(j) + sz/2, axis: raftmeta.AxisZ, at: z0 + sz*float64(j)})
		}
	}
	return lines
}

// cellAt returns the cell of m holding (x, z).
func cellAt(m *raftmeta.Map, x, z float64) (raftmeta.Cell, bool) {
	for _, c := range m.Cells {
		b := c.Bounds
		if x >= b[0] && x < b[2] && z >= b[1] && z < b[3] {
			return c, true
		}
	}
	return raftmeta.Cell{}, false
}

// done reports whether the cut is made in m: the cell holding the line's point starts at it.
func (l gridLine) done(m *raftmeta.Map) (raftmeta.Cell, bool, error) {
	c, ok := cellAt(m, l.px, l.pz)
	if !ok {
		return c, false, fmt.Errorf("harness: map version %d: no cell holds (%v, %v)", m.Version, l.px, l.pz)
	}
	low := c.Bounds[0]
	if l.axis == raftmeta.AxisZ {
		low = c.Bounds[1]
	}
	return c, math.Abs(low-l.at) <= 1e-9*math.Max(1, math.Abs(l.at)), nil
}

// cutGrid cuts the world into the static grid, deals its cells round robin to the cell
// servers, and waits until the map shows exactly that with no change pending. Every step
// starts from a fresh read of the map, so a retried request (after a leader election) that
// had been applied is seen as done rather than applied twice.
func (c *Cluster) cutGrid(ctx context.Context) error {
	g := GridSide(c.Cfg.Cells)
	m, err := c.readMap(ctx)
	if err != nil {
		return err
	}
	if len(m.Cells) != 1 && len(m.Cells) != g*g {
		return fmt.Errorf("harness: static partitioning: the map (version %d) has %d cells, neither the whole world nor a %d×%d grid", m.Version, len(m.Cells), g, g)
	}
	var fatal error // an answer that no retry changes
	for _, l := range gridLines(m.World, g) {
		if err := c.waitFor(ctx, fmt.Sprintf("the cut %s=%v of the static grid", l.axis, l.at), func(ctx context.Context) (bool, string) {
			m, err := c.Meta.Map(ctx, raftmeta.ReadOptions{})
			if err != nil {
				return false, err.Error()
			}
			cell, ok, err := l.done(m)
			if err != nil || ok {
				return ok, fmt.Sprint(err)
			}
			if len(m.Changes) > 0 {
				return false, fmt.Sprintf("%d changes pending", len(m.Changes))
			}
			res, err := c.Meta.Split(ctx, raftmeta.Split{Cell: cell.ID, Epoch: cell.Epoch, Axis: l.axis, At: l.at})
			if err != nil {
				if isFatal(err) {
					fatal = fmt.Errorf("harness: static grid: split of cell %d at %s=%v: %w", cell.ID, l.axis, l.at, err)
					return true, ""
				}
				return false, fmt.Sprintf("split of cell %d: %v", cell.ID, err)
			}
			// Both halves keep the owner: applied at once, unless a change started (then the
			// next reads wait for it).
			return res.Change == 0, fmt.Sprintf("split of cell %d is change %d", cell.ID, res.Change)
		}); err != nil {
			return err
		}
		if fatal != nil {
			return fatal
		}
	}
	n := c.Cfg.Cells
	owner := func(i int) raftmeta.ServerID { return raftmeta.ServerID(i%n + 1) }
	moved := map[raftmeta.CellID]raftmeta.Epoch{} // the epoch each cell had when its move was sent
	if err := c.waitFor(ctx, fmt.Sprintf("the %d×%d static grid dealt to %d cell servers", g, g, n), func(ctx context.Context) (bool, string) {
		m, err := c.Meta.Map(ctx, raftmeta.ReadOptions{})
		if err != nil {
			return false, err.Error()
		}
		if len(m.Cells) != g*g {
			return false, fmt.Sprintf("map version %d: %d cells", m.Version, len(m.Cells))
		}
		wrong := 0
		var errs []error
		for i, cell := range m.Cells {
			if cell.Owner == owner(i) {
				continue
			}
			wrong++
			if cell.State != raftmeta.CellActive {
				continue // a move under way
			}
			if e, sent := moved[cell.ID]; sent && e == cell.Epoch && len(m.Changes) > 0 {
				continue // sent for this epoch; its change may not be visible in this read yet
			}
			moved[cell.ID] = cell.Epoch
			if _, err := c.Meta.Move(ctx, raftmeta.Move{Cell: cell.ID, Epoch: cell.Epoch, To: owner(i)}); err != nil &&
				!errors.Is(err, raftmeta.ErrCellMigrating) && !errors.Is(err, raftmeta.ErrStaleEpoch) {
				err = fmt.Errorf("move of cell %d to server %d: %w", cell.ID, owner(i), err)
				if isFatal(err) {
					fatal = fmt.Errorf("harness: static grid: %w", err)
					return true, ""
				}
				errs = append(errs, err)
			}
		}
		if wrong > 0 || len(m.Changes) > 0 {
			return false, fmt.Sprintf("map version %d: %d cells to move, %d changes pending %v", m.Version, wrong, len(m.Changes), errors.Join(errs...))
		}
		if ok, why := c.cellsAlive(m); !ok {
			return false, why
		}
		return true, ""
	}); err != nil {
		return err
	}
	if fatal != nil {
		return fatal
	}
	c.log.Info("static grid committed", "grid", fmt.Sprintf("%d×%d", g, g), "cells", g*g, "servers", n)
	return nil
}

// isFatal reports whether the meta nodes refused an operation for a reason no retry changes
// (a grid too fine for the minimum cell size, a server that is not there).
func isFatal(err error) bool {
	for _, e := range []error{raftmeta.ErrCellTooSmall, raftmeta.ErrOutOfBounds, raftmeta.ErrBadAxis,
		raftmeta.ErrBadRequest, raftmeta.ErrUnknownServer, raftmeta.ErrServerDraining} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

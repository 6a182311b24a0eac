package mapview

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// ErrNoCell is returned (wrapped) when a map has no cell with the ID asked for.
var ErrNoCell = errors.New("no such cell")

// FindCell returns the cell of m with the given ID.
func FindCell(m raftmeta.Map, id raftmeta.CellID) (raftmeta.Cell, bool) {
	for _, c := range m.Cells {
		if c.ID == id {
			return c, true
		}
	}
	return raftmeta.Cell{}, false
}

// FindServer returns the registered server of m with the given ID.
func FindServer(m raftmeta.Map, id raftmeta.ServerID) (raftmeta.Server, bool) {
	for _, s := range m.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return raftmeta.Server{}, false
}

// MergePair returns the two cells a merge of cell id joins: id and its sibling in the k-d tree,
// as the low and high children of their parent. It fails when id is not a cell of m, when it is
// the whole world, or when its sibling is itself split (those cells must be merged first).
func MergePair(m raftmeta.Map, id raftmeta.CellID) (low, high raftmeta.Cell, err error) {
	if _, ok := FindCell(m, id); !ok {
		return low, high, fmt.Errorf("cell %d: %w", id, ErrNoCell)
	}
	if m.Tree == nil {
		return low, high, fmt.Errorf("the map has no tree to find cell %d's sibling in", id)
	}
	if isLeaf(m.Tree) && m.Tree.Cell == id {
		return low, high, fmt.Errorf("cell %d is the whole world: it has no sibling to merge with", id)
	}
	parent := findParent(m.Tree, id)
	if parent == nil {
		return low, high, fmt.Errorf("cell %d is not in the map's tree", id)
	}
	sib := parent.High
	if parent.High.Cell == id && isLeaf(parent.High) {
		sib = parent.Low
	}
	if !isLeaf(sib) {
		ids := leaves(sib, nil)
		return low, high, fmt.Errorf("cell %d's sibling is split into cells %s: merge those first", id, joinIDs(ids))
	}
	var ok bool
	if low, ok = FindCell(m, parent.Low.Cell); !ok {
		return low, high, fmt.Errorf("cell %d (in the tree): %w", parent.Low.Cell, ErrNoCell)
	}
	if high, ok = FindCell(m, parent.High.Cell); !ok {
		return low, high, fmt.Errorf("cell %d (in the tree): %w", parent.High.Cell, ErrNoCell)
	}
	return low, high, nil
}

// isLeaf reports whether n is a leaf (a cell).
func isLeaf(n *raftmeta.TreeNode) bool {
	return n != nil && n.Low == nil && n.High == nil && n.Cell != 0
}

// findParent returns the internal node one of whose children is the leaf holding cell id.
func findParent(n *raftmeta.TreeNode, id raftmeta.CellID) *raftmeta.TreeNode {
	if n == nil || isLeaf(n) {
		return nil
	}
	for _, ch := range []*raftmeta.TreeNode{n.Low, n.High} {
		if isLeaf(ch) && ch.Cell == id {
			if n.Low == nil || n.High == nil {
				return nil // malformed: a parent needs both children
			}
			return n
		}
	}
	if p := findParent(n.Low, id); p != nil {
		return p
	}
	return findParent(n.High, id)
}

// leaves appends the cell IDs under n, low side first.
func leaves(n *raftmeta.TreeNode, ids []raftmeta.CellID) []raftmeta.CellID {
	switch {
	case n == nil:
		return ids
	case isLeaf(n):
		return append(ids, n.Cell)
	}
	return leaves(n.High, leaves(n.Low, ids))
}

func joinIDs(ids []raftmeta.CellID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ", ")
}

// SplitPoint picks where a manual split of c cuts when the operator does not say: on axis, or
// when axis is "" on the cell's longer side (x when square), at the cell's midpoint on it.
//
// The midpoint is only the operator's default. The partitioner splits a hot cell at the median
// of its entities instead (DESIGN.md §2), so that each half takes about half the load.
func SplitPoint(c raftmeta.Cell, axis raftmeta.Axis) (raftmeta.Axis, float64, error) {
	b := c.Bounds
	if axis == "" {
		axis = raftmeta.AxisX
		if b[3]-b[1] > b[2]-b[0] {
			axis = raftmeta.AxisZ
		}
	}
	switch axis {
	case raftmeta.AxisX:
		return axis, b[0] + (b[2]-b[0])/2, nil
	case raftmeta.AxisZ:
		return axis, b[1] + (b[3]-b[1])/2, nil
	}
	return "", 0, fmt.Errorf("axis %q: want x or z", axis)
}

package mapview

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// errNoWorld is returned when a map has no (or an empty) world to draw.
var errNoWorld = errors.New("mapview: the map has no world (not initialised yet?)")

// view is a Map prepared for rendering: servers and cells in ID order, owner letters, and the
// per-cell load each owner reported.
type view struct {
	m       raftmeta.Map
	servers []raftmeta.Server // by ID
	cells   []raftmeta.Cell   // by ID
	slot    map[raftmeta.ServerID]int
	load    map[raftmeta.CellID]raftmeta.CellLoad // from the owner's report
	count   map[raftmeta.ServerID]int             // cells per owner (0: unowned)
}

func newView(m raftmeta.Map) *view {
	v := &view{
		m:       m,
		servers: slices.Clone(m.Servers),
		cells:   slices.Clone(m.Cells),
		slot:    map[raftmeta.ServerID]int{},
		load:    map[raftmeta.CellID]raftmeta.CellLoad{},
		count:   map[raftmeta.ServerID]int{},
	}
	slices.SortStableFunc(v.servers, func(a, b raftmeta.Server) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortStableFunc(v.cells, func(a, b raftmeta.Cell) int { return cmp.Compare(a.ID, b.ID) })
	for i, s := range v.servers {
		v.slot[s.ID] = i
	}
	owner := map[raftmeta.CellID]raftmeta.ServerID{}
	for _, c := range v.cells {
		owner[c.ID] = c.Owner
		v.count[c.Owner]++
	}
	// A cell's load is the one its owner reported; a report from a former owner (the cell moved
	// since) is used only when the owner has not reported the cell yet.
	for _, s := range v.servers {
		for _, cl := range s.Load.Cells {
			o, ok := owner[cl.Cell]
			if !ok {
				continue
			}
			if _, seen := v.load[cl.Cell]; !seen || o == s.ID {
				v.load[cl.Cell] = cl
			}
		}
	}
	return v
}

// world returns the world's corners and checks it is not empty.
func (v *view) world() (x0, z0, x1, z1 float64, err error) {
	w := v.m.World
	x0, z0, x1, z1 = w.Min[0], w.Min[1], w.Max[0], w.Max[1]
	if !(x1 > x0 && z1 > z0) || math.IsInf(x1-x0, 0) || math.IsInf(z1-z0, 0) {
		return 0, 0, 0, 0, errNoWorld
	}
	return x0, z0, x1, z1, nil
}

// server returns the registered server with id.
func (v *view) server(id raftmeta.ServerID) (raftmeta.Server, bool) {
	i, ok := v.slot[id]
	if !ok {
		return raftmeta.Server{}, false
	}
	return v.servers[i], true
}

// Owner marks.
const (
	markUnowned = '.'
	markUnknown = '?'
)

// slotLetter is the letter of the i-th server in ID order.
func slotLetter(i int) byte {
	switch {
	case i < 26:
		return byte('A' + i)
	case i < 36:
		return byte('0' + i - 26)
	}
	return '*'
}

// letter is the mark of server id: its letter, '.' for none, '?' for an unregistered server.
func (v *view) letter(id raftmeta.ServerID) byte {
	if id == 0 {
		return markUnowned
	}
	i, ok := v.slot[id]
	if !ok {
		return markUnknown
	}
	return slotLetter(i)
}

// cellMark is the character that fills cell c: its owner's letter, lower case when migrating.
func (v *view) cellMark(c raftmeta.Cell) byte {
	l := v.letter(c.Owner)
	if c.State == raftmeta.CellMigrating && l >= 'A' && l <= 'Z' {
		l += 'a' - 'A'
	}
	return l
}

// aliveServers counts the servers that are alive.
func (v *view) aliveServers() int {
	n := 0
	for _, s := range v.servers {
		if s.Alive {
			n++
		}
	}
	return n
}

// serverEntities is a server's entity count: its report's total, or the sum over its cells.
func serverEntities(s raftmeta.Server) int {
	if s.Load.Entities != 0 {
		return s.Load.Entities
	}
	n := 0
	for _, c := range s.Load.Cells {
		n += c.Entities
	}
	return n
}

// num formats a coordinate or length: at most two decimals, no trailing zeros, no exponent.
func num(f float64) string {
	r := math.Round(f*100) / 100
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// micros formats a duration given in microseconds.
func micros(us int64) string {
	switch {
	case us < 1000:
		return strconv.FormatInt(us, 10) + "us"
	case us < 1000000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(float64(us)/1e6, 'f', 2, 64) + "s"
}

// rate formats bytes per second.
func rate(b int64) string {
	switch {
	case b < 1000:
		return strconv.FormatInt(b, 10) + " B/s"
	case b < 1000000:
		return strconv.FormatFloat(float64(b)/1e3, 'f', 1, 64) + " kB/s"
	}
	return strconv.FormatFloat(float64(b)/1e6, 'f', 1, 64) + " MB/s"
}

// plural returns "1 cell", "2 cells".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// serverState is "alive", "dead", and ", draining" when it is.
func serverState(s raftmeta.Server) string {
	st := "dead"
	if s.Alive {
		st = "alive"
	}
	if s.Draining {
		st += ", draining"
	}
	return st
}

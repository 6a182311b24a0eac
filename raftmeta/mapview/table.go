package mapview

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// Summary writes one line about the map as a whole: version, world, cell and server counts.
func Summary(w io.Writer, m raftmeta.Map) error {
	v := newView(m)
	wd := m.World
	_, err := fmt.Fprintf(w, "map version %d (index %d), world [%s,%s]-[%s,%s] (%s x %s m), min cell %s m, %s, %s (%d alive)\n",
		m.Version, m.Index, num(wd.Min[0]), num(wd.Min[1]), num(wd.Max[0]), num(wd.Max[1]),
		num(wd.Max[0]-wd.Min[0]), num(wd.Max[1]-wd.Min[1]), num(m.MinCellSize),
		plural(len(v.cells), "cell"), plural(len(v.servers), "server"), v.aliveServers())
	return err
}

// Table writes the cells of m as a table in ID order: bounds, size, owner (with its letter in
// the drawings, and whether it is dead or draining), epoch, state, and the load the owner last
// reported for the cell ("-" when it has not).
func Table(w io.Writer, m raftmeta.Map) error {
	v := newView(m)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tBOUNDS (x0,z0 x1,z1)\tSIZE (m)\tOWNER\tEPOCH\tSTATE\tENTITIES\tTICK P99\tOUT")
	for _, c := range v.cells {
		b := c.Bounds
		ent, p99, out := "-", "-", "-"
		if l, ok := v.load[c.ID]; ok {
			ent, p99, out = strconv.Itoa(l.Entities), micros(l.TickP99Micros), rate(l.BytesOut)
		}
		fmt.Fprintf(tw, "%d\t%s,%s %s,%s\t%s x %s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			c.ID, num(b[0]), num(b[1]), num(b[2]), num(b[3]), num(b[2]-b[0]), num(b[3]-b[1]),
			v.ownerText(c.Owner), c.Epoch, c.State, ent, p99, out)
	}
	return tw.Flush()
}

// ownerText is "2 (B)", "2 (B, dead)", "-" for none, "5 (?, unregistered)".
func (v *view) ownerText(id raftmeta.ServerID) string {
	if id == 0 {
		return "-"
	}
	s, ok := v.server(id)
	switch {
	case !ok:
		return fmt.Sprintf("%d (?, unregistered)", id)
	case !s.Alive:
		return fmt.Sprintf("%d (%c, dead)", id, v.letter(id))
	case s.Draining:
		return fmt.Sprintf("%d (%c, draining)", id, v.letter(id))
	}
	return fmt.Sprintf("%d (%c)", id, v.letter(id))
}

// Servers writes the registered servers of m as a table in ID order: letter, addresses, state,
// capacity, cells owned, and their last load report (entities, share of capacity, tick p99,
// bytes out). Lease expiry is printed in UTC to the millisecond.
func Servers(w io.Writer, m raftmeta.Map) error {
	v := newView(m)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tMAP\tADDR\tCLIENT ADDR\tSTATE\tCELLS\tENTITIES\tCAPACITY\tLOAD\tTICK P99\tOUT\tLEASE EXPIRES (UTC)")
	for i, s := range v.servers {
		load := "-"
		ent := serverEntities(s)
		if s.Capacity > 0 {
			load = strconv.Itoa(int(float64(ent)*100/float64(s.Capacity)+0.5)) + "%"
		}
		lease := "-"
		if s.LeaseExpires != 0 {
			lease = time.Unix(0, s.LeaseExpires).UTC().Format("2006-01-02 15:04:05.000")
		}
		fmt.Fprintf(tw, "%d\t%c\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n",
			s.ID, slotLetter(i), dash(s.Addr), dash(s.ClientAddr), serverState(s), v.count[s.ID], ent, s.Capacity,
			load, micros(s.Load.TickP99Micros), rate(s.Load.BytesOut), lease)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

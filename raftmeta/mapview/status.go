package mapview

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// Status writes the Raft cluster as node st (GET /v1/status) sees it: who leads, then one row
// per member of the configuration. views, when not nil, holds each member's own status by node
// ID, to show its state and progress; a member missing from views is shown as unreachable.
func Status(w io.Writer, st raftmeta.Status, views map[uint64]*raftmeta.Status) error {
	leader := "none known (an election is under way, or this node is cut off from the majority)"
	if l := st.Leader; l != nil {
		leader = fmt.Sprintf("node %d (raft %s, http %s)", l.ID, dash(l.RaftAddr), dash(l.HTTPAddr))
	}
	fmt.Fprintf(w, "leader: %s\n", leader)
	fmt.Fprintf(w, "asked node %d (%s): term %d, map version %d, log last %d, commit %d, applied %d",
		st.ID, dash(st.State), st.Term, st.Version, st.LastIndex, st.CommitIndex, st.AppliedIndex)
	if st.State != "leader" && st.LastContactMS >= 0 {
		fmt.Fprintf(w, ", last contact with the leader %d ms ago", st.LastContactMS)
	}
	fmt.Fprintf(w, "\n\n")

	peers := slices.Clone(st.Peers)
	slices.SortFunc(peers, func(a, b raftmeta.PeerStatus) int { return cmp.Compare(a.ID, b.ID) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if views == nil {
		fmt.Fprintln(tw, "NODE\tROLE\tSUFFRAGE\tRAFT ADDR\tHTTP ADDR")
	} else {
		fmt.Fprintln(tw, "NODE\tSTATE\tSUFFRAGE\tRAFT ADDR\tHTTP ADDR\tTERM\tAPPLIED\tMAP VERSION")
	}
	for _, p := range peers {
		id := strconv.FormatUint(p.ID, 10)
		if p.ID == st.ID {
			id += "*"
		}
		if views == nil {
			role := "-"
			switch {
			case p.ID == st.ID && st.State != "":
				role = st.State
			case p.Leader:
				role = "leader"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id, role, dash(p.Suffrage), dash(p.RaftAddr), dash(p.HTTPAddr))
			continue
		}
		v, ok := views[p.ID]
		if !ok || v == nil {
			fmt.Fprintf(tw, "%s\tunreachable\t%s\t%s\t%s\t-\t-\t-\n", id, dash(p.Suffrage), dash(p.RaftAddr), dash(p.HTTPAddr))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", id, dash(v.State), dash(p.Suffrage), dash(p.RaftAddr), dash(p.HTTPAddr),
			v.Term, v.AppliedIndex, v.Version)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "(* the node that answered)\n")
	return err
}

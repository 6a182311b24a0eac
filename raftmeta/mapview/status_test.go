package mapview

import (
	"bytes"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

func statusFixture() raftmeta.Status {
	peer := func(id uint64, leader bool) raftmeta.PeerStatus {
		return raftmeta.PeerStatus{ID: id, RaftAddr: "127.0.0.1:740" + itoa(int(id)), HTTPAddr: "127.0.0.1:830" + itoa(int(id)),
			Suffrage: "voter", Leader: leader}
	}
	l := peer(1, true)
	return raftmeta.Status{
		ID: 2, RaftAddr: "127.0.0.1:7402", HTTPAddr: "127.0.0.1:8302", State: "follower", Leader: &l,
		Term: 4, LastIndex: 120, CommitIndex: 120, AppliedIndex: 119, Version: 97, LastContactMS: 12,
		Peers: []raftmeta.PeerStatus{peer(3, false), l, peer(2, false)},
	}
}

func TestStatusGolden(t *testing.T) {
	st := statusFixture()
	self := st
	lead := st
	lead.ID, lead.State, lead.AppliedIndex, lead.Version = 1, "leader", 120, 98
	views := map[uint64]*raftmeta.Status{1: &lead, 2: &self} // node 3 does not answer
	var buf bytes.Buffer
	if err := Status(&buf, st, views); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.txt", buf.Bytes())

	buf.Reset()
	if err := Status(&buf, st, nil); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-peers.txt", buf.Bytes())
}

func TestStatusNoLeader(t *testing.T) {
	st := statusFixture()
	st.Leader, st.State = nil, "candidate"
	var buf bytes.Buffer
	if err := Status(&buf, st, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "leader: none known") {
		t.Errorf("no-leader status:\n%s", buf.String())
	}
}

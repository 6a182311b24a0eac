package cellserver

import (
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// pair is two Members (servers 1 and 2) and the map, driven by hand: every message goes
// through the wire encoding, and the test decides what is delivered.
type pair struct {
	t     *testing.T
	fsm   *raftmeta.FSM
	index uint64
	m     [3]*Member // 1-based
	tick  wire.Tick
	sent  [3][]PeerOut // what each server sent in its last Step, decoded again
	stage [3][]raftmeta.Staged
	outs  [3]*MemberOutput
}

func newPair(t *testing.T) *pair {
	p := &pair{t: t, fsm: raftmeta.NewFSM()}
	p.apply(raftmeta.InitWorld{World: raftmeta.World{Max: [2]float64{512, 512}, Epoch: 1}, MinCellSize: 16})
	for id := raftmeta.ServerID(1); id <= 2; id++ {
		p.apply(raftmeta.Register{Server: id, Addr: "x", Capacity: 100, Now: 1, LeaseTTL: 1e12})
		cfg := DefaultMemberConfig(id, 1)
		cfg.World.WorldMax = [2]float64{512, 512}
		m, err := NewMember(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.m[id] = m
	}
	// Cell 1 = x < 256 on server 1, the high half on server 2.
	mp := p.fsm.Map()
	p.apply(raftmeta.Split{Cell: mp.Cells[0].ID, Epoch: mp.Cells[0].Epoch, Axis: raftmeta.AxisX, At: 256, NewOwner: 2})
	return p
}

func (p *pair) apply(c raftmeta.Command) *raftmeta.ApplyResult {
	p.t.Helper()
	data, err := raftmeta.EncodeCommand(c)
	if err != nil {
		p.t.Fatal(err)
	}
	p.index++
	res := p.fsm.Apply(&raft.Log{Index: p.index, Type: raft.LogCommand, Data: data}).(*raftmeta.ApplyResult)
	if res.Err != nil {
		p.t.Fatalf("%T: %v", c, res.Err)
	}
	return res
}

// step runs one tick on server id with the current map and the given messages.
func (p *pair) step(id raftmeta.ServerID, in MemberInput, msgs ...PeerIn) *MemberOutput {
	p.t.Helper()
	mp := p.fsm.Map()
	in.Tick, in.Map, in.Peer = p.tick, &mp, msgs
	out := p.m[id].Step(&in)
	p.sent[id] = p.sent[id][:0]
	for _, s := range out.Send {
		b, err := s.Msg.AppendFrame(nil)
		if err != nil {
			p.t.Fatal(err)
		}
		typ, payload, _, err := wire.SplitPeerFrame(b)
		if err != nil {
			p.t.Fatal(err)
		}
		msg, err := wire.DecodePeer(typ, payload)
		if err != nil {
			p.t.Fatal(err)
		}
		p.sent[id] = append(p.sent[id], PeerOut{To: s.To, Msg: msg})
	}
	p.stage[id] = slices.Clone(out.Staged)
	p.outs[id] = out
	return out
}

// from returns what server id sent in its last step, as received by the other.
func (p *pair) from(id raftmeta.ServerID) []PeerIn {
	var in []PeerIn
	for _, s := range p.sent[id] {
		in = append(in, PeerIn{From: id, Msg: s.Msg})
	}
	return in
}

func (p *pair) real(id raftmeta.ServerID) []wire.EntityID {
	r, _ := p.m[id].Holdings()
	return r
}

func (p *pair) inFlight(id raftmeta.ServerID) []wire.EntityID {
	_, f := p.m[id].Holdings()
	return f
}

// TestHandoffAcrossBorder: a session homed on server 1 walks into server 2's cell; its entity
// is handed off (frozen for no tick), its input sent meanwhile is held and forwarded, the home
// then routes to the new owner, whose frames come back to the home.
func TestHandoffAcrossBorder(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	out := p.step(1, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{255.9, 100}}}})
	p.step(2, MemberInput{})
	if len(out.Welcomes) != 1 {
		t.Fatalf("welcomes %+v", out.Welcomes)
	}
	e := out.Welcomes[0].Entity
	p.tick = 2
	p.step(1, MemberInput{Inputs: []ClientInput{{Client: 5, Input: wire.Input{Seq: 1, MoveX: 127}}}})
	// It crossed x = 256 this tick: handed to server 2.
	if got := p.inFlight(1); !slices.Equal(got, []wire.EntityID{e}) || len(p.real(1)) != 0 {
		t.Fatalf("after crossing: server 1 real %v, in flight %v", p.real(1), got)
	}
	handoff := p.from(1)
	p.tick = 3
	// An input arrives at the home while the entity is in flight: held.
	p.step(1, MemberInput{Inputs: []ClientInput{{Client: 5, Input: wire.Input{Seq: 2, MoveZ: 127}}}})
	if len(p.sent[1]) != 0 {
		t.Fatalf("server 1 sent %d messages for an entity in flight; the input should be held", len(p.sent[1]))
	}
	p.step(2, MemberInput{}, handoff...)
	if !slices.Equal(p.real(2), []wire.EntityID{e}) {
		t.Fatalf("server 2 real %v after the handoff", p.real(2))
	}
	ack := p.from(2)
	if len(ack) != 2 { // the ack, and the first frame for the session (to its home)
		t.Fatalf("server 2 sent %+v", p.sent[2])
	}
	p.tick = 4
	p.step(1, MemberInput{}, ack...)
	if len(p.inFlight(1)) != 0 || len(p.outs[1].Frames) != 1 {
		t.Fatalf("server 1 after the ack: in flight %v, frames %d", p.inFlight(1), len(p.outs[1].Frames))
	}
	// The held input was forwarded to server 2.
	fwd := p.from(1)
	if len(fwd) != 1 || fwd[0].Msg.(*wire.InputMsg).Input.Seq != 2 || p.sent[1][0].To != 2 {
		t.Fatalf("server 1 sent %+v, want the held input forwarded to 2", p.sent[1])
	}
	p.step(2, MemberInput{}, fwd...)
	if st, _ := p.m[2].World().Entity(e); st.VZ <= 0 {
		t.Fatalf("the forwarded input was not applied: %+v", st)
	}
	if s := p.m[1].Stats(); s.FrozenHandoff[0]+s.FrozenHandoff[1] != 0 || p.m[2].Stats().FrozenHandoff[0] != 1 {
		t.Fatalf("frozen ticks: %+v", p.m[2].Stats().FrozenHandoff)
	}
	// The home now routes straight to the owner.
	p.tick = 5
	p.step(1, MemberInput{Inputs: []ClientInput{{Client: 5, Input: wire.Input{Seq: 3}}}})
	if len(p.sent[1]) != 1 || p.sent[1][0].To != 2 {
		t.Fatalf("home sent %+v, want the input straight to 2", p.sent[1])
	}
}

// TestHandoffRetryAndReject: a lost ack makes the sender retry; the receiver answers the same
// transfer id as a duplicate, never importing twice. A receiver whose map disagrees rejects,
// and the sender takes the entity back.
func TestHandoffRetryAndReject(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	out := p.step(1, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{300, 100}}}})
	e := out.Welcomes[0].Entity
	handoff := p.from(1) // spawned in server 2's cell: handed off at once
	p.step(2, MemberInput{}, handoff...)
	// The ack is lost; after RetryTicks the handoff is sent again.
	for p.tick = 2; len(p.sent[1]) == 0; p.tick++ {
		p.step(1, MemberInput{})
	}
	retry := p.from(1)
	p.step(2, MemberInput{}, retry...)
	if got := p.sent[2][0].Msg.(*wire.HandoffAckMsg).Result; got != wire.HandoffDuplicate {
		t.Fatalf("retry answered %d, want duplicate", got)
	}
	p.step(1, MemberInput{}, p.from(2)...)
	if len(p.inFlight(1)) != 0 || !slices.Equal(p.real(2), []wire.EntityID{e}) || len(p.real(1)) != 0 {
		t.Fatalf("after the duplicate ack: 1 real %v in flight %v; 2 real %v", p.real(1), p.inFlight(1), p.real(2))
	}

	// A handoff to a server whose map says it does not own the place: rejected, taken back.
	q := newPair(t)
	q.tick = 1
	q.step(1, MemberInput{Opens: []SessionOpen{{Client: 6, Spawn: [2]float64{300, 100}}}})
	h := q.from(1)
	h[0].Msg.(*wire.HandoffMsg).Entity.X = wire.QuantisePos(10) // now inside server 1's cell
	q.step(2, MemberInput{}, h...)
	if got := q.sent[2][0].Msg.(*wire.HandoffAckMsg).Result; got != wire.HandoffRejected {
		t.Fatalf("answered %d, want rejected", got)
	}
	q.tick = 2
	q.step(1, MemberInput{}, q.from(2)...)
	if len(q.real(1)) != 1 || len(q.inFlight(1)) != 0 || q.m[1].Stats().HandoffsRejected != 1 {
		t.Fatalf("after the rejection: real %v, in flight %v", q.real(1), q.inFlight(1))
	}
}

// TestMigrationCommitAndAbort: a prepared move of cell 1 to server 2 freezes its entities at
// the tick boundary and ships them; server 2 stages them and proposes Staged; the commit makes
// them real on 2 and forgotten on 1. An aborted change gives them back to the source.
func TestMigrationCommitAndAbort(t *testing.T) {
	for _, commit := range []bool{true, false} {
		p := newPair(t)
		p.tick = 1
		out := p.step(1, MemberInput{Opens: []SessionOpen{{Client: 1, Spawn: [2]float64{50, 50}}, {Client: 2, Spawn: [2]float64{60, 50}}}})
		p.step(2, MemberInput{})
		ids := []wire.EntityID{out.Welcomes[0].Entity, out.Welcomes[1].Entity}
		mp := p.fsm.Map()
		c := mp.Cells[0]
		op, _ := raftmeta.EncodeCommand(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: 2})
		res := p.apply(raftmeta.Prepare{Op: op, Now: 2, Timeout: 1e9})
		if res.Change == 0 {
			t.Fatal("the move was applied at once, not prepared")
		}
		p.tick = 2
		p.step(1, MemberInput{})
		if !slices.Equal(p.inFlight(1), ids) || len(p.real(1)) != 0 {
			t.Fatalf("source after prepare: real %v, in flight %v", p.real(1), p.inFlight(1))
		}
		migrate := p.from(1)
		p.step(2, MemberInput{}, migrate...)
		if len(p.stage[2]) != 1 || len(p.real(2)) != 0 {
			t.Fatalf("target: staged proposals %+v, real %v", p.stage[2], p.real(2))
		}
		if commit {
			p.apply(p.stage[2][0])
		} else {
			p.apply(raftmeta.Abort{Change: res.Change, Reason: "test"})
		}
		p.tick = 3
		p.step(2, MemberInput{})
		p.step(1, MemberInput{})
		want1, want2 := []wire.EntityID(nil), ids
		if !commit {
			want1, want2 = ids, nil
		}
		if !slices.Equal(p.real(1), want1) || !slices.Equal(p.real(2), want2) || len(p.inFlight(1)) != 0 {
			t.Fatalf("commit=%v: real on 1 %v, on 2 %v, in flight on 1 %v", commit, p.real(1), p.real(2), p.inFlight(1))
		}
		if commit {
			if s := p.m[2].Stats(); s.MigratedIn != 2 || s.FrozenMigration[0] != 2 {
				t.Fatalf("target stats %+v", s)
			}
			// The sessions' inputs now go to server 2 via the forward table, then straight.
			p.tick = 4
			p.step(1, MemberInput{Inputs: []ClientInput{{Client: 1, Input: wire.Input{Seq: 1, MoveX: 10}}}})
			if len(p.sent[1]) != 1 || p.sent[1][0].To != 2 {
				t.Fatalf("input after the migration sent %+v", p.sent[1])
			}
		}
	}
}

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
		cfg.HandoffHysteresis = 0 // handed off the tick it crosses (TestHandoffHysteresis has it on)
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
	return p.stepm(id, p.snap(), in, msgs...)
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
	var types []wire.PeerType
	for _, m := range ack {
		types = append(types, m.Msg.Type())
	}
	// The ack, the first frame for the session (to its home: its view came ahead of it, in a
	// ViewMsg, so it needs no tick to settle), and a ghost of the entity for server 1 (it is
	// right by server 1's cell).
	if !slices.Equal(types, []wire.PeerType{wire.PeerHandoffAck, wire.PeerFrame, wire.PeerGhosts}) {
		t.Fatalf("server 2 sent %v", types)
	}
	if !p.m[1].World().IsGhost(e) {
		t.Fatal("server 1 did not keep the handed-off entity as a ghost")
	}
	p.tick = 4
	p.step(1, MemberInput{}, ack...)
	if len(p.inFlight(1)) != 0 || len(p.outs[1].Frames) != 1 {
		t.Fatalf("server 1 after the ack: in flight %v, frames %d", p.inFlight(1), len(p.outs[1].Frames))
	}
	if g := p.m[1].Ghosts(); len(g) != 1 || g[0].ID != e || g[0].Owner != 2 || g[0].Auth != 2 {
		t.Fatalf("server 1's ghosts %+v: want entity %d from server 2 at authority 2", g, e)
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
	p.tick = 10 // a measuring tick: server 1 holds only a ghost, and does not count it as load
	p.step(1, MemberInput{})
	if l := p.m[1].Load(); l.Entities != 0 || !p.m[1].World().IsGhost(e) {
		t.Fatalf("server 1 reports %d entities (ghost held: %v)", l.Entities, p.m[1].World().IsGhost(e))
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
	var h []PeerIn
	for _, m := range q.from(1) {
		if hm, ok := m.Msg.(*wire.HandoffMsg); ok { // (the ViewMsg ahead of it is left out)
			hm.Entity.X = wire.QuantisePos(10) // now inside server 1's cell
			h = append(h, m)
		}
	}
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

// stepm steps server id with map mp (nil: no new map).
func (p *pair) stepm(id raftmeta.ServerID, mp *raftmeta.Map, in MemberInput, msgs ...PeerIn) *MemberOutput {
	p.t.Helper()
	in.Tick, in.Map, in.Peer = p.tick, mp, msgs
	out := p.m[id].Step(&in)
	p.sent[id] = p.sent[id][:0]
	for _, s := range out.Send {
		b, err := s.Msg.AppendFrame(nil)
		if err != nil {
			p.t.Fatal(err)
		}
		typ, payload, _, _ := wire.SplitPeerFrame(b)
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

func (p *pair) snap() *raftmeta.Map { mp := p.fsm.Map(); return &mp }

// A Rejected answer and a retry of the same transfer id cross while the receiver's map
// catches up: the receiver answers the retry as it answered the first time, so the sender's
// take-back leaves the entity on one server only. (Found in review; the simulation found it too
// with longer delays.)
func TestHandoffRejectionAndRetryCross(t *testing.T) {
	p := newPair(t)
	v0 := p.snap()
	p.tick = 1
	p.stepm(1, v0, MemberInput{})
	p.stepm(2, v0, MemberInput{})
	// Prepare: move cell 1 (server 1) to server 2; server 1 has nothing to freeze yet.
	c := v0.Cells[0]
	op, _ := raftmeta.EncodeCommand(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: 2})
	p.apply(raftmeta.Prepare{Op: op, Now: 2, Timeout: 1e11})
	vPrep := p.snap()
	p.tick = 2
	p.stepm(1, vPrep, MemberInput{})
	mig := p.from(1)
	p.stepm(2, vPrep, MemberInput{}, mig...)
	// A session opens on server 1 in the (still its own, migrating) cell after the freeze.
	p.tick = 3
	out := p.stepm(1, nil, MemberInput{Opens: []SessionOpen{{Client: 7, Spawn: [2]float64{100, 100}}}})
	e := out.Welcomes[0].Entity
	p.apply(p.stage[2][0]) // commit
	vCommit := p.snap()
	// Server 1 sees the commit first: hands e to 2 (transfer x).
	p.tick = 4
	p.stepm(1, vCommit, MemberInput{})
	h1 := p.from(1)
	// Server 2, still on vPrep, rejects.
	p.stepm(2, nil, MemberInput{}, h1...)
	rej := p.from(2)
	// Server 1 retries at tick 8 (the reject is still in flight).
	for p.tick = 5; p.tick <= 8; p.tick++ {
		p.stepm(1, nil, MemberInput{})
	}
	retry := p.from(1)
	if len(retry) == 0 {
		t.Fatal("no retry")
	}
	// Server 2 applies the commit, then gets the retry: accepts.
	p.stepm(2, vCommit, MemberInput{}, retry...)
	acc := p.from(2)
	// Server 1 gets the Rejected, then the Accepted.
	p.tick = 10
	p.stepm(1, nil, MemberInput{}, append(rej, acc...)...)
	p.tick = 11
	p.stepm(2, nil, MemberInput{})
	t.Logf("e=%d real1=%v real2=%v inflight1=%v", e, p.real(1), p.real(2), p.inFlight(1))
	if slices.Contains(p.real(1), e) && slices.Contains(p.real(2), e) {
		t.Errorf("entity %d real on servers 1 and 2", e)
	}
	if !slices.Contains(p.real(1), e) && !slices.Contains(p.real(2), e) {
		t.Errorf("entity %d on neither server", e)
	}
}

// A session homed on the source closes while its entity migrates; the source sees the commit
// first and forwards the held Leave to the target, which has the entity only staged: the
// target holds the Leave and applies it once it imports, so nothing leaks.
func TestLeaveDuringMigrationReachesTarget(t *testing.T) {
	p := newPair(t)
	v0 := p.snap()
	p.tick = 1
	out := p.stepm(1, v0, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{100, 100}}}})
	p.stepm(2, v0, MemberInput{})
	e := out.Welcomes[0].Entity
	c := v0.Cells[0]
	op, _ := raftmeta.EncodeCommand(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: 2})
	p.apply(raftmeta.Prepare{Op: op, Now: 2, Timeout: 1e11})
	vPrep := p.snap()
	p.tick = 2
	p.stepm(1, vPrep, MemberInput{})
	mig := p.from(1)
	p.stepm(2, vPrep, MemberInput{}, mig...)
	p.apply(p.stage[2][0])
	vCommit := p.snap()
	p.tick = 3
	// The client goes away while its entity is frozen: the leave is held on 1.
	p.stepm(1, nil, MemberInput{Closes: []ClientID{5}})
	p.tick = 4
	p.stepm(1, vCommit, MemberInput{}) // source sees the commit first; forwards the leave
	leave := p.from(1)
	t.Logf("source sent %d msgs", len(leave))
	p.stepm(2, nil, MemberInput{}, leave...) // target: still vPrep
	p.tick = 5
	p.stepm(2, vCommit, MemberInput{})
	for p.tick = 6; p.tick < 2000; p.tick++ {
		p.stepm(1, nil, MemberInput{})
		p.stepm(2, nil, MemberInput{}, p.from(1)...)
	}
	t.Logf("unroutable on 2: %d", p.m[2].Stats().Unroutable)
	if slices.Contains(p.real(2), e) {
		t.Errorf("entity %d of a closed session still real on server 2 after 2000 ticks", e)
	}
}

// A committed migration into a target at MaxClients still lands (MaxClients refuses joins,
// not transfers): nothing is lost.
func TestMigrationIntoFullServer(t *testing.T) {
	p := newPair(t)
	cfg := DefaultMemberConfig(2, 1)
	cfg.World.WorldMax = [2]float64{512, 512}
	cfg.World.MaxClients = 1
	p.m[2], _ = NewMember(cfg)
	v0 := p.snap()
	p.tick = 1
	out := p.stepm(1, v0, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{100, 100}}}})
	p.stepm(2, v0, MemberInput{Opens: []SessionOpen{{Client: 9, Spawn: [2]float64{400, 100}}}})
	e := out.Welcomes[0].Entity
	c := v0.Cells[0]
	op, _ := raftmeta.EncodeCommand(raftmeta.Move{Cell: c.ID, Epoch: c.Epoch, To: 2})
	p.apply(raftmeta.Prepare{Op: op, Now: 2, Timeout: 1e11})
	vPrep := p.snap()
	p.tick = 2
	p.stepm(1, vPrep, MemberInput{})
	p.stepm(2, vPrep, MemberInput{}, p.from(1)...)
	p.apply(p.stage[2][0])
	vCommit := p.snap()
	p.tick = 3
	p.stepm(1, vCommit, MemberInput{})
	p.stepm(2, vCommit, MemberInput{})
	r1, f1 := p.m[1].Holdings()
	r2, f2 := p.m[2].Holdings()
	t.Logf("e=%d 1:%v/%v 2:%v/%v importErrors=%d", e, r1, f1, r2, f2, p.m[2].Stats().ImportErrors)
	if !slices.Contains(r2, e) || slices.Contains(r1, e) || len(f1)+len(f2) != 0 {
		t.Errorf("entity %d not (only) on the full target after the commit", e)
	}
}

// The target is declared dead while the sender's handoff is unacknowledged (ack lost); the
// sender takes the entity back. The target re-registers before its Member ever applies a map
// showing it dead; DeclaredDead makes it drop everything first, so the entity is not real on
// both, and the entity of a session its home declared lost does not linger.
func TestDeclaredDeadDropsBeforeReregistering(t *testing.T) {
	p := newPair(t)
	v0 := p.snap()
	p.tick = 1
	out := p.stepm(1, v0, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{300, 100}}, {Client: 6, Spawn: [2]float64{310, 100}}}})
	e := out.Welcomes[0].Entity
	e6 := out.Welcomes[1].Entity
	h := p.from(1)
	p.stepm(2, v0, MemberInput{}, h...)
	ack := p.from(2)
	// deliver only the ack for client 6's entity; lose e's ack.
	var keep []PeerIn
	var first *wire.HandoffMsg // e's (preghost's GhostsMsg goes ahead of the handoffs)
	for _, m := range h {
		if hm, ok := m.Msg.(*wire.HandoffMsg); ok && first == nil {
			first = hm
		}
	}
	for _, m := range ack {
		if a, ok := m.Msg.(*wire.HandoffAckMsg); ok && a.Transfer == first.Transfer {
			continue
		}
		keep = append(keep, m)
	}
	p.tick = 2
	p.stepm(1, nil, MemberInput{}, keep...)
	p.apply(raftmeta.MarkDead{Server: 2, Now: 2e12})
	vDead := p.snap()
	p.apply(raftmeta.Register{Server: 2, Addr: "x", Capacity: 100, Now: 2e12, LeaseTTL: 1e12})
	vRe := p.snap()
	p.tick = 3
	p.stepm(1, vDead, MemberInput{})
	p.stepm(2, vRe, MemberInput{DeclaredDead: true})
	t.Logf("e=%d e6=%d real1=%v real2=%v lost on 1: %v", e, e6, p.real(1), p.real(2), p.outs[1].Lost)
	if slices.Contains(p.real(1), e) && slices.Contains(p.real(2), e) {
		t.Errorf("%d real on 1 and 2", e)
	}
	// Let them talk for a while: where does e6 (its session declared lost on 1) end up?
	for p.tick = 4; p.tick < 50; p.tick++ {
		a, b := p.from(1), p.from(2)
		p.stepm(1, nil, MemberInput{}, b...)
		p.stepm(2, nil, MemberInput{}, a...)
	}
	_, _, has := p.m[1].SessionEntity(6)
	t.Logf("after 50 ticks: real1=%v real2=%v session 6 on 1: %v", p.real(1), p.real(2), has)
	if !has && (slices.Contains(p.real(1), e6) || slices.Contains(p.real(2), e6)) {
		t.Errorf("entity %d of session 6, declared lost on its home, is still real", e6)
	}
}

// A leave held for an entity in flight is released when the entity comes back by another
// transfer before the ack: the closed session's entity goes.
func TestHeldLeaveReleasedWhenEntityComesBack(t *testing.T) {
	p := newPair(t)
	v0 := p.snap()
	p.tick = 1
	out := p.stepm(1, v0, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{255.9, 100}}}})
	p.stepm(2, v0, MemberInput{})
	e := out.Welcomes[0].Entity
	p.tick = 2
	p.stepm(1, nil, MemberInput{Inputs: []ClientInput{{Client: 5, Input: wire.Input{Seq: 1, MoveX: 127}}}})
	x := p.from(1)
	if len(p.inFlight(1)) != 1 {
		t.Fatalf("not handed off: %v", p.real(1))
	}
	p.tick = 3
	p.stepm(1, nil, MemberInput{Closes: []ClientID{5}}) // held
	p.stepm(2, nil, MemberInput{}, x...)                // accepted; the ack is lost
	c2 := v0.Cells[1]
	p.apply(raftmeta.Move{Cell: c2.ID, Epoch: c2.Epoch, To: 1})
	vM := p.snap()
	p.tick = 4
	p.stepm(2, vM, MemberInput{}) // hands e back to 1
	y := p.from(2)
	p.tick = 5
	p.stepm(1, vM, MemberInput{}, y...)
	for p.tick = 6; p.tick < 100; p.tick++ {
		a, b := p.from(1), p.from(2)
		p.stepm(1, nil, MemberInput{}, b...)
		p.stepm(2, nil, MemberInput{}, a...)
	}
	_, _, has := p.m[1].SessionEntity(5)
	t.Logf("real1=%v real2=%v session5=%v", p.real(1), p.real(2), has)
	if slices.Contains(p.real(1), e) && !has {
		t.Errorf("entity %d of closed session 5 still real on 1", e)
	}
}

// TestHandoffHysteresis: an entity walking back and forth across a border, never more than
// HandoffHysteresis into the other server's cell, stays where it is; once it goes deeper it is
// handed over.
func TestHandoffHysteresis(t *testing.T) {
	p := newPair(t)
	for id := raftmeta.ServerID(1); id <= 2; id++ {
		cfg := DefaultMemberConfig(id, 1)
		cfg.World.WorldMax = [2]float64{512, 512}
		m, err := NewMember(cfg) // HandoffHysteresis 4 m
		if err != nil {
			t.Fatal(err)
		}
		p.m[id] = m
	}
	p.tick = 1
	p.step(1, MemberInput{Opens: []SessionOpen{{Client: 5, Spawn: [2]float64{254, 100}}}})
	p.step(2, MemberInput{})
	seq := uint32(0)
	walk := func(id raftmeta.ServerID, mx int8, ticks int) {
		for range ticks {
			p.tick++
			seq++
			in := MemberInput{}
			if id == 1 {
				in.Inputs = []ClientInput{{Client: 5, Input: wire.Input{Seq: seq, MoveX: mx}}}
			}
			p.step(id, in)
			other := 3 - id
			p.step(other, MemberInput{}, p.from(id)...)
		}
	}
	// Back and forth over x = 256, up to ~2.8 m into server 2's cell (7 m/s: 0.35 m a tick).
	for range 5 {
		walk(1, 127, 14)
		walk(1, -127, 14)
	}
	if s := p.m[1].Stats(); s.HandoffsOut != 0 || len(p.real(1)) != 1 {
		t.Fatalf("thrashed along the border: %d handoffs out, server 1 real %v", s.HandoffsOut, p.real(1))
	}
	// Deeper than 4 m: handed over.
	walk(1, 127, 30)
	if s := p.m[1].Stats(); s.HandoffsOut != 1 {
		t.Fatalf("not handed over at 4+ m: %d handoffs", s.HandoffsOut)
	}
}

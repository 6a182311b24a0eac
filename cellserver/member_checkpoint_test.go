package cellserver

import (
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestCheckpointRestore: a server's checkpoints hold the real entities of each cell it owns,
// with their sessions and input sequences (not the ghosts it holds); a restarted Member
// restores them with a newer authority epoch and sends their frames to the session's gateway
// again; an entity already there is not restored twice.
func TestCheckpointRestore(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	p.step(1, MemberInput{}, gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 7, X: wire.QuantisePos(250), Z: wire.QuantisePos(100)}))
	p.step(2, MemberInput{}, gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 8, X: wire.QuantisePos(262), Z: wire.QuantisePos(100)}))
	e1, e2 := p.real(1)[0], p.real(2)[0]
	p.tick = 2
	p.step(1, MemberInput{}, append(p.from(2), gw(&wire.InputMsg{Home: uint64(testGateway), Client: 7, Entity: e1, Input: wire.Input{Seq: 1, MoveZ: 127}}))...)
	if !p.m[1].World().IsGhost(e2) {
		t.Fatal("server 1 holds no ghost of server 2's entity (the test needs one)")
	}
	cps := p.m[1].Checkpoints(2)
	if len(cps) != 1 || len(cps[0].Entities) != 1 {
		t.Fatalf("checkpoints %+v: want server 1's one cell with its one real entity", cps)
	}
	r := cps[0].Entities[0]
	cell := p.snap().Cells[0]
	if cps[0].Cell != cell.ID || cps[0].Epoch != cell.Epoch || r.ID != e1 || r.Home != uint64(testGateway) || r.Client != 7 || r.LastSeq != 1 || r.AuthEpoch != 1 {
		t.Fatalf("checkpoint %+v, record %+v", cps[0], r)
	}

	// Server 1 restarts (a new incarnation) and the map still gives it the cell.
	cfg := DefaultMemberConfig(1, 2)
	cfg.World.WorldMax = [2]float64{512, 512}
	m, err := NewMember(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.m[1] = m
	p.tick = 10
	if n := m.Restore(cps[0], p.tick); n != 1 {
		t.Fatalf("restored %d entities, want 1", n)
	}
	if n := m.Restore(cps[0], p.tick); n != 0 {
		t.Fatalf("restored %d entities a second time, want 0", n)
	}
	p.step(1, MemberInput{})
	if a, _ := m.AuthOf(e1); a != 2 {
		t.Fatalf("authority epoch %d after the restore, want 2", a)
	}
	p.tick = 11
	p.step(1, MemberInput{})
	var frame *wire.FrameMsg
	for _, msg := range p.toGateway(1) {
		if f, ok := msg.(*wire.FrameMsg); ok && f.Entity == e1 {
			frame = f
		}
	}
	if frame == nil || frame.Client != 7 || frame.AuthEpoch != 2 || frame.LastSeq != 1 {
		t.Fatalf("frame to the gateway after the restore: %+v", frame)
	}
	if p.m[1].Stats().Restored != 1 {
		t.Fatalf("stats %+v", p.m[1].Stats())
	}
}

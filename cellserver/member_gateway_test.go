package cellserver

import (
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

const testGateway = raftmeta.ServerID(wire.GatewayIDBase + 1)

// toGateway returns the messages server id sent to the gateway in its last step.
func (p *pair) toGateway(id raftmeta.ServerID) []wire.PeerMessage {
	var out []wire.PeerMessage
	for _, s := range p.sent[id] {
		if s.To == testGateway {
			out = append(out, s.Msg)
		}
	}
	return out
}

func gw(msg wire.PeerMessage) PeerIn { return PeerIn{From: testGateway, Msg: msg} }

// TestGatewaySession: a gateway's join creates the entity and the welcome comes back as a
// frame carrying the entity, its epoch, position and last input; a repeated join is ignored;
// inputs apply in sequence and show in the frames' LastSeq; a join from anyone but the
// session's gateway is refused to act.
func TestGatewaySession(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	join := &wire.JoinMsg{Home: uint64(testGateway), Client: 7, X: wire.QuantisePos(100), Z: wire.QuantisePos(100)}
	p.step(1, MemberInput{}, gw(&wire.PeerHelloMsg{Server: uint64(testGateway), Incarnation: 1, Version: wire.PeerProtocolVersion}), gw(join))
	out := p.toGateway(1)
	if len(out) != 2 {
		t.Fatalf("sent to the gateway %v, want the welcome and the first snapshot", out)
	}
	f := out[0].(*wire.FrameMsg)
	typ, payload, _, _ := wire.SplitFrame(f.Frame)
	w, err := wire.DecodeWelcome(payload)
	if typ != wire.MsgWelcome || err != nil || w.Entity != f.Entity || f.Client != 7 || f.AuthEpoch != 1 || f.X != wire.QuantisePos(100) {
		t.Fatalf("welcome frame %+v (%v, %v)", f, typ, err)
	}
	e := f.Entity
	p.tick = 2
	p.step(1, MemberInput{}, gw(join), PeerIn{From: 2, Msg: &wire.JoinMsg{Home: uint64(testGateway), Client: 8}})
	if n := len(p.real(1)); n != 1 {
		t.Fatalf("%d entities after a repeated join and a forged one, want 1", n)
	}
	// Inputs 1 and 3 now, 2 later: 3 waits for 2.
	in := func(seq uint32) PeerIn {
		return gw(&wire.InputMsg{Home: uint64(testGateway), Client: 7, Entity: e, Input: wire.Input{Seq: seq, MoveZ: 127}})
	}
	p.tick = 3
	p.step(1, MemberInput{}, in(1), in(3))
	if f := p.toGateway(1)[0].(*wire.FrameMsg); f.LastSeq != 1 {
		t.Fatalf("LastSeq %d, want 1 (3 waits for 2)", f.LastSeq)
	}
	p.tick = 4
	p.step(1, MemberInput{}, in(2))
	if f := p.toGateway(1)[0].(*wire.FrameMsg); f.LastSeq != 3 || f.Z <= wire.QuantisePos(100) {
		t.Fatalf("frame %+v: want LastSeq 3, moved in z", f)
	}
}

// TestGatewayRestartAndIdle: a gateway that says hello with a new incarnation lost its
// sessions: their entities leave; an entity whose gateway goes silent for SessionIdleTicks
// leaves too.
func TestGatewayRestartAndIdle(t *testing.T) {
	p := newPair(t)
	hello := func(inc uint64) PeerIn {
		return gw(&wire.PeerHelloMsg{Server: uint64(testGateway), Incarnation: inc, Version: wire.PeerProtocolVersion})
	}
	p.tick = 1
	p.step(1, MemberInput{}, hello(1), gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 7, X: wire.QuantisePos(100), Z: wire.QuantisePos(100)}))
	p.tick = 2
	p.step(1, MemberInput{}, hello(1)) // a reconnect of the same process: nothing lost
	if n := len(p.real(1)); n != 1 {
		t.Fatalf("%d entities after a reconnect, want 1", n)
	}
	p.tick = 3
	p.step(1, MemberInput{}, hello(2))
	if n := len(p.real(1)); n != 0 {
		t.Fatalf("%d entities after the gateway restarted, want 0", n)
	}
	// Session 7 again (the new process reuses ids): a new entity, not refused as a repeat.
	p.tick = 4
	p.step(1, MemberInput{}, gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 7, X: wire.QuantisePos(100), Z: wire.QuantisePos(100)}))
	if n := len(p.real(1)); n != 1 {
		t.Fatalf("%d entities after the new session's join, want 1", n)
	}
	idle := wire.Tick(DefaultMemberConfig(1, 1).SessionIdleTicks)
	for p.tick = 5; p.tick < 4+idle+2*wire.Tick(DefaultMemberConfig(1, 1).RetryTicks); p.tick++ {
		p.step(1, MemberInput{})
	}
	if n := len(p.real(1)); n != 0 || p.m[1].Stats().SessionsIdled != 2 {
		t.Fatalf("%d entities after the gateway went silent (idled %d)", n, p.m[1].Stats().SessionsIdled)
	}
}

// TestGatewayResume: after its server died, the gateway re-creates a session's entity on
// another server with the same id, a newer authority epoch and its input sequence; a repeat is
// ignored.
func TestGatewayResume(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	r := &wire.JoinMsg{Home: uint64(testGateway), Client: 7, X: wire.QuantisePos(100), Z: wire.QuantisePos(100),
		Resume: 12345, AuthEpoch: 3, LastSeq: 40}
	p.step(1, MemberInput{}, gw(r))
	p.tick = 2
	p.step(1, MemberInput{}, gw(r))
	if got := p.real(1); len(got) != 1 || got[0] != 12345 {
		t.Fatalf("server 1 real %v, want the resumed entity", got)
	}
	if a, _ := p.m[1].AuthOf(12345); a != 4 {
		t.Fatalf("authority epoch %d, want 4", a)
	}
	p.tick = 3
	p.step(1, MemberInput{}, gw(&wire.InputMsg{Home: uint64(testGateway), Client: 7, Entity: 12345, Input: wire.Input{Seq: 41, MoveX: 127}}))
	if f := p.toGateway(1)[0].(*wire.FrameMsg); f.LastSeq != 41 || f.Entity != 12345 || f.AuthEpoch != 4 {
		t.Fatalf("frame %+v", f)
	}
}

// TestInteractionViaGhost: an interaction aimed at an entity the actor's server only holds as a
// ghost goes to the ghost's owner, which delivers it to the target's gateway and acks it; the
// gateway's ack ends the resends.
func TestInteractionViaGhost(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	join := func(c uint32, x float64) PeerIn {
		return gw(&wire.JoinMsg{Home: uint64(testGateway), Client: c, X: wire.QuantisePos(x), Z: wire.QuantisePos(100)})
	}
	p.step(1, MemberInput{}, join(1, 250)) // server 1's cell, by the border
	p.step(2, MemberInput{}, join(2, 262)) // server 2's cell
	actor, target := p.real(1)[0], p.real(2)[0]
	for p.tick = 2; p.tick < 5; p.tick++ { // ghosts cross the border both ways
		g1 := p.from(1)
		p.step(1, MemberInput{}, p.from(2)...)
		p.step(2, MemberInput{}, g1...)
	}
	if !p.m[1].World().IsGhost(target) {
		t.Fatal("server 1 holds no ghost of the target")
	}
	ia := &wire.InteractMsg{Origin: uint64(testGateway), Actor: actor, Seq: 1, Target: target, Kind: wire.InteractChat, Data: []byte("hi")}
	p.step(1, MemberInput{}, gw(ia))
	var fwd []PeerIn
	for _, s := range p.sent[1] {
		if m, ok := s.Msg.(*wire.InteractMsg); ok && s.To == 2 && m.Origin == 1 {
			fwd = append(fwd, PeerIn{From: 1, Msg: m})
		}
	}
	if len(fwd) != 1 {
		t.Fatalf("server 1 sent %v, want the interaction to server 2", p.sent[1])
	}
	p.step(2, MemberInput{}, fwd...)
	var frame *wire.FrameMsg
	var ack bool
	for _, s := range p.sent[2] {
		switch m := s.Msg.(type) {
		case *wire.FrameMsg:
			if typ, _, _, _ := wire.SplitFrame(m.Frame); typ == wire.MsgInteraction && s.To == testGateway {
				frame = m
			}
		case *wire.InteractAckMsg:
			ack = s.To == 1 && m.Actor == actor && m.Delivered
		}
	}
	if frame == nil || !ack || frame.Entity != target {
		t.Fatalf("server 2 sent %v: want the interaction to the gateway and the ack to server 1", p.sent[2])
	}
	// Delivered again (a retry reaching it) is not delivered twice.
	p.tick++
	p.step(2, MemberInput{}, fwd...)
	if st := p.m[2].Stats(); st.InteractsDelivered != 1 || st.InteractsDuplicate != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Until the gateway acks, server 2 resends the frame; after, it does not.
	p.tick += wire.Tick(DefaultMemberConfig(1, 1).RetryTicks)
	p.step(2, MemberInput{}, gw(&wire.InteractAckMsg{Actor: actor, Seq: 1, Delivered: true}))
	for p.tick++; p.tick < 40; p.tick++ {
		p.step(2, MemberInput{})
		for _, m := range p.toGateway(2) {
			if f, ok := m.(*wire.FrameMsg); ok {
				if typ, _, _, _ := wire.SplitFrame(f.Frame); typ == wire.MsgInteraction {
					t.Fatalf("tick %d: interaction resent after the gateway's ack", p.tick)
				}
			}
		}
	}
}

// TestTakeBackAfterTargetDied: a handoff whose target dies unacknowledged comes back two
// epochs above the one handed off (one above the target's copy), so the session's gateway
// follows it rather than re-create it elsewhere; a DropMsg for an older or equal copy removes it,
// one naming an older epoch does not.
func TestTakeBackAfterTargetDied(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	p.step(1, MemberInput{}, gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 7, X: wire.QuantisePos(255.9), Z: wire.QuantisePos(100)}))
	e := p.real(1)[0]
	p.tick = 2
	p.step(1, MemberInput{}, gw(&wire.InputMsg{Home: uint64(testGateway), Client: 7, Entity: e, Input: wire.Input{Seq: 1, MoveX: 127}}))
	if got := p.inFlight(1); len(got) != 1 {
		t.Fatalf("not handed off: in flight %v", got)
	}
	// Server 2 dies before answering.
	p.apply(raftmeta.MarkDead{Server: 2, Now: 2e12})
	p.tick = 3
	p.step(1, MemberInput{})
	if a, ok := p.m[1].AuthOf(e); !ok || a != 3 {
		t.Fatalf("taken back at authority %d (%v), want 3 (handed off at 1; the dead target's copy was 2)", a, ok)
	}
	drop := func(auth uint64) PeerIn {
		return gw(&wire.DropMsg{Home: uint64(testGateway), Client: 7, Entity: e, AuthEpoch: auth})
	}
	p.tick = 4
	p.step(1, MemberInput{}, drop(2))
	if len(p.real(1)) != 1 {
		t.Fatal("a Drop naming an older epoch removed the newer copy")
	}
	p.tick = 5
	p.step(1, MemberInput{}, PeerIn{From: 2, Msg: &wire.DropMsg{Home: uint64(testGateway), Client: 7, Entity: e, AuthEpoch: 3}})
	if len(p.real(1)) != 1 {
		t.Fatal("a Drop from a server, not the session's gateway, was obeyed")
	}
	p.tick = 6
	p.step(1, MemberInput{}, drop(3))
	if len(p.real(1)) != 0 || p.m[1].Stats().StaleCopiesDropped != 1 {
		t.Fatalf("the copy the gateway dropped is still here: %v", p.real(1))
	}
}

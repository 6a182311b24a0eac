package cellserver

import (
	"encoding/json"
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestPlayerJoinFromStoredState: a join whose player PostgreSQL has placed starts where it was
// stored, one authority epoch above the stored one (so its flushes are not fenced); one never
// placed starts at the gateway's spawn; a resume keeps the gateway's position and rises above
// a stored epoch newer than the gateway knew. Every player entity shows in PlayerStates, and
// its player id travels with its ghosts and its handoff.
func TestPlayerJoinFromStoredState(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	join := func(c uint32, player wire.PlayerID, stored *StoredPlayer) PeerIn {
		in := gw(&wire.JoinMsg{Home: uint64(testGateway), Client: c, X: wire.QuantisePos(50), Z: wire.QuantisePos(50), PlayerID: player})
		in.Player = stored
		return in
	}
	p.step(1, MemberInput{},
		join(1, 42, &StoredPlayer{Placed: true, X: 250, Z: 120, Epoch: 9}),
		join(2, 43, &StoredPlayer{Epoch: 0}),
		join(3, 0, nil))
	frames := map[uint32]*wire.FrameMsg{}
	for _, m := range p.toGateway(1) {
		if f, ok := m.(*wire.FrameMsg); ok {
			if typ, _, _, _ := wire.SplitFrame(f.Frame); typ == wire.MsgWelcome {
				frames[f.Client] = f
			}
		}
	}
	if f := frames[1]; f == nil || f.AuthEpoch != 10 || f.X != wire.QuantisePos(250) || f.Z != wire.QuantisePos(120) {
		t.Fatalf("placed player's welcome %+v: want epoch 10 at (250, 120)", f)
	}
	if f := frames[2]; f == nil || f.AuthEpoch != 1 || f.X != wire.QuantisePos(50) {
		t.Fatalf("unplaced player's welcome %+v: want epoch 1 at the spawn", f)
	}
	e42 := frames[1].Entity
	states := p.m[1].PlayerStates(nil)
	if len(states) != 2 || states[0].Player != 42 || states[0].Epoch != 10 || states[0].Cell == 0 || states[1].Player != 43 {
		t.Fatalf("PlayerStates %+v: want players 42 (epoch 10, in a cell) and 43", states)
	}

	// Player 42 stands by the border: server 2 gets a ghost that knows its player.
	for p.tick = 2; p.tick < 4; p.tick++ {
		g1 := p.from(1)
		p.step(1, MemberInput{}, p.from(2)...)
		p.step(2, MemberInput{}, g1...)
	}
	if got := p.m[2].playerOf(e42); got != 42 {
		t.Fatalf("server 2's ghost of entity %d is player %d, want 42", e42, got)
	}
	// It walks over: server 2 owns it, as player 42, one epoch up.
	for ; p.tick < 40 && len(p.m[2].PlayerStates(nil)) == 0; p.tick++ {
		g1 := p.from(1)
		p.step(1, MemberInput{}, append(p.from(2), gw(&wire.InputMsg{Home: uint64(testGateway), Client: 1, Entity: e42,
			Input: wire.Input{Seq: uint32(p.tick), MoveX: 127}}))...)
		p.step(2, MemberInput{}, g1...)
	}
	if s := p.m[2].PlayerStates(nil); len(s) != 1 || s[0].Player != 42 || s[0].Epoch != 11 {
		t.Fatalf("server 2 PlayerStates %+v: want player 42 at epoch 11", s)
	}

	// A resume: PostgreSQL holds epoch 20, the gateway last saw 3.
	r := gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 9, X: wire.QuantisePos(60), Z: wire.QuantisePos(60),
		Resume: 777, AuthEpoch: 3, LastSeq: 5, PlayerID: 50})
	r.Player = &StoredPlayer{Placed: true, X: 10, Z: 10, Epoch: 20}
	p.step(1, MemberInput{}, r)
	if a, _ := p.m[1].AuthOf(777); a != 21 {
		t.Fatalf("resumed epoch %d, want 21", a)
	}
	if st, _ := p.m[1].World().Entity(777); st.X != wire.QuantisePos(60) {
		t.Fatalf("resumed at x %d, want the gateway's %d", st.X, wire.QuantisePos(60))
	}
}

// TestInventoryRequestAndResult: an inventory interaction becomes an InventoryRequest keyed by
// (actor, seq), naming the target's player from its ghost; its result, fed back in a later
// Step, reaches the actor's gateway as an Interaction of kind InteractInventoryResult with the
// request's (From, Seq). One that cannot run is answered at once and never reaches the driver.
func TestInventoryRequestAndResult(t *testing.T) {
	p := newPair(t)
	p.tick = 1
	join := func(c uint32, x float64, player wire.PlayerID) PeerIn {
		in := gw(&wire.JoinMsg{Home: uint64(testGateway), Client: c, X: wire.QuantisePos(x), Z: wire.QuantisePos(100), PlayerID: player})
		in.Player = &StoredPlayer{}
		return in
	}
	p.step(1, MemberInput{}, join(1, 250, 71), join(3, 200, 0))
	p.step(2, MemberInput{}, join(2, 262, 72))
	var actor, npc wire.EntityID
	for _, e := range p.real(1) {
		if p.m[1].playerOf(e) == 71 {
			actor = e
		} else {
			npc = e
		}
	}
	target := p.real(2)[0]
	for p.tick = 2; p.tick < 5; p.tick++ {
		g1 := p.from(1)
		p.step(1, MemberInput{}, p.from(2)...)
		p.step(2, MemberInput{}, g1...)
	}
	ask := func(actor wire.EntityID, seq uint32, tgt wire.EntityID, op wire.InventoryOp) PeerIn {
		data, err := op.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		return gw(&wire.InteractMsg{Origin: uint64(testGateway), Actor: actor, Seq: seq, Target: tgt, Kind: wire.InteractInventory, Data: data})
	}
	trade := wire.InventoryOp{Op: wire.InvTrade, Items: []uint64{5}, Want: []uint64{6, 7}}
	// The target offers the mirror trade (its 6 and 7 for the actor's 5): delivered to the
	// actor's server, which remembers it for the actor. An offer of something else does not
	// count.
	offer := func(seq uint32, op wire.InventoryOp) PeerIn {
		data, _ := op.Append(nil)
		return PeerIn{From: 2, Msg: &wire.InteractMsg{Origin: 2, Actor: target, Seq: seq, Target: actor, Kind: wire.InteractTrade, Data: data}}
	}
	p.tick++
	p.step(1, MemberInput{}, offer(1, wire.InventoryOp{Op: wire.InvTrade, Items: []uint64{6, 7}, Want: []uint64{5}}),
		offer(2, wire.InventoryOp{Op: wire.InvTrade, Items: []uint64{8}, Want: []uint64{5}}))
	p.tick++
	out := p.step(1, MemberInput{}, ask(actor, 1, target, trade), ask(actor, 2, 999, wire.InventoryOp{Op: wire.InvGive, Items: []uint64{5}}))
	if len(out.InventoryOps) != 1 {
		t.Fatalf("InventoryOps %+v, want the trade only", out.InventoryOps)
	}
	req := out.InventoryOps[0]
	if req.Key != InventoryKey(actor, 1) || req.Player != 71 || req.Target != 72 || req.Cell == 0 ||
		req.Op.Op != wire.InvTrade || len(req.Op.Want) != 2 {
		t.Fatalf("request %+v", req)
	}
	results := func(from wire.EntityID) map[uint32]wire.InventoryResult {
		got := map[uint32]wire.InventoryResult{}
		for _, m := range p.toGateway(1) {
			f, ok := m.(*wire.FrameMsg)
			if !ok {
				continue
			}
			typ, payload, _, _ := wire.SplitFrame(f.Frame)
			if typ != wire.MsgInteraction {
				continue
			}
			ia, err := wire.DecodeInteraction(payload)
			if err == nil && (ia.Kind == wire.InteractTrade || ia.From != from) {
				continue // an offer delivered to the actor's client; another entity's result (resent until the gateway acks)
			}
			if err != nil || ia.Kind != wire.InteractInventoryResult || f.Entity != from {
				t.Fatalf("interaction %+v to the gateway (%v)", ia, err)
			}
			r, err := wire.DecodeInventoryResult(ia.Data)
			if err != nil {
				t.Fatal(err)
			}
			got[ia.Seq] = r
		}
		return got
	}
	if got := results(actor); got[2].Code != wire.InvNoTarget || len(got) != 1 {
		t.Fatalf("immediate results %+v, want seq 2 answered no_target", got)
	}
	// The offer was used up: the same acceptance again (a new seq) finds none.
	p.tick++
	out = p.step(1, MemberInput{}, ask(actor, 3, target, trade))
	if got := results(actor); len(out.InventoryOps) != 0 || got[3].Code != wire.InvNoOffer {
		t.Fatalf("a second acceptance of one offer: ops %+v, results %+v; want no_offer", out.InventoryOps, got)
	}
	// The gateway sends seq 1 again (its result had not reached it): a replay by key.
	p.tick++
	out = p.step(1, MemberInput{}, ask(actor, 1, target, trade))
	if len(out.InventoryOps) != 1 || !out.InventoryOps[0].Replay || out.InventoryOps[0].Key != req.Key ||
		out.InventoryOps[0].Fallback != wire.InvNoOffer {
		t.Fatalf("resent seq 1: %+v, want a replay of its key (falling back to no_offer: the offer is gone)", out.InventoryOps)
	}
	p.tick++
	p.step(1, MemberInput{InventoryDone: []InventoryDone{{Actor: actor, Seq: 1,
		Result: wire.InventoryResult{Op: wire.InvTrade, Code: wire.InvOK, Event: 33, Moved: 3}}}})
	if got := results(actor); got[1] != (wire.InventoryResult{Op: wire.InvTrade, Code: wire.InvOK, Event: 33, Moved: 3}) {
		t.Fatalf("results %+v, want the trade's", got)
	}
	// An entity that is no player cannot trade.
	p.tick++
	out = p.step(1, MemberInput{}, ask(npc, 1, target, trade))
	if len(out.InventoryOps) != 0 || results(npc)[1].Code != wire.InvInvalid {
		t.Fatalf("a non-player's trade: ops %+v, results %+v", out.InventoryOps, results(npc))
	}
}

// TestAttacksAndDeath: attacks delivered to a player take AttackDamage hit points each; the one
// that takes the last is a death: a critical event keyed by the attack, with the player, and
// the player back at full hit points. An attack delivered twice (a retry) counts once. Hit
// points travel with a handoff.
func TestAttacksAndDeath(t *testing.T) {
	p := newPair(t)
	cfg := DefaultMemberConfig(1, 1)
	p.tick = 1
	victim := gw(&wire.JoinMsg{Home: uint64(testGateway), Client: 1, X: wire.QuantisePos(250), Z: wire.QuantisePos(100), PlayerID: 5})
	victim.Player = &StoredPlayer{HP: 35}
	p.step(1, MemberInput{}, victim)
	target := p.real(1)[0]
	if hp := p.m[1].ents[target].hp; hp != 35 {
		t.Fatalf("joined with %d hit points, want the stored 35", hp)
	}
	attack := func(seq uint32) PeerIn {
		return PeerIn{From: 2, Msg: &wire.InteractMsg{Origin: 2, Actor: 999, Seq: seq, Target: target, Kind: wire.InteractAttack}}
	}
	var deaths []CriticalEvent
	for seq := uint32(1); seq <= 4; seq++ {
		p.tick++
		out := p.step(1, MemberInput{}, attack(seq), attack(seq)) // each delivered twice
		deaths = append(deaths, out.Events...)
	}
	if len(deaths) != 1 || deaths[0].Key != "death:999:4" || deaths[0].Kind != "death" || deaths[0].Cell == 0 {
		t.Fatalf("events %+v: want one death, keyed by the 4th attack", deaths)
	}
	var payload struct{ Player, Entity, KillerEntity uint64 }
	if err := json.Unmarshal(deaths[0].Payload, &payload); err != nil || payload.Player != 5 || payload.Entity != uint64(target) {
		t.Fatalf("death payload %s (%v)", deaths[0].Payload, err)
	}
	if hp := p.m[1].ents[target].hp; hp != cfg.PlayerHP {
		t.Fatalf("after the death %d hit points, want %d", hp, cfg.PlayerHP)
	}
	p.tick++
	p.step(1, MemberInput{}, attack(5))
	if s := p.m[1].PlayerStates(nil); len(s) != 1 || s[0].HP != cfg.PlayerHP-cfg.AttackDamage {
		t.Fatalf("PlayerStates %+v: want %d hit points", s, cfg.PlayerHP-cfg.AttackDamage)
	}
	// Walk it over the border: server 2 gets it with its hit points.
	for seq := uint32(1); p.tick < 80 && len(p.real(2)) == 0; seq++ {
		p.tick++
		g1 := p.from(1)
		p.step(1, MemberInput{}, append(p.from(2), gw(&wire.InputMsg{Home: uint64(testGateway), Client: 1, Entity: target,
			Input: wire.Input{Seq: seq, MoveX: 127}}))...)
		p.step(2, MemberInput{}, g1...)
	}
	if _, ok := p.m[2].ents[target]; !ok {
		t.Fatal("never handed over")
	}
	if hp := p.m[2].ents[target].hp; hp != cfg.PlayerHP-cfg.AttackDamage {
		t.Fatalf("handed over with %d hit points, want %d", hp, cfg.PlayerHP-cfg.AttackDamage)
	}
}

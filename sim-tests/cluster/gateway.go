package cluster

import (
	"fmt"
	"math"

	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// The gateway in the simulation (Options.Gateway): the bots are sessions of one
// gateway.Router, which routes them to the servers over the same lossy, reordering network as
// the servers' own messages. Each bot is a client: it numbers its inputs and interactions from
// one sequence, decodes every snapshot it is sent against the baseline it names (wire.ViewRing),
// acks it, and checks what a player would notice:
//
//   - its snapshots' ticks only go forward, and each decodes against a view it holds;
//   - its view is continuous: no entity leaves it and comes back within flickerTicks (an
//     entity legitimately leaving and re-entering must cross the AOI's hysteresis band, which
//     takes longer at the bots' top speed);
//   - every input and interaction it sent is applied exactly once, in order, by whichever
//     server owns its entity (checked on every server's applied log, Config.RecordInputs);
//   - every interaction aimed at it is delivered to it exactly once (sent by another bot to
//     its entity, wherever that entity is: real or ghost on the sender's server, in flight).

// simGateway is one gateway of the simulation: its Router, the maps it has yet to see, the
// messages due to it this tick.
type simGateway struct {
	id    raftmeta.ServerID
	r     *gateway.Router
	maps  []pendingMap
	inbox []envelopeMsg
}

func (s *Sim) gateway(id raftmeta.ServerID) *simGateway {
	for _, g := range s.gws {
		if g.id == id {
			return g
		}
	}
	return nil
}

// flickerTicks: an entity that leaves a bot's view and is back within this many ticks
// flickered (a seam in the border).
const flickerTicks = 5

// interactRange (metres): bots aim interactions at a random bot within this distance.
const interactRange = 60.0

// gwBot is a bot's client state in gateway mode.
type gwBot struct {
	gate     *simGateway
	session  gateway.SessionID // unique over all gateways in the simulation
	opened   bool
	welcomed bool
	lastTick wire.Tick // newest snapshot tick
	ring     wire.ViewRing
	snap     wire.Snapshot
	inView   map[wire.EntityID]bool
	leftAt   map[wire.EntityID]wire.Tick // entities that left the view, and when
	applied  uint32                      // the newest sequence applied (from the servers' logs)
	sent     []sentSeq                   // (tick, seq) of every input or interaction sent
	mx, mz   int8                        // the last move intent
}

type sentSeq struct {
	tick int
	seq  uint32
}

// interaction is one interaction a bot sent.
type interaction struct {
	from, to  int // bot indexes
	target    wire.EntityID
	at        int
	delivered int
}

type interactionKey struct {
	actor wire.EntityID
	seq   uint32
}

// gatewayStep runs the gateways for one tick: the messages due to them, the bots' inputs, the
// timeouts; their output goes onto the network and to the bots.
func (s *Sim) gatewayStep() error {
	t := wire.Tick(s.tick)
	for _, g := range s.gws {
		for len(g.maps) > 0 && g.maps[0].at <= s.tick {
			g.r.SetMap(g.maps[0].m, t)
			g.maps = g.maps[1:]
		}
		for _, m := range g.inbox {
			g.r.Peer(m.from, m.msg, t)
			if err := s.gatewayOutput(g); err != nil {
				return err
			}
		}
		g.inbox = g.inbox[:0]
	}
	s.gatewayBots()
	for _, g := range s.gws {
		g.r.Tick(t)
		if err := s.gatewayOutput(g); err != nil {
			return err
		}
	}
	return nil
}

type envelopeMsg struct {
	from raftmeta.ServerID
	msg  wire.PeerMessage
}

// gatewayOutput sends a gateway's output.
func (s *Sim) gatewayOutput(g *simGateway) error {
	out := g.r.Output()
	for _, p := range out.Send {
		if err := s.post(g.id, p.To, p.Msg); err != nil {
			return err
		}
	}
	for _, f := range out.Frames {
		if err := s.botFrame(f); err != nil {
			return err
		}
	}
	for _, d := range out.Disconnect {
		b := s.bySession[d.Session]
		if b == nil {
			continue
		}
		s.rep.Reconnects++
		b.gone = true
		s.tracef("bot %d disconnected by the gateway: %v", b.client, d.Reason)
	}
	return nil
}

// botFrame is a bot receiving a frame from the gateway.
func (s *Sim) botFrame(f gateway.SessionFrame) error {
	b := s.bySession[f.Session]
	if b == nil {
		return nil // a session the bot closed
	}
	g := b.gw
	typ, payload, rest, err := wire.SplitFrame(f.Frame)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("bot %d: a frame from the gateway does not split: %v", b.client, err)
	}
	switch typ {
	case wire.MsgWelcome:
		w, err := wire.DecodeWelcome(payload)
		if err != nil {
			return fmt.Errorf("bot %d: welcome: %w", b.client, err)
		}
		if g.welcomed {
			return fmt.Errorf("bot %d: a second welcome", b.client)
		}
		g.welcomed = true
		b.entity = w.Entity
		s.byEntity[w.Entity] = b
	case wire.MsgInteraction:
		ia, err := wire.DecodeInteraction(payload)
		if err != nil {
			return fmt.Errorf("bot %d: interaction: %w", b.client, err)
		}
		k := interactionKey{ia.From, ia.Seq}
		sent, ok := s.interactions[k]
		switch {
		case !ok:
			return fmt.Errorf("bot %d got interaction (%d, %d) no bot sent", b.client, ia.From, ia.Seq)
		case sent.target != b.entity:
			return fmt.Errorf("bot %d (entity %d) got interaction (%d, %d) aimed at entity %d", b.client, b.entity, ia.From, ia.Seq, sent.target)
		case sent.delivered > 0:
			return fmt.Errorf("interaction (%d, %d) delivered twice (to bot %d)", ia.From, ia.Seq, b.client)
		}
		sent.delivered++
		s.rep.InteractsDelivered++
	case wire.MsgSnapshot:
		if !g.welcomed {
			return fmt.Errorf("bot %d: a snapshot before the welcome", b.client)
		}
		h, err := wire.PeekSnapshotHeader(payload)
		if err != nil {
			return fmt.Errorf("bot %d: snapshot header: %w", b.client, err)
		}
		if h.ServerTick <= g.lastTick {
			return fmt.Errorf("bot %d: snapshot of tick %d after tick %d (snapshot ticks went backwards)", b.client, h.ServerTick, g.lastTick)
		}
		if err := g.ring.Decode(payload, &g.snap); err != nil {
			return fmt.Errorf("bot %d: snapshot of tick %d (baseline %d): %w", b.client, h.ServerTick, h.BaselineTick, err)
		}
		g.lastTick = h.ServerTick
		s.rep.Snapshots++
		if err := s.viewContinuity(b, h.ServerTick); err != nil {
			return err
		}
		g.gate.r.Ack(g.session, h.ServerTick)
	}
	return nil
}

// viewContinuity checks that no entity left the bot's view and came back within flickerTicks.
func (s *Sim) viewContinuity(b *bot, t wire.Tick) error {
	g := b.gw
	now := map[wire.EntityID]bool{}
	for _, sl := range g.snap.Slots {
		if sl.ID != 0 {
			now[sl.ID] = true
		}
	}
	for e := range now {
		if at, ok := g.leftAt[e]; ok && !g.inView[e] {
			if t-at <= flickerTicks {
				s.rep.Flickers++
				s.tracef("bot %d: entity %d left the view at tick %d and is back at %d", b.client, e, at, t)
			}
			delete(g.leftAt, e)
		}
	}
	for e := range g.inView {
		if !now[e] {
			g.leftAt[e] = t
		}
	}
	g.inView = now
	return nil
}

// gatewayBots gives the gateway the bots' events of this tick.
func (s *Sim) gatewayBots() {
	t := wire.Tick(s.tick)
	var pos map[int][2]float64
	if s.o.Interact > 0 {
		pos = map[int][2]float64{}
		for i, b := range s.bots {
			if b.gone || b.entity == 0 {
				continue
			}
			if st, ok := s.entityState(b.entity); ok {
				pos[i] = [2]float64{wire.DequantisePos(st.X), wire.DequantisePos(st.Z)}
			}
		}
	}
	for i, b := range s.bots {
		g := b.gw
		if b.gone {
			continue
		}
		r := g.gate.r
		if g.welcomed && s.o.Reconnect > 0 && s.rng.Float64() < s.o.Reconnect {
			r.Close(g.session, t)
			s.closed = append(s.closed, closed{entity: b.entity, at: s.tick})
			delete(s.bySession, g.session)
			delete(s.byEntity, b.entity)
			s.nextSID++
			b.entity, b.seq = 0, 0
			b.gw = newGWBot(s.nextSID, g.gate)
			s.bySession[s.nextSID] = b
			continue
		}
		if !g.opened {
			g.opened = true
			r.Open(g.session, wire.PlayerID(i+1), [2]float64{s.rng.Float64() * s.o.World, s.rng.Float64() * s.o.World}, t)
			continue
		}
		if !g.welcomed {
			continue
		}
		mx, mz, ok := s.intent(i, b)
		if ok {
			g.mx, g.mz = mx, mz
		} else {
			mx, mz = g.mx, g.mz // in flight: the bot keeps its last intent
		}
		b.seq++
		g.sent = append(g.sent, sentSeq{s.tick, b.seq})
		r.Input(g.session, wire.Input{Seq: b.seq, ClientTick: t, MoveX: mx, MoveZ: mz}, t)
		s.rep.InputsSent++
		if s.o.Interact > 0 && s.rng.Float64() < s.o.Interact {
			me, ok := pos[i]
			if !ok {
				continue
			}
			var near []int
			for j := range s.bots { // in bot order: deterministic
				if p, ok := pos[j]; ok && j != i && math.Hypot(p[0]-me[0], p[1]-me[1]) < interactRange {
					near = append(near, j)
				}
			}
			if len(near) == 0 {
				continue
			}
			j := near[s.rng.IntN(len(near))]
			tgt := s.bots[j].entity
			if tgt == 0 {
				continue // it reconnected this tick
			}
			b.seq++
			g.sent = append(g.sent, sentSeq{s.tick, b.seq})
			s.interactions[interactionKey{b.entity, b.seq}] = &interaction{from: i, to: j, target: tgt, at: s.tick}
			r.Interact(g.session, wire.Interact{Seq: b.seq, Target: tgt, Kind: wire.InteractChat,
				Data: fmt.Appendf(nil, "hello %d from %d", tgt, b.entity)}, t)
			s.rep.InteractsSent++
			s.rep.InputsSent++
		}
	}
}

func newGWBot(sid gateway.SessionID, gate *simGateway) *gwBot {
	return &gwBot{session: sid, gate: gate, inView: map[wire.EntityID]bool{}, leftAt: map[wire.EntityID]wire.Tick{}}
}

// checkApplied takes a server's applied-input log of this tick: each bot's sequence must be
// applied in order, each number once, none skipped.
func (s *Sim) checkApplied(sv *server, applied []appliedRec) error {
	for _, a := range applied {
		b := s.byEntity[a.entity]
		if b == nil {
			continue // a closed session's entity
		}
		g := b.gw
		switch {
		case a.seq == g.applied+1:
		case s.killed[a.entity]:
			// Resumed after its server died: what the dead server applied died with it, and
			// what the client sent meanwhile beyond the gateway's pending bound is dropped.
			s.rep.InputsLostToKill += max(0, int(a.seq)-int(g.applied)-1)
		case a.seq <= g.applied:
			return fmt.Errorf("server %d applied input %d of bot %d (entity %d) again (applied up to %d)", sv.id, a.seq, b.client, a.entity, g.applied)
		default:
			return fmt.Errorf("server %d applied input %d of bot %d (entity %d): inputs %d..%d were never applied", sv.id, a.seq, b.client, a.entity, g.applied+1, a.seq-1)
		}
		g.applied = a.seq
		s.rep.InputsApplied++
	}
	return nil
}

type appliedRec struct {
	entity wire.EntityID
	seq    uint32
}

// finalGatewayChecks: at the end of a run, everything a live bot sent long enough ago was
// applied, and every interaction between two live bots long enough ago was delivered.
func (s *Sim) finalGatewayChecks() error {
	const settle = 100
	for _, b := range s.bots {
		if b.gone || b.entity == 0 || s.killed[b.entity] {
			continue
		}
		var want uint32
		for _, x := range b.gw.sent {
			if x.tick <= s.tick-settle {
				want = x.seq
			}
		}
		if b.gw.applied < want {
			return fmt.Errorf("bot %d: inputs up to %d sent %d+ ticks ago, applied only up to %d", b.client, want, settle, b.gw.applied)
		}
	}
	for k, ia := range s.interactions {
		from, to := s.bots[ia.from], s.bots[ia.to]
		if ia.at > s.tick-2*settle || from.gone || to.gone || from.entity != k.actor || to.entity != ia.target || s.killed[ia.target] || s.killed[k.actor] {
			continue
		}
		if ia.delivered != 1 {
			return fmt.Errorf("interaction (%d, %d) from bot %d to bot %d at tick %d delivered %d times", k.actor, k.seq, from.client, to.client, ia.at, ia.delivered)
		}
	}
	return nil
}

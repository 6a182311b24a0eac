package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// The router's tests drive it through a harness that passes every peer message across the real
// wire encoding both ways (AppendFrame, then SplitPeerFrame and DecodePeer), so a message the
// router builds that a cell server would reject fails the test, and renders each output as a
// line to compare.

const testHome = wire.GatewayIDBase + 7

const (
	srvA raftmeta.ServerID = 1
	srvB raftmeta.ServerID = 2
	srvC raftmeta.ServerID = 3
)

// testMap is a 1000 × 1000 m world cut at x = 500 m: cell 1 (west) owned by west, cell 2
// (east) by east; servers 1..3 are alive except those in dead.
func testMap(version uint64, west, east raftmeta.ServerID, dead ...raftmeta.ServerID) *raftmeta.Map {
	m := &raftmeta.Map{
		Version: version,
		World:   raftmeta.World{Min: [2]float64{0, 0}, Max: [2]float64{1000, 1000}},
		Cells: []raftmeta.Cell{
			{ID: 1, Node: 2, Bounds: raftmeta.Rect{0, 0, 500, 1000}, Owner: west, Epoch: raftmeta.Epoch(version), State: raftmeta.CellActive},
			{ID: 2, Node: 3, Bounds: raftmeta.Rect{500, 0, 1000, 1000}, Owner: east, Epoch: raftmeta.Epoch(version), State: raftmeta.CellActive},
		},
		Tree: &raftmeta.TreeNode{ID: 1, Axis: raftmeta.AxisX, At: 500,
			Low: &raftmeta.TreeNode{ID: 2, Cell: 1}, High: &raftmeta.TreeNode{ID: 3, Cell: 2}},
	}
	for id := srvA; id <= srvC; id++ {
		m.Servers = append(m.Servers, raftmeta.Server{ID: id, Alive: !slices.Contains(dead, id)})
	}
	return m
}

type harness struct {
	t    *testing.T
	r    *Router
	tick wire.Tick
}

func newHarness(t *testing.T, mutate func(*RouterConfig)) *harness {
	t.Helper()
	cfg := DefaultRouterConfig(testHome)
	cfg.EntityKind = 4
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, r: r, tick: 100}
}

// at sets the tick of the following calls.
func (h *harness) at(t wire.Tick) *harness { h.tick = t; return h }

func (h *harness) setMap(m *raftmeta.Map) string {
	h.r.SetMap(m, h.tick)
	return h.drain()
}

func (h *harness) open(s SessionID, x, z float64) string {
	h.r.Open(s, wire.PlayerID(s), [2]float64{x, z}, h.tick)
	return h.drain()
}

func (h *harness) input(s SessionID, seqs ...uint32) string {
	for _, q := range seqs {
		h.r.Input(s, wire.Input{Seq: q, ClientTick: h.tick, MoveX: 127, Yaw: 3}, h.tick)
	}
	return h.drain()
}

func (h *harness) interact(s SessionID, seq uint32, target wire.EntityID, text string) string {
	data := []byte(text)
	h.r.Interact(s, wire.Interact{Seq: seq, Target: target, Kind: wire.InteractChat, Data: data}, h.tick)
	copy(data, strings.Repeat("#", len(data))) // the router must have copied it
	return h.drain()
}

func (h *harness) ack(s SessionID, t wire.Tick) string {
	h.r.Ack(s, t)
	return h.drain()
}

func (h *harness) close(s SessionID) string {
	h.r.Close(s, h.tick)
	return h.drain()
}

func (h *harness) linkReset(s raftmeta.ServerID) string {
	h.r.LinkReset(s, h.tick)
	return h.drain()
}

func (h *harness) step(t wire.Tick) string {
	h.tick = t
	h.r.Tick(t)
	return h.drain()
}

// steps ticks from the current tick + 1 to `to` and returns every non-empty output, each
// prefixed with its tick.
func (h *harness) steps(to wire.Tick) string {
	var b strings.Builder
	for t := h.tick + 1; t <= to; t++ {
		if s := h.step(t); s != "" {
			fmt.Fprintf(&b, "@%d\n%s\n", t, s)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// peer passes msg from a cell server, through the wire.
func (h *harness) peer(from raftmeta.ServerID, msg wire.PeerMessage) string {
	h.t.Helper()
	h.r.Peer(from, h.roundTrip(msg), h.tick)
	return h.drain()
}

// frame is a FrameMsg from server from carrying a client frame.
func (h *harness) frame(from raftmeta.ServerID, s SessionID, e wire.EntityID, auth uint64, lastSeq uint32, x, z int32, f []byte) string {
	h.t.Helper()
	return h.peer(from, &wire.FrameMsg{Client: uint32(s), Entity: e, AuthEpoch: auth, LastSeq: lastSeq, X: x, Z: z, Frame: f})
}

func (h *harness) roundTrip(msg wire.PeerMessage) wire.PeerMessage {
	h.t.Helper()
	b, err := msg.AppendFrame(nil)
	if err != nil {
		h.t.Fatalf("encoding %T %+v: %v", msg, msg, err)
	}
	typ, payload, rest, err := wire.SplitPeerFrame(b)
	if err != nil || len(rest) != 0 {
		h.t.Fatalf("splitting %T: %v (%d bytes left)", msg, err, len(rest))
	}
	dec, err := wire.DecodePeer(typ, payload)
	if err != nil {
		h.t.Fatalf("decoding %T: %v", msg, err)
	}
	return dec
}

// drain renders the router's output, one line each: sends (through the wire), frames,
// disconnects.
func (h *harness) drain() string {
	h.t.Helper()
	out := h.r.Output()
	var lines []string
	for _, p := range out.Send {
		lines = append(lines, fmt.Sprintf("→%d %s", p.To, h.render(h.roundTrip(p.Msg))))
	}
	for _, f := range out.Frames {
		typ, payload, _, err := wire.SplitFrame(f.Frame)
		if err != nil {
			h.t.Fatalf("session %d got a bad frame: %v", f.Session, err)
		}
		line := fmt.Sprintf("s%d %v", f.Session, typ)
		switch typ {
		case wire.MsgSnapshot:
			sh, err := wire.PeekSnapshotHeader(payload)
			if err != nil {
				h.t.Fatal(err)
			}
			line += fmt.Sprintf("#%d", sh.ServerTick)
		case wire.MsgInteraction:
			ia, err := wire.DecodeInteraction(payload)
			if err != nil {
				h.t.Fatal(err)
			}
			line += fmt.Sprintf(" from=%d seq=%d", ia.From, ia.Seq)
		}
		if f.Control {
			line += " control"
		}
		lines = append(lines, line)
	}
	for _, d := range out.Disconnect {
		lines = append(lines, fmt.Sprintf("disconnect s%d %v", d.Session, d.Reason))
	}
	return strings.Join(lines, "\n")
}

func (h *harness) render(m wire.PeerMessage) string {
	h.t.Helper()
	homeOK := func(home uint64) {
		if home != testHome {
			h.t.Fatalf("%T with home %d, want %d", m, home, testHome)
		}
	}
	switch m := m.(type) {
	case *wire.JoinMsg:
		homeOK(m.Home)
		if m.PlayerID != wire.PlayerID(m.Client) { // the harness opens session s as player s
			h.t.Fatalf("join of session %d as player %d: every join (resumes too) carries the session's player", m.Client, m.PlayerID)
		}
		s := fmt.Sprintf("join c%d kind=%d x=%d z=%d", m.Client, m.Kind, m.X, m.Z)
		if m.Resume != 0 {
			s += fmt.Sprintf(" resume=%d auth=%d seq=%d", m.Resume, m.AuthEpoch, m.LastSeq)
		}
		return s
	case *wire.InputMsg:
		homeOK(m.Home)
		return fmt.Sprintf("input c%d e%d seq=%d", m.Client, m.Entity, m.Input.Seq)
	case *wire.InteractMsg:
		homeOK(m.Origin)
		if m.Kind == wire.InteractInventory {
			op, err := wire.DecodeInventoryOp(m.Data)
			if err != nil {
				h.t.Fatalf("inventory interact %+v: %v", m, err)
			}
			return fmt.Sprintf("inventory e%d seq=%d target=%d %v%v", m.Actor, m.Seq, m.Target, op.Op, op.Items)
		}
		return fmt.Sprintf("interact e%d seq=%d target=%d %q", m.Actor, m.Seq, m.Target, m.Data)
	case *wire.AckMsg:
		homeOK(m.Home)
		return fmt.Sprintf("ack c%d e%d tick=%d", m.Client, m.Entity, m.Tick)
	case *wire.LeaveMsg:
		homeOK(m.Home)
		return fmt.Sprintf("leave c%d e%d", m.Client, m.Entity)
	case *wire.InteractAckMsg:
		return fmt.Sprintf("iack e%d seq=%d delivered=%v", m.Actor, m.Seq, m.Delivered)
	case *wire.DropMsg:
		homeOK(m.Home)
		return fmt.Sprintf("drop c%d e%d auth=%d", m.Client, m.Entity, m.AuthEpoch)
	}
	h.t.Fatalf("unexpected %T", m)
	return ""
}

func welcomeFrame(e wire.EntityID) []byte {
	return (&wire.Welcome{Version: wire.ProtocolVersion, Entity: e, ServerTick: 1, TickHz: 20, WorldMax: [2]int32{64000, 64000}}).AppendFrame(nil)
}

// snapFrame is an empty full-state snapshot of tick n.
func snapFrame(n wire.Tick) []byte {
	f, err := wire.AppendSnapshot(nil, wire.SnapshotHeader{ServerTick: n}, nil, nil)
	if err != nil {
		panic(err)
	}
	return f
}

func interactionFrame(from wire.EntityID, seq uint32) []byte {
	return (&wire.Interaction{From: from, Seq: seq, Tick: 9, Kind: wire.InteractChat, Data: []byte("hi")}).AppendFrame(nil)
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, indent(got), indent(want))
	}
}

func indent(s string) string {
	if s == "" {
		return "  (nothing)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// joined opens session s at (100, 100) m (cell 1, server A), and lets A answer with a welcome
// for entity e (authority epoch 1).
func (h *harness) joined(s SessionID, e wire.EntityID) {
	h.t.Helper()
	if h.r.Map() == nil {
		h.setMap(testMap(1, srvA, srvB))
	}
	expect(h.t, "join", h.open(s, 100, 100), fmt.Sprintf("→1 join c%d kind=4 x=6400 z=6400", s))
	expect(h.t, "welcome", h.frame(srvA, s, e, 1, 0, 6400, 6400, welcomeFrame(e)), fmt.Sprintf("s%d welcome control", s))
}

// ---- tests ----

func TestRouterConfigValidate(t *testing.T) {
	if err := DefaultRouterConfig(testHome).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field  string
		mutate func(*RouterConfig)
	}{
		{"Home", func(c *RouterConfig) { c.Home = 5 }},
		{"RetryTicks", func(c *RouterConfig) { c.RetryTicks = 0 }},
		{"ResumeAfterTicks", func(c *RouterConfig) { c.ResumeAfterTicks = 0 }},
		{"LostAfterTicks", func(c *RouterConfig) { c.LostAfterTicks = c.ResumeAfterTicks }},
		{"MaxPendingInputs", func(c *RouterConfig) { c.MaxPendingInputs = 0 }},
		{"MaxPendingInputs", func(c *RouterConfig) { c.MaxPendingInputs = maxRouterPending + 1 }},
		{"DedupTicks", func(c *RouterConfig) { c.DedupTicks = 0 }},
	} {
		c := DefaultRouterConfig(testHome)
		tc.mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrBadRouterConfig) || !strings.Contains(err.Error(), "RouterConfig."+tc.field) {
			t.Errorf("%s: got %v", tc.field, err)
		}
		if _, err := NewRouter(c); err == nil {
			t.Errorf("%s: NewRouter accepted it", tc.field)
		}
	}
}

func TestRouterJoinGoesToSpawnOwner(t *testing.T) {
	h := newHarness(t, nil)
	// No map yet: the sessions wait.
	expect(t, "open without map", h.open(1, 100, 200), "")
	expect(t, "open without map", h.open(2, 700.5, 999.99), "")
	expect(t, "map", h.setMap(testMap(1, srvA, srvB)), "→1 join c1 kind=4 x=6400 z=12800\n→2 join c2 kind=4 x=44832 z=63999")
	// With a map, at once; the border (x = 500 m) belongs to the east cell; a position outside
	// the world goes where the cell servers' lookup puts it.
	expect(t, "open", h.open(3, 499.99, 0), "→1 join c3 kind=4 x=31999 z=0")
	expect(t, "open", h.open(4, 500, 0), "→2 join c4 kind=4 x=32000 z=0")
	expect(t, "open", h.open(5, 5000, -3), "→2 join c5 kind=4 x=320000 z=-192")
	// The spawn cell's owner is dead: wait for a map that gives the cell to a live server.
	expect(t, "dead owner map", h.setMap(testMap(2, srvA, srvB, srvB)), "")
	expect(t, "open", h.open(6, 900, 900), "")
	expect(t, "reassigned", h.setMap(testMap(3, srvA, srvC, srvB)),
		"→3 join c2 kind=4 x=44832 z=63999\n→3 join c4 kind=4 x=32000 z=0\n→3 join c5 kind=4 x=320000 z=-192\n→3 join c6 kind=4 x=57600 z=57600")
	// An older map is ignored.
	expect(t, "old map", h.setMap(testMap(1, srvA, srvB)), "")
	if st := h.r.Stats(); st.Joins != 6 || st.JoinRetries != 3 {
		t.Errorf("stats %+v", st)
	}
	if _, _, ok := h.r.Route(1); ok {
		t.Error("Route ok before the first frame")
	}
}

func TestRouterJoinRetriedToSameServer(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.RetryTicks = 5 })
	h.setMap(testMap(1, srvA, srvB))
	expect(t, "open", h.open(1, 100, 100), "→1 join c1 kind=4 x=6400 z=6400")
	expect(t, "retries", h.steps(110), "@105\n→1 join c1 kind=4 x=6400 z=6400\n@110\n→1 join c1 kind=4 x=6400 z=6400")
	// The cell moves to C while A lives: the join still goes to A (C would create a second
	// entity if A took the first join).
	expect(t, "moved", h.setMap(testMap(2, srvC, srvB)), "")
	expect(t, "retry after move", h.steps(115), "@115\n→1 join c1 kind=4 x=6400 z=6400")
	// A link reset resends at once.
	expect(t, "link reset", h.linkReset(srvA), "→1 join c1 kind=4 x=6400 z=6400")
	// A dies: the join goes to the spawn cell's current owner, and stays there.
	expect(t, "A dead", h.at(117).setMap(testMap(3, srvC, srvB, srvA)), "→3 join c1 kind=4 x=6400 z=6400")
	expect(t, "retry to C", h.steps(122), "@122\n→3 join c1 kind=4 x=6400 z=6400")
	// The first frame ends the join (from whichever server: the entity may have moved on).
	expect(t, "welcome", h.frame(srvB, 1, 77, 2, 0, 40000, 6400, welcomeFrame(77)), "s1 welcome control")
	expect(t, "no more joins", h.steps(140), "")
	if e, o, ok := h.r.Route(1); !ok || e != 77 || o != srvB {
		t.Errorf("Route = %d, %d, %v", e, o, ok)
	}
	if st := h.r.Stats(); st.Joins != 1 || st.JoinRetries != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.setMap(testMap(1, srvA, srvB))
	h.open(1, 100, 100)
	h.open(2, 100, 100)
	// A refusal from a server the join did not go to is not believed.
	expect(t, "refuse from B", h.peer(srvB, &wire.RefuseMsg{Client: 1, Reason: wire.ReasonServerFull}), "")
	expect(t, "refuse from A", h.peer(srvA, &wire.RefuseMsg{Client: 1, Reason: wire.ReasonServerFull}), "disconnect s1 server full")
	if h.r.Sessions() != 1 {
		t.Errorf("%d sessions", h.r.Sessions())
	}
	expect(t, "close after refusal", h.close(1), "")
	// A refusal after the join succeeded is void.
	h.frame(srvA, 2, 50, 1, 0, 6400, 6400, welcomeFrame(50))
	expect(t, "late refuse", h.peer(srvA, &wire.RefuseMsg{Client: 2, Reason: wire.ReasonServerFull}), "")
	if st := h.r.Stats(); st.Refused != 1 || st.Ignored != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterWelcomeAndSnapshots(t *testing.T) {
	h := newHarness(t, nil)
	h.setMap(testMap(1, srvA, srvB))
	h.open(1, 100, 100)
	// The entity was handed to B at once and B's snapshot overtook A's welcome (two links):
	// the gateway writes the welcome itself (it knows the entity and the world), then the
	// snapshot; A's late welcome is stale (A is told to drop a copy as old as that, which it no
	// longer has: a Drop is never forwarded).
	expect(t, "early snapshot", h.frame(srvB, 1, 9, 2, 0, 32000, 6400, snapFrame(1)), "s1 welcome control\ns1 snapshot#1")
	expect(t, "stale welcome", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, welcomeFrame(9)), "→1 drop c1 e9 auth=1")
	expect(t, "snapshot", h.frame(srvB, 1, 9, 2, 0, 32000, 6400, snapFrame(2)), "s1 snapshot#2")
	// A snapshot not newer than one delivered (reordered across links) is dropped.
	expect(t, "late snapshot", h.frame(srvB, 1, 9, 2, 0, 32000, 6400, snapFrame(2)), "")
	if _, o, _ := h.r.Route(1); o != srvB {
		t.Errorf("owner %d, want B (the stale welcome must not route)", o)
	}
	// A second welcome (as after a resume) is swallowed.
	expect(t, "second welcome", h.frame(srvB, 1, 9, 2, 0, 32000, 6400, welcomeFrame(9)), "")
	if st := h.r.Stats(); st.SynthWelcomes != 1 || st.StaleFrames != 1 || st.LateSnapshots != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterRouteSwitchResendsPending(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	expect(t, "inputs", h.input(1, 1, 2, 3), "→1 input c1 e9 seq=1\n→1 input c1 e9 seq=2\n→1 input c1 e9 seq=3")
	expect(t, "interact", h.interact(1, 4, 55, "yo"), "→1 interact e9 seq=4 target=55 \"yo\"")
	expect(t, "ack", h.ack(1, 120), "→1 ack c1 e9 tick=120")
	// A handed the entity to B after applying input 1: B's frames carry a higher authority
	// epoch; what A did not apply goes to B, in order.
	expect(t, "switch", h.frame(srvB, 1, 9, 2, 1, 32100, 6400, snapFrame(1)),
		"→2 input c1 e9 seq=2\n→2 input c1 e9 seq=3\n→2 interact e9 seq=4 target=55 \"yo\"\ns1 snapshot#1")
	expect(t, "input after switch", h.input(1, 5), "→2 input c1 e9 seq=5")
	// A frame A sent before the handoff, arriving late: dropped, the route stays; A is told to
	// drop a copy that old (harmless: it has none).
	expect(t, "stale", h.frame(srvA, 1, 9, 1, 1, 6400, 6400, snapFrame(2)), "→1 drop c1 e9 auth=1")
	expect(t, "ack after stale", h.ack(1, 121), "→2 ack c1 e9 tick=121")
	st := h.r.Stats()
	if st.RouteSwitches != 1 || st.InputsResent != 3 || st.StaleFrames != 1 {
		t.Errorf("stats %+v", st)
	}
	if e, o, ok := h.r.Route(1); !ok || e != 9 || o != srvB {
		t.Errorf("Route = %d, %d, %v", e, o, ok)
	}
}

func TestRouterPendingBeforeFirstFrame(t *testing.T) {
	h := newHarness(t, nil)
	h.setMap(testMap(1, srvA, srvB))
	h.open(1, 100, 100)
	expect(t, "kept", h.input(1, 1, 2)+h.interact(1, 3, 8, "x")+h.ack(1, 5), "")
	expect(t, "welcome sends them", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, welcomeFrame(9)),
		"→1 input c1 e9 seq=1\n→1 input c1 e9 seq=2\n→1 interact e9 seq=3 target=8 \"x\"\ns1 welcome control")
	if st := h.r.Stats(); st.InputsResent != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterOrphanFrames(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	expect(t, "unknown session", h.frame(srvB, 44, 12, 3, 0, 0, 0, snapFrame(1)), "→2 leave c44 e12")
	expect(t, "other entity", h.frame(srvC, 1, 13, 5, 0, 0, 0, welcomeFrame(13)), "→3 leave c1 e13")
	if e, o, _ := h.r.Route(1); e != 9 || o != srvA {
		t.Errorf("route changed to %d on %d", e, o)
	}
	if st := h.r.Stats(); st.OrphanLeaves != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterLastSeqTrimsPending(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.RetryTicks = 5 })
	h.joined(1, 9)
	h.input(1, 1, 2, 3, 4, 5)
	h.frame(srvA, 1, 9, 1, 3, 6400, 6400, snapFrame(1))
	// Replays of what was applied or is pending are not kept twice.
	expect(t, "replays", h.input(1, 2, 5), "")
	expect(t, "resend what is left", h.steps(106), "@105\n→1 input c1 e9 seq=4\n→1 input c1 e9 seq=5")
	h.frame(srvA, 1, 9, 1, 5, 6400, 6400, snapFrame(2))
	expect(t, "nothing pending", h.steps(130), "")
	if st := h.r.Stats(); st.ReplayedInputs != 2 || st.InputsResent != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterPendingOverflow(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.MaxPendingInputs = 4 })
	h.setMap(testMap(1, srvA, srvB))
	h.open(1, 100, 100)
	h.input(1, 1, 2, 3, 4, 5, 6)
	// An out-of-order input older than everything kept is dropped at once.
	h.input(1, 1)
	expect(t, "oldest dropped", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, welcomeFrame(9)),
		"→1 input c1 e9 seq=3\n→1 input c1 e9 seq=4\n→1 input c1 e9 seq=5\n→1 input c1 e9 seq=6\ns1 welcome control")
	if st := h.r.Stats(); st.PendingOverflow != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterResendWithoutProgress(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.RetryTicks = 5 })
	h.joined(1, 9)
	h.at(101).input(1, 1, 2)
	h.at(103).input(1, 3) // newer inputs do not postpone the resend of the older ones
	expect(t, "resend", h.at(101).steps(107), "@106\n→1 input c1 e9 seq=1\n→1 input c1 e9 seq=2\n→1 input c1 e9 seq=3")
	// Progress restarts the clock.
	h.at(108).frame(srvA, 1, 9, 1, 1, 6400, 6400, snapFrame(1))
	expect(t, "after progress", h.steps(113), "@113\n→1 input c1 e9 seq=2\n→1 input c1 e9 seq=3")
	// A broken link to the owner: resend now. Another server's link: nothing.
	expect(t, "other link", h.linkReset(srvB), "")
	expect(t, "owner link", h.linkReset(srvA), "→1 input c1 e9 seq=2\n→1 input c1 e9 seq=3")
	expect(t, "clock restarted", h.steps(117), "")
	if st := h.r.Stats(); st.InputsResent != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterResumeAfterOwnerDeath(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.RetryTicks = 5; c.ResumeAfterTicks = 20 })
	h.joined(1, 9)
	h.input(1, 1, 2, 3)
	// The entity walked east (still on A), A applied up to 2, at authority epoch 3.
	h.at(110).frame(srvA, 1, 9, 3, 2, 40000, 7000, snapFrame(1))
	// A is declared dead; its cell 1 is reassigned to C, but the entity is in cell 2, still A's
	// in this map: the resume waits for a live owner there.
	expect(t, "dead, cell not reassigned", h.at(112).setMap(testMap(2, srvC, srvA, srvA)), "")
	expect(t, "inputs kept", h.input(1, 4), "")
	expect(t, "no live owner yet", h.steps(135), "")
	expect(t, "resume", h.at(136).setMap(testMap(3, srvC, srvB, srvA)), "→2 join c1 kind=4 x=40000 z=7000 resume=9 auth=3 seq=2")
	expect(t, "retry to the same server", h.steps(141), "@141\n→2 join c1 kind=4 x=40000 z=7000 resume=9 auth=3 seq=2")
	// B re-created it with a higher authority epoch: the resume ends, pending inputs go to B,
	// and B's welcome is swallowed.
	expect(t, "resumed", h.at(142).frame(srvB, 1, 9, 4, 2, 40000, 7000, welcomeFrame(9)),
		"→2 input c1 e9 seq=3\n→2 input c1 e9 seq=4")
	expect(t, "snapshot", h.frame(srvB, 1, 9, 4, 4, 40000, 7000, snapFrame(2)), "s1 snapshot#2")
	expect(t, "no more joins", h.steps(160), "")
	st := h.r.Stats()
	if st.Resumes != 1 || st.RouteSwitches != 1 || st.JoinRetries != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterResumeTimingAndSameOwner(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.RetryTicks = 5; c.ResumeAfterTicks = 20 })
	h.joined(1, 9) // last frame at 100
	h.input(1, 1)
	// A is dead and its cell goes to C at once; the resume starts ResumeAfterTicks after the
	// last frame and after A's death was seen (the server that handed the entity to A may take
	// it back meanwhile), not before.
	expect(t, "map", h.at(105).setMap(testMap(2, srvC, srvB, srvA)), "")
	expect(t, "not yet", h.steps(124), "")
	expect(t, "resume", h.steps(125), "@125\n→3 join c1 kind=4 x=6400 z=6400 resume=9 auth=1 seq=0")
	// C dies too before answering: the resume goes to the next owner.
	expect(t, "C dead", h.at(126).setMap(testMap(3, srvB, srvB, srvA, srvC)), "→2 join c1 kind=4 x=6400 z=6400 resume=9 auth=1 seq=0")
	// A frame from the old owner at the old epoch does not end the resume.
	h.at(127).frame(srvA, 1, 9, 1, 0, 6400, 6400, snapFrame(3))
	expect(t, "still resuming", h.steps(131), "@131\n→2 join c1 kind=4 x=6400 z=6400 resume=9 auth=1 seq=0")
	expect(t, "resumed", h.frame(srvB, 1, 9, 2, 0, 6400, 6400, snapFrame(4)), "→2 input c1 e9 seq=1\ns1 snapshot#4")
}

func TestRouterEntityLost(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.LostAfterTicks = 100; c.ResumeAfterTicks = 20; c.StaleRouteTicks = 99 })
	h.setMap(testMap(1, srvA, srvB))
	h.open(1, 100, 100) // at 100; never answered
	h.joined(2, 9)      // last frame at 100
	h.at(150).frame(srvA, 2, 9, 1, 0, 6400, 6400, snapFrame(1))
	got := h.at(100).steps(250)
	// Session 1's join is retried every RetryTicks to A, then given up; session 2's owner is
	// alive, so no resume until its route is stale (StaleRouteTicks after its last frame), and
	// it is lost 100 ticks after its last frame (with a Leave to A).
	if !strings.Contains(got, "@200\ndisconnect s1 entity-lost") || !strings.Contains(got, "@250\n→1 leave c2 e9\ndisconnect s2 entity-lost") {
		t.Errorf("got:\n%s", got)
	}
	if i, j := strings.Index(got, "resume="), strings.Index(got, "@249"); i < 0 || i < j {
		t.Errorf("resumed with a live owner before its route was stale, or not then:\n%s", got)
	}
	if h.r.Sessions() != 0 {
		t.Errorf("%d sessions left", h.r.Sessions())
	}
	if st := h.r.Stats(); st.JoinsLost != 1 || st.EntitiesLost != 1 {
		t.Errorf("stats %+v", st)
	}
	// A frame after that is an orphan's.
	expect(t, "orphan", h.frame(srvA, 2, 9, 1, 0, 6400, 6400, snapFrame(2)), "→1 leave c2 e9")
}

func TestRouterInteractionDedup(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.DedupTicks = 50 })
	h.setMap(testMap(1, srvA, srvB))
	h.open(1, 100, 100)
	// An interaction that overtook the welcome is held for it; every copy is acknowledged to
	// the server that sent it (it resends until then), whatever its authority epoch.
	expect(t, "early", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, interactionFrame(70, 1)), "→1 iack e70 seq=1 delivered=true")
	expect(t, "welcome", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, welcomeFrame(9)),
		"s1 welcome control\ns1 interaction from=70 seq=1 control")
	expect(t, "dup", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, interactionFrame(70, 1)), "→1 iack e70 seq=1 delivered=true")
	expect(t, "other seq", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, interactionFrame(70, 2)), "→1 iack e70 seq=2 delivered=true\ns1 interaction from=70 seq=2 control")
	expect(t, "other actor", h.frame(srvB, 1, 9, 1, 0, 6400, 6400, interactionFrame(71, 1)), "→2 iack e71 seq=1 delivered=true\ns1 interaction from=71 seq=1 control")
	h.steps(150)
	expect(t, "dup within DedupTicks", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, interactionFrame(70, 2)), "→1 iack e70 seq=2 delivered=true")
	h.steps(151)
	expect(t, "after DedupTicks", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, interactionFrame(70, 1)), "→1 iack e70 seq=1 delivered=true\ns1 interaction from=70 seq=1 control")
	expect(t, "stale epoch, still delivered", h.frame(srvB, 1, 9, 0, 0, 6400, 6400, interactionFrame(72, 1)), "→2 iack e72 seq=1 delivered=true\ns1 interaction from=72 seq=1 control")
	expect(t, "unknown session", h.frame(srvB, 5, 9, 1, 0, 6400, 6400, interactionFrame(72, 2)), "→2 iack e72 seq=2 delivered=false")
	if st := h.r.Stats(); st.DupInteractions != 2 {
		t.Errorf("stats %+v", st)
	}
	// A forwarded frame without a whole client frame, or an undecodable interaction, is counted.
	h.frame(srvA, 1, 9, 1, 0, 6400, 6400, []byte{5})
	bad, _ := wire.AppendFrame(nil, wire.MsgInteraction, []byte{1, 2})
	h.frame(srvA, 1, 9, 1, 0, 6400, 6400, bad)
	if st := h.r.Stats(); st.BadFrames != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterClose(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	h.input(1, 1)
	expect(t, "close", h.close(1), "→1 leave c1 e9")
	expect(t, "closed", h.input(1, 2)+h.ack(1, 3)+h.interact(1, 3, 4, "a")+h.close(1), "")
	expect(t, "nothing to retry", h.steps(200), "")
	// Closed before the first frame: no entity to name; its frame gets a Leave.
	h.open(2, 100, 100)
	expect(t, "close joining", h.close(2), "")
	expect(t, "late welcome", h.frame(srvA, 2, 10, 1, 0, 6400, 6400, welcomeFrame(10)), "→1 leave c2 e10")
	if st := h.r.Stats(); st.Unrouted != 3 || st.OrphanLeaves != 1 || h.r.Sessions() != 0 {
		t.Errorf("stats %+v, %d sessions", st, h.r.Sessions())
	}
}

func TestRouterRejectsInvalid(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	h.r.Input(1, wire.Input{Seq: 1, Yaw: wire.YawSteps}, h.tick)
	h.r.Interact(1, wire.Interact{Seq: 2, Target: 0, Kind: wire.InteractAttack}, h.tick)
	h.r.Interact(1, wire.Interact{Seq: 3, Target: 5, Kind: wire.InteractChat, Data: []byte{0xff}}, h.tick)
	expect(t, "invalid", h.drain(), "")
	if st := h.r.Stats(); st.Rejected != 3 {
		t.Errorf("stats %+v", st)
	}
	h.r.Peer(srvA, &wire.InteractAckMsg{Actor: 9, Seq: 1, Delivered: true}, h.tick)
	if st := h.r.Stats(); st.Ignored != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterTickNeverGoesBack(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	h.input(1, 1)
	// A call with an older tick (a driver goroutine's stale clock) must not look like ages.
	expect(t, "old tick", h.at(3).input(1, 2)+h.step(4), "→1 input c1 e9 seq=2")
}

// script drives a router through most paths; determinism runs it twice.
func script(h *harness) string {
	var b strings.Builder
	log := func(s string) {
		if s != "" {
			fmt.Fprintf(&b, "@%d\n%s\n", h.tick, s)
		}
	}
	log(h.setMap(testMap(1, srvA, srvB)))
	for s := SessionID(1); s <= 12; s++ {
		log(h.open(s, float64(s)*80, float64(s)*70))
	}
	for s := SessionID(12); s >= 1; s-- {
		from := srvA
		if s*80 >= 500 {
			from = srvB
		}
		if s%4 != 0 {
			log(h.frame(from, s, wire.EntityID(1000+s), 1, 0, int32(s)*80*64, int32(s)*70*64, welcomeFrame(wire.EntityID(1000+s))))
		}
		log(h.input(s, 1, 2, 3))
	}
	for t, end := h.tick+1, h.tick+8; t < end; t++ {
		log(h.step(t))
	}
	log(h.frame(srvB, 3, 1003, 2, 1, 32000, 0, snapFrame(1)))
	log(h.frame(srvA, 3, 1003, 1, 1, 32000, 0, snapFrame(1)))
	log(h.setMap(testMap(2, srvC, srvB, srvA)))
	log(h.close(5))
	log(h.linkReset(srvB))
	for t, end := h.tick+1, h.tick+40; t < end; t++ {
		log(h.step(t))
	}
	for s := SessionID(1); s <= 3; s++ {
		log(h.frame(srvC, s, wire.EntityID(1000+s), 3, 1, int32(s)*80*64, int32(s)*70*64, welcomeFrame(wire.EntityID(1000+s))))
	}
	for t, end := h.tick+1, h.tick+10; t < end; t++ {
		log(h.step(t))
	}
	st := h.r.Stats()
	fmt.Fprintf(&b, "%+v\n", st)
	return b.String()
}

func TestRouterDeterministic(t *testing.T) {
	a := script(newHarness(t, nil))
	b := script(newHarness(t, nil))
	if a != b {
		t.Fatalf("two runs differ:\n%s\n---\n%s", a, b)
	}
	if testing.Verbose() {
		t.Log(a)
	}
	for _, want := range []string{"resume=", "→3 input", "→2 input", "leave", "snapshot#1"} {
		if !strings.Contains(a, want) {
			t.Errorf("the script never produced %q:\n%s", want, a)
		}
	}
}

// TestRouterSteadyStateAllocs checks that forwarding (a frame in, an input out) does not
// allocate once warm: the gateway must add little to every frame.
func TestRouterSteadyStateAllocs(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	fm := &wire.FrameMsg{Client: 1, Entity: 9, AuthEpoch: 1, X: 6400, Z: 6400}
	var frames [][]byte
	for i := range 300 {
		frames = append(frames, snapFrame(wire.Tick(100+i)))
	}
	seq := uint32(0)
	allocs := testing.AllocsPerRun(200, func() {
		seq++
		h.r.Input(1, wire.Input{Seq: seq}, h.tick)
		fm.LastSeq, fm.Frame = seq, frames[seq]
		h.r.Peer(srvA, fm, h.tick)
		h.r.Tick(h.tick)
		h.r.Output()
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per forwarded frame", allocs)
	}
}

// TestRouterLookupWithoutTree: a map without a k-d tree is searched cell by cell, with the
// same answers as the tree walk for positions in the world, and positions outside clamped on.
func TestRouterLookupWithoutTree(t *testing.T) {
	withTree := testMap(1, srvA, srvB)
	noTree := testMap(1, srvA, srvB)
	noTree.Tree = nil
	var a, b routerLookup
	a.build(withTree)
	b.build(noTree)
	for _, p := range [][2]float64{{0, 0}, {499.99, 3}, {500, 3}, {999.99, 999.99}, {1000, 1000}, {-5, 50}, {2000, -1}, {250, 1e6}} {
		x, z := wire.QuantisePos(p[0]), wire.QuantisePos(p[1])
		ca, cb := a.at(x, z), b.at(x, z)
		if ca == nil || cb == nil || ca.ID != cb.ID {
			t.Errorf("%v: tree %v, cells %v", p, ca, cb)
		}
	}
	var none routerLookup
	none.build(&raftmeta.Map{})
	if c := none.at(0, 0); c != nil {
		t.Errorf("empty map: %v", c)
	}
}

// TestRouterEpochConflict: after a server dies, the server that had handed the entity to it
// takes it back and the gateway re-creates it elsewhere, both one epoch above the dead copy:
// the first copy heard keeps the route, the second is told to drop (never to switch the route
// back and forth between two live copies).
func TestRouterEpochConflict(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)                                                                          // on A at epoch 1
	expect(t, "to B", h.frame(srvB, 1, 9, 2, 0, 6400, 6400, snapFrame(2)), "s1 snapshot#2") // handed to B
	expect(t, "C's copy", h.frame(srvC, 1, 9, 3, 0, 6400, 6400, snapFrame(3)), "s1 snapshot#3")
	expect(t, "A's copy at the same epoch", h.frame(srvA, 1, 9, 3, 0, 6400, 6400, snapFrame(4)), "→1 drop c1 e9 auth=3")
	if _, owner, _ := h.r.Route(1); owner != srvC {
		t.Fatalf("route %d, want C (the first copy heard)", owner)
	}
	expect(t, "input", h.input(1, 1), "→3 input c1 e9 seq=1")
	if st := h.r.Stats(); st.EpochConflicts != 1 || st.DropsSent != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRouterSameOwnerNewEpoch: frames from the same server at a higher epoch (the entity went
// away and came back, or was taken back) make the Router resend what that server has not
// applied at once, not RetryTicks later.
func TestRouterSameOwnerNewEpoch(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	expect(t, "inputs", h.input(1, 1, 2), "→1 input c1 e9 seq=1\n→1 input c1 e9 seq=2")
	expect(t, "back at epoch 3", h.frame(srvA, 1, 9, 3, 1, 6400, 6400, snapFrame(2)), "→1 input c1 e9 seq=2\ns1 snapshot#2")
	if st := h.r.Stats(); st.RouteSwitches != 0 {
		t.Fatalf("stats %+v: the route did not move", st)
	}
}

// TestRouterStaleRouteResumeEnds: no frame came for StaleRouteTicks though the owner lives (a
// long link outage, say): the Router resumes, the owner (still holding the entity) ignores the
// join, and its frames at the same epoch end the resume: inputs flow to it again.
func TestRouterStaleRouteResumeEnds(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.StaleRouteTicks = 50 })
	h.joined(1, 9) // last frame at 100
	expect(t, "resume", h.steps(150), "@150\n→1 join c1 kind=4 x=6400 z=6400 resume=9 auth=1 seq=0")
	expect(t, "the owner's frames", h.at(151).frame(srvA, 1, 9, 1, 0, 6400, 6400, snapFrame(5)), "s1 snapshot#5")
	expect(t, "routable again", h.input(1, 1), "→1 input c1 e9 seq=1")
	if got := h.steps(170); strings.Contains(got, "join") {
		t.Fatalf("joins after the resume ended:\n%s", got)
	}
}

// ---- inventory results across a crash ----

// inventory sends an inventory interaction of session s: the actor (entity e) loots item.
func (h *harness) inventory(s SessionID, seq uint32, e wire.EntityID, item uint64) string {
	h.t.Helper()
	data, err := (&wire.InventoryOp{Op: wire.InvLoot, Items: []uint64{item}}).Append(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.r.Interact(s, wire.Interact{Seq: seq, Target: e, Kind: wire.InteractInventory, Data: data}, h.tick)
	clear(data) // the router must have copied it
	return h.drain()
}

// invResultFrame is the client frame of an inventory operation's result: the actor from, its
// interaction seq.
func invResultFrame(from wire.EntityID, seq uint32) []byte {
	data, err := (&wire.InventoryResult{Op: wire.InvLoot, Code: wire.InvOK, Event: 1, Moved: 1}).Append(nil)
	if err != nil {
		panic(err)
	}
	return (&wire.Interaction{From: from, Seq: seq, Tick: 9, Kind: wire.InteractInventoryResult, Data: data}).AppendFrame(nil)
}

// TestRouterInventoryResentOnResume: an inventory interaction the owner applied (its LastSeq
// covers it) stays kept until its result passes; the owner dies before sending it: after the
// resume, the new owner is sent it again (to replay by key), before what is still unapplied.
// While the owner is unchanged it is not resent (no-progress timer, broken link).
func TestRouterInventoryResentOnResume(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.RetryTicks = 5; c.ResumeAfterTicks = 20 })
	h.joined(1, 9)
	expect(t, "sent", h.input(1, 1)+"\n"+h.inventory(1, 2, 9, 77)+"\n"+h.input(1, 3),
		"→1 input c1 e9 seq=1\n→1 inventory e9 seq=2 target=9 loot[77]\n→1 input c1 e9 seq=3")
	expect(t, "applied", h.frame(srvA, 1, 9, 1, 3, 6400, 6400, snapFrame(1)), "s1 snapshot#1")
	expect(t, "no resend while A works on it", h.steps(130), "")
	expect(t, "nor on a broken link to A", h.linkReset(srvA), "")
	h.input(1, 4) // unapplied when A dies
	// A dies without sending the result; C gets the cell and resumes the entity.
	expect(t, "A dead", h.at(131).setMap(testMap(2, srvC, srvB, srvA)), "")
	expect(t, "resume", h.steps(151), "@151\n→3 join c1 kind=4 x=6400 z=6400 resume=9 auth=1 seq=3")
	expect(t, "resumed: the inventory interaction again, then the unapplied input",
		h.at(152).frame(srvC, 1, 9, 2, 3, 6400, 6400, welcomeFrame(9)),
		"→3 inventory e9 seq=2 target=9 loot[77]\n→3 input c1 e9 seq=4")
	// C replays it by key and sends the result: delivered, and the wait is over.
	expect(t, "result", h.frame(srvC, 1, 9, 2, 3, 6400, 6400, invResultFrame(9, 2)),
		"→3 iack e9 seq=2 delivered=true\ns1 interaction from=9 seq=2 control")
	expect(t, "the input applied, handed to B", h.frame(srvB, 1, 9, 3, 4, 40000, 6400, snapFrame(2)), "s1 snapshot#2")
	if st := h.r.Stats(); st.InventoryResent != 1 || st.Resumes != 1 || st.RouteSwitches != 2 || st.InputsResent != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRouterInventoryResentOnRouteSwitch: on a handoff the applied inventory interactions
// without a result go to the new owner; a result ends the wait whether it comes before or
// after the LastSeq that covers its interaction, but only the session's entity's result of
// that seq does; the list is bounded and goes with the session.
func TestRouterInventoryResentOnRouteSwitch(t *testing.T) {
	h := newHarness(t, func(c *RouterConfig) { c.MaxPendingInputs = 3 })
	h.joined(1, 9)
	for seq := uint32(1); seq <= 3; seq++ {
		h.inventory(1, seq, 9, 100+uint64(seq))
	}
	// The result of 1 overtakes the snapshot that applies it.
	expect(t, "early result", h.frame(srvA, 1, 9, 1, 0, 6400, 6400, invResultFrame(9, 1)),
		"→1 iack e9 seq=1 delivered=true\ns1 interaction from=9 seq=1 control")
	expect(t, "applied", h.frame(srvA, 1, 9, 1, 3, 6400, 6400, snapFrame(1)), "s1 snapshot#1")
	h.inventory(1, 4, 9, 104)
	h.inventory(1, 5, 9, 105)
	h.frame(srvA, 1, 9, 1, 5, 6400, 6400, snapFrame(2))
	// 2..5 await their results; the bound (3) keeps the newest three: 3, 4, 5.
	expect(t, "result of 4", h.frame(srvA, 1, 9, 1, 5, 6400, 6400, invResultFrame(9, 4)),
		"→1 iack e9 seq=4 delivered=true\ns1 interaction from=9 seq=4 control")
	// Another entity's result of the same seq (it never happens, but it is not ours).
	h.frame(srvA, 1, 9, 1, 5, 6400, 6400, invResultFrame(70, 3))
	h.input(1, 6)
	expect(t, "handed to B", h.frame(srvB, 1, 9, 2, 5, 32100, 6400, snapFrame(3)),
		"→2 inventory e9 seq=3 target=9 loot[103]\n→2 inventory e9 seq=5 target=9 loot[105]\n→2 input c1 e9 seq=6\ns1 snapshot#3")
	// B answers 3 (A still answers 5: the first copy is delivered, the second is a duplicate).
	h.frame(srvB, 1, 9, 2, 6, 32100, 6400, invResultFrame(9, 3))
	expect(t, "A's result of 5", h.frame(srvA, 1, 9, 1, 5, 6400, 6400, invResultFrame(9, 5)),
		"→1 iack e9 seq=5 delivered=true\ns1 interaction from=9 seq=5 control")
	expect(t, "B's copy", h.frame(srvB, 1, 9, 2, 6, 32100, 6400, invResultFrame(9, 5)), "→2 iack e9 seq=5 delivered=true")
	expect(t, "nothing left to resend", h.frame(srvC, 1, 9, 3, 6, 32100, 6400, snapFrame(4)), "s1 snapshot#4")
	if st := h.r.Stats(); st.InventoryResent != 2 || st.InventoryOverflow != 1 || st.DupInteractions != 1 || st.PendingOverflow != 0 {
		t.Errorf("stats %+v", st)
	}
	// Closed with a result outstanding: forgotten with the session.
	h.inventory(1, 7, 9, 107)
	h.frame(srvC, 1, 9, 3, 7, 32100, 6400, snapFrame(5))
	expect(t, "close", h.close(1), "→3 leave c1 e9")
	if h.r.Sessions() != 0 {
		t.Errorf("%d sessions", h.r.Sessions())
	}
	expect(t, "a frame of B after the close", h.frame(srvB, 1, 9, 4, 7, 32100, 6400, snapFrame(6)), "→2 leave c1 e9")
}

// TestRouterInventoryResendWaitsForRoutableOwner: frames come from a new owner the Router's
// map does not show alive yet: the resend waits for a map that does (not for another switch).
func TestRouterInventoryResendWaitsForRoutableOwner(t *testing.T) {
	h := newHarness(t, nil)
	h.joined(1, 9)
	h.setMap(testMap(2, srvA, srvB, srvC)) // C not alive (yet)
	h.inventory(1, 1, 9, 42)
	h.frame(srvA, 1, 9, 1, 1, 6400, 6400, snapFrame(1))
	expect(t, "handed to C, not routable", h.frame(srvC, 1, 9, 2, 1, 6400, 6400, snapFrame(2)), "s1 snapshot#2")
	expect(t, "C alive", h.at(101).setMap(testMap(3, srvA, srvB)), "→3 inventory e9 seq=1 target=9 loot[42]")
	expect(t, "once", h.steps(120), "")
	if st := h.r.Stats(); st.InventoryResent != 1 {
		t.Errorf("stats %+v", st)
	}
}

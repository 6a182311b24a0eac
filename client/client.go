package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/meridian-mmo/meridian/wire"
)

// Config tunes a client.
type Config struct {
	Addr  string // the server's UDP address (a gateway, or a standalone cell server)
	Token []byte // session token sent in the hello
	// HandshakeTimeout bounds dial + hello + welcome.
	HandshakeTimeout time.Duration
	// InterpolationDelay is how far behind the newest snapshot the interpolated view renders.
	InterpolationDelay time.Duration
	// PingInterval is how often RTT and clock offset are measured (0: never).
	PingInterval time.Duration
	// IdleTimeout ends the session when the server has sent nothing for this long.
	IdleTimeout time.Duration
	// History is how many decoded views are kept as baselines and for interpolation.
	History int
	// KCP tuning; see kcp-go's NoDelay.
	KCPNoDelay, KCPInterval, KCPResend, KCPNoCongestion, KCPWindow int
}

// DefaultConfig returns a Config for addr in KCP fast mode.
func DefaultConfig(addr string, token []byte) Config {
	return Config{
		Addr: addr, Token: token,
		HandshakeTimeout:   5 * time.Second,
		InterpolationDelay: 100 * time.Millisecond,
		PingInterval:       time.Second,
		IdleTimeout:        10 * time.Second,
		History:            64,
		KCPNoDelay:         1, KCPInterval: 10, KCPResend: 2, KCPNoCongestion: 1, KCPWindow: 256,
	}
}

// Validate names the first field out of bounds.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("client: Addr must be set")
	case len(c.Token) == 0 || len(c.Token) > wire.MaxTokenLength:
		return fmt.Errorf("client: Token length (%d) must be in [1, %d]", len(c.Token), wire.MaxTokenLength)
	case c.HandshakeTimeout <= 0:
		return fmt.Errorf("client: HandshakeTimeout (%v) must be > 0", c.HandshakeTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("client: IdleTimeout (%v) must be > 0", c.IdleTimeout)
	case c.InterpolationDelay < 0:
		return fmt.Errorf("client: InterpolationDelay (%v) must be ≥ 0", c.InterpolationDelay)
	case c.History < wire.BaselineWindow || c.History > 1024:
		// A server deltas against any acked tick up to wire.BaselineWindow old.
		return fmt.Errorf("client: History (%d) must be in [%d, 1024]", c.History, wire.BaselineWindow)
	case c.KCPInterval < 1 || c.KCPInterval > 100:
		return fmt.Errorf("client: KCPInterval (%d) must be in [1, 100]", c.KCPInterval)
	case c.KCPWindow < 16:
		return fmt.Errorf("client: KCPWindow (%d) must be ≥ 16", c.KCPWindow)
	}
	return nil
}

// Errors a client reports.
var (
	ErrDisconnected = errors.New("client: disconnected by server")
	ErrNoBaseline   = errors.New("client: snapshot names a baseline this client does not hold")
)

// Stats are a client's counters.
type Stats struct {
	SnapshotsReceived uint64
	// FullSnapshots counts the snapshots received that were not deltas (no baseline): the
	// first of a session, and the first from each server a handoff moves the session to.
	FullSnapshots uint64
	BytesReceived uint64 // frame bytes, headers included
	// DecodeErrors counts server messages the client could not decode: snapshots (including
	// the BaselineMisses) and interactions.
	DecodeErrors uint64
	// BaselineMisses counts snapshots dropped because they name a baseline the client does not
	// hold (wire.ErrBadBaseline, docs/wire.md §8); a subset of DecodeErrors. Over an ordered
	// transport (KCP, WebSocket) it stays 0 unless the server deltas against a view it never sent.
	BaselineMisses uint64
	// TickRegressions counts snapshots whose ServerTick was not above the newest decoded one
	// (the server promises strictly increasing ticks within a session); they are dropped.
	TickRegressions uint64
	// Flickers counts entities that left the view and came back within FlickerTicks ticks: a
	// seam where a cell border or a handoff shows through. Legitimate area-of-interest exits
	// take longer to reverse (the leave radius is beyond the enter radius).
	Flickers uint64
	// InputSeqSent is the newest sequence number the client has sent (inputs and interacts
	// share the counter); LastInputSeq the newest the server acknowledged in a snapshot header.
	InputSeqSent, LastInputSeq uint32
	// AckRegressions counts snapshots whose LastInputSeq was below an earlier one's.
	AckRegressions uint64
	// Interactions counts the interactions received (Interaction messages);
	// InteractionsDropped those the application did not drain before the queue overflowed
	// (MaxQueuedInteractions), oldest first; DuplicateInteractions those whose (From, Seq) had
	// already arrived recently (the server promises at most once).
	Interactions, InteractionsDropped, DuplicateInteractions uint64
	// UnexpectedWelcomes counts Welcome messages after the handshake (ignored before the first
	// snapshot, when they name the same entity; anything else ends the session).
	UnexpectedWelcomes uint64
	RTT                time.Duration // smoothed
	ClockOffset        time.Duration // server clock − client clock, smoothed

	// InputsSent and LastInputAcked are the older names of InputSeqSent and LastInputSeq
	// (the same values), kept for existing callers.
	InputsSent, LastInputAcked uint32
}

// FlickerTicks is the longest absence (in ticks, from the first snapshot without the entity to
// the one it is back in) that Stats.Flickers counts. After a gap of more than FlickerTicks
// between two snapshots, the absence counts from the tick after the last snapshot with it.
const FlickerTicks = 5

// Flicker is one entity that left the view and came back within FlickerTicks, as seen in the
// snapshot it came back in: for diagnosing seams.
type Flicker struct {
	Entity     wire.EntityID
	Left, Back wire.Tick        // the first snapshot without it, the one it is back in
	At         wire.EntityState // the entity when back
	Self       wire.EntityState // the client's own entity then (zero if not in view)
	SelfInView bool
}

// recentFlickers is how many Flicker records a client keeps.
const recentFlickers = 8

// MaxQueuedInteractions bounds the interactions a client keeps until Interactions drains them.
const MaxQueuedInteractions = 256

// recentInteractions is how many (From, Seq) pairs a client remembers to count duplicates.
const recentInteractions = 256

// ErrProtocol: the server sent something the protocol does not allow at that point.
var ErrProtocol = errors.New("client: protocol error")

// ErrTimeout: the session ended because the server sent nothing for Config.IdleTimeout, or a
// write could not be sent for writeTimeout (the server stopped draining the session).
var ErrTimeout = errors.New("client: timeout")

// Client is one connected session.
type Client struct {
	cfg     Config
	conn    *kcp.UDPSession
	welcome wire.Welcome

	wmu  sync.Mutex // serialises frame writes and guards wbuf, seq
	wbuf []byte
	seq  uint32

	mu       sync.Mutex // guards the decoded state below
	history  []decoded  // ring of decoded views, by arrival
	head     int        // index of the newest entry in history
	count    int
	stats    Stats
	lastRecv time.Time
	// left maps entities that recently left the view to the tick of the first snapshot
	// without them (for Flickers); entries older than FlickerTicks are pruned.
	left map[wire.EntityID]wire.Tick
	// gone and came are scratch lists of one snapshot's leaves and enters.
	gone, came []wire.EntityID
	scratch    map[wire.EntityID]int // index into gone, when gone and came are long
	flickers   []Flicker             // the last recentFlickers, oldest first
	// inbox holds received interactions until Interactions drains them (a ring).
	inbox             []wire.Interaction
	inboxHead, inboxN int
	seen              map[interactionKey]struct{} // the last recentInteractions (From, Seq)
	seenRing          []interactionKey
	seenNext          int

	done      chan struct{}
	closeOnce sync.Once
	readErr   error

	// The watchdog ends a session that went idle or whose write is stuck. It replaces KCP
	// deadlines, which cost a timer per Read and per Write (a tenth of a bot's CPU).
	base       time.Time    // the monotonic origin of lastFrame and writeSince
	lastFrame  atomic.Int64 // since base, when the last frame arrived
	writeSince atomic.Int64 // since base + 1, when the write in progress began; 0: none
	expired    atomic.Pointer[error]
}

type interactionKey struct {
	from wire.EntityID
	seq  uint32
}

type decoded struct {
	tick    wire.Tick
	arrived time.Time
	slots   []wire.ViewSlot
	lastSeq uint32
}

// Dial connects, says hello and waits for the welcome.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := kcp.DialWithOptions(cfg.Addr, nil, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", cfg.Addr, err)
	}
	conn.SetNoDelay(cfg.KCPNoDelay, cfg.KCPInterval, cfg.KCPResend, cfg.KCPNoCongestion)
	conn.SetWindowSize(cfg.KCPWindow, cfg.KCPWindow)
	conn.SetWriteDelay(false)
	// KCP acks of received snapshots wait for the next flush, which the snapshot ack we write
	// at once triggers: one datagram carries both (−25 % upstream bytes, measured with bots).
	conn.SetACKNoDelay(false)
	c := &Client{cfg: cfg, conn: conn, history: make([]decoded, cfg.History), done: make(chan struct{}),
		left: map[wire.EntityID]wire.Tick{}}

	deadline := time.Now().Add(cfg.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // cancelling ctx aborts the handshake
	defer stop()
	hello := wire.Hello{Version: wire.ProtocolVersion, Token: cfg.Token}
	if _, err := conn.Write(hello.AppendFrame(nil)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("client: hello: %w", err)
	}
	fr := wire.NewFrameReader(conn)
	t, payload, err := fr.Next()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("client: waiting for welcome: %w", err)
	}
	switch t {
	case wire.MsgWelcome:
		if c.welcome, err = wire.DecodeWelcome(payload); err != nil {
			conn.Close()
			return nil, fmt.Errorf("client: welcome: %w", err)
		}
	case wire.MsgDisconnect:
		d, _ := wire.DecodeDisconnect(payload)
		conn.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrDisconnected, d.Reason, d.Message)
	default:
		conn.Close()
		return nil, fmt.Errorf("client: expected welcome, got message type %d", t)
	}
	_ = conn.SetDeadline(time.Time{})
	c.lastRecv = time.Now()
	c.base = c.lastRecv
	go c.readLoop(fr)
	go c.watchdog()
	if cfg.PingInterval > 0 {
		go c.pingLoop()
	}
	return c, nil
}

// Welcome is what the server said when it accepted the session.
func (c *Client) Welcome() wire.Welcome { return c.welcome }

// Entity is the client's own entity.
func (c *Client) Entity() wire.EntityID { return c.welcome.Entity }

// Done is closed when the session has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the session ended (nil while it runs or after Close).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.readErr
	default:
		return nil
	}
}

// SendInput sends one move intent and returns its sequence number.
func (c *Client) SendInput(moveX, moveZ int8, yaw uint16, action uint8) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	in := wire.Input{Seq: c.seq, ClientTick: c.estimatedTick(), MoveX: moveX, MoveZ: moveZ, Yaw: yaw % wire.YawSteps, Action: action}
	c.wbuf = in.AppendFrame(c.wbuf[:0])
	return c.seq, c.write()
}

// SendInteract sends an interaction aimed at target (an entity the client knows from its
// snapshots, real or ghost) and returns its sequence number, taken from the same counter as
// SendInput's (docs/wire.md §5): the server applies inputs and interacts in that order, and a
// snapshot's LastInputSeq acknowledges both. Data beyond wire.MaxInteractData bytes is cut
// (chat text at a character boundary). An invalid interaction (target 0, unknown kind, chat
// that is not UTF-8) is refused without taking a number.
func (c *Client) SendInteract(target wire.EntityID, kind wire.InteractKind, data []byte) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	in := wire.Interact{Seq: c.seq + 1, Target: target, Kind: kind, Data: data}
	c.wbuf = in.AppendFrame(c.wbuf[:0])
	// Check the frame as it will be sent (AppendFrame has cut long data) before taking the number.
	if _, err := wire.DecodeInteract(c.wbuf[3:]); err != nil {
		return 0, fmt.Errorf("client: interact: %w", err)
	}
	c.seq++
	return c.seq, c.write()
}

// Interactions returns the interactions received since the last call (oldest first) and
// empties the queue. At most MaxQueuedInteractions are kept; older ones are dropped (counted
// in Stats.InteractionsDropped).
func (c *Client) Interactions() []wire.Interaction {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inboxN == 0 {
		return nil
	}
	out := make([]wire.Interaction, c.inboxN)
	for i := range out {
		j := (c.inboxHead + i) % len(c.inbox)
		out[i] = c.inbox[j]
		c.inbox[j] = wire.Interaction{}
	}
	c.inboxHead, c.inboxN = 0, 0
	return out
}

// write sends wbuf; callers hold wmu. A server that stops draining the session (KCP window
// full) ends the session after writeTimeout (the watchdog) instead of blocking the caller
// forever.
func (c *Client) write() error {
	c.writeSince.Store(int64(time.Since(c.base)) + 1)
	_, err := c.conn.Write(c.wbuf)
	c.writeSince.Store(0)
	if err != nil {
		if e := c.expired.Load(); e != nil {
			return *e
		}
	}
	return err
}

const writeTimeout = 2 * time.Second

// watchdog ends the session when the server has sent nothing for IdleTimeout or a write has
// been blocked for writeTimeout, checking four times per the shorter of the two.
func (c *Client) watchdog() {
	t := time.NewTicker(min(c.cfg.IdleTimeout, writeTimeout) / 4)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		now := int64(time.Since(c.base))
		var why error
		switch since := c.writeSince.Load(); {
		case since != 0 && time.Duration(now-(since-1)) >= writeTimeout:
			why = fmt.Errorf("%w: a write could not be sent for %v (the server stopped draining the session)", ErrTimeout, writeTimeout)
		case time.Duration(now-c.lastFrame.Load()) >= c.cfg.IdleTimeout:
			why = fmt.Errorf("%w: nothing from the server for %v", ErrTimeout, c.cfg.IdleTimeout)
		default:
			continue
		}
		c.expired.Store(&why)
		_ = c.conn.Close() // unblocks the read loop, which ends the session with why, and a write
		return
	}
}

// estimatedTick is the newest server tick seen (the client's notion of "now" for inputs).
func (c *Client) estimatedTick() wire.Tick {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == 0 {
		return c.welcome.ServerTick
	}
	return c.history[c.head].tick
}

func (c *Client) writeFrame(frame func([]byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = frame(c.wbuf[:0])
	return c.write()
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.wmu.Lock()
	sent := c.seq
	c.wmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.InputSeqSent, s.InputsSent = sent, sent
	s.LastInputAcked = s.LastInputSeq
	return s
}

// Latest returns the newest decoded view: its server tick and a copy of its occupied slots.
func (c *Client) Latest() (wire.Tick, []wire.ViewSlot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == 0 {
		return 0, nil
	}
	d := &c.history[c.head]
	out := make([]wire.ViewSlot, 0, len(d.slots))
	for _, s := range d.slots {
		if s.ID != 0 {
			out = append(out, s)
		}
	}
	return d.tick, out
}

// Self returns the client's own entity as of the newest snapshot.
func (c *Client) Self() (wire.EntityState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == 0 {
		return wire.EntityState{}, false
	}
	for _, s := range c.history[c.head].slots {
		if s.ID == c.welcome.Entity {
			return s.State, true
		}
	}
	return wire.EntityState{}, false
}

// Close ends the session politely.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		_ = c.writeFrame((&wire.Disconnect{Reason: wire.ReasonNone, Message: "bye"}).AppendFrame)
		time.Sleep(time.Duration(2*c.cfg.KCPInterval) * time.Millisecond)
		_ = c.conn.Close()
	})
	<-c.done
	return nil
}

func (c *Client) finish(err error) {
	c.readErr = err
	close(c.done)
	_ = c.conn.Close()
}

func (c *Client) readLoop(fr *wire.FrameReader) {
	var snap wire.Snapshot
	for {
		t, payload, err := fr.Next()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
				err = nil
			}
			if e := c.expired.Load(); e != nil {
				err = *e
			}
			c.finish(err)
			return
		}
		c.lastFrame.Store(int64(time.Since(c.base)))
		switch t {
		case wire.MsgSnapshot:
			if tick, ok := c.onSnapshot(payload, &snap); ok {
				_ = c.writeFrame((&wire.Ack{Tick: tick}).AppendFrame)
			}
		case wire.MsgPong:
			if p, err := wire.DecodePong(payload); err == nil {
				c.onPong(p)
			}
		case wire.MsgInteraction:
			c.onInteraction(payload)
		case wire.MsgWelcome:
			// The handshake had the welcome. A repeat of it before any snapshot is harmless;
			// a welcome later, or for another entity, means the server lost track of the session.
			if err := c.onWelcome(payload); err != nil {
				c.finish(err)
				return
			}
		case wire.MsgDisconnect:
			// KCP has no close of its own: the server's disconnect is the end of the session.
			d, _ := wire.DecodeDisconnect(payload)
			c.finish(fmt.Errorf("%w: %s: %s", ErrDisconnected, d.Reason, d.Message))
			return
		}
	}
}

// onWelcome handles a Welcome after the handshake.
func (c *Client) onWelcome(payload []byte) error {
	w, err := wire.DecodeWelcome(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.UnexpectedWelcomes++
	switch {
	case err != nil:
		return fmt.Errorf("%w: welcome: %v", ErrProtocol, err)
	case w.Entity != c.welcome.Entity:
		return fmt.Errorf("%w: a second welcome, for entity %d (the session's is %d)", ErrProtocol, w.Entity, c.welcome.Entity)
	case c.count > 0:
		return fmt.Errorf("%w: a welcome after %d snapshots", ErrProtocol, c.stats.SnapshotsReceived)
	}
	return nil
}

// onInteraction decodes an interaction aimed at the client's entity and queues it.
func (c *Client) onInteraction(payload []byte) {
	ia, err := wire.DecodeInteraction(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.BytesReceived += uint64(len(payload) + 3)
	if err != nil {
		c.stats.DecodeErrors++
		return
	}
	c.stats.Interactions++
	k := interactionKey{ia.From, ia.Seq}
	if c.seen == nil {
		c.seen = make(map[interactionKey]struct{}, recentInteractions)
		c.seenRing = make([]interactionKey, recentInteractions)
	}
	if _, dup := c.seen[k]; dup {
		c.stats.DuplicateInteractions++
	} else {
		delete(c.seen, c.seenRing[c.seenNext])
		c.seenRing[c.seenNext] = k
		c.seenNext = (c.seenNext + 1) % len(c.seenRing)
		c.seen[k] = struct{}{}
	}
	if c.inbox == nil {
		c.inbox = make([]wire.Interaction, MaxQueuedInteractions)
	}
	if c.inboxN == len(c.inbox) {
		c.inboxHead = (c.inboxHead + 1) % len(c.inbox) // drop the oldest
		c.inboxN--
		c.stats.InteractionsDropped++
	}
	c.inbox[(c.inboxHead+c.inboxN)%len(c.inbox)] = ia
	c.inboxN++
}

// onSnapshot decodes a snapshot against the baseline it names and stores the new view.
func (c *Client) onSnapshot(payload []byte, snap *wire.Snapshot) (wire.Tick, bool) {
	h, err := wire.PeekSnapshotHeader(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.BytesReceived += uint64(len(payload) + 3)
	if err != nil {
		c.decodeError(err)
		return 0, false
	}
	if c.count > 0 && h.ServerTick <= c.history[c.head].tick {
		c.stats.TickRegressions++
		return 0, false // stale or duplicate: keep the newer view
	}
	var base []wire.ViewSlot
	if h.BaselineTick != 0 {
		b := c.find(h.BaselineTick)
		if b == nil {
			c.decodeError(wire.ErrBadBaseline)
			return 0, false
		}
		base = b.slots
	}
	if cap(snap.Slots) < h.SlotCount {
		// Room for the view to grow a quarter before the buffer is replaced again.
		snap.Slots = make([]wire.ViewSlot, 0, min(wire.MaxViewSlots, h.SlotCount+h.SlotCount/4+8))
	}
	if err := wire.DecodeSnapshot(payload, base, snap); err != nil {
		c.decodeError(err)
		return 0, false
	}
	if c.count > 0 {
		c.diffView(c.history[c.head].slots, snap.Slots, c.history[c.head].tick, h.ServerTick)
	}
	c.head = (c.head + 1) % len(c.history)
	if c.count < len(c.history) {
		c.count++
	}
	d := &c.history[c.head]
	d.tick = h.ServerTick
	d.arrived = time.Now()
	d.lastSeq = snap.Header.LastInputSeq
	// The decoded slots become the view, and the evicted view's buffer the next decode's (no
	// copy; the base of a decode is always still in the history, never that buffer).
	d.slots, snap.Slots = snap.Slots, d.slots[:0]
	c.stats.SnapshotsReceived++
	if h.BaselineTick == 0 {
		c.stats.FullSnapshots++
	}
	if seq := snap.Header.LastInputSeq; seq >= c.stats.LastInputSeq {
		c.stats.LastInputSeq = seq
	} else {
		c.stats.AckRegressions++
	}
	c.lastRecv = d.arrived
	return h.ServerTick, true
}

// recordFlicker keeps a Flicker record of entity id, back in view cur at tick. Callers hold c.mu.
func (c *Client) recordFlicker(id wire.EntityID, left, tick wire.Tick, cur []wire.ViewSlot) {
	f := Flicker{Entity: id, Left: left, Back: tick}
	for i := range cur {
		switch cur[i].ID {
		case id:
			f.At = cur[i].State
		case c.welcome.Entity:
			f.Self, f.SelfInView = cur[i].State, true
		}
	}
	if id == c.welcome.Entity {
		f.Self, f.SelfInView = f.At, true
	}
	if len(c.flickers) == recentFlickers {
		c.flickers = append(c.flickers[:0], c.flickers[1:]...)
	}
	c.flickers = append(c.flickers, f)
}

// RecentFlickers returns the last few flickers (Stats.Flickers counts them all), oldest first.
func (c *Client) RecentFlickers() []Flicker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.flickers)
}

// decodeError counts a snapshot that could not be decoded. Callers hold c.mu.
func (c *Client) decodeError(err error) {
	c.stats.DecodeErrors++
	if errors.Is(err, wire.ErrBadBaseline) {
		c.stats.BaselineMisses++
	}
}

// diffView compares the previous view with the new one (at tick) for Flickers: an entity
// absent from the new view is remembered as having left at tick; one that enters within
// FlickerTicks of having left is a flicker. Slots mostly keep their entity, so only the slots
// that changed are looked at; an entity that moved to another slot neither left nor entered.
// Callers hold c.mu.
func (c *Client) diffView(prev, cur []wire.ViewSlot, prevTick, tick wire.Tick) {
	// What is missing left at this snapshot; after a gap longer than FlickerTicks (the session
	// resumed on another server after an outage, or it stalled) nothing was seen in between, so
	// it left just after the previous view: entities that pop in over the first ticks after a
	// resume (re-created a tick later, or ghosted a tick later) are not flickers.
	leftAt := tick
	if tick-prevTick > FlickerTicks {
		leftAt = prevTick + 1
	}
	c.gone, c.came = c.gone[:0], c.came[:0]
	for i := range max(len(prev), len(cur)) {
		var p, q wire.EntityID
		if i < len(prev) {
			p = prev[i].ID
		}
		if i < len(cur) {
			q = cur[i].ID
		}
		if p == q {
			continue
		}
		if p != 0 {
			c.gone = append(c.gone, p)
		}
		if q != 0 {
			c.came = append(c.came, q)
		}
	}
	inGone := func(id wire.EntityID) int { return slices.Index(c.gone, id) }
	if len(c.gone)*len(c.came) > 256 { // many slots changed (a full-state view from a new owner)
		clear(c.scratch)
		if c.scratch == nil {
			c.scratch = make(map[wire.EntityID]int, len(c.gone))
		}
		for i, id := range c.gone {
			c.scratch[id] = i
		}
		inGone = func(id wire.EntityID) int {
			if i, ok := c.scratch[id]; ok {
				return i
			}
			return -1
		}
	}
	for _, id := range c.came {
		if moved := inGone(id); moved >= 0 {
			c.gone[moved] = 0 // changed slots: still in view
			continue
		}
		if t, ok := c.left[id]; ok {
			if tick-t <= FlickerTicks {
				c.stats.Flickers++
				c.recordFlicker(id, t, tick, cur)
			}
			delete(c.left, id)
		}
	}
	for id, t := range c.left {
		if tick-t > FlickerTicks {
			delete(c.left, id)
		}
	}
	for _, id := range c.gone {
		if id != 0 {
			c.left[id] = leftAt
		}
	}
}

// find returns the stored view for tick t, or nil. Callers hold c.mu.
func (c *Client) find(t wire.Tick) *decoded {
	for i := 0; i < c.count; i++ {
		d := &c.history[(c.head-i+len(c.history))%len(c.history)]
		if d.tick == t {
			return d
		}
	}
	return nil
}

func (c *Client) pingLoop() {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			p := wire.Ping{ClientTimeMicros: uint64(time.Now().UnixMicro())}
			if err := c.writeFrame(p.AppendFrame); err != nil {
				return
			}
		}
	}
}

func (c *Client) onPong(p wire.Pong) {
	now := time.Now().UnixMicro()
	rtt := time.Duration(now-int64(p.ClientTimeMicros)) * time.Microsecond
	if rtt < 0 {
		return
	}
	offset := time.Duration(int64(p.ServerTimeMicros)-(int64(p.ClientTimeMicros)+(now-int64(p.ClientTimeMicros))/2)) * time.Microsecond
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats.RTT == 0 {
		c.stats.RTT, c.stats.ClockOffset = rtt, offset
		return
	}
	c.stats.RTT += (rtt - c.stats.RTT) / 8
	c.stats.ClockOffset += (offset - c.stats.ClockOffset) / 8
}

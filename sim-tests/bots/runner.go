package bots

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/meridian-mmo/meridian/auth"
	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/wire"
)

// Config describes a crowd of bots.
type Config struct {
	Addr        string
	N           int
	Behavior    string
	Seed        uint64
	InputHz     int           // how often behaviours run (an intent is sent only when it changes)
	DialWorkers int           // concurrent handshakes while connecting
	Client      client.Config // template; Addr and Token are set per bot
	// InteractEvery is how often each bot sends a chat Interact to a random other entity in
	// its view (each wait drawn from 0.5–1.5 × InteractEvery, in steps of the input rate);
	// 0: never.
	InteractEvery time.Duration
	// TokenSigner and PlayerBase choose the session tokens. With a TokenSigner, bot i plays as
	// player PlayerBase+i with a token it mints when it dials, valid for TokenLifetime (for a
	// gateway verifying tokens signed with the same secret; PlayerBase ≥ 1). Without one, bot i
	// sends the development token "player-<PlayerBase+i>" if PlayerBase > 0 (so a gateway in
	// development mode makes it that player), else "bot-<i>" (a player derived from it).
	TokenSigner *auth.Signer
	PlayerBase  uint64
	// OnInteraction (nil: none) is called, from Run's goroutine, with every interaction bot i
	// received (its client counts them either way), e.g. the results of inventory operations
	// a test sends through Clients().
	OnInteraction func(i int, ia wire.Interaction)
	// InteractKind is what the bots' interactions are (0: wire.InteractChat): with
	// wire.InteractAttack they fight (each attack takes hit points; some die).
	InteractKind wire.InteractKind
}

// TokenLifetime is how long a token a bot mints (Config.TokenSigner) stays valid.
const TokenLifetime = 24 * time.Hour

// DefaultConfig returns a crowd of n wandering bots aimed at addr. Bots use a 20 ms KCP
// interval (half the server's fast mode) so that thousands fit on one machine beside a server,
// and keep only the views the baseline window needs (they draw nothing, so interpolate
// nothing): half a game client's memory.
func DefaultConfig(addr string, n int) Config {
	cc := client.DefaultConfig(addr, []byte("bot"))
	cc.KCPInterval = 20
	cc.History = wire.BaselineWindow
	return Config{Addr: addr, N: n, Behavior: "wander", Seed: 1, InputHz: 20, DialWorkers: 32, Client: cc}
}

// Validate names the first field out of bounds.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("bots: Addr must be set")
	case c.N < 1:
		return fmt.Errorf("bots: N (%d) must be ≥ 1", c.N)
	case c.InputHz < 1 || c.InputHz > 120:
		return fmt.Errorf("bots: InputHz (%d) must be in [1, 120]", c.InputHz)
	case c.DialWorkers < 1:
		return fmt.Errorf("bots: DialWorkers (%d) must be ≥ 1", c.DialWorkers)
	case c.InteractEvery < 0:
		return fmt.Errorf("bots: InteractEvery (%v) must be ≥ 0", c.InteractEvery)
	case c.TokenSigner != nil && c.PlayerBase == 0:
		return fmt.Errorf("bots: PlayerBase must be ≥ 1 with a TokenSigner (bot i plays as player PlayerBase+i)")
	case c.TokenSigner != nil && c.PlayerBase > math.MaxInt64-uint64(c.N-1):
		return fmt.Errorf("bots: PlayerBase (%d) + N − 1 must be ≤ %d", c.PlayerBase, int64(math.MaxInt64))
	case c.TokenSigner == nil && c.PlayerBase > auth.MaxExplicitDevPlayer-uint64(c.N-1):
		return fmt.Errorf("bots: PlayerBase (%d) + N − 1 must be ≤ %d for development tokens", c.PlayerBase, uint64(auth.MaxExplicitDevPlayer))
	}
	if _, err := ParseBehavior(c.Behavior); err != nil {
		return err
	}
	return nil
}

type bot struct {
	i        int // its index in the crowd
	c        *client.Client
	world    [2][2]float64
	behavior Behavior
	rng      *rand.Rand
	// irng draws the interactions (their waits and targets), apart from rng so that turning
	// them on does not change the walk.
	irng       *rand.Rand
	interactIn int         // steps until the next interaction
	closed     atomic.Bool // the runner closed the session
}

// Runner is a connected crowd.
type Runner struct {
	cfg           Config
	bots          []*bot
	inputsSent    atomic.Uint64
	interactsSent atomic.Uint64
	sendErrors    atomic.Uint64
	// next and nextEvery are a behaviour and an interaction rate to switch to at Run's next
	// step (SetBehavior, SetInteractEvery); every is the rate in use (Run's goroutine, after
	// Connect).
	next      atomic.Pointer[Factory]
	nextEvery atomic.Pointer[interactRate]
	every     time.Duration
	kind      wire.InteractKind
}

// Totals aggregates every bot's counters.
type Totals struct {
	Bots      int
	Connected int // sessions still open
	// Disconnected counts sessions that ended without the runner closing them (the server or
	// the network ended them: what a player would see as a reconnect); Ended says why, by the
	// error text (an empty text: the server said goodbye without an error).
	Disconnected      int
	Ended             map[string]int
	SnapshotsReceived uint64
	FullSnapshots     uint64 // snapshots that were not deltas (client.Stats)
	BytesReceived     uint64
	DecodeErrors      uint64
	InputsSent        uint64
	SendErrors        uint64 // inputs and interacts whose write failed
	// Seams the clients saw (client.Stats): entities that left the view and were back within
	// client.FlickerTicks, snapshots whose tick did not increase, snapshots against a baseline
	// the client did not hold, acknowledgements that went backwards.
	Flickers, TickRegressions, BaselineMisses, AckRegressions uint64
	// InputsUnacked sums, over the sessions still open, the sequence numbers sent that the
	// server has not acknowledged (InputSeqSent − LastInputSeq): 0 once the last inputs had
	// time to arrive (Settle) means none was lost.
	InputsUnacked uint64
	// InteractionsSent counts the chat Interacts the bots sent, InteractionsReceived the
	// Interactions they received (DuplicateInteractions of them repeats).
	InteractionsSent, InteractionsReceived, DuplicateInteractions uint64
	RTTp50, RTTp99                                                time.Duration
	// WireIn and WireOut are the process's UDP traffic, KCP and UDP/IPv4 headers included
	// (kcp-go's process-wide counters plus 28 bytes a datagram). In a process that runs only
	// bots, WireIn is the downstream and WireOut the upstream of all bots together.
	WireIn, WireOut uint64
}

// udpIPv4Overhead is the IPv4 (20) + UDP (8) header bytes of one datagram.
const udpIPv4Overhead = 28

// Connect dials every bot (DialWorkers at a time) and returns when all are welcomed, or the
// first error (closing those already connected).
func Connect(ctx context.Context, cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	factory, _ := ParseBehavior(cfg.Behavior)
	r := &Runner{cfg: cfg, bots: make([]*bot, cfg.N), every: cfg.InteractEvery, kind: cfg.InteractKind}
	jobs := make(chan int)
	errs := make(chan error, cfg.N)
	var wg sync.WaitGroup
	for range min(cfg.DialWorkers, cfg.N) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("bot %d: %w", i, ctx.Err())
					continue
				}
				cc := cfg.Client
				cc.Addr = cfg.Addr
				tok, err := cfg.token(i, time.Now())
				if err != nil {
					errs <- fmt.Errorf("bot %d: %w", i, err)
					continue
				}
				cc.Token = tok
				c, err := client.Dial(ctx, cc)
				if err != nil {
					errs <- fmt.Errorf("bot %d: %w", i, err)
					continue
				}
				w := c.Welcome()
				world := [2][2]float64{
					{wire.DequantisePos(w.WorldMin[0]), wire.DequantisePos(w.WorldMin[1])},
					{wire.DequantisePos(w.WorldMax[0]), wire.DequantisePos(w.WorldMax[1])},
				}
				b := &bot{i: i, c: c, world: world, behavior: factory(world), rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
					irng: rand.New(rand.NewPCG(cfg.Seed^0x696e7465726163, uint64(i)))} // "interac"
				b.interactIn = r.interactWait(b)
				r.bots[i] = b
			}
		}()
	}
	for i := range cfg.N {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// token is bot i's session token, minted (with a TokenSigner) at now.
func (c Config) token(i int, now time.Time) ([]byte, error) {
	switch {
	case c.TokenSigner != nil:
		return c.TokenSigner.Mint(wire.PlayerID(c.PlayerBase+uint64(i)), now.Add(TokenLifetime))
	case c.PlayerBase > 0:
		return fmt.Appendf(nil, "player-%d", c.PlayerBase+uint64(i)), nil
	default:
		return fmt.Appendf(nil, "bot-%d", i), nil
	}
}

// Run steps every bot's behaviour at InputHz until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(time.Second / time.Duration(r.cfg.InputHz))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f := r.next.Swap(nil); f != nil {
			for _, b := range r.bots {
				b.behavior = (*f)(b.world)
			}
		}
		if d := r.nextEvery.Swap(nil); d != nil {
			r.every, r.kind = max(d.every, 0), d.kind
			for _, b := range r.bots {
				b.interactIn = r.interactWait(b)
			}
		}
		for _, b := range r.bots {
			select {
			case <-b.c.Done():
				continue
			default:
			}
			self, ok := b.c.Self()
			mx, mz, yaw, send := b.behavior.Next(self, ok, b.rng)
			if send {
				if _, err := b.c.SendInput(mx, mz, yaw, 0); err != nil {
					r.sendErrors.Add(1)
				} else {
					r.inputsSent.Add(1)
				}
			}
			r.interact(b)
		}
	}
}

// interactWait draws the steps until a bot's next interaction (0: interactions are off).
func (r *Runner) interactWait(b *bot) int {
	if r.every <= 0 {
		return 0
	}
	mean := r.every.Seconds() * float64(r.cfg.InputHz)
	return max(1, int(mean*(0.5+b.irng.Float64())))
}

// interact counts down to a bot's next interaction and sends it: a chat to a random other
// entity in the bot's view (none in view: the next step tries again). It also drains the
// interactions the bot received (counted by its client).
func (r *Runner) interact(b *bot) {
	for _, ia := range b.c.Interactions() {
		if r.cfg.OnInteraction != nil {
			r.cfg.OnInteraction(b.i, ia)
		}
	}
	if b.interactIn == 0 {
		return
	}
	if b.interactIn--; b.interactIn > 0 {
		return
	}
	_, view := b.c.Latest()
	self := b.c.Entity()
	view = slices.DeleteFunc(view, func(s wire.ViewSlot) bool { return s.ID == self })
	if len(view) == 0 {
		b.interactIn = 1
		return
	}
	target := view[b.irng.IntN(len(view))].ID
	kind, msg := r.kind, []byte(nil)
	if kind == 0 || kind == wire.InteractChat {
		kind, msg = wire.InteractChat, fmt.Appendf(nil, "hello %d from %d", target, self)
	}
	if _, err := b.c.SendInteract(target, kind, msg); err != nil {
		r.sendErrors.Add(1)
	} else {
		r.interactsSent.Add(1)
	}
	b.interactIn = r.interactWait(b)
}

// Settle waits, after Run has returned, until every open session's inputs and interacts are
// acknowledged by the server, or within has passed, or ctx ends; it reports whether they
// were. Totals.InputsUnacked is then the count of those never acknowledged.
func (r *Runner) Settle(ctx context.Context, within time.Duration) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.unacked() == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return r.unacked() == 0
		case <-tick.C:
		}
	}
}

func (r *Runner) unacked() uint64 {
	var n uint64
	for _, b := range r.bots {
		if b == nil {
			continue
		}
		select {
		case <-b.c.Done():
			continue
		default:
		}
		s := b.c.Stats()
		if s.InputSeqSent > s.LastInputSeq {
			n += uint64(s.InputSeqSent - s.LastInputSeq)
		}
	}
	return n
}

// SetBehavior gives every bot a new behaviour (by ParseBehavior's names) from Run's next step.
func (r *Runner) SetBehavior(name string) error {
	f, err := ParseBehavior(name)
	if err != nil {
		return err
	}
	r.next.Store(&f)
	return nil
}

// SetInteractEvery changes how often the bots interact (0: never) and with what kind of
// interaction (0: chat), from Run's next step.
func (r *Runner) SetInteractEvery(d time.Duration, kind wire.InteractKind) {
	r.nextEvery.Store(&interactRate{d, kind})
}

type interactRate struct {
	every time.Duration
	kind  wire.InteractKind
}

// Client is bot i's client (nil if it did not connect).
func (r *Runner) Client(i int) *client.Client {
	if i < 0 || i >= len(r.bots) || r.bots[i] == nil {
		return nil
	}
	return r.bots[i].c
}

// Clients returns the bots' clients.
func (r *Runner) Clients() []*client.Client {
	out := make([]*client.Client, 0, len(r.bots))
	for _, b := range r.bots {
		if b != nil {
			out = append(out, b.c)
		}
	}
	return out
}

// Totals sums every bot's counters.
func (r *Runner) Totals() Totals {
	snmp := kcp.DefaultSnmp.Copy()
	t := Totals{
		Bots: len(r.bots), InputsSent: r.inputsSent.Load(),
		InteractionsSent: r.interactsSent.Load(), SendErrors: r.sendErrors.Load(),
		WireIn:  snmp.InBytes + udpIPv4Overhead*snmp.InPkts,
		WireOut: snmp.OutBytes + udpIPv4Overhead*snmp.OutPkts,
	}
	rtts := make([]time.Duration, 0, len(r.bots))
	for _, b := range r.bots {
		if b == nil {
			continue
		}
		s := b.c.Stats()
		select {
		case <-b.c.Done():
			if b.closed.Load() {
				break
			}
			t.Disconnected++
			why := ""
			if err := b.c.Err(); err != nil {
				why = err.Error()
			}
			if t.Ended == nil {
				t.Ended = map[string]int{}
			}
			t.Ended[why]++
		default:
			t.Connected++
			if s.InputSeqSent > s.LastInputSeq {
				t.InputsUnacked += uint64(s.InputSeqSent - s.LastInputSeq)
			}
		}
		t.SnapshotsReceived += s.SnapshotsReceived
		t.FullSnapshots += s.FullSnapshots
		t.BytesReceived += s.BytesReceived
		t.DecodeErrors += s.DecodeErrors
		t.Flickers += s.Flickers
		t.TickRegressions += s.TickRegressions
		t.BaselineMisses += s.BaselineMisses
		t.AckRegressions += s.AckRegressions
		t.InteractionsReceived += s.Interactions
		t.DuplicateInteractions += s.DuplicateInteractions
		if s.RTT > 0 {
			rtts = append(rtts, s.RTT)
		}
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		t.RTTp50 = rtts[len(rtts)/2]
		t.RTTp99 = rtts[min(len(rtts)-1, len(rtts)*99/100)]
	}
	return t
}

// Close disconnects every bot.
func (r *Runner) Close() {
	var wg sync.WaitGroup
	for _, b := range r.bots {
		if b == nil {
			continue
		}
		b.closed.Store(true)
		wg.Add(1)
		go func() { defer wg.Done(); b.c.Close() }()
	}
	wg.Wait()
}

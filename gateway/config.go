package gateway

import (
	"fmt"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// Config tunes the client edge (KCP and WebSocket alike; the KCP* fields only KCP).
type Config struct {
	Listen           string        // UDP address for KCP, e.g. "127.0.0.1:7777"
	MaxSessions      int           // concurrent sessions; further hellos get ReasonServerFull
	MaxSessionsPerIP int           // 0 = unlimited (kcp-go has no per-address limit of its own)
	HelloTimeout     time.Duration // a session must say hello within this
	IdleTimeout      time.Duration // a session silent this long is closed
	InputsPerSecond  int           // sustained input rate per session; excess inputs are rejected
	InputBurst       int           // token-bucket burst for inputs
	FramesPerSecond  int           // sustained rate of all frames after the hello (acks, pings, inputs); excess dropped
	FrameBurst       int           // token-bucket burst for frames
	MaxBadFrames     int           // malformed or unknown frames tolerated before the session is closed
	// KCP tuning (kcp-go NoDelay): fast mode by default (LESSONS.md: nodelay(1, 10, 2, 1)).
	KCPNoDelay, KCPInterval, KCPResend, KCPNoCongestion int
	KCPWindow                                           int // send/receive window, packets
	// WSOriginPatterns are the browser origins (host patterns, path.Match syntax, as in
	// websocket.AcceptOptions.OriginPatterns) allowed to open a WebSocket session besides the
	// request's own host. Requests without an Origin (non-browser clients) are always allowed.
	WSOriginPatterns []string
	// Authenticate checks a hello's token and names the player it was issued for (a game's
	// login service signs tokens; auth.Signer.Verify checks them). An error refuses the
	// session with ReasonBadToken (counted in meridian_sessions_rejected_total{reason="bad_token"}).
	// nil is development mode: auth.DevPlayer, under which a client is whichever player its
	// token names.
	Authenticate func(token []byte) (wire.PlayerID, error)
	// FirstSessionID is the id of the edge's first session, in [0, MaxFirstSessionID]; 0 means
	// 1 (a standalone cell server). The following sessions count up from it, wrapping from
	// 2^32 − 1 to 1 (0 is never an id), so at least 2^31 sessions are opened before the ids
	// wrap. The gateway process sets it from its incarnation (FirstSessionIDFor), so that
	// a restarted gateway does not hand out the ids of the previous process's sessions,
	// which cell servers may still hold entities for.
	FirstSessionID SessionID
}

// MaxFirstSessionID is the largest Config.FirstSessionID: it leaves 2^31 ids before the wrap.
const MaxFirstSessionID SessionID = 1 << 31

// FirstSessionIDFor is the first session id of a gateway process of this incarnation: a
// 31-bit value mixed from it (splitmix64), plus 1, in [1, MaxFirstSessionID]. Two
// incarnations' id ranges overlap only if their starting points are closer than the sessions
// they opened: for two that opened n sessions each, a chance of about n / 2^30 (one in a
// thousand for a million sessions each).
func FirstSessionIDFor(incarnation uint64) SessionID {
	return SessionID(1 + splitmix64(incarnation)%uint64(MaxFirstSessionID))
}

// splitmix64 is the finaliser of SplitMix64 (Steele, Lea, Flood 2014): a bijection of the
// uint64s whose every output bit depends on every input bit.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// firstSessionID is FirstSessionID with 0 meaning 1.
func (c Config) firstSessionID() SessionID { return max(c.FirstSessionID, 1) }

// DefaultConfig returns a Config for a LAN or a local machine.
func DefaultConfig() Config {
	return Config{
		Listen:           "127.0.0.1:7777",
		MaxSessions:      20000,
		MaxSessionsPerIP: 0,
		HelloTimeout:     5 * time.Second,
		IdleTimeout:      15 * time.Second,
		InputsPerSecond:  60,
		InputBurst:       30,
		FramesPerSecond:  150, // 20 acks + up to 60 inputs + pings, with room
		FrameBurst:       100,
		MaxBadFrames:     8,
		KCPNoDelay:       1,
		KCPInterval:      10,
		KCPResend:        2,
		KCPNoCongestion:  1,
		KCPWindow:        64, // at 20 snapshots/s a congested client holds ≤ ~3 s of backlog before newer snapshots supersede unsent ones
	}
}

// Validate names the first field that is out of bounds.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return fmt.Errorf("gateway: Listen must be set")
	case c.MaxSessions < 1:
		return fmt.Errorf("gateway: MaxSessions (%d) must be ≥ 1", c.MaxSessions)
	case c.MaxSessionsPerIP < 0:
		return fmt.Errorf("gateway: MaxSessionsPerIP (%d) must be ≥ 0", c.MaxSessionsPerIP)
	case c.HelloTimeout <= 0:
		return fmt.Errorf("gateway: HelloTimeout (%v) must be > 0", c.HelloTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("gateway: IdleTimeout (%v) must be > 0", c.IdleTimeout)
	case c.InputsPerSecond < 1:
		return fmt.Errorf("gateway: InputsPerSecond (%d) must be ≥ 1", c.InputsPerSecond)
	case c.InputBurst < 1:
		return fmt.Errorf("gateway: InputBurst (%d) must be ≥ 1", c.InputBurst)
	case c.FramesPerSecond < c.InputsPerSecond:
		return fmt.Errorf("gateway: FramesPerSecond (%d) must be ≥ InputsPerSecond (%d)", c.FramesPerSecond, c.InputsPerSecond)
	case c.FrameBurst < 1:
		return fmt.Errorf("gateway: FrameBurst (%d) must be ≥ 1", c.FrameBurst)
	case c.MaxBadFrames < 0:
		return fmt.Errorf("gateway: MaxBadFrames (%d) must be ≥ 0", c.MaxBadFrames)
	case c.KCPInterval < 1 || c.KCPInterval > 100:
		return fmt.Errorf("gateway: KCPInterval (%d ms) must be in [1, 100]", c.KCPInterval)
	case c.KCPWindow < 16 || c.KCPWindow > 4096:
		return fmt.Errorf("gateway: KCPWindow (%d) must be in [16, 4096]", c.KCPWindow)
	case c.FirstSessionID > MaxFirstSessionID:
		return fmt.Errorf("gateway: FirstSessionID (%d) must be in [0, %d] (0: 1)", c.FirstSessionID, MaxFirstSessionID)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/meridian-mmo/meridian/auth"
	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/wire"
)

type gatewayOptions struct {
	id          uint64
	meta        string
	listen      string
	wsListen    string
	wsOrigins   string
	metrics     string
	seed        uint64
	maxSessions int
	logLevel    string
	pprof       bool
	secretFile  string
}

// pprofEnv turns --pprof on by default (for harnesses that start the binary with fixed flags).
const pprofEnv = "MERIDIAN_PPROF"

// runGateway runs the client edge of a cluster: clients connect here over KCP (or WebSocket),
// and each session is routed to the cell server that owns its entity.
func runGateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian gateway", flag.ContinueOnError)
	def := gateway.DefaultServerConfig()
	var o gatewayOptions
	fs.Uint64Var(&o.id, "id", 1, "gateway id, ≥ 1 (unique among gateways; its peer-link id is 2^48 + id)")
	fs.StringVar(&o.meta, "meta", "127.0.0.1:8300", "metadata nodes' HTTP addresses, comma-separated")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7777", "UDP address for client KCP sessions")
	fs.StringVar(&o.wsListen, "ws-listen", "", "TCP address for WebSocket clients (path /ws); empty: off")
	fs.StringVar(&o.wsOrigins, "ws-origins", "", "browser origins (host patterns, comma-separated) allowed to open WebSocket sessions besides the gateway's own host")
	fs.StringVar(&o.metrics, "metrics-addr", "127.0.0.1:9200", "HTTP address serving /metrics (empty: off)")
	fs.Uint64Var(&o.seed, "seed", def.Seed, "seed of the spawn points of new sessions")
	fs.IntVar(&o.maxSessions, "max-sessions", def.Edge.MaxSessions, "most concurrent client sessions")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.secretFile, "token-secret-file", "", "file holding the secret (≥ 32 bytes, surrounding whitespace trimmed) that session tokens are signed with (package auth); empty: development mode, any token is accepted as the player it names (default from $MERIDIAN_TOKEN_SECRET_FILE)")
	fs.BoolVar(&o.pprof, "pprof", os.Getenv(pprofEnv) != "", "also serve net/http/pprof under /debug/pprof/ on --metrics-addr, with mutex and block profiling on (default from $"+pprofEnv+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	if o.meta == "" {
		return errors.New("--meta is required")
	}
	cfg := def
	cfg.ID = o.id
	cfg.Incarnation = uint64(time.Now().UnixNano())
	cfg.Meta = splitAddrs(o.meta)
	cfg.Edge.Listen = o.listen
	cfg.Edge.MaxSessions = o.maxSessions
	cfg.Edge.WSOriginPatterns = splitAddrs(o.wsOrigins)
	cfg.WSListen = o.wsListen
	cfg.Router = gateway.DefaultRouterConfig(cfg.Home())
	cfg.Seed = o.seed
	if o.secretFile != "" {
		secret, err := auth.LoadSecret(o.secretFile)
		if err != nil {
			return fmt.Errorf("--token-secret-file: %w", err)
		}
		signer, err := auth.NewSigner(secret)
		if err != nil {
			return fmt.Errorf("--token-secret-file: %w", err)
		}
		cfg.Edge.Authenticate = func(token []byte) (wire.PlayerID, error) {
			return signer.Verify(token, time.Now())
		}
	} else {
		log.Warn("no --token-secret-file: development mode, any token is accepted as the player it names (\"player-<n>\" is player n; other tokens map to a player derived from them); do not expose this gateway")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	reg := newRegistry()
	var extra []route
	if o.pprof {
		extra = pprofRoutes()
	}
	maddr, err := serveMetrics(ctx, o.metrics, reg, log, extra...)
	if err != nil {
		return err
	}
	srv, err := gateway.NewServer(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	ws := ""
	if a := srv.WSAddr(); a != nil {
		ws = a.String()
	}
	log.Info("gateway starting", "id", o.id, "home", srv.Home(), "meta", o.meta,
		"kcp", srv.Addr().String(), "websocket", ws, "metrics", maddr)
	err = srv.Run(ctx)
	log.Info("gateway stopped")
	return err
}

// pprofRoutes are the net/http/pprof handlers, and turns on the mutex and block profiles
// (sampled: 1 in 10 contention events, blocking events ≥ 10 µs always and shorter ones
// proportionally) so /debug/pprof/mutex and /debug/pprof/block have something to show.
func pprofRoutes() []route {
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
	return []route{
		{"/debug/pprof/", http.HandlerFunc(pprof.Index)},
		{"/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline)},
		{"/debug/pprof/profile", http.HandlerFunc(pprof.Profile)},
		{"/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol)},
		{"/debug/pprof/trace", http.HandlerFunc(pprof.Trace)},
	}
}

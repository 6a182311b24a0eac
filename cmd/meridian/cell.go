package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/wire"
)

type cellOptions struct {
	id         uint
	listen     string
	metrics    string
	world      float64
	seed       uint64
	aoiEnter   float64
	aoiLeave   float64
	maxSpeed   float64
	viewSlots  int
	maxClients int
	meta       string
	logLevel   string
}

func addCellFlags(fs *flag.FlagSet, o *cellOptions, listen, metrics string, world float64) {
	w := cellserver.DefaultConfig()
	fs.UintVar(&o.id, "id", 1, "cell server id (high bits of the entity ids it allocates)")
	fs.StringVar(&o.listen, "listen", listen, "UDP address for client KCP sessions")
	fs.StringVar(&o.metrics, "metrics-addr", metrics, "HTTP address serving /metrics (empty: off)")
	fs.Float64Var(&o.world, "world", world, "side of the square world, metres")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the world's RNG (spawn points)")
	fs.Float64Var(&o.aoiEnter, "aoi-enter", w.AOIEnterRadius, "area-of-interest radius at which an entity enters a view, metres")
	fs.Float64Var(&o.aoiLeave, "aoi-leave", w.AOILeaveRadius, "radius beyond which it leaves (hysteresis), metres")
	fs.Float64Var(&o.maxSpeed, "max-speed", w.MaxSpeed, "fastest a player may move, m/s")
	fs.IntVar(&o.viewSlots, "view-slots", w.MaxViewSlots, "most entities in one client's view")
	fs.IntVar(&o.maxClients, "max-clients", w.MaxClients, "most clients this server accepts")
	fs.StringVar(&o.meta, "meta", "", "metadata service addresses (cluster mode; not available yet)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
}

func (o *cellOptions) config(now time.Time) (cellserver.StandaloneConfig, error) {
	if o.meta != "" {
		return cellserver.StandaloneConfig{}, errors.New("--meta: cluster mode needs the metadata service, which is not built yet; omit --meta to run standalone")
	}
	w := cellserver.DefaultConfig()
	w.WorldMin = [2]float64{0, 0}
	w.WorldMax = [2]float64{o.world, o.world}
	w.AOIEnterRadius, w.AOILeaveRadius = o.aoiEnter, o.aoiLeave
	w.MaxSpeed = o.maxSpeed
	w.MaxViewSlots = o.viewSlots
	w.MaxClients = o.maxClients
	w.EntityIDBase = wire.EntityID(o.id) << 40
	if err := w.Validate(); err != nil {
		return cellserver.StandaloneConfig{}, err
	}
	e := gateway.DefaultConfig()
	e.Listen = o.listen
	e.MaxSessions = o.maxClients
	return cellserver.StandaloneConfig{World: w, Driver: cellserver.DefaultDriverConfig(now), Edge: e, Seed: o.seed}, nil
}

func runCell(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian cell", flag.ContinueOnError)
	var o cellOptions
	addCellFlags(fs, &o, "127.0.0.1:7777", "127.0.0.1:9100", 16384)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	cfg, err := o.config(time.Now())
	if err != nil {
		return err
	}
	reg := newRegistry()
	srv, err := cellserver.NewStandalone(cfg, reg, log)
	if err != nil {
		return err
	}
	maddr, err := serveMetrics(ctx, o.metrics, reg, log)
	if err != nil {
		return err
	}
	log.Info("cell server up (standalone)", "id", o.id, "kcp", srv.Listener.Addr().String(), "metrics", maddr,
		"world_m", o.world, "tick_hz", cfg.World.TickHz)
	err = srv.Run(ctx)
	log.Info("cell server stopped")
	return err
}

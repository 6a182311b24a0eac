package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/gateway"
	"github.com/meridian-mmo/meridian/persistence"
	"github.com/meridian-mmo/meridian/raftmeta"
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
	data       string
	peer       string
	capacity   int
	leaseTTL   time.Duration
	ckptEvery  int
	pgURL      string
	logLevel   string
}

func addCellFlags(fs *flag.FlagSet, o *cellOptions, listen, metrics string, world float64) {
	w := cellserver.DefaultConfig()
	fs.UintVar(&o.id, "id", 1, "cell server id (high bits of the entity ids it allocates)")
	fs.StringVar(&o.listen, "listen", listen, "UDP address for client KCP sessions (standalone; in cluster mode clients come through `meridian gateway`, and the cell server serves none unless this is set)")
	fs.StringVar(&o.metrics, "metrics-addr", metrics, "HTTP address serving /metrics (empty: off)")
	fs.Float64Var(&o.world, "world", world, "side of the square world, metres")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the world's RNG (spawn points)")
	fs.Float64Var(&o.aoiEnter, "aoi-enter", w.AOIEnterRadius, "area-of-interest radius at which an entity enters a view, metres")
	fs.Float64Var(&o.aoiLeave, "aoi-leave", w.AOILeaveRadius, "radius beyond which it leaves (hysteresis), metres")
	fs.Float64Var(&o.maxSpeed, "max-speed", w.MaxSpeed, "fastest a player may move, m/s")
	fs.IntVar(&o.viewSlots, "view-slots", w.MaxViewSlots, "most entities in one client's view")
	fs.IntVar(&o.maxClients, "max-clients", w.MaxClients, "most clients this server accepts")
	fs.StringVar(&o.meta, "meta", "", "metadata nodes' HTTP addresses, comma-separated: cluster mode (empty: standalone, the whole world here)")
	fs.StringVar(&o.data, "data", "", "cluster mode: data directory (the incarnation counter; checkpoints later)")
	fs.StringVar(&o.peer, "peer", "127.0.0.1:0", "cluster mode: TCP address for peer links from other cell servers")
	fs.IntVar(&o.capacity, "capacity", 5000, "cluster mode: entities this server is sized for")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", 3*time.Second, "cluster mode: lease asked for at every renewal (renewed every second)")
	fs.IntVar(&o.ckptEvery, "checkpoint-every", 20, "cluster mode: ticks between checkpoints of the owned cells to the local Pebble store in --data (0: none)")
	fs.StringVar(&o.pgURL, "pg-url", os.Getenv("MERIDIAN_PG_URL"), "cluster mode: PostgreSQL connection URL (default $MERIDIAN_PG_URL; empty: none, Pebble alone serves): players' positions, inventories and the event log; migrated on start")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
}

func (o *cellOptions) worldConfig() cellserver.Config {
	w := cellserver.DefaultConfig()
	w.WorldMin = [2]float64{0, 0}
	w.WorldMax = [2]float64{o.world, o.world}
	w.AOIEnterRadius, w.AOILeaveRadius = o.aoiEnter, o.aoiLeave
	w.MaxSpeed = o.maxSpeed
	w.MaxViewSlots = o.viewSlots
	w.MaxClients = o.maxClients
	return w
}

// clusterConfig builds a cluster-mode configuration; the world's size comes from the map.
func (o *cellOptions) clusterConfig(inc uint64) (cellserver.ClusterConfig, error) {
	c := cellserver.DefaultClusterConfig(raftmeta.ServerID(o.id), inc)
	c.Member.World = o.worldConfig()
	c.Meta = splitAddrs(o.meta)
	c.PeerListen = o.peer
	c.Edge.Listen = o.listen
	c.Edge.MaxSessions = o.maxClients
	c.Capacity = o.capacity
	c.LeaseTTL = o.leaseTTL
	if o.ckptEvery > 0 || o.pgURL != "" {
		// The local store: checkpoints, and the outbox of critical events (with PostgreSQL
		// even when checkpoints are off).
		c.CheckpointDir = filepath.Join(o.data, "pebble")
		c.CheckpointEvery = max(o.ckptEvery, 0)
		c.OnFatal = func(err error) {
			// The Store never retries a failed fsync (what it wrote may be lost): stop now;
			// the cells go to other servers when the lease lapses.
			fmt.Fprintf(os.Stderr, "meridian cell: local store failed, stopping: %v\n", err)
			os.Exit(1)
		}
	}
	c.Seed = o.seed
	return c, c.Validate()
}

// nextIncarnation reads, increments and durably rewrites the data directory's incarnation
// counter: every start of a server gets a new one, so its entity and transfer ids never
// repeat those of a previous run.
func nextIncarnation(dir string) (uint64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	path := filepath.Join(dir, "incarnation")
	var inc uint64
	if b, err := os.ReadFile(path); err == nil {
		if inc, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	inc++
	if inc >= 1<<16 {
		inc = 1 // ids also carry the server id; wrapping after 65535 restarts is safe enough
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	if _, err := fmt.Fprintf(f, "%d\n", inc); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return inc, os.Rename(tmp, path)
}

func (o *cellOptions) config(now time.Time) (cellserver.StandaloneConfig, error) {
	w := o.worldConfig()
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
	if o.meta != "" {
		listenSet := false
		fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
		if !listenSet {
			o.listen = "" // clients come through gateways
		}
		return runClusterCell(ctx, &o, log)
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

func runClusterCell(ctx context.Context, o *cellOptions, log *slog.Logger) error {
	if o.data == "" {
		return errors.New("--data is required with --meta")
	}
	inc, err := nextIncarnation(o.data)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	cfg, err := o.clusterConfig(inc)
	if err != nil {
		return err
	}
	if o.pgURL != "" {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		pg, err := persistence.OpenPG(octx, o.pgURL, persistence.DefaultPGConfig())
		cancel()
		if err != nil {
			return fmt.Errorf("--pg-url: %w", err)
		}
		defer pg.Close()
		cfg.PG = pg
		log.Info("PostgreSQL is the authoritative store (schema migrated)")
	} else {
		log.Info("no --pg-url: Pebble alone serves (inventory operations are refused)")
	}
	reg := newRegistry()
	srv, err := cellserver.NewCluster(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	maddr, err := serveMetrics(ctx, o.metrics, reg, log, route{"/debug/entities", srv.HoldingsHandler()})
	if err != nil {
		return err
	}
	edge := "none (clients come through gateways)"
	if srv.Listener != nil {
		edge = srv.Listener.Addr().String()
	}
	log.Info("cell server starting (cluster mode)", "id", o.id, "incarnation", inc, "meta", o.meta,
		"peer", srv.PeerAddr(), "kcp", edge, "metrics", maddr)
	err = srv.Run(ctx)
	log.Info("cell server stopped")
	return err
}

package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/raftmeta"
)

// Partitionings (Config.Partitioning).
const (
	// Dynamic: the world starts as one cell and the meta leader's partitioner splits, merges,
	// shifts and moves cells as load changes.
	Dynamic = "dynamic"
	// Static: no partitioner; the world is cut once, before the gateway starts, into a fixed
	// grid (GridSide) dealt round robin to the cell servers.
	Static = "static"
)

// Defaults of Config.
const (
	DefaultMetas        = 3
	DefaultWorld        = 1024.0
	DefaultStartTimeout = 2 * time.Minute
	// StopWait is how long Close waits for processes to exit after SIGTERM before SIGKILL.
	StopWait = 10 * time.Second
	// defaultMinCellSize is meridian meta's --min-cell-size default (raftmeta.DefaultConfig).
	defaultMinCellSize = 64.0
	// EnvDir is set, to Config.Dir, in the environment of every process the harness starts:
	// whatever carries it is the harness's.
	EnvDir = "MERIDIAN_HARNESS_DIR"
)

// Config describes a local cluster.
type Config struct {
	Binary string // the meridian binary; "" = os.Executable()
	Dir    string // required: data directories and one log file per process (NAME.log)
	Metas  int    // meta nodes; default 3
	Cells  int    // cell servers, ≥ 1; ids 1..Cells
	World  float64
	// Partitioning is Dynamic (default) or Static: see those constants. With Static the world
	// is cut into GridSide(Cells)² equal cells; cell number i (by id) goes to server i%Cells+1.
	Partitioning string
	PGURL        string // "" = none; else every cell server gets --pg-url
	// CheckpointEvery is the cell servers' --checkpoint-every (ticks); 0 = the cell's default.
	CheckpointEvery int
	// Extra flags for every process of that kind, after the harness's own (so they override
	// them: the last of a repeated flag wins).
	MetaArgs, CellArgs, GatewayArgs []string
	// Env is added to every process's environment. The harness's own MERIDIAN_* variables are
	// not passed on: the cluster is what Config says.
	Env []string
	// StartTimeout bounds Start's waits (default DefaultStartTimeout).
	StartTimeout time.Duration
	Log          *slog.Logger // progress lines (nil: discard)
}

// GridSide is the side g of the static partitioning's grid for n cell servers: the smallest g
// with g² ≥ 3n, at least 2.
func GridSide(n int) int {
	g := 2
	for g*g < 3*n {
		g++
	}
	return g
}

func (cfg *Config) fill() error {
	if cfg.Dir == "" {
		return errors.New("harness: Config.Dir is required")
	}
	if cfg.Cells < 1 {
		return fmt.Errorf("harness: Config.Cells = %d, want ≥ 1", cfg.Cells)
	}
	if cfg.Metas == 0 {
		cfg.Metas = DefaultMetas
	}
	if cfg.Metas < 1 {
		return fmt.Errorf("harness: Config.Metas = %d, want ≥ 1", cfg.Metas)
	}
	if cfg.World == 0 {
		cfg.World = DefaultWorld
	}
	if !(cfg.World > 0) {
		return fmt.Errorf("harness: Config.World = %v, want > 0", cfg.World)
	}
	switch cfg.Partitioning {
	case "":
		cfg.Partitioning = Dynamic
	case Dynamic, Static:
	default:
		return fmt.Errorf("harness: Config.Partitioning %q: want %q or %q", cfg.Partitioning, Dynamic, Static)
	}
	if cfg.CheckpointEvery < 0 {
		return fmt.Errorf("harness: Config.CheckpointEvery = %d, want ≥ 0", cfg.CheckpointEvery)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("harness: the meridian binary: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return err
	}
	cfg.Dir = dir
	return os.MkdirAll(dir, 0o755)
}

// Cluster is a running local cluster.
type Cluster struct {
	Metas       []*Proc
	Cells       []*Proc // Cells[i] is cell server i+1
	Gateway     *Proc
	GatewayAddr string           // the gateway's client (KCP/UDP) address
	MetaHTTP    []string         // the meta nodes' HTTP addresses
	Meta        *raftmeta.Client // a client of every meta node
	Cfg         Config           // the configuration, defaults filled in

	log       *slog.Logger
	env       []string
	mu        sync.Mutex
	closed    bool
	procs     []*Proc // every process started, in order
	closeOnce sync.Once
	closeErr  error
	stopWatch func() bool // stops the context watch that closes the cluster
}

// Start starts a cluster and waits until it is ready: a meta leader with every meta node a
// voter; every cell server registered and alive in the map, every cell owned; with the static
// partitioning the grid committed and dealt, no change pending; the gateway linked to every
// cell server at the current map version. On any error it stops what it started before
// returning.
//
// ctx bounds the cluster's whole life, not only Start: once it is done the cluster is closed,
// as by Close. Start's waits are bounded by Config.StartTimeout.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	c := &Cluster{Cfg: cfg, log: cfg.Log, env: childEnv(append([]string{EnvDir + "=" + cfg.Dir}, cfg.Env...))}
	c.stopWatch = context.AfterFunc(ctx, func() { _ = c.Close() })
	defer func() {
		if err != nil {
			if cerr := c.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("stopping what was started: %w", cerr))
			}
		}
	}()
	sctx, cancel := context.WithTimeoutCause(ctx, cfg.StartTimeout,
		fmt.Errorf("harness: the cluster was not ready within %v (Config.StartTimeout)", cfg.StartTimeout))
	defer cancel()
	start := time.Now()
	if err := c.startMetas(sctx); err != nil {
		return nil, err
	}
	if err := c.startCells(sctx); err != nil {
		return nil, err
	}
	if cfg.Partitioning == Static {
		if err := c.cutGrid(sctx); err != nil {
			return nil, err
		}
	}
	if err := c.startGateway(sctx); err != nil {
		return nil, err
	}
	c.log.Info("cluster ready", "metas", cfg.Metas, "cells", cfg.Cells, "partitioning", cfg.Partitioning,
		"gateway", c.GatewayAddr, "meta", strings.Join(c.MetaHTTP, ","), "dir", cfg.Dir, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// launch starts p unless the cluster is closed.
func (c *Cluster) launch(p *Proc) error {
	p.LogPath = filepath.Join(c.Cfg.Dir, p.Name+".log")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	if err := p.start(c.Cfg.Binary, c.env); err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

// Procs lists every process the harness started: meta nodes, cell servers, the gateway.
func (c *Cluster) Procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.procs)
}

// Unexpected lists the processes that have exited without the harness killing or stopping them.
func (c *Cluster) Unexpected() []*Proc {
	var out []*Proc
	for _, p := range c.Procs() {
		if p.unexpected() {
			out = append(out, p)
		}
	}
	return out
}

// metaArgs are the flags of meta node nd.
func (c *Cluster) metaArgs(nd *Proc) []string {
	args := []string{"meta", "--id", strconv.Itoa(nd.ID), "--raft-addr", nd.RaftAddr, "--http-addr", nd.HTTPAddr,
		"--data", nd.DataDir, "--world", strconv.FormatFloat(c.Cfg.World, 'f', -1, 64)}
	if c.Cfg.Partitioning == Static {
		args = append(args, "--partitioner=false")
		if side := c.Cfg.World / float64(GridSide(c.Cfg.Cells)); side < defaultMinCellSize {
			args = append(args, "--min-cell-size", strconv.FormatFloat(side, 'f', -1, 64))
		}
	}
	return append(args, c.Cfg.MetaArgs...)
}

// startMetas starts the meta nodes (the first bootstraps, the others join it) and waits for a
// leader with every node a voter and a map.
func (c *Cluster) startMetas(ctx context.Context) error {
	for i := 1; i <= c.Cfg.Metas; i++ {
		raft, err := freeTCP()
		if err != nil {
			return err
		}
		http, err := freeTCP()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("meta%d", i)
		c.Metas = append(c.Metas, &Proc{Name: name, Kind: KindMeta, ID: i, RaftAddr: raft, HTTPAddr: http,
			MetricsAddr: http, DataDir: filepath.Join(c.Cfg.Dir, name)})
		c.MetaHTTP = append(c.MetaHTTP, http)
	}
	c.Meta = raftmeta.NewClient(c.MetaHTTP, nil)
	first := c.Metas[0]
	first.Args = append(c.metaArgs(first), "--bootstrap")
	if err := c.launch(first); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "meta1 leader of its one-node cluster", func(ctx context.Context) (bool, string) {
		st, err := c.Meta.NodeStatus(ctx, first.HTTPAddr)
		if err != nil {
			return false, err.Error()
		}
		return st.Leader != nil && st.Leader.ID == 1, "state " + st.State
	}); err != nil {
		return err
	}
	for _, nd := range c.Metas[1:] {
		nd.Args = append(c.metaArgs(nd), "--join", first.HTTPAddr)
		if err := c.launch(nd); err != nil {
			return err
		}
	}
	if err := c.waitFor(ctx, fmt.Sprintf("%d meta nodes voters under one leader, the world created", c.Cfg.Metas), func(ctx context.Context) (bool, string) {
		l, why := c.agreedLeader(ctx)
		if l == nil {
			return false, why
		}
		st, err := c.Meta.NodeStatus(ctx, l.HTTPAddr)
		if err != nil {
			return false, err.Error()
		}
		voters := 0
		for _, p := range st.Peers {
			if p.Suffrage == "voter" {
				voters++
			}
		}
		if voters != c.Cfg.Metas {
			return false, fmt.Sprintf("leader meta%d has %d voters", l.ID, voters)
		}
		m, err := c.Meta.Map(ctx, raftmeta.ReadOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(m.Cells) > 0, fmt.Sprintf("map version %d with %d cells", m.Version, len(m.Cells))
	}); err != nil {
		return err
	}
	c.log.Info("meta nodes up", "n", c.Cfg.Metas, "http", strings.Join(c.MetaHTTP, ","))
	return nil
}

// agreedLeader returns the meta node every live meta node names leader, or nil and why not.
func (c *Cluster) agreedLeader(ctx context.Context) (*Proc, string) {
	leader := uint64(0)
	for _, nd := range c.Metas {
		if !nd.Alive() {
			continue
		}
		st, err := c.Meta.NodeStatus(ctx, nd.HTTPAddr)
		if err != nil {
			return nil, fmt.Sprintf("%s: %v", nd.Name, err)
		}
		if st.Leader == nil {
			return nil, nd.Name + " knows no leader"
		}
		if leader != 0 && st.Leader.ID != leader {
			return nil, fmt.Sprintf("%s names leader %d, another node %d", nd.Name, st.Leader.ID, leader)
		}
		leader = st.Leader.ID
	}
	for _, nd := range c.Metas {
		if uint64(nd.ID) == leader && nd.Alive() {
			return nd, ""
		}
	}
	return nil, fmt.Sprintf("leader %d is not a live meta node", leader)
}

// startCells starts the cell servers and waits until every one is alive in the map, every
// cell is owned and every cell server serves /metrics.
func (c *Cluster) startCells(ctx context.Context) error {
	meta := strings.Join(c.MetaHTTP, ",")
	for i := 1; i <= c.Cfg.Cells; i++ {
		maddr, err := freeTCP()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("cell%d", i)
		p := &Proc{Name: name, Kind: KindCell, ID: i, MetricsAddr: maddr, DataDir: filepath.Join(c.Cfg.Dir, name)}
		p.Args = []string{"cell", "--id", strconv.Itoa(i), "--meta", meta, "--data", p.DataDir,
			"--peer", "127.0.0.1:0", "--metrics-addr", maddr}
		if c.Cfg.PGURL != "" {
			p.Args = append(p.Args, "--pg-url", c.Cfg.PGURL)
		}
		if c.Cfg.CheckpointEvery > 0 {
			p.Args = append(p.Args, "--checkpoint-every", strconv.Itoa(c.Cfg.CheckpointEvery))
		}
		p.Args = append(p.Args, c.Cfg.CellArgs...)
		c.Cells = append(c.Cells, p)
		if err := c.launch(p); err != nil {
			return err
		}
	}
	if err := c.waitFor(ctx, fmt.Sprintf("%d cell servers alive in the map", c.Cfg.Cells), func(ctx context.Context) (bool, string) {
		m, err := c.Meta.Map(ctx, raftmeta.ReadOptions{})
		if err != nil {
			return false, err.Error()
		}
		if ok, why := c.cellsAlive(m); !ok {
			return false, why
		}
		for _, p := range c.Cells {
			if _, err := p.Scrape(ctx); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	}); err != nil {
		return err
	}
	c.log.Info("cell servers registered", "n", c.Cfg.Cells)
	return nil
}

// cellsAlive reports whether every cell server of the cluster is alive in m and every cell of
// m is owned by one of them.
func (c *Cluster) cellsAlive(m *raftmeta.Map) (bool, string) {
	alive := map[raftmeta.ServerID]bool{}
	for _, s := range m.Servers {
		if s.Alive {
			alive[s.ID] = true
		}
	}
	for _, p := range c.Cells {
		if !alive[raftmeta.ServerID(p.ID)] {
			return false, fmt.Sprintf("map version %d: %s not alive (%d servers alive)", m.Version, p.Name, len(alive))
		}
	}
	for _, cl := range m.Cells {
		if !alive[cl.Owner] {
			return false, fmt.Sprintf("map version %d: cell %d owned by %d, not a live server", m.Version, cl.ID, cl.Owner)
		}
	}
	return true, ""
}

// startGateway starts the gateway and waits until it is linked to every cell server and routes
// by the map as it was when it started, or later.
func (c *Cluster) startGateway(ctx context.Context) error {
	m, err := c.readMap(ctx)
	if err != nil {
		return err
	}
	udp, err := freeUDP()
	if err != nil {
		return err
	}
	maddr, err := freeTCP()
	if err != nil {
		return err
	}
	gw := &Proc{Name: "gateway", Kind: KindGateway, ID: 1, MetricsAddr: maddr}
	gw.Args = append([]string{"gateway", "--id", "1", "--meta", strings.Join(c.MetaHTTP, ","),
		"--listen", udp, "--metrics-addr", maddr}, c.Cfg.GatewayArgs...)
	c.Gateway, c.GatewayAddr = gw, udp
	if err := c.launch(gw); err != nil {
		return err
	}
	n := float64(c.Cfg.Cells)
	if err := c.waitFor(ctx, fmt.Sprintf("the gateway linked to %d cell servers at map version %d", c.Cfg.Cells, m.Version), func(ctx context.Context) (bool, string) {
		sc, err := gw.Scrape(ctx)
		if err != nil {
			return false, err.Error()
		}
		links, version := sc.Sum("meridian_gateway_links_up"), sc.Sum("meridian_gateway_map_version")
		return links == n && version >= float64(m.Version), fmt.Sprintf("%v links up, map version %v", links, version)
	}); err != nil {
		return err
	}
	c.log.Info("gateway linked", "addr", udp, "map_version", m.Version)
	return nil
}

// pollEvery is how often the waits poll; callTimeout bounds each call they make.
const (
	pollEvery   = 100 * time.Millisecond
	callTimeout = 3 * time.Second
)

// waitFor polls cond until it holds. It fails at once if a process of the cluster exited on
// its own (with the end of its log), or when ctx ends (with cond's last word).
func (c *Cluster) waitFor(ctx context.Context, what string, cond func(ctx context.Context) (bool, string)) error {
	return c.poll(ctx, what, true, cond)
}

// poll polls cond every pollEvery, each call bounded by callTimeout, until it holds or ctx
// ends; with failFast, also until a process of the cluster exits on its own.
func (c *Cluster) poll(ctx context.Context, what string, failFast bool, cond func(ctx context.Context) (bool, string)) error {
	why := ""
	for {
		if dead := c.Unexpected(); failFast && len(dead) > 0 {
			p := dead[0]
			return fmt.Errorf("harness: waiting for %s: %s exited (%s); the end of %s:\n%s", what, p.Name, p.exitDesc(), p.LogPath, p.Tail(3000))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("harness: waiting for %s: %w (last: %s)", what, context.Cause(ctx), why)
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		var ok bool
		ok, why = cond(cctx)
		cancel()
		if ok {
			return nil
		}
		t := time.NewTimer(pollEvery)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// readMap reads the map linearizably, bounded by callTimeout.
func (c *Cluster) readMap(ctx context.Context) (*raftmeta.Map, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.Meta.Map(cctx, raftmeta.ReadOptions{})
}

// Map reads the partition map (linearizably).
func (c *Cluster) Map(ctx context.Context) (*raftmeta.Map, error) {
	return c.Meta.Map(ctx, raftmeta.ReadOptions{})
}

// Holdings asks cell server cell what it holds (GET /debug/entities on its metrics address).
func (c *Cluster) Holdings(ctx context.Context, cell *Proc) (cellserver.Holdings, error) {
	return cell.holdings(ctx)
}

// Cell returns cell server id (nil if there is none).
func (c *Cluster) Cell(id int) *Proc {
	for _, p := range c.Cells {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// KillCell SIGKILLs cell server id and waits for its process to exit.
func (c *Cluster) KillCell(id int) error {
	p := c.Cell(id)
	if p == nil {
		return fmt.Errorf("harness: no cell server %d", id)
	}
	if err := p.Kill(); err != nil {
		return err
	}
	c.log.Info("killed cell server", "id", id, "pid", p.Pid())
	return nil
}

// KillLeader SIGKILLs the current meta leader (the node every live meta node names leader, as
// their HTTP status API says; during an election it waits for one, as long as ctx allows) and
// waits for its process to exit. It returns the leader's id.
func (c *Cluster) KillLeader(ctx context.Context) (int, error) {
	var leader *Proc
	if err := c.poll(ctx, "a meta leader", false, func(ctx context.Context) (bool, string) {
		var why string
		leader, why = c.agreedLeader(ctx)
		return leader != nil, why
	}); err != nil {
		return 0, err
	}
	if err := leader.Kill(); err != nil {
		return 0, err
	}
	c.log.Info("killed the meta leader", "id", leader.ID, "pid", leader.Pid())
	return leader.ID, nil
}

// Close stops every live process: SIGTERM to the gateway and the cell servers (which
// deregister from the meta nodes) and up to StopWait for them to exit, then the same for the
// meta nodes; whatever is left after StopWait is SIGKILLed, signals going to each process's
// group. It waits until every process has exited. Close is idempotent (later calls return the
// first's result); it returns an error naming the processes that needed SIGKILL.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		if c.stopWatch != nil {
			c.stopWatch()
		}
		c.mu.Lock()
		c.closed = true
		all := slices.Clone(c.procs)
		c.mu.Unlock()
		var first, last []*Proc
		for _, p := range all {
			if p.Kind == KindMeta {
				last = append(last, p)
			} else {
				first = append(first, p)
			}
		}
		c.closeErr = errors.Join(c.stopAll(first), c.stopAll(last))
		c.log.Info("cluster stopped", "dir", c.Cfg.Dir)
	})
	return c.closeErr
}

// stopAll sends SIGTERM to every live process of ps, waits up to StopWait for them all, then
// SIGKILLs the rest and waits for them to exit.
func (c *Cluster) stopAll(ps []*Proc) error {
	var live []*Proc
	for _, p := range ps {
		if p.Alive() {
			p.signal(syscall.SIGTERM)
			live = append(live, p)
		}
	}
	deadline := time.Now().Add(StopWait)
	var errs []error
	for _, p := range live {
		if p.wait(time.Until(deadline)) {
			continue
		}
		if err := p.Kill(); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, fmt.Errorf("%s did not exit within %v of SIGTERM: killed", p.Name, StopWait))
	}
	for _, p := range live {
		if st := p.ExitState(); st != nil && !st.Success() {
			c.log.Warn("process exit", "name", p.Name, "state", st.String(), "log", p.LogPath)
		}
	}
	return errors.Join(errs...)
}

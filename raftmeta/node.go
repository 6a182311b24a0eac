package raftmeta

// A metadata node: hashicorp/raft with its stores and transport, bootstrap / join / rejoin,
// proposals, leadership bookkeeping, and the table of the other nodes' HTTP addresses that
// leader forwarding needs.
//
// Storage. The log and stable store is one raft-boltdb/v2 file, DataDir/raft.db, opened with
// NoSync false: bbolt fsyncs every transaction, so every StoreLogs (and every term or vote
// change) is on disk before raft acknowledges it — acknowledged means durable (LESSONS.md:
// Jepsen found NATS losing acknowledged writes because it did not). A raft.LogCache of recent
// entries sits in front of it for reads. Snapshots are raft.FileSnapshotStore files under
// DataDir/snapshots (three retained); the transport is a raft.NetworkTransport over TCP
// (newRaftTransport: raft.NewTCPTransport's stream layer, with Config.PeerDial for tests).
//
// Leader HTTP addresses. Raft's configuration knows each server's ID and Raft address only,
// but forwarding needs the leader's HTTP address. Every node therefore keeps a small table
// raft ID → (Raft address, HTTP address, stamp), persisted in DataDir/http_addrs.json:
//   - a joining node sends its HTTP address in POST /v1/join; the leader records it and answers
//     with its whole table, which the joiner records;
//   - every PeerSyncInterval each node exchanges its table with every other member it knows an
//     HTTP address for (POST /v1/peers, push-pull); an entry with a newer stamp wins, and a
//     node's entry about itself is authoritative (stamped when it starts), so a node restarted
//     on a new HTTP address is learnt within a round;
//   - when the leader's HTTP address is not known (yet), a follower answers 503 no_leader and
//     the client, which holds several addresses, tries the next one: forwarding is an
//     optimisation, never needed for correctness.
// It is not named peers.json because hashicorp/raft's manual outage recovery already gives that
// name a meaning for operators (raft.ReadPeersJSON).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
)

// Node is one running metadata node: a Raft server holding the partition map's FSM, serving
// the HTTP API on Config.HTTPAddr. Create it with Start; Close it once.
type Node struct {
	cfg      Config
	log      *slog.Logger
	raft     *raft.Raft
	fsm      *FSM
	store    *raftboltdb.BoltStore
	logs     raft.LogStore // store behind a LogCache
	trans    *raft.NetworkTransport
	raftAddr string // advertised Raft address
	httpAddr string // advertised HTTP address
	peers    *peerTable
	met      *nodeMetrics
	hc       *http.Client // forwarding, peer sync and joining
	reg      prometheus.Registerer
	srv      *http.Server
	observer *raft.Observer

	ctx    context.Context // ends at Close: stops every loop and in-flight request
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	lead *leadership // non-nil while this node is the leader

	syncNow    chan struct{} // nudges the peer sync loop
	closeOnce  sync.Once
	closeErr   error
	noTransfer bool // Close without handing leadership over first (tests: a crash-like stop)
}

// leadership is one term of this node's leadership.
type leadership struct {
	ready  chan struct{} // closed once the barrier of this term has been applied
	term   uint64        // the term of that barrier (set before ready is closed)
	since  time.Time
	cancel context.CancelFunc
}

// Start opens (or creates) the node's state in cfg.DataDir, starts Raft and the HTTP API and,
// when DataDir holds no Raft state yet, bootstraps (cfg.Bootstrap) or joins (cfg.Join) a
// cluster. A node with existing state rejoins its cluster from it and ignores both. A joining
// Start returns once the cluster has added it as a voter, or fails after cfg.JoinTimeout.
// reg receives the node's metrics (nil: none); if reg is also a prometheus.Gatherer (a
// *prometheus.Registry), the HTTP server serves it at /metrics. log may be nil.
func Start(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Node, error) {
	return StartContext(context.Background(), cfg, log, reg)
}

// StartContext is Start with a context that can abandon a join in progress.
func StartContext(ctx context.Context, cfg Config, lg *slog.Logger, reg prometheus.Registerer) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("node", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("raftmeta: data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: lg, syncNow: make(chan struct{}, 1)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	var closers []func()
	defer func() {
		if err != nil {
			n.cancel()
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	hl := &hclogAdapter{base: lg, name: "raft"}

	// NoSync stays false: bbolt fsyncs each transaction, so raft's StoreLogs returns only
	// once the entries are durable. The timeout makes a second process on the same DataDir
	// fail instead of hanging on bbolt's file lock.
	n.store, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("raftmeta: opening %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err)
	}
	closers = append(closers, func() { _ = n.store.Close() })
	if n.logs, err = raft.NewLogCache(512, n.store); err != nil {
		return nil, fmt.Errorf("raftmeta: log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, hl.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raftmeta: snapshot store: %w", err)
	}
	var adv net.Addr
	if cfg.RaftAdvertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return nil, fmt.Errorf("raftmeta: RaftAdvertise: %w", err)
		}
	}
	n.trans, err = newRaftTransport(cfg.RaftAddr, adv, cfg.PeerDial, cfg.TransportTimeout, hl.Named("net"))
	if err != nil {
		return nil, fmt.Errorf("raftmeta: raft transport on %s: %w", cfg.RaftAddr, err)
	}
	closers = append(closers, func() { _ = n.trans.Close() })
	n.raftAddr = string(n.trans.LocalAddr())

	existing, err := raft.HasExistingState(n.logs, n.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: reading raft state: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: HTTP listener on %s: %w", cfg.HTTPAddr, err)
	}
	closers = append(closers, func() { _ = ln.Close() })
	n.httpAddr = cfg.HTTPAdvertise
	if n.httpAddr == "" {
		n.httpAddr = ln.Addr().String()
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			lg.Warn("HTTP address is unspecified; set HTTPAdvertise so the other nodes can forward to this one", "http_addr", n.httpAddr)
		}
	}

	n.peers = loadPeers(filepath.Join(cfg.DataDir, "http_addrs.json"), PeerInfo{
		ID: cfg.ID, RaftAddr: n.raftAddr, HTTPAddr: n.httpAddr, Updated: time.Now().UnixNano(),
	}, lg)
	n.fsm = NewFSM()
	tr := newTransport()
	if cfg.PeerDial != nil {
		tr.DialContext = cfg.PeerDial
	}
	n.hc = &http.Client{Transport: tr}

	n.raft, err = raft.NewRaft(cfg.raftConfig(hl), n.fsm, n.logs, n.store, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: starting raft: %w", err)
	}
	closers = append(closers, func() { _ = n.raft.Shutdown().Error() })
	n.met = newNodeMetrics(n)
	if reg != nil {
		if err := n.met.register(reg); err != nil {
			return nil, fmt.Errorf("raftmeta: metrics: %w", err)
		}
		n.reg = reg
		closers = append(closers, func() { n.met.unregister(reg) })
	}
	obsCh := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(n.observer)

	n.srv = &http.Server{
		Handler:           n.handler(reg),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return n.ctx },
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Error("HTTP server", "err", err)
		}
	}()
	go n.runLeadership()
	go n.runObserver(obsCh)
	go n.runPeerSync()
	// From here on Close undoes everything.
	closers = []func(){func() { _ = n.Close() }}

	switch {
	case existing:
		if cfg.Bootstrap || cfg.Join != "" {
			lg.Info("existing raft state found: rejoining from it, ignoring --bootstrap/--join", "data", cfg.DataDir)
		} else {
			lg.Info("existing raft state found: rejoining", "data", cfg.DataDir)
		}
	case cfg.Bootstrap:
		f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{Suffrage: raft.Voter, ID: serverID(cfg.ID), Address: raft.ServerAddress(n.raftAddr)},
		}})
		if err := f.Error(); err != nil {
			return nil, fmt.Errorf("raftmeta: bootstrap: %w", err)
		}
		lg.Info("bootstrapped a one-node cluster; others may join it", "raft_addr", n.raftAddr, "http_addr", n.httpAddr)
	case cfg.Join != "":
		if err := n.join(ctx); err != nil {
			return nil, err
		}
	default:
		lg.Warn("no raft state, no --bootstrap and no --join: waiting for a leader to add this node", "raft_addr", n.raftAddr)
	}
	return n, nil
}

// newRaftTransport is raft.NewTCPTransportWithLogger(bind, advertise, 3, timeout, logger)
// except that outgoing connections are made by dial when it is not nil (Config.PeerDial).
func newRaftTransport(bind string, advertise net.Addr, dial func(context.Context, string, string) (net.Conn, error),
	timeout time.Duration, logger hclog.Logger) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	sl := &tcpStreamLayer{Listener: ln, advertise: advertise, dial: dial}
	if a, ok := sl.Addr().(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, fmt.Errorf("local bind address %v is not advertisable (set RaftAdvertise)", sl.Addr())
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: sl, MaxPool: 3, Timeout: timeout, Logger: logger,
	}), nil
}

// tcpStreamLayer is raft.TCPStreamLayer with a replaceable dialer.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.DialTimeout
}

func (s *tcpStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

func (s *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.dial == nil {
		return net.DialTimeout("tcp", string(addr), timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, "tcp", string(addr))
}

// ID returns the node's ID.
func (n *Node) ID() uint64 { return n.cfg.ID }

// HTTPAddr returns the HTTP API address the node advertises.
func (n *Node) HTTPAddr() string { return n.httpAddr }

// RaftAddr returns the Raft address the node advertises.
func (n *Node) RaftAddr() string { return n.raftAddr }

// FSM returns the node's state machine (its local, possibly stale, copy of the map).
func (n *Node) FSM() *FSM { return n.fsm }

// Raft returns the underlying raft instance (for tests and diagnostics).
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this node is the leader right now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's node ID and HTTP address as this node knows them: (0, "")
// if no leader is known, (id, "") if its HTTP address is not known here (yet).
func (n *Node) Leader() (id uint64, httpAddr string) {
	_, sid := n.raft.LeaderWithID()
	if sid == "" {
		return 0, ""
	}
	id, err := strconv.ParseUint(string(sid), 10, 64)
	if err != nil {
		return 0, ""
	}
	if id == n.cfg.ID {
		return id, n.httpAddr
	}
	if p, ok := n.peers.get(id); ok {
		return id, p.HTTPAddr
	}
	n.nudgePeerSync()
	return id, ""
}

// Close hands leadership to another voter if this node leads, then shuts Raft and the HTTP
// API down and closes the stores. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if !n.noTransfer && n.raft.State() == raft.Leader && n.voters() > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before shutdown failed", "err", err)
			} else {
				n.log.Info("handed leadership over before shutting down")
			}
		}
		n.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := n.srv.Shutdown(ctx); err != nil {
			_ = n.srv.Close()
		}
		cancel()
		n.raft.DeregisterObserver(n.observer)
		errs := []error{n.raft.Shutdown().Error()}
		n.wg.Wait()
		errs = append(errs, n.trans.Close(), n.store.Close())
		n.hc.CloseIdleConnections()
		n.met.leader.Set(0)
		if n.reg != nil {
			n.met.unregister(n.reg)
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("metadata node stopped")
	})
	return n.closeErr
}

// Propose commits cmd through Raft and waits until the FSM has applied it. Only the leader
// may propose (ErrNotLeader, or ErrNoLeader when none is known, otherwise). The command's
// own rejection (ApplyResult.Err: stale epoch, unknown cell, ...) is returned as the error,
// with the result. ErrLeadershipLost and ErrTimeout mean the outcome is unknown: the entry may
// still commit.
func (n *Node) Propose(ctx context.Context, cmd Command) (*ApplyResult, error) {
	if n.ctx.Err() != nil {
		return nil, fmt.Errorf("%w: node %d", ErrShutdown, n.cfg.ID)
	}
	if n.raft.State() != raft.Leader {
		return nil, n.notLeaderErr()
	}
	b, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	start := time.Now()
	f := n.raft.Apply(b, n.cfg.ApplyTimeout)
	if err := waitFuture(ctx, f); err != nil {
		return nil, n.raftErr(err, "committing "+commandName(cmd.Type()))
	}
	n.met.applyDuration.Observe(time.Since(start).Seconds())
	n.met.commits.WithLabelValues(commandName(cmd.Type())).Inc()
	res, ok := f.Response().(*ApplyResult)
	if !ok || res == nil {
		return nil, fmt.Errorf("raftmeta: FSM returned %T for %s", f.Response(), commandName(cmd.Type()))
	}
	return res, res.Err
}

// waitFuture waits for f or ctx. ctx ending first is ErrTimeout (the entry may still commit).
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: gave up waiting for the commit (it may still happen): %v", ErrTimeout, ctx.Err())
	}
}

// raftErr translates an error of hashicorp/raft into the package's sentinels.
func (n *Node) raftErr(err error, what string) error {
	switch {
	case errors.Is(err, ErrTimeout):
		return err
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeaderErr() // not appended: safe to retry elsewhere
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %s: raft did not accept the entry in time", ErrTimeout, what)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore), errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %s: %v (the outcome is unknown)", ErrLeadershipLost, what, err)
	}
	return fmt.Errorf("raftmeta: %s: %w", what, err)
}

// notLeaderErr is ErrNotLeader naming the leader if one is known, else ErrNoLeader.
func (n *Node) notLeaderErr() error {
	id, addr := n.Leader()
	if id == 0 {
		return fmt.Errorf("%w: node %d knows of no leader", ErrNoLeader, n.cfg.ID)
	}
	if addr == "" {
		return fmt.Errorf("%w: node %d is not the leader (node %d is; its HTTP address is not known here yet)", ErrNotLeader, n.cfg.ID, id)
	}
	return fmt.Errorf("%w: node %d is not the leader (node %d at %s is)", ErrNotLeader, n.cfg.ID, id, addr)
}

// ready returns the current leadership once its barrier is applied (waiting for it if
// needed), or ErrNotLeader / ErrNoLeader if this node does not lead.
func (n *Node) ready(ctx context.Context) (*leadership, error) {
	for {
		n.mu.Lock()
		l := n.lead
		n.mu.Unlock()
		if l != nil {
			select {
			case <-l.ready:
				return l, nil
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: the new leader has not applied its barrier yet: %v", ErrTimeout, ctx.Err())
			}
		}
		// raft may report Leader a moment before runLeadership has seen the signal.
		if n.raft.State() != raft.Leader || !sleepCtx(ctx, 5*time.Millisecond) {
			return nil, n.notLeaderErr()
		}
	}
}

// linearizableRead makes the FSM safe to read linearizably on this node (the leader): every
// write acknowledged before it was called is then applied to the local FSM. It is the Raft
// thesis's read-index protocol (§6.4):
//  1. this leader has applied a barrier of its own term (so its commit index covers every
//     entry committed by earlier leaders; done once per term in establish);
//  2. read the commit index;
//  3. VerifyLeader: a heartbeat round with a quorum proves no newer leader existed when 2 ran
//     (a deposed leader fails here instead of serving a stale map — LESSONS.md, Jepsen);
//  4. wait until the FSM has applied up to the last command entry ≤ that commit index.
//
// It costs one heartbeat round and no log write (raft.Barrier would append and fsync an entry).
func (n *Node) linearizableRead(ctx context.Context) error {
	l, err := n.ready(ctx)
	if err != nil {
		return err
	}
	// The term checks make sure steps 2 and 3 happen in the term whose barrier was applied
	// (a node that lost and regained leadership must not use an older term's barrier).
	if n.raft.CurrentTerm() != l.term {
		return n.notLeaderErr()
	}
	ci := n.raft.CommitIndex()
	if err := waitFuture(ctx, n.raft.VerifyLeader()); err != nil {
		if errors.Is(err, ErrTimeout) {
			return err
		}
		return n.notLeaderErr()
	}
	if n.raft.CurrentTerm() != l.term {
		return n.notLeaderErr()
	}
	target := n.lastCommandIndex(ci)
	if target == 0 {
		return nil
	}
	if err := n.fsm.WaitIndex(ctx, target-1); err != nil {
		return fmt.Errorf("%w: waiting for the FSM to apply index %d: %v", ErrTimeout, target, err)
	}
	return nil
}

// lastCommandIndex returns the index of the last command entry at or below ci that the FSM
// has not applied yet, or 0. The FSM sees only command entries (not no-ops, barriers or
// configuration changes), so waiting for its index to reach ci itself could hang.
func (n *Node) lastCommandIndex(ci uint64) uint64 {
	applied := n.fsm.Index()
	var l raft.Log
	for i := ci; i > applied; i-- {
		if err := n.logs.GetLog(i, &l); err != nil {
			return 0 // compacted into a snapshot, so already applied
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

// voters counts the voters of the latest configuration.
func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// runLeadership follows raft's leadership signal: on gaining it, it starts establish; on
// losing it, it cancels it (and the reaper inside).
func (n *Node) runLeadership() {
	defer n.wg.Done()
	var cur *leadership
	stop := func() {
		if cur == nil {
			return
		}
		cur.cancel()
		n.mu.Lock()
		n.lead = nil
		n.mu.Unlock()
		n.met.leader.Set(0)
		cur = nil
	}
	for {
		select {
		case <-n.ctx.Done():
			stop()
			return
		case isLeader := <-n.raft.LeaderCh():
			stop()
			if !isLeader {
				n.log.Info("lost leadership")
				continue
			}
			ctx, cancel := context.WithCancel(n.ctx)
			cur = &leadership{ready: make(chan struct{}), since: time.Now(), cancel: cancel}
			n.mu.Lock()
			n.lead = cur
			n.mu.Unlock()
			n.met.leader.Set(1)
			n.log.Info("became leader", "term", n.raft.CurrentTerm())
			n.wg.Add(1)
			go n.establish(ctx, cur)
		}
	}
}

// establish runs for one term of leadership: a barrier (every entry of earlier terms is then
// committed and applied, so linearizable reads and the reaper see them), InitWorld if the map
// is still empty, then the planner (if configured) and the lease reaper until leadership ends.
func (n *Node) establish(ctx context.Context, l *leadership) {
	defer n.wg.Done()
	for {
		term := n.raft.CurrentTerm()
		err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
		if err == nil && n.raft.CurrentTerm() == term {
			l.term = term
			break
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("leader barrier failed", "err", err)
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	close(l.ready)
	n.log.Info("leadership established", "term", n.raft.CurrentTerm(), "commit_index", n.raft.CommitIndex())
	if !n.initWorld(ctx) {
		return
	}
	if n.cfg.Planner != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.runPlanner(ctx)
		}()
	}
	n.runReaper(ctx, l.since)
}

// initWorld proposes InitWorld from this node's config if the map has no world yet (the first
// leader of a fresh cluster). It reports false if leadership ended first.
func (n *Node) initWorld(ctx context.Context) bool {
	for {
		if len(n.fsm.Map().Cells) > 0 {
			return true
		}
		w := n.cfg.World
		if w.Epoch == 0 {
			// The world epoch: tick 0 of the cluster-wide tick grid, a whole second so logs line up.
			w.Epoch = time.Now().Truncate(time.Second).UnixNano()
		}
		_, err := n.Propose(ctx, InitWorld{World: w, MinCellSize: n.cfg.MinCellSize})
		switch {
		case err == nil:
			n.log.Info("initialised the world", "min", w.Min, "max", w.Max, "min_cell_size", n.cfg.MinCellSize,
				"epoch", time.Unix(0, w.Epoch).UTC().Format(time.RFC3339))
			return true
		case errors.Is(err, ErrWorldExists):
			return true
		}
		n.log.Warn("InitWorld failed; retrying", "err", err)
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return false
		}
	}
}

// runObserver logs leader changes and counts them.
func (n *Node) runObserver(ch <-chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			lo, ok := o.Data.(raft.LeaderObservation)
			if !ok {
				continue
			}
			if lo.LeaderID == "" {
				n.log.Info("leader lost; election under way")
				continue
			}
			n.met.leaderChanges.Inc()
			id, addr := n.Leader()
			n.log.Info("leader changed", "leader", id, "leader_raft_addr", string(lo.LeaderAddr), "leader_http_addr", addr, "term", n.raft.CurrentTerm())
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ---- membership ----

// JoinRequest asks the cluster to add a node as a voter (POST /v1/join).
type JoinRequest struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"` // lets the others forward to it when it leads
}

// JoinResponse is the leader's answer to a join: the configuration index and its table of
// node addresses.
type JoinResponse struct {
	Index uint64     `json:"index"`
	Peers []PeerInfo `json:"peers"`
}

// RemoveRequest asks the cluster to remove a node (POST /v1/remove).
type RemoveRequest struct {
	ID uint64 `json:"id"`
}

// join asks cfg.Join (any node; it forwards to the leader) to add this node, retrying with
// backoff until it succeeds, fails for good, or JoinTimeout passes.
func (n *Node) join(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	c := NewClient([]string{n.cfg.Join}, n.hc)
	req := JoinRequest{ID: n.cfg.ID, RaftAddr: n.raftAddr, HTTPAddr: n.httpAddr}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, err := c.Join(ctx, req)
		if err == nil {
			n.peers.merge(resp.Peers)
			n.log.Info("joined the cluster", "via", n.cfg.Join, "config_index", resp.Index, "attempts", attempt)
			return nil
		}
		if errors.Is(err, ErrBadRequest) {
			return fmt.Errorf("raftmeta: joining via %s: %w", n.cfg.Join, err)
		}
		n.log.Warn("join failed; retrying", "via", n.cfg.Join, "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("%w: joining via %s: gave up after %d attempts: %v", ErrTimeout, n.cfg.Join, attempt, err)
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// addVoter adds (or re-adds) a node as a voter; the leader only. A member with the same ID
// and Raft address is left alone (a retried join is a no-op); one with the same ID or the same
// address but not both is removed first (a node wiped and restarted on a new address).
func (n *Node) addVoter(ctx context.Context, req JoinRequest) (uint64, error) {
	if req.ID == 0 {
		return 0, fmt.Errorf("%w: join: id must be ≥ 1", ErrBadRequest)
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return 0, fmt.Errorf("%w: join: raft_addr %q: %v", ErrBadRequest, req.RaftAddr, err)
	}
	if req.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(req.HTTPAddr); err != nil {
			return 0, fmt.Errorf("%w: join: http_addr %q: %v", ErrBadRequest, req.HTTPAddr, err)
		}
	}
	sid, addr := serverID(req.ID), raft.ServerAddress(req.RaftAddr)
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, n.raftErr(err, "reading the configuration")
	}
	if req.HTTPAddr != "" {
		n.peers.merge([]PeerInfo{{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Updated: time.Now().UnixNano()}})
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == sid && s.Address == addr {
			n.log.Info("join: already a member", "id", req.ID, "raft_addr", req.RaftAddr)
			return f.Index(), nil
		}
		if s.ID == sid || s.Address == addr {
			if s.ID == serverID(n.cfg.ID) {
				return 0, fmt.Errorf("%w: join: node %d at %s conflicts with the leader itself", ErrBadRequest, req.ID, req.RaftAddr)
			}
			n.log.Warn("join: removing a stale member first", "id", string(s.ID), "raft_addr", string(s.Address))
			if err := waitFuture(ctx, n.raft.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout)); err != nil {
				return 0, n.raftErr(err, "removing a stale member")
			}
		}
	}
	af := n.raft.AddVoter(sid, addr, 0, n.cfg.ApplyTimeout)
	if err := waitFuture(ctx, af); err != nil {
		return 0, n.raftErr(err, "adding a voter")
	}
	n.log.Info("added a voter", "id", req.ID, "raft_addr", req.RaftAddr, "http_addr", req.HTTPAddr, "config_index", af.Index())
	return af.Index(), nil
}

// removeServer removes a node from the configuration; the leader only.
func (n *Node) removeServer(ctx context.Context, id uint64) (uint64, error) {
	if id == 0 {
		return 0, fmt.Errorf("%w: remove: id must be ≥ 1", ErrBadRequest)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, n.raftErr(err, "reading the configuration")
	}
	if !slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == serverID(id) }) {
		return 0, fmt.Errorf("%w: remove: node %d is not a member of the cluster", ErrBadRequest, id)
	}
	rf := n.raft.RemoveServer(serverID(id), 0, n.cfg.ApplyTimeout)
	if err := waitFuture(ctx, rf); err != nil {
		return 0, n.raftErr(err, "removing a member")
	}
	n.log.Info("removed a member", "id", id, "config_index", rf.Index())
	return rf.Index(), nil
}

// ---- the table of node addresses ----

// PeerInfo is one metadata node's addresses as the nodes exchange them. Updated (Unix ns) is
// stamped by the node itself when it starts; the newer entry wins.
type PeerInfo struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Updated  int64  `json:"updated"`
}

// PeersMessage is the body of POST /v1/peers both ways (and of GET /v1/peers).
type PeersMessage struct {
	Peers []PeerInfo `json:"peers"`
}

const maxPeers = 1024

type peerTable struct {
	mu   sync.Mutex
	path string
	self uint64
	m    map[uint64]PeerInfo
	log  *slog.Logger
}

func loadPeers(path string, self PeerInfo, log *slog.Logger) *peerTable {
	t := &peerTable{path: path, self: self.ID, m: map[uint64]PeerInfo{}, log: log}
	if b, err := os.ReadFile(path); err == nil {
		var msg PeersMessage
		if err := json.Unmarshal(b, &msg); err != nil {
			log.Warn("ignoring unreadable node address table", "path", path, "err", err)
		} else {
			for _, p := range msg.Peers {
				if validPeer(p) {
					t.m[p.ID] = p
				}
			}
		}
	}
	t.m[self.ID] = self
	t.save()
	return t
}

func validPeer(p PeerInfo) bool {
	if p.ID == 0 || p.HTTPAddr == "" {
		return false
	}
	_, _, err := net.SplitHostPort(p.HTTPAddr)
	return err == nil
}

func (t *peerTable) get(id uint64) (PeerInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.m[id]
	return p, ok
}

func (t *peerTable) list() []PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := make([]PeerInfo, 0, len(t.m))
	for _, p := range t.m {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b PeerInfo) int { return cmpU64(a.ID, b.ID) })
	return ps
}

// merge takes every entry newer than the one it has (never one about this node) and saves the
// table if anything changed.
func (t *peerTable) merge(ps []PeerInfo) {
	t.mu.Lock()
	changed := false
	for _, p := range ps {
		if !validPeer(p) || p.ID == t.self {
			continue
		}
		old, ok := t.m[p.ID]
		if ok && (old.Updated >= p.Updated || old == p) {
			continue
		}
		if !ok && len(t.m) >= maxPeers {
			continue
		}
		t.m[p.ID] = p
		changed = true
	}
	t.mu.Unlock()
	if changed {
		t.save()
	}
}

// save writes the table atomically (temporary file, then rename). A failure is logged: the
// table is relearnt from the other nodes.
func (t *peerTable) save() {
	b, err := json.MarshalIndent(PeersMessage{Peers: t.list()}, "", "  ")
	if err == nil {
		tmp := t.path + ".tmp"
		if err = os.WriteFile(tmp, b, 0o640); err == nil {
			err = os.Rename(tmp, t.path)
		}
	}
	if err != nil {
		t.log.Warn("saving the node address table", "path", t.path, "err", err)
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (n *Node) nudgePeerSync() {
	select {
	case n.syncNow <- struct{}{}:
	default:
	}
}

// runPeerSync exchanges the address table with the other members every PeerSyncInterval (and
// when nudged because the leader's HTTP address is unknown).
func (n *Node) runPeerSync() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.PeerSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.syncNow:
		}
		n.syncPeers()
	}
}

func (n *Node) syncPeers() {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, s := range f.Configuration().Servers {
		id, err := strconv.ParseUint(string(s.ID), 10, 64)
		if err != nil || id == n.cfg.ID {
			continue
		}
		p, ok := n.peers.get(id)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		var resp PeersMessage
		err = doJSON(ctx, n.hc, http.MethodPost, "http://"+p.HTTPAddr+"/v1/peers", nil, PeersMessage{Peers: n.peers.list()}, &resp)
		cancel()
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Debug("peer address sync failed", "peer", id, "http_addr", p.HTTPAddr, "err", err)
			}
			continue
		}
		n.peers.merge(resp.Peers)
	}
}

// ---- metrics ----

type nodeMetrics struct {
	leader         prometheus.Gauge
	applyDuration  prometheus.Histogram
	commits        *prometheus.CounterVec
	leaderChanges  prometheus.Counter
	reaped         prometheus.Counter
	planned        *prometheus.CounterVec
	changesAborted prometheus.Counter
	funcs          []prometheus.Collector
}

func newNodeMetrics(n *Node) *nodeMetrics {
	m := &nodeMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_raft_leader", Help: "1 if this metadata node is the Raft leader, else 0."}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_raft_apply_duration_seconds", Help: "Time from proposing a command on the leader to the FSM having applied it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_raft_commits_total", Help: "Commands this node proposed as leader that committed (rejected ones included), by command."},
			[]string{"command"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_meta_leader_changes_total", Help: "Times this node saw a new leader."}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_meta_servers_marked_dead_total", Help: "Cell servers this node, as leader, marked dead after their lease lapsed."}),
		planned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_meta_planned_ops_total",
			Help: "Operations this node, as leader, proposed for the planner (op split, merge, shift, move) or for draining (op drain_move), " +
				"by result: applied (at once), prepared (a two-phase change started), rejected (by the map), failed (not committed or unknown)."},
			[]string{"op", "result"}),
		changesAborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_meta_changes_aborted_total", Help: "Two-phase map changes this node, as leader, aborted because their deadline passed."}),
	}
	gauge := func(name, help string, f func() float64) {
		m.funcs = append(m.funcs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("meridian_raft_term", "Current Raft term.", func() float64 { return float64(n.raft.CurrentTerm()) })
	gauge("meridian_raft_commit_index", "Raft commit index.", func() float64 { return float64(n.raft.CommitIndex()) })
	gauge("meridian_raft_applied_index", "Index of the last command the FSM applied.", func() float64 { return float64(n.fsm.Index()) })
	gauge("meridian_meta_map_version", "Version of the partition map held by this node.", func() float64 { return float64(n.fsm.Version()) })
	return m
}

func (m *nodeMetrics) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{m.leader, m.applyDuration, m.commits, m.leaderChanges, m.reaped, m.planned, m.changesAborted}, m.funcs...)
}

func (m *nodeMetrics) register(reg prometheus.Registerer) error {
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// unregister removes the node's collectors (their gauges read a raft that is shut down).
func (m *nodeMetrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

var commandNames = map[CommandType]string{
	CmdInitWorld: "init_world", CmdRegister: "register", CmdHeartbeat: "heartbeat", CmdDeregister: "deregister",
	CmdSplit: "split", CmdMerge: "merge", CmdShift: "shift", CmdMove: "move", CmdDrain: "drain", CmdMarkDead: "mark_dead",
	CmdPrepare: "prepare", CmdStaged: "staged", CmdAbort: "abort",
}

func commandName(t CommandType) string {
	if s, ok := commandNames[t]; ok {
		return s
	}
	return "type_" + strconv.Itoa(int(t))
}

// ---- hclog → slog ----

// hclogAdapter lets hashicorp/raft log through slog.
type hclogAdapter struct {
	base *slog.Logger // without implied args
	name string
	args []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func (h *hclogAdapter) logger() *slog.Logger {
	return h.base.With(append([]any{"component", h.name}, h.args...)...)
}

func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l <= hclog.Debug:
		return slog.LevelDebug
	case l == hclog.Info:
		return slog.LevelInfo
	case l == hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	sl := slogLevel(level)
	if !h.base.Enabled(context.Background(), sl) {
		return
	}
	cloned := false
	for i, a := range args {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				if !cloned {
					args, cloned = slices.Clone(args), true // the caller's slice is not ours to change
				}
				args[i] = fmt.Sprintf(s, f[1:]...)
			}
		}
	}
	h.logger().Log(context.Background(), sl, msg, args...)
}
func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hclogAdapter) enabled(l slog.Level) bool {
	return h.base.Enabled(context.Background(), l)
}
func (h *hclogAdapter) IsTrace() bool        { return false }
func (h *hclogAdapter) IsDebug() bool        { return h.enabled(slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool         { return h.enabled(slog.LevelInfo) }
func (h *hclogAdapter) IsWarn() bool         { return h.enabled(slog.LevelWarn) }
func (h *hclogAdapter) IsError() bool        { return h.enabled(slog.LevelError) }
func (h *hclogAdapter) ImpliedArgs() []any   { return h.args }
func (h *hclogAdapter) Name() string         { return h.name }
func (h *hclogAdapter) SetLevel(hclog.Level) {}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{base: h.base, name: name, args: h.args}
}
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{base: h.base, name: h.name, args: append(slices.Clip(h.args), args...)}
}
func (h *hclogAdapter) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return &hclogAdapter{base: h.base, name: name, args: h.args}
}
func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}
func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return slog.NewLogLogger(h.logger().Handler(), slog.LevelInfo).Writer()
}

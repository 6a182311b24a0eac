package raftmeta

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Deadlines here only stop a broken test from hanging; no assertion depends on wall-clock time.
const testDeadline = 30 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("MERIDIAN_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testConfig(t *testing.T, id uint64) Config {
	c := DefaultConfig()
	c.ID = id
	c.RaftAddr = freeAddr(t)
	c.HTTPAddr = freeAddr(t)
	c.DataDir = t.TempDir()
	c.PeerSyncInterval = 100 * time.Millisecond
	c.JoinTimeout = testDeadline
	return c
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	reg := prometheus.NewRegistry()
	n, err := Start(cfg, testLogger(), reg)
	if err != nil {
		t.Fatalf("start node %d: %v", cfg.ID, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// clusterConfig is testConfig with Raft timeouts that tolerate the scheduling stalls of a
// loaded test machine (spurious elections would turn writes into leadership_lost).
func clusterConfig(t *testing.T, id uint64) Config {
	c := testConfig(t, id)
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 400*time.Millisecond
	// Snapshot often and keep few entries, so a node that was down catches up from a snapshot.
	c.SnapshotInterval, c.SnapshotThreshold, c.TrailingLogs = 20*time.Millisecond, 4, 1
	// Changes the tests start must outlive an election or two on a loaded machine.
	c.ChangeTimeout = time.Minute
	return c
}

// unknownOutcome reports whether err leaves a write's outcome unknown (leadership changed
// while it committed); tests retry such writes when a retry is safe.
func unknownOutcome(err error) bool {
	return errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrTimeout)
}

// retryWrite retries an idempotent or epoch-fenced write whose outcome was unknown.
func retryWrite(t *testing.T, f func() error) error {
	t.Helper()
	for i := 0; ; i++ {
		err := f()
		if !unknownOutcome(err) || i == 10 {
			return err
		}
		t.Logf("retrying a write after %v", err)
	}
}

// eventually polls f until it holds, failing the test after testDeadline.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(nodes []*Node) *Node {
	for _, n := range nodes {
		if n != nil && n.IsLeader() {
			return n
		}
	}
	return nil
}

func clientOf(nodes ...*Node) *Client {
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.HTTPAddr())
	}
	return NewClient(addrs, nil)
}

// bootstrap starts a one-node cluster and waits until its world exists.
func bootstrap(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.Bootstrap = true
	n := startNode(t, cfg)
	eventually(t, "the bootstrap node to lead and create the world", func() bool {
		return n.IsLeader() && len(n.FSM().Map().Cells) > 0
	})
	return n
}

func TestConfigValidate(t *testing.T) {
	ok := testConfig(t, 1)
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"ID":                 func(c *Config) { c.ID = 0 },
		"RaftAddr":           func(c *Config) { c.RaftAddr = "nope" },
		"DataDir":            func(c *Config) { c.DataDir = "" },
		"Bootstrap and Join": func(c *Config) { c.Bootstrap, c.Join = true, "127.0.0.1:1" },
		"LeaderLeaseTimeout": func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout },
		"ElectionTimeout":    func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 },
		"CommitTimeout":      func(c *Config) { c.CommitTimeout = 0 },
		"LeaseTTL":           func(c *Config) { c.LeaseTTL = 0 },
		"World":              func(c *Config) { c.World.Max[0] = c.World.Min[0] },
		"MinCellSize":        func(c *Config) { c.MinCellSize = 1e9 },
		"PlanInterval":       func(c *Config) { c.PlanInterval = 0 },
		"ChangeTimeout":      func(c *Config) { c.ChangeTimeout = 11 * time.Minute },
		"ChangeTimeout zero": func(c *Config) { c.ChangeTimeout = 0 },
	} {
		c := ok
		mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), strings.Fields(name)[0]) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig naming the field", name, err)
		}
	}
}

// TestCluster runs three real nodes over TCP: bootstrap, joins over HTTP, forwarded writes,
// linearizable and stale reads, a blocking query, a stale-epoch rejection, a leader crash and
// the crashed node's restart from its data directory.
func TestCluster(t *testing.T) {
	ctx := testCtx(t)
	cfgs := []Config{clusterConfig(t, 1), clusterConfig(t, 2), clusterConfig(t, 3)}
	nodes := make([]*Node, 3)
	nodes[0] = bootstrap(t, cfgs[0])
	for i := 1; i < 3; i++ {
		cfgs[i].Join = nodes[0].HTTPAddr()
		nodes[i] = startNode(t, cfgs[i]) // returns once added as a voter
	}
	eventually(t, "every node to know all three voters and the leader's HTTP address", func() bool {
		for _, n := range nodes {
			st := n.Status()
			if len(st.Peers) != 3 || st.Leader == nil || st.Leader.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	leader := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}

	// Writes through a follower are forwarded to the leader.
	fc := NewClient([]string{follower.HTTPAddr()}, nil)
	for _, id := range []ServerID{1, 2} {
		if err := retryWrite(t, func() error {
			_, err := fc.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:1", Capacity: 1000, LeaseTTL: Duration(5 * time.Minute)})
			return err
		}); err != nil {
			t.Fatalf("register %d through a follower: %v", id, err)
		}
	}

	// Linearizable reads on every node see the acknowledged writes at once.
	var version uint64
	for _, n := range nodes {
		m, err := NewClient([]string{n.HTTPAddr()}, nil).Map(ctx, ReadOptions{})
		if err != nil {
			t.Fatalf("linearizable read on node %d: %v", n.ID(), err)
		}
		if len(m.Servers) != 2 {
			t.Fatalf("linearizable read on node %d: %d servers, want 2", n.ID(), len(m.Servers))
		}
		if version != 0 && m.Version != version {
			t.Fatalf("linearizable reads disagree: version %d vs %d", m.Version, version)
		}
		version = m.Version
	}
	// Stale reads converge.
	for _, n := range nodes {
		c := NewClient([]string{n.HTTPAddr()}, nil)
		eventually(t, "stale reads to converge", func() bool {
			m, err := c.Map(ctx, ReadOptions{Stale: true})
			return err == nil && m.Version == version && len(m.Servers) == 2
		})
	}

	// A split that gives the high half to server 2 (server 1 owns the cell) is a two-phase
	// change, started through a follower.
	m, err := fc.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cell := m.Cells[0]
	if cell.Owner != 1 {
		t.Fatalf("cell %+v, want owner 1", cell)
	}
	mid := (cell.Bounds[0] + cell.Bounds[2]) / 2
	var pr *WriteResult
	err = retryWrite(t, func() (err error) {
		pr, err = fc.Split(ctx, Split{Cell: cell.ID, Epoch: cell.Epoch, Axis: AxisX, At: mid, NewOwner: 2})
		return err
	})
	if errors.Is(err, ErrCellMigrating) { // a retried split whose first attempt started the change
		m, err = fc.Map(ctx, ReadOptions{})
		if err != nil || len(m.Changes) != 1 {
			t.Fatalf("after a retried split: %v, changes %+v", err, m.Changes)
		}
		pr = &WriteResult{Version: m.Version, Change: m.Changes[0].ID}
	} else if err != nil {
		t.Fatalf("split: %v", err)
	}
	if pr.Change == 0 || len(pr.Cells) != 0 {
		t.Fatalf("split to another live server: %+v, want a change and no cell yet", pr)
	}
	if m, err = fc.Map(ctx, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(m.Cells) != 1 || m.Cells[0].State != CellMigrating || len(m.Changes) != 1 || m.Changes[0].Transfers[0].To != 2 {
		t.Fatalf("map after prepare: cells %+v changes %+v", m.Cells, m.Changes)
	}

	// A blocking query on a follower (stale, and linearizable via the leader) returns when the
	// split commits: when server 2 reports the transfer staged (through a follower too).
	type result struct {
		m   *Map
		err error
	}
	stale, lin := make(chan result, 1), make(chan result, 1)
	go func() {
		m, err := fc.Map(ctx, ReadOptions{Stale: true, Index: m.Version, Wait: testDeadline})
		stale <- result{m, err}
	}()
	go func() {
		m, err := fc.Map(ctx, ReadOptions{Index: m.Version, Wait: testDeadline})
		lin <- result{m, err}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-stale:
		t.Fatalf("blocking query returned before any change: %+v", r)
	case r := <-lin:
		t.Fatalf("blocking query returned before any change: %+v", r)
	default:
	}
	var sr *WriteResult
	err = retryWrite(t, func() (err error) {
		sr, err = fc.Staged(ctx, pr.Change, 0, 2)
		return err
	})
	if errors.Is(err, ErrUnknownChange) { // a retried staging whose first attempt committed it
		m, err := fc.Map(ctx, ReadOptions{})
		if err != nil || len(m.Cells) != 2 || len(m.Resolved) != 1 || !m.Resolved[0].Committed {
			t.Fatalf("after a retried staging: %v, %+v", err, m)
		}
		sr, err = &WriteResult{Version: m.Version, Cells: []CellID{m.Cells[1].ID}}, nil
	}
	if err != nil {
		t.Fatalf("staged: %v", err)
	}
	if len(sr.Cells) != 1 {
		t.Fatalf("the committed split created %v, want one cell", sr.Cells)
	}
	for name, ch := range map[string]chan result{"stale": stale, "linearizable": lin} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s blocking query: %v", name, r.err)
		}
		if r.m.Version < sr.Version || len(r.m.Cells) != 2 {
			t.Fatalf("%s blocking query returned version %d with %d cells, want ≥ %d with 2", name, r.m.Version, len(r.m.Cells), sr.Version)
		}
	}

	// A split with a stale epoch is a 409 stale_epoch and changes nothing.
	before, err := fc.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = retryWrite(t, func() error {
		_, err := fc.Split(ctx, Split{Cell: cell.ID, Epoch: cell.Epoch, Axis: AxisZ, At: (cell.Bounds[1] + cell.Bounds[3]) / 2})
		return err
	})
	var ae *APIError
	if !errors.Is(err, ErrStaleEpoch) || !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "stale_epoch" {
		t.Fatalf("stale split: err %v (%#v), want 409 stale_epoch", err, ae)
	}
	after, err := fc.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version || !reflect.DeepEqual(after.Cells, before.Cells) {
		t.Fatalf("a rejected split changed the map: version %d → %d", before.Version, after.Version)
	}

	// The leader crashes (no leadership hand-over); a new leader is elected and takes writes.
	oldLeader := leader
	oldIdx := int(oldLeader.ID() - 1)
	oldLeader.noTransfer = true
	if err := oldLeader.Close(); err != nil {
		t.Fatalf("close leader: %v", err)
	}
	oldLastIndex := oldLeader.Raft().LastIndex()
	survivors := []*Node{}
	for _, n := range nodes {
		if n != oldLeader {
			survivors = append(survivors, n)
		}
	}
	eventually(t, "a new leader", func() bool { return leaderOf(survivors) != nil })
	all := clientOf(nodes...) // includes the dead node's address: the client moves past it
	var wr *WriteResult
	err = retryWrite(t, func() (err error) {
		wr, err = all.Register(ctx, RegisterRequest{ID: 3, Addr: "127.0.0.1:3", Capacity: 1000, LeaseTTL: Duration(5 * time.Minute)})
		return err
	})
	if err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	if after, err = all.Map(ctx, ReadOptions{}); err != nil || len(after.Servers) != 3 || after.Version < wr.Version {
		t.Fatalf("read after failover: %v, %+v", err, after)
	}

	// The old leader restarts from its data directory with neither --bootstrap nor --join,
	// rejoins and catches up to the same map.
	// More writes while it is down, and a snapshot that compacts them away, so the restarted
	// node must be sent the leader's snapshot (FSM Snapshot → Persist → Restore over the wire).
	for id := ServerID(10); id < 18; id++ {
		if err := retryWrite(t, func() error {
			_, err := all.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:4", Capacity: 10, LeaseTTL: Duration(5 * time.Minute)})
			return err
		}); err != nil {
			t.Fatalf("register %d: %v", id, err)
		}
	}
	downLast := oldLastIndex
	eventually(t, "the leader to snapshot past the crashed node's log", func() bool {
		l := leaderOf(survivors)
		if l == nil {
			return false
		}
		first, err := l.logs.FirstIndex()
		return err == nil && first > downLast+1
	})
	rcfg := cfgs[oldIdx]
	rcfg.Bootstrap, rcfg.Join = false, ""
	nodes[oldIdx] = startNode(t, rcfg)
	want, err := all.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		eventually(t, "every node to hold the same map", func() bool {
			got := n.FSM().Map()
			return got.Index >= want.Index && reflect.DeepEqual(got.Cells, want.Cells) && reflect.DeepEqual(got.Servers, want.Servers)
		})
	}
	// And it serves linearizable reads again (forwarding to whichever node leads).
	rc := NewClient([]string{nodes[oldIdx].HTTPAddr()}, nil)
	eventually(t, "the restarted node to serve a linearizable read", func() bool {
		m, err := rc.Map(ctx, ReadOptions{})
		return err == nil && len(m.Servers) == len(want.Servers)
	})
	st, err := rc.Status(ctx)
	if err != nil || st.ID != oldLeader.ID() || len(st.Peers) != 3 {
		t.Fatalf("status of the restarted node: %v %+v", err, st)
	}

	// Removing a follower (asked through any node) shrinks the configuration everywhere.
	var victim *Node
	eventually(t, "a leader", func() bool { return leaderOf(nodes) != nil })
	for _, n := range nodes {
		if !n.IsLeader() {
			victim = n
		}
	}
	if err := retryWrite(t, func() error { _, err := all.Remove(ctx, victim.ID()); return err }); err != nil {
		t.Fatalf("remove node %d: %v", victim.ID(), err)
	}
	for _, n := range nodes {
		if n == victim {
			continue
		}
		eventually(t, "the removal to reach every remaining node", func() bool { return len(n.Status().Peers) == 2 })
	}
}

// TestLeaseReaper: a server that never heartbeats is marked dead by the leader and its cells
// go to the other live server.
func TestLeaseReaper(t *testing.T) {
	ctx := testCtx(t)
	cfg := testConfig(t, 1)
	cfg.LeaseTTL = 200 * time.Millisecond
	cfg.DeadMargin = 100 * time.Millisecond
	cfg.ReaperInterval = 20 * time.Millisecond
	n := bootstrap(t, cfg)
	c := clientOf(n)
	if _, err := c.Register(ctx, RegisterRequest{ID: 2, Addr: "127.0.0.1:2", Capacity: 100, LeaseTTL: Duration(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// Server 1 gets a lease long enough to receive a cell, then never renews it.
	if _, err := c.Register(ctx, RegisterRequest{ID: 1, Addr: "127.0.0.1:1", Capacity: 100, LeaseTTL: Duration(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cell := m.Cells[0]
	if cell.Owner != 2 {
		t.Fatalf("cell %d owned by %d, want 2 (registered first)", cell.ID, cell.Owner)
	}
	wr, err := c.Move(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: 1})
	if err != nil {
		t.Fatalf("move the cell to server 1: %v", err)
	}
	if wr.Change == 0 {
		t.Fatalf("move between live servers: %+v, want a change", wr)
	}
	// Server 1 reports the cell's entities staged: the move commits.
	if _, err := c.Staged(ctx, wr.Change, 0, 1); err != nil {
		t.Fatalf("staged: %v", err)
	}
	if m, err = c.Map(ctx, ReadOptions{}); err != nil || m.Cells[0].Owner != 1 {
		t.Fatalf("after the move: %v, cells %+v", err, m.Cells)
	}
	// Follow the map with blocking queries until server 1 is dead.
	for {
		m, err = c.Map(ctx, ReadOptions{Index: m.Version, Wait: testDeadline})
		if err != nil {
			t.Fatal(err)
		}
		s1 := m.Servers[0]
		if s1.ID != 1 {
			t.Fatalf("servers: %+v", m.Servers)
		}
		if !s1.Alive {
			break
		}
	}
	for _, cl := range m.Cells {
		if cl.Owner != 2 {
			t.Fatalf("after server 1 died, cell %d is owned by %d, want 2", cl.ID, cl.Owner)
		}
	}
	if !m.Servers[1].Alive {
		t.Fatal("server 2, whose lease is valid, was marked dead")
	}
	// The map can show the death before the reaper's Propose has returned and counted it.
	eventually(t, "servers_marked_dead_total to reach 1", func() bool { return testutil.ToFloat64(n.met.reaped) == 1 })
}

// TestStaleReadWithoutLeader: a node with no cluster answers linearizable reads with 503
// no_leader and stale reads from its (empty) FSM.
func TestStaleReadWithoutLeader(t *testing.T) {
	ctx := testCtx(t)
	n := startNode(t, testConfig(t, 1)) // neither bootstrap nor join
	c := clientOf(n)
	c.Rounds = 1
	_, err := c.Map(ctx, ReadOptions{})
	var ae *APIError
	if !errors.Is(err, ErrNoLeader) || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("linearizable read without a leader: %v, want 503 no_leader", err)
	}
	resp, err := http.Get("http://" + n.HTTPAddr() + "/v1/map?stale")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m Map
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("stale read: %d %v", resp.StatusCode, err)
	}
	if resp.Header.Get(HeaderKnownLeader) != "false" || resp.Header.Get(HeaderIndex) != "0" {
		t.Fatalf("stale read headers: %v", resp.Header)
	}
}

// TestPeerTable: newer entries win, a node's entry about itself is never overwritten, and the
// table survives a restart.
func TestPeerTable(t *testing.T) {
	path := t.TempDir() + "/http_addrs.json"
	self := PeerInfo{ID: 1, RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", Updated: 10}
	pt := loadPeers(path, self, slog.New(slog.DiscardHandler))
	pt.merge([]PeerInfo{
		{ID: 1, HTTPAddr: "10.0.0.1:1", Updated: 99}, // about us: ignored
		{ID: 2, HTTPAddr: "127.0.0.1:20", Updated: 5},
		{ID: 3, HTTPAddr: "not an address", Updated: 5}, // invalid: ignored
		{ID: 0, HTTPAddr: "127.0.0.1:30", Updated: 5},   // invalid: ignored
	})
	pt.merge([]PeerInfo{{ID: 2, HTTPAddr: "127.0.0.1:21", Updated: 4}}) // older: ignored
	if p, _ := pt.get(2); p.HTTPAddr != "127.0.0.1:20" {
		t.Fatalf("peer 2 = %+v", p)
	}
	pt.merge([]PeerInfo{{ID: 2, HTTPAddr: "127.0.0.1:22", Updated: 6}}) // newer: taken
	if got := pt.list(); len(got) != 2 || got[0] != self || got[1].HTTPAddr != "127.0.0.1:22" {
		t.Fatalf("table = %+v", got)
	}
	self2 := self
	self2.HTTPAddr, self2.Updated = "127.0.0.1:3", 11
	re := loadPeers(path, self2, slog.New(slog.DiscardHandler))
	if got := re.list(); len(got) != 2 || got[0] != self2 || got[1].HTTPAddr != "127.0.0.1:22" {
		t.Fatalf("reloaded table = %+v", got)
	}
}

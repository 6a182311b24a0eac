package raftmeta

// faultNet partitions real metadata nodes through Config.PeerDial: every connection a node
// opens to another node (Raft RPCs and node-to-node HTTP) is dialed through it, so refusing
// dials across a cut and closing the connections already open across it is a network
// partition of real hashicorp/raft nodes talking real TCP on 127.0.0.1. Nothing of raft is
// mocked.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type faultNet struct {
	mu    sync.Mutex
	addrs map[string]faultAddr    // Raft and HTTP addresses of the nodes
	cut   map[[2]uint64]bool      // unordered pairs {low, high} that cannot talk
	conns map[*faultConn]struct{} // open connections between nodes
	dials map[string]int          // dials refused, by "raft" or "http", for the log
	lose  map[[2]uint64]bool      // directed (from, to): HTTP answers on from's connections to to are lost
}

type faultAddr struct {
	id   uint64
	kind string // "raft" or "http"
}

func newFaultNet() *faultNet {
	return &faultNet{addrs: map[string]faultAddr{}, cut: map[[2]uint64]bool{}, conns: map[*faultConn]struct{}{}, dials: map[string]int{}, lose: map[[2]uint64]bool{}}
}

func pair(a, b uint64) [2]uint64 {
	if a > b {
		a, b = b, a
	}
	return [2]uint64{a, b}
}

// register tells the net which node owns cfg's addresses and sets cfg.PeerDial.
func (f *faultNet) register(cfg *Config) {
	f.mu.Lock()
	f.addrs[cfg.RaftAddr] = faultAddr{cfg.ID, "raft"}
	f.addrs[cfg.HTTPAddr] = faultAddr{cfg.ID, "http"}
	f.mu.Unlock()
	cfg.PeerDial = f.dialer(cfg.ID)
}

// dialer is node from's PeerDial.
func (f *faultNet) dialer(from uint64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		f.mu.Lock()
		a, known := f.addrs[addr]
		to := a.id
		blocked := known && f.cut[pair(from, to)]
		if blocked {
			f.dials[a.kind]++
		}
		f.mu.Unlock()
		if blocked {
			return nil, f.refused(from, to, addr)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || !known {
			return c, err
		}
		fc := &faultConn{Conn: c, net: f}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.cut[pair(from, to)] { // cut while dialing
			_ = c.Close()
			return nil, f.refused(from, to, addr)
		}
		fc.ends, fc.dir, fc.kind = pair(from, to), [2]uint64{from, to}, a.kind
		f.conns[fc] = struct{}{}
		return fc, nil
	}
}

func (f *faultNet) refused(from, to uint64, addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("faultnet: node %d is cut off from node %d (%s)", from, to, addr)}
}

// partition cuts every link between a node of one group and a node of another and closes the
// connections open across the new cuts.
func (f *faultNet) partition(groups ...[]uint64) {
	f.mu.Lock()
	var doomed []*faultConn
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					f.cut[pair(a, b)] = true
				}
			}
		}
	}
	for c := range f.conns {
		if f.cut[c.ends] {
			doomed = append(doomed, c)
		}
	}
	f.mu.Unlock()
	for _, c := range doomed {
		_ = c.Close()
	}
}

// isolate cuts node id off from every other node in ids.
func (f *faultNet) isolate(id uint64, ids []uint64) {
	rest := slices.DeleteFunc(slices.Clone(ids), func(x uint64) bool { return x == id })
	f.partition([]uint64{id}, rest)
}

// loseReplies makes node from's HTTP requests to node to arrive, but their answers never:
// the connection breaks once the answer starts to come back (a leader that crashes, or a
// network that fails, after it received a request).
func (f *faultNet) loseReplies(from, to uint64) {
	f.mu.Lock()
	f.lose[[2]uint64{from, to}] = true
	f.mu.Unlock()
}

// heal removes every cut and lost-reply rule.
func (f *faultNet) heal() {
	f.mu.Lock()
	clear(f.cut)
	clear(f.lose)
	f.mu.Unlock()
}

// refusedDials reports how many dials were refused since the last call, by kind.
func (f *faultNet) refusedDials() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.dials
	f.dials = map[string]int{}
	return m
}

// faultConn is a connection between two nodes that the net closes when they are cut apart.
type faultConn struct {
	net.Conn
	net  *faultNet
	ends [2]uint64 // unordered
	dir  [2]uint64 // (dialer, dialed)
	kind string
	once sync.Once
}

func (c *faultConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.kind == "http" {
		c.net.mu.Lock()
		lost := c.net.lose[c.dir]
		c.net.mu.Unlock()
		if lost {
			_ = c.Close()
			return 0, fmt.Errorf("faultnet: the answer from node %d to node %d was lost", c.dir[1], c.dir[0])
		}
	}
	return n, err
}

func (c *faultConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.net.mu.Lock()
		delete(c.net.conns, c)
		c.net.mu.Unlock()
	})
	return err
}

// TestFaultNet: the partition table refuses dials across a cut, closes the connections open
// across it when it is made, and leaves the other links alone.
func TestFaultNet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // echo
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	f := newFaultNet()
	f.addrs[ln.Addr().String()] = faultAddr{2, "raft"}
	ctx := testCtx(t)
	from1, from3 := f.dialer(1), f.dialer(3)
	c1, err := from1(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c3, err := from3(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := c.Read(make([]byte, 1))
		return err
	}
	if echo(c1) != nil || echo(c3) != nil {
		t.Fatal("echo before the cut failed")
	}
	f.partition([]uint64{1}, []uint64{2, 3})
	if err := echo(c1); err == nil {
		t.Fatal("a connection across the new cut still works")
	}
	if err := echo(c3); err != nil {
		t.Fatalf("a connection on the majority side broke: %v", err)
	}
	if _, err := from1(ctx, "tcp", ln.Addr().String()); err == nil {
		t.Fatal("a dial across the cut succeeded")
	}
	f.heal()
	c1, err = from1(ctx, "tcp", ln.Addr().String())
	if err != nil || echo(c1) != nil {
		t.Fatalf("after healing: %v", err)
	}
	_ = c1.Close()
	_ = c3.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.conns) != 0 {
		t.Fatalf("%d connections still tracked after closing them all", len(f.conns))
	}
}

// faultCluster is three real nodes (clusterConfig timings) whose node-to-node connections go
// through one faultNet.
type faultCluster struct {
	t     *testing.T
	net   *faultNet
	ids   []uint64
	cfgs  map[uint64]Config
	mu    sync.Mutex // guards nodes (the nemesis replaces killed nodes)
	nodes map[uint64]*Node
	tune  []func(*Config)
}

// startFaultCluster starts the cluster; tune, if given, adjusts each node's config.
func startFaultCluster(t *testing.T, tune ...func(*Config)) *faultCluster {
	t.Helper()
	c := &faultCluster{t: t, net: newFaultNet(), ids: []uint64{1, 2, 3}, cfgs: map[uint64]Config{}, nodes: map[uint64]*Node{}, tune: tune}
	for _, id := range c.ids {
		join := ""
		if id > 1 {
			join = c.nodes[1].HTTPAddr()
		}
		c.nodes[id] = c.first(id, join)
		if id == 1 {
			eventually(t, "the bootstrap node to lead and create the world", func() bool {
				return c.nodes[1].IsLeader() && len(c.nodes[1].FSM().Map().Cells) > 0
			})
		}
	}
	eventually(t, "every node to know all three voters and the leader's HTTP address", func() bool {
		for _, n := range c.nodes {
			st := n.Status()
			if len(st.Peers) != 3 || st.Leader == nil || st.Leader.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	return c
}

// first starts node id for the first time: node 1 bootstraps, the others join. freeAddr's
// ports are free when it picks them but may be taken before the node binds them (by another
// test's connection, or another freeAddr of this cluster); then the node gets new ones.
func (c *faultCluster) first(id uint64, join string) *Node {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		cfg := clusterConfig(c.t, id)
		// These tests use moves as a compare-and-set register of the Raft layer: applied at
		// once, not as two-phase changes no cell server will ever stage.
		cfg.DirectOps = true
		for _, f := range c.tune {
			f(&cfg)
		}
		cfg.Bootstrap, cfg.Join = join == "", join
		c.net.register(&cfg)
		n, err := Start(cfg, testLogger(), prometheus.NewRegistry())
		if err == nil {
			c.t.Cleanup(func() { _ = n.Close() })
			c.cfgs[id] = cfg
			return n
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			c.t.Fatalf("start node %d: %v", id, err)
		}
		c.t.Logf("start node %d: %v; again on other ports", id, err)
	}
}

// all returns the running nodes.
func (c *faultCluster) all() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ns []*Node
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			ns = append(ns, n)
		}
	}
	return ns
}

// leader returns the running node that believes it leads, or nil.
func (c *faultCluster) leader() *Node { return leaderOf(c.all()) }

// others returns the IDs other than id.
func (c *faultCluster) others(id uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(c.ids), func(x uint64) bool { return x == id })
}

// kill stops node id the way a crash would (no leadership hand-over).
func (c *faultCluster) kill(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	c.nodes[id] = nil
	c.mu.Unlock()
	n.noTransfer = true
	if err := n.Close(); err != nil {
		c.t.Errorf("closing node %d: %v", id, err)
	}
}

// restart starts node id again from its data directory (neither bootstrap nor join). It may
// run on a goroutine other than the test's.
func (c *faultCluster) restart(id uint64) error {
	cfg := c.cfgs[id]
	cfg.Bootstrap, cfg.Join = false, ""
	n, err := Start(cfg, testLogger(), prometheus.NewRegistry())
	if err != nil {
		return fmt.Errorf("restarting node %d: %w", id, err)
	}
	c.t.Cleanup(func() { _ = n.Close() })
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return nil
}

// client is a client of the nodes ids (every node if none are given).
func (c *faultCluster) client(ids ...uint64) *Client {
	if len(ids) == 0 {
		ids = c.ids
	}
	var addrs []string
	for _, id := range ids {
		addrs = append(addrs, c.cfgs[id].HTTPAddr)
	}
	return NewClient(addrs, nil)
}

// converged waits until every node holds the same map as want: same version, cells and
// servers. If one does not, the failure says what it served and where a dump of every
// goroutine went.
func (c *faultCluster) converged(ctx context.Context, want *Map) {
	c.t.Helper()
	for _, id := range c.ids {
		sc := c.client(id)
		var got *Map
		var errs []string
		deadline := time.Now().Add(testDeadline)
		for {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := sc.Map(cctx, ReadOptions{Stale: true})
			cancel()
			if err != nil {
				if len(errs) < 5 {
					errs = append(errs, err.Error())
				}
			} else {
				got = m
				if m.Version == want.Version && reflect.DeepEqual(m.Cells, want.Cells) && reflect.DeepEqual(m.Servers, want.Servers) {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				var st any = "not running"
				c.mu.Lock()
				n := c.nodes[id]
				c.mu.Unlock()
				if n != nil {
					st = n.Status()
				}
				dump := "(none)"
				if f, err := os.CreateTemp("", "meridian-goroutines-*.txt"); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 2)
					_ = f.Close()
					dump = f.Name()
				}
				c.t.Fatalf("node %d does not serve the map of version %d:\n got  %+v\n want %+v\n first errors %q\n status %+v\n goroutines: %s",
					id, want.Version, got, want, errs, st, dump)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

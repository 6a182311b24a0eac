package raftmeta

// BenchmarkHeartbeats measures issue 3's "Commits/s and p99 commit latency for heartbeats of 100
// simulated cell servers at 1 Hz, and the peak rate the cluster sustains on this machine":
//
//	go test -run '^$' -bench BenchmarkHeartbeats -benchtime 1x ./raftmeta
//
// One real 3-node cluster, in this process: hashicorp/raft over TCP on 127.0.0.1, each node's
// log in raft-boltdb with fsync (bbolt fdatasyncs every transaction) under b.TempDir(), the
// production timing of DefaultConfig (200 ms heartbeat timeout). 100 cell servers register,
// then every heartbeat goes through the HTTP API with the Go Client, so its latency includes
// JSON, HTTP, forwarding by a follower when it lands on one, the leader's fsync, replication
// to and fsync on a follower (the quorum), and the FSM apply: what a cell server waits for.
//
// Sub-benchmarks:
//
//   - servers=100/rate=1Hz: each simulated server has its own Client (its own connections),
//     starting at node i%3, so a third of the heartbeats reach the leader directly and two
//     thirds are forwarded by a follower, as cell servers configured with all three
//     addresses would. Server i sends at i×10 ms past each second, for -heartbeats.rate-window
//     (10 s): an open loop at the offered rate, whatever the latency. Latency is measured from
//     the moment the request is sent; at 1 Hz with millisecond latencies a late send (the
//     coordinated-omission problem) cannot hide anything, and a heartbeat slower than 1 s
//     would show in max-ms.
//   - peak/route=R/writers=W: W goroutines write heartbeats back to back (closed loop), each
//     with its own Client, cycling over the 100 servers; after 1 s of warm-up (connections,
//     queues) the completions of -heartbeats.peak-window (5 s) are counted. route=spread
//     starts writer w at node w%3 like the cell servers; route=leader sends every write to the
//     leader; route=followers sends every write to a follower, which forwards it. The peak is
//     the highest commits/s over W; beyond it more writers only add queueing (p99 grows,
//     commits/s does not).
//
// Each sub-benchmark runs one fixed window whatever b.N is (a heartbeat is not a repeatable
// unit of work whose ns/op means anything here: at 1 Hz it would be the offered rate, at peak
// the inverse of throughput), so ns/op is suppressed and the figures are reported as metrics:
//
//	commits/s        heartbeats acknowledged per second of the window (each is one Raft entry)
//	p50-ms p99-ms max-ms   client-observed latency of the acknowledged heartbeats
//	failed           heartbeats that returned an error in the window
//	elections        Raft term changes during the window (should be 0)
//	cpu-cores        CPU this process (3 nodes + the clients) used, in cores (the machine has 2)
//	other-cores      CPU used by everything else on the machine (kernel threads and steal
//	                 included): a figure measured while this is well above 0 — someone else's
//	                 tests, say — is polluted; rerun it
//	leader-disk-%    share of the window the leader's bbolt spent writing pages + fdatasyncing
//	follower-disk-%  the same, averaged over the two followers
//	raft-mean-ms     mean time from the leader's raft.Apply to the FSM having applied the entry
//	                 (batching wait, both log writes, commit, apply): compare with the mean
//	                 client latency to see what HTTP, JSON and forwarding add
//	entries/batch    log entries per leader log write (one bbolt transaction, two fdatasyncs)
//	batch-ms         mean time of one such write
//
// -benchtime 1x runs each window once; any other -benchtime just runs it again (the last
// run's figures are the ones printed). The parent sets the cluster up once for all of them.
//
// What limits the peak. hashicorp/raft group-commits: the leader loop takes every Apply that
// is waiting (up to MaxAppendEntries+1) into one StoreLogs — one bbolt transaction, two
// fdatasyncs — and a follower stores each AppendEntries batch in one transaction, so the fsync
// is paid per batch, not per heartbeat, and more writers make bigger batches. But the leader
// writes its log synchronously in its one main loop before replicating (a follower likewise,
// and the FSM applies in one goroutine), and a batch's write grows with its size and shares
// the disk with the other two nodes' writes. Measured here on the ext4 virtual disk: the
// leader loop spends about half the window in bbolt (leader-disk-%), batches stay well under
// the cap (entries/batch ≤ ~40, so raising MaxAppendEntries — -heartbeats.max-append-entries —
// changes nothing), raft-mean-ms is most of the client latency (the writes queue for the
// leader loop), and the process uses only 1.2–1.5 of the 2 cores: the peak is set by the log
// write latency (fsync) on Raft's serial path, not by CPU. With the data dirs on tmpfs
// (TMPDIR=/dev/shm: fdatasync costs nothing there — a diagnostic only, nothing is durable)
// the same cluster commits about twice as much and uses both cores: CPU is the next bound,
// mostly HTTP and JSON (three servers, the clients, the forwarding hop), then Raft's RPCs and
// msgpack, the FSM decoding each command's JSON on three nodes, and GC. Forwarding costs a
// second HTTP round trip per write, and more: a follower keeps at most 16 idle connections to
// the leader (newTransport's MaxIdleConnsPerHost), so beyond 16 concurrent forwarded writes it
// dials a new connection per request (thousands of sockets in TIME_WAIT during
// route=followers). The log of the 1 Hz run prints how long one small bbolt commit takes in
// the data dir.

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
)

var (
	hbRateWindow = flag.Duration("heartbeats.rate-window", 10*time.Second, "BenchmarkHeartbeats: length of the 1 Hz run")
	hbPeakWindow = flag.Duration("heartbeats.peak-window", 5*time.Second, "BenchmarkHeartbeats: measured length of each peak run (after 1 s of warm-up)")
	hbMaxAppend  = flag.Int("heartbeats.max-append-entries", 0, "BenchmarkHeartbeats: Config.MaxAppendEntries of the nodes (0: DefaultConfig's); a diagnostic of the group-commit cap")
)

const (
	hbServers = 100
	hbWarmup  = time.Second
	// hbLeaseTTL is long so that no server's lease lapses between sub-benchmarks (the reaper's
	// MarkDead entries would be extra commits); the TTL's value does not change a heartbeat's cost.
	hbLeaseTTL = Duration(maxLeaseTTL)
)

func BenchmarkHeartbeats(b *testing.B) {
	root := b.TempDir()
	// Logged by the first sub-benchmark: a parent's log is not printed when it has sub-benchmarks.
	about := fmt.Sprintf("data dirs under %s (set TMPDIR to move them)", root)
	if *hbMaxAppend > 0 {
		about += fmt.Sprintf("; MaxAppendEntries %d (not the default)", *hbMaxAppend)
	}
	if p50, p99, err := boltCommitLatency(filepath.Join(root, "probe.db"), 50); err != nil {
		about += fmt.Sprintf("; bbolt commit probe: %v", err)
	} else {
		about += fmt.Sprintf("; a bbolt commit of one small transaction (2 fdatasyncs) there: p50 %.2f ms, p99 %.2f ms", ms(p50), ms(p99))
	}
	nodes := startHeartbeatCluster(b, root)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	c := clientOf(nodes...)
	for i := 1; i <= hbServers; i++ {
		if _, err := c.Register(ctx, RegisterRequest{ID: ServerID(i), Addr: fmt.Sprintf("127.0.0.1:%d", 20000+i),
			ClientAddr: fmt.Sprintf("127.0.0.1:%d", 30000+i), Capacity: 5000, LeaseTTL: hbLeaseTTL}); err != nil {
			b.Fatalf("register server %d: %v", i, err)
		}
	}
	c.hc.CloseIdleConnections()

	b.Run(fmt.Sprintf("servers=%d/rate=1Hz", hbServers), func(b *testing.B) {
		b.Log(about)
		runHeartbeatRate(b, ctx, nodes, *hbRateWindow)
	})
	b.Run("peak", func(b *testing.B) {
		for _, route := range []string{"spread", "leader", "followers"} {
			for _, w := range []int{16, 64, 256} {
				b.Run(fmt.Sprintf("route=%s/writers=%d", route, w), func(b *testing.B) {
					runHeartbeatPeak(b, ctx, nodes, route, w, *hbPeakWindow)
				})
			}
		}
	})
}

// startHeartbeatCluster starts three nodes with the production defaults: node 1 bootstraps,
// 2 and 3 join it; it returns once every node knows the leader's HTTP address.
func startHeartbeatCluster(b *testing.B, root string) []*Node {
	b.Helper()
	nodes := make([]*Node, 3)
	for i := range nodes {
		cfg := DefaultConfig()
		cfg.ID = uint64(i + 1)
		cfg.RaftAddr, cfg.HTTPAddr = hbFreeAddr(b), hbFreeAddr(b)
		cfg.DataDir = filepath.Join(root, "node"+strconv.Itoa(i+1))
		cfg.JoinTimeout = testDeadline
		if *hbMaxAppend > 0 {
			cfg.MaxAppendEntries = *hbMaxAppend
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = nodes[0].HTTPAddr()
		}
		n, err := Start(cfg, testLogger(), prometheus.NewRegistry()) // sampleHB reads it
		if err != nil {
			b.Fatalf("start node %d: %v", cfg.ID, err)
		}
		b.Cleanup(func() { _ = n.Close() })
		nodes[i] = n
		if i == 0 {
			hbWait(b, "the bootstrap node to lead and create the world", func() bool {
				return n.IsLeader() && len(n.FSM().Map().Cells) > 0
			})
		}
	}
	hbWait(b, "every node to know three voters and the leader's HTTP address", func() bool {
		for _, n := range nodes {
			st := n.Status()
			if len(st.Peers) != 3 || st.Leader == nil || st.Leader.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	return nodes
}

func hbFreeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func hbWait(b *testing.B, what string, f func() bool) {
	b.Helper()
	deadline := time.Now().Add(testDeadline)
	for !f() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hbRequest is a plausible load report: totals and one cell's figures.
func hbRequest(id ServerID, seq int) HeartbeatRequest {
	return HeartbeatRequest{LeaseTTL: hbLeaseTTL, Load: Load{
		Entities: 1000 + seq%500, TickP99Micros: 9000 + int64(seq%1000), BytesOut: 4_000_000,
		Cells: []CellLoad{{Cell: CellID(id), Entities: 1000 + seq%500, TickP99Micros: 9000, BytesOut: 4_000_000}},
	}}
}

// hbOp is one heartbeat as a client saw it.
type hbOp struct {
	start, end time.Time
	err        error
}

func runHeartbeatRate(b *testing.B, ctx context.Context, nodes []*Node, window time.Duration) {
	clients := make([]*Client, hbServers)
	for i := range clients {
		clients[i] = NewClient(rotate(nodeAddrs(nodes), i%len(nodes)), nil)
		defer clients[i].hc.CloseIdleConnections()
	}
	// A cell server keeps its connections: open them (and the followers' forwarding
	// connections) before the window.
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			id := ServerID(i + 1)
			if _, err := c.Heartbeat(ctx, id, hbRequest(id, 0)); err != nil {
				b.Errorf("warm-up heartbeat of server %d: %v", id, err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}

	start := time.Now().Add(100 * time.Millisecond).Truncate(10 * time.Millisecond)
	end := start.Add(window)
	ops := make([][]hbOp, hbServers)
	before := sampleHB(nodes)
	for i, c := range clients {
		wg.Go(func() {
			id := ServerID(i + 1)
			phase := time.Duration(i) * time.Second / hbServers
			for k := 0; ; k++ {
				at := start.Add(phase + time.Duration(k)*time.Second)
				if !at.Before(end) {
					return
				}
				time.Sleep(time.Until(at))
				s := time.Now()
				_, err := c.Heartbeat(ctx, id, hbRequest(id, k))
				ops[i] = append(ops[i], hbOp{start: s, end: time.Now(), err: err})
			}
		})
	}
	time.Sleep(time.Until(end))
	after := sampleHB(nodes)
	wg.Wait()
	reportHB(b, slices.Concat(ops...), window, before, after, func(hbOp) bool { return true })
}

func runHeartbeatPeak(b *testing.B, ctx context.Context, nodes []*Node, route string, writers int, window time.Duration) {
	leader := leaderOf(nodes)
	if leader == nil {
		b.Fatal("no leader")
	}
	var followers []string
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n.HTTPAddr())
		}
	}
	clients := make([]*Client, writers)
	for w := range clients {
		var addrs []string
		switch route {
		case "spread":
			addrs = rotate(nodeAddrs(nodes), w%len(nodes))
		case "leader":
			addrs = append([]string{leader.HTTPAddr()}, followers...) // the others only if it fails
		case "followers":
			addrs = append(rotate(followers, w%len(followers)), leader.HTTPAddr())
		default:
			b.Fatalf("unknown route %q", route)
		}
		clients[w] = NewClient(addrs, nil)
		defer clients[w].hc.CloseIdleConnections()
	}

	stop := make(chan struct{})
	ops := make([][]hbOp, writers)
	var wg sync.WaitGroup
	for w, c := range clients {
		wg.Go(func() {
			// Writer w renews servers w+1, w+1+writers, ... in turn (server w%100+1 if there
			// are more writers than servers).
			var ids []ServerID
			for s := w % hbServers; s < hbServers; s += writers {
				ids = append(ids, ServerID(s+1))
			}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[k%len(ids)]
				s := time.Now()
				_, err := c.Heartbeat(ctx, id, hbRequest(id, k))
				ops[w] = append(ops[w], hbOp{start: s, end: time.Now(), err: err})
			}
		})
	}
	time.Sleep(hbWarmup)
	before := sampleHB(nodes)
	ws := time.Now()
	time.Sleep(window)
	we := time.Now()
	after := sampleHB(nodes)
	close(stop)
	wg.Wait()
	reportHB(b, slices.Concat(ops...), we.Sub(ws), before, after, func(o hbOp) bool {
		return !o.end.Before(ws) && o.end.Before(we)
	})
}

func nodeAddrs(nodes []*Node) []string {
	var a []string
	for _, n := range nodes {
		a = append(a, n.HTTPAddr())
	}
	return a
}

func rotate(s []string, k int) []string { return append(slices.Clone(s[k:]), s[:k]...) }

// hbSample is what the figures of a window are differences of.
type hbSample struct {
	cpu       cpuSample
	term      uint64        // highest term of any node
	leader    *Node         // the leader when sampled
	diskWrite time.Duration // the leader's bbolt TxStats.WriteTime (page writes + fdatasyncs)
	txid      uint64        // the leader's last committed bbolt transaction: one per log batch
	lastIndex uint64        // the leader's last log index
	nodes     []*Node
	nodeWrite []time.Duration // every node's bbolt WriteTime
	// The leader's meridian_raft_apply_duration_seconds: Propose's raft.Apply until the FSM
	// has applied the entry (the wait to be batched, both log writes, the commit, the apply).
	applySum   float64
	applyCount uint64
}

func sampleHB(nodes []*Node) hbSample {
	s := hbSample{cpu: sampleCPU(), leader: leaderOf(nodes), nodes: nodes}
	for _, n := range nodes {
		s.term = max(s.term, n.Raft().CurrentTerm())
		s.nodeWrite = append(s.nodeWrite, n.store.Stats().TxStats.WriteTime)
	}
	if s.leader != nil {
		s.diskWrite = s.leader.store.Stats().TxStats.WriteTime
		s.lastIndex = s.leader.Raft().LastIndex()
		s.txid, _ = boltTxID(filepath.Join(s.leader.cfg.DataDir, "raft.db"))
		if g, ok := s.leader.reg.(prometheus.Gatherer); ok {
			mfs, _ := g.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "meridian_raft_apply_duration_seconds" && len(mf.GetMetric()) == 1 {
					h := mf.GetMetric()[0].GetHistogram()
					s.applySum, s.applyCount = h.GetSampleSum(), h.GetSampleCount()
				}
			}
		}
	}
	return s
}

// boltTxID reads the ID of the last committed write transaction of a bbolt file from its two
// meta pages (bbolt's on-disk format: a 16-byte page header, then magic, version, page size,
// flags, the root bucket, freelist and high-water page IDs, txid). bbolt has no counter of
// write transactions, and each raft-boltdb StoreLogs — one group-committed log batch — is one.
func boltTxID(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const magic = 0xED0CDAED
	var txid uint64
	pageSize := int64(0)
	for i := range 2 {
		var buf [80]byte
		if _, err := f.ReadAt(buf[:], int64(i)*pageSize); err != nil {
			return 0, err
		}
		if binary.NativeEndian.Uint32(buf[16:]) != magic {
			return 0, fmt.Errorf("%s: meta page %d: not a bbolt meta page", path, i)
		}
		if i == 0 {
			pageSize = int64(binary.NativeEndian.Uint32(buf[24:]))
		}
		txid = max(txid, binary.NativeEndian.Uint64(buf[64:]))
	}
	return txid, nil
}

func reportHB(b *testing.B, ops []hbOp, window time.Duration, before, after hbSample, in func(hbOp) bool) {
	var lat []time.Duration
	failed := 0
	var firstErr error
	for _, o := range ops {
		if !in(o) {
			continue
		}
		if o.err != nil {
			failed++
			if firstErr == nil {
				firstErr = o.err
			}
			continue
		}
		lat = append(lat, o.end.Sub(o.start))
	}
	if firstErr != nil {
		b.Logf("%d heartbeats failed; the first: %v", failed, firstErr)
	}
	if len(lat) == 0 {
		b.Fatal("no heartbeat was acknowledged in the window")
	}
	slices.Sort(lat)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(len(lat))/window.Seconds(), "commits/s")
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(float64(after.term-before.term), "elections")
	if self, other, ok := after.cpu.sub(before.cpu); ok {
		b.ReportMetric(self, "cpu-cores")
		b.ReportMetric(other, "other-cores")
	}
	if before.leader != nil && before.leader == after.leader {
		b.ReportMetric(100*float64(after.diskWrite-before.diskWrite)/float64(window), "leader-disk-%")
		var fw time.Duration
		for i, n := range after.nodes {
			if n != after.leader {
				fw += after.nodeWrite[i] - before.nodeWrite[i]
			}
		}
		b.ReportMetric(100*float64(fw)/float64(len(after.nodes)-1)/float64(window), "follower-disk-%")
		if n := after.applyCount - before.applyCount; n > 0 {
			b.ReportMetric(1000*(after.applySum-before.applySum)/float64(n), "raft-mean-ms")
		}
		if txns := after.txid - before.txid; before.txid > 0 && txns > 0 {
			b.ReportMetric(float64(after.lastIndex-before.lastIndex)/float64(txns), "entries/batch")
			b.ReportMetric(ms(after.diskWrite-before.diskWrite)/float64(txns), "batch-ms")
		}
	}
}

// percentile is the nearest-rank percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// boltCommitLatency times n bbolt transactions that each put one small value: the two
// fdatasyncs of a commit are the floor of one raft-boltdb StoreLogs (one log batch).
func boltCommitLatency(path string, n int) (p50, p99 time.Duration, err error) {
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(path)
	defer db.Close()
	val := make([]byte, 200)
	var d []time.Duration
	for i := range n {
		s := time.Now()
		err := db.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("probe"))
			if err != nil {
				return err
			}
			return bk.Put([]byte(strconv.Itoa(i)), val)
		})
		if err != nil {
			return 0, 0, err
		}
		d = append(d, time.Since(s))
	}
	slices.Sort(d)
	return percentile(d, 0.5), percentile(d, 0.99), nil
}

// cpuSample is this process's CPU time and the machine's, in clock ticks, from /proc (Linux;
// elsewhere ok is false and the CPU figures are not reported).
type cpuSample struct {
	self, busy, total uint64 // busy: every state but idle and iowait (steal included)
	ncpu              int
	ok                bool
}

func sampleCPU() cpuSample {
	var s cpuSample
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return s
	}
	for line := range strings.Lines(string(stat)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			s.ncpu++
			continue
		}
		// user nice system idle iowait irq softirq steal (guest time is inside user)
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			s.total += v
			if i != 4 && i != 5 {
				s.busy += v
			}
		}
	}
	// /proc/self/stat: after the ")" closing the command name, utime and stime are the 12th
	// and 13th fields.
	rest := string(self)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 || s.ncpu == 0 || s.total == 0 {
		return s
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s
	}
	s.self, s.ok = ut+st, true
	return s
}

// sub returns the cores this process and everything else used between s0 and s.
func (s cpuSample) sub(s0 cpuSample) (self, other float64, ok bool) {
	if !s.ok || !s0.ok || s.total <= s0.total {
		return 0, 0, false
	}
	perCore := float64(s.total-s0.total) / float64(s.ncpu) // ticks of one core in the interval
	self = float64(s.self-s0.self) / perCore
	busy := float64(s.busy-s0.busy) / perCore
	return self, max(busy-self, 0), true
}

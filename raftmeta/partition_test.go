package raftmeta

import (
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestMinorityPartition cuts one node of three off (through Config.PeerDial, so both Raft and
// node-to-node HTTP forwarding are cut) — a follower, then the leader — and checks that a
// client talking only to that minority node gets no acknowledged write and no linearizable
// read (a ?stale read still answers, from the node's old map), that the majority keeps or
// elects a leader and takes writes, and that after healing every node holds one history: the
// majority's write, never the minority's.
func TestMinorityPartition(t *testing.T) {
	for _, isolateLeader := range []bool{false, true} {
		name := "follower"
		if isolateLeader {
			name = "leader"
		}
		t.Run(name, func(t *testing.T) { testMinorityPartition(t, isolateLeader) })
	}
}

func testMinorityPartition(t *testing.T, isolateLeader bool) {
	ctx := testCtx(t)
	// The new leader keeps its whole log, so the old one is caught up by AppendEntries. Were it
	// compacted past the point where the two logs part, healing would send the old leader a
	// snapshot and trip hashicorp/raft#697 (TestDivergentLogSnapshotInstall): with the
	// cluster idle, it would never catch up.
	c := startFaultCluster(t, func(cfg *Config) { cfg.TrailingLogs = 1 << 20 })
	all := c.client()
	for _, id := range []ServerID{1, 2, 3} {
		if err := retryWrite(t, func() error {
			_, err := all.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:1", Capacity: 100, LeaseTTL: Duration(5 * time.Minute)})
			return err
		}); err != nil {
			t.Fatalf("register server %d: %v", id, err)
		}
	}
	before, err := all.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cell := before.Cells[0]
	if cell.Owner != 1 {
		t.Fatalf("cell %d is owned by server %d, want 1 (registered first)", cell.ID, cell.Owner)
	}
	// Every node has applied the registrations, so the minority's stale reads show them.
	c.converged(ctx, before)

	var leader, minority *Node
	eventually(t, "a leader", func() bool { leader = c.leader(); return leader != nil })
	if isolateLeader {
		minority = leader
	} else {
		for _, n := range c.all() {
			if n != leader {
				minority = n
				break
			}
		}
	}
	mid := minority.ID()
	majority := c.others(mid)
	t.Logf("isolating node %d (%s); majority %v", mid, minority.Raft().State(), majority)
	c.net.isolate(mid, c.ids)

	// At once, while the minority node may still believe in its leadership (or in the old
	// leader, whom it would forward to), a write and a linearizable read on it, concurrently,
	// one attempt each (the client would otherwise retry until the node knows it is alone).
	mc := c.client(mid)
	once := c.client(mid)
	once.Rounds = 1
	var wg sync.WaitGroup
	var werr, rerr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, werr = once.Move(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: 2})
	}()
	go func() {
		defer wg.Done()
		_, rerr = once.Map(ctx, ReadOptions{})
	}()
	wg.Wait()
	checkRefusedWrite(t, "right after the cut", werr)
	checkRefusedRead(t, "right after the cut", rerr)

	// The majority keeps (or elects) a leader and commits a move of the same cell from the
	// same epoch: it succeeds only because the minority's move never committed.
	maj := c.client(majority...)
	var wr *WriteResult
	unknown := false
	eventually(t, "the majority to commit a move", func() bool {
		wr, err = maj.Move(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: 3})
		switch {
		case err == nil:
			return true
		case unknownOutcome(err):
			unknown = true
		case unknown && errors.Is(err, ErrStaleEpoch):
			// An earlier try (outcome unknown) may have applied: a read tells.
			m, rerr := maj.Map(ctx, ReadOptions{})
			if rerr == nil && m.Cells[0].Owner == 3 && m.Cells[0].Epoch == cell.Epoch+1 {
				wr, err = &WriteResult{Version: m.Version}, nil
				return true
			}
			t.Fatalf("move on the majority side: %v (map read: %v)", err, rerr)
		case !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotLeader):
			t.Fatalf("move on the majority side: %v", err)
		}
		return false
	})
	want, err := maj.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatalf("linearizable read on the majority side: %v", err)
	}
	if got := want.Cells[0]; got.Owner != 3 || got.Epoch != cell.Epoch+1 || want.Version < wr.Version {
		t.Fatalf("majority after its move: cell %+v version %d, want owner 3 epoch %d version ≥ %d", got, want.Version, cell.Epoch+1, wr.Version)
	}

	// The minority, now surely cut off from the new history, still refuses writes and
	// linearizable reads; a stale read serves its old map.
	_, werr = mc.Move(ctx, Move{Cell: cell.ID, Epoch: want.Cells[0].Epoch, To: 1})
	checkRefusedWrite(t, "after the majority's write", werr)
	_, rerr = mc.Cells(ctx, ReadOptions{})
	checkRefusedRead(t, "after the majority's write", rerr)
	stale, err := mc.Map(ctx, ReadOptions{Stale: true})
	if err != nil {
		t.Fatalf("stale read on the minority: %v", err)
	}
	if stale.Version != before.Version || stale.Cells[0] != cell {
		t.Fatalf("the minority's stale map: version %d cell %+v, want its pre-partition version %d cell %+v", stale.Version, stale.Cells[0], before.Version, cell)
	}
	if st := minority.Status(); st.State == "leader" {
		t.Fatalf("the isolated node still claims leadership: %+v", st)
	}
	t.Logf("refused dials across the cut: %v", c.net.refusedDials())

	// Heal: the minority takes the majority's history (its own uncommitted move, if the old
	// leader appended one, is overwritten) and every node serves the same map.
	c.net.heal()
	c.converged(ctx, want)
	eventually(t, "the healed node to serve linearizable reads", func() bool {
		m, err := mc.Map(ctx, ReadOptions{})
		return err == nil && m.Version >= want.Version
	})
	// And it takes writes again.
	if err := retryWrite(t, func() error {
		_, err := mc.Move(ctx, Move{Cell: cell.ID, Epoch: want.Cells[0].Epoch, To: 1})
		if errors.Is(err, ErrStaleEpoch) { // an earlier try whose outcome was unknown applied
			m, rerr := mc.Map(ctx, ReadOptions{})
			if rerr == nil && m.Cells[0].Owner == 1 && m.Cells[0].Epoch == want.Cells[0].Epoch+1 {
				return nil
			}
		}
		return err
	}); err != nil {
		t.Fatalf("move through the healed node: %v", err)
	}
	final, err := all.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := final.Cells[0]; got.Owner != 1 || got.Epoch != cell.Epoch+2 {
		t.Fatalf("final cell %+v, want owner 1 at epoch %d (two moves after %d)", got, cell.Epoch+2, cell.Epoch)
	}
	c.converged(ctx, final)
}

// minorityCodes are the answers a node cut off from the majority may give: nothing applied
// (no_leader, not_leader) or, for a write a leader appended just before losing its quorum, an
// unknown outcome (leadership_lost, timeout) — never an acknowledgement.
var minorityCodes = []error{ErrNoLeader, ErrNotLeader, ErrLeadershipLost, ErrTimeout}

func checkRefusedWrite(t *testing.T, when string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the minority node acknowledged a write", when)
	}
	if !slices.ContainsFunc(minorityCodes, func(e error) bool { return errors.Is(err, e) }) {
		t.Fatalf("%s: write on the minority: %v, want no_leader, not_leader, leadership_lost or timeout", when, err)
	}
	t.Logf("%s: write on the minority refused: %v", when, err)
}

func checkRefusedRead(t *testing.T, when string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the minority node served a linearizable read", when)
	}
	if !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("%s: linearizable read on the minority: %v, want no_leader, not_leader or timeout", when, err)
	}
	t.Logf("%s: linearizable read on the minority refused: %v", when, err)
}

// TestForwardLostReply: a follower forwards a write to the leader, which applies it, and the
// answer is lost on the way back. The follower must report an unknown outcome (timeout or
// leadership_lost), never no_leader or shutdown, which promise that nothing was applied and
// invite a retry elsewhere — a retried move would then fail with stale_epoch although the
// first one took effect.
func TestForwardLostReply(t *testing.T) {
	ctx := testCtx(t)
	c := startFaultCluster(t)
	all := c.client()
	for _, id := range []ServerID{1, 2} {
		if err := retryWrite(t, func() error {
			_, err := all.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:1", Capacity: 100, LeaseTTL: Duration(5 * time.Minute)})
			return err
		}); err != nil {
			t.Fatalf("register server %d: %v", id, err)
		}
	}
	// A leadership change in the middle (a scheduling stall on a loaded machine) would send
	// the move elsewhere; the attempt then says nothing and is made again.
	for attempt := 1; ; attempt++ {
		before, err := all.Map(ctx, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cell := before.Cells[0]
		to := ServerID(2)
		if cell.Owner == 2 {
			to = 1
		}
		var leader *Node
		eventually(t, "a leader", func() bool { leader = c.leader(); return leader != nil })
		term := leader.Raft().CurrentTerm()
		var follower *Node
		for _, n := range c.all() {
			if n != leader {
				follower = n
				break
			}
		}
		c.net.loseReplies(follower.ID(), leader.ID())
		fc := c.client(follower.ID())
		fc.Rounds = 1
		_, err = fc.Move(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: to})
		c.net.heal()
		if !leader.IsLeader() || leader.Raft().CurrentTerm() != term {
			if attempt == 5 {
				t.Fatal("the leader changed during every attempt")
			}
			t.Logf("attempt %d: the leader changed meanwhile (%v); again", attempt, err)
			continue
		}
		if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrLeadershipLost) {
			t.Errorf("a forwarded move whose answer was lost: %v (code %q), want timeout or leadership_lost", err, ErrorCode(err))
		}
		after, err := all.Map(ctx, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := after.Cells[0]; got.Owner != to || got.Epoch != cell.Epoch+1 {
			t.Fatalf("the leader did not apply the move (cell %+v): the test did not lose a reply", got)
		}
		return
	}
}

// TestDivergentLogSnapshotInstall reproduces hashicorp/raft#697 (open upstream, fix proposed
// in hashicorp/raft#704), which TestMinorityPartition/leader ran into about once in 50 runs: a
// leader is cut off after appending entries it cannot commit; the majority's new leader
// commits, snapshots and compacts its log past where the two logs part; on healing it sends the
// old leader that snapshot, but raft's InstallSnapshot keeps the old leader's conflicting
// entries past the snapshot index (Raft's Figure 13 rule 7 says to discard them), so every
// following AppendEntries is refused, the leader sends the snapshot again, and so on until the
// leader's next snapshot goes past the old leader's last index. In an idle cluster that is
// never: the node stays behind. The test asserts that the node catches up; it is skipped until
// the dependency is fixed (MERIDIAN_KNOWN_BUGS=1 runs it).
func TestDivergentLogSnapshotInstall(t *testing.T) {
	if os.Getenv("MERIDIAN_KNOWN_BUGS") == "" {
		t.Skip("hashicorp/raft#697: a node whose log diverges past the leader's snapshot is never caught up; MERIDIAN_KNOWN_BUGS=1 runs this")
	}
	ctx := testCtx(t)
	c := startFaultCluster(t, func(cfg *Config) {
		// Snapshots only when the test asks, and nothing kept behind them.
		cfg.SnapshotInterval, cfg.SnapshotThreshold, cfg.TrailingLogs = time.Hour, 1<<40, 0
	})
	all := c.client()
	if err := retryWrite(t, func() error {
		_, err := all.Register(ctx, RegisterRequest{ID: 1, Addr: "127.0.0.1:1", Capacity: 100, LeaseTTL: Duration(5 * time.Minute)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var old *Node
	eventually(t, "a leader", func() bool { old = c.leader(); return old != nil })
	c.net.isolate(old.ID(), c.ids)

	// The cut-off leader appends writes it will never commit: more of them than the majority
	// will have entries when it snapshots.
	oc := c.client(old.ID())
	oc.Rounds = 1
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = oc.Register(ctx, RegisterRequest{ID: ServerID(100 + i), Addr: "127.0.0.1:1", Capacity: 1, LeaseTTL: Duration(5 * time.Minute)})
		}()
	}
	wg.Wait()
	oldLast := old.Raft().LastIndex()

	// The majority commits a write, snapshots (compacting its whole log), then commits another
	// write that only the log holds.
	maj := c.client(c.others(old.ID())...)
	write := func(id ServerID) {
		t.Helper()
		eventually(t, "a write on the majority side", func() bool {
			_, err := maj.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:2", Capacity: 100, LeaseTTL: Duration(5 * time.Minute)})
			return err == nil
		})
	}
	write(2)
	var lead *Node
	eventually(t, "a leader on the majority side", func() bool {
		lead = c.leader()
		return lead != nil && lead != old
	})
	if err := lead.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot on the new leader: %v", err)
	}
	first, _ := lead.logs.FirstIndex()
	last := lead.Raft().LastIndex()
	t.Logf("old leader's last index %d; new leader's log after the snapshot: %d..%d", oldLast, first, last)
	if last > oldLast {
		t.Fatalf("the majority's log (to %d) is past the old leader's (%d): the bug needs the reverse", last, oldLast)
	}
	write(3)
	want, err := maj.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	c.net.heal()
	healed := time.Now()
	for old.FSM().Version() < want.Version {
		if time.Since(healed) > 10*time.Second {
			t.Fatalf("10 s after healing the old leader still has version %d, the cluster %d: %+v", old.FSM().Version(), want.Version, old.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the old leader caught up %v after healing", time.Since(healed))
	c.converged(ctx, want)
}

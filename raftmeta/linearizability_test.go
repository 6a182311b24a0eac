package raftmeta

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability test's view of the map: one cell as a compare-and-set register. A read
// returns (owner, epoch); Move(epoch e, to) succeeds iff the cell's epoch is e and to is not
// already the owner, and then sets (to, e+1); otherwise it fails with stale_epoch or
// already_owner and changes nothing (state.go's move).
type (
	linState struct {
		Owner ServerID
		Epoch Epoch
	}
	linInput struct {
		Move  bool
		Epoch Epoch    // move: the epoch the client last read
		To    ServerID // move: the new owner
	}
	linOutput struct {
		Result string   // "ok", or for a move "stale_epoch", "already_owner" or "unknown"
		State  linState // read: what it returned
	}
)

// Results of a move.
const (
	linOK           = "ok"
	linStale        = "stale_epoch"
	linAlreadyOwner = "already_owner"
	linUnknown      = "unknown" // no answer, or one that leaves the outcome open
)

func linModel(init linState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(linState), input.(linInput), output.(linOutput)
			if !in.Move {
				return out.State == s, s
			}
			applies := s.Epoch == in.Epoch && s.Owner != in.To
			next := linState{Owner: in.To, Epoch: s.Epoch + 1}
			switch out.Result {
			case linOK:
				return applies, next
			case linStale:
				return s.Epoch != in.Epoch, s
			case linAlreadyOwner:
				return s.Epoch == in.Epoch && s.Owner == in.To, s
			}
			// Unknown: it took effect at this point if it could; returning at the end of the
			// history, it may also be placed after everything, i.e. never have happened.
			if applies {
				return true, next
			}
			return true, s
		},
		Hash: func(state any) uint64 {
			s := state.(linState)
			return uint64(s.Owner)<<48 ^ uint64(s.Epoch)
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linInput), output.(linOutput)
			if !in.Move {
				return fmt.Sprintf("read → owner %d epoch %d", out.State.Owner, out.State.Epoch)
			}
			return fmt.Sprintf("move(epoch %d → %d) → %s", in.Epoch, in.To, out.Result)
		},
		DescribeState: func(state any) string {
			s := state.(linState)
			return fmt.Sprintf("owner %d epoch %d", s.Owner, s.Epoch)
		},
	}
}

// linHistory records operations from several goroutines.
type linHistory struct {
	start  time.Time
	mu     sync.Mutex
	ops    []porcupine.Operation
	notes  []porcupine.Annotation
	nextID atomic.Int64 // next porcupine client id for a client that had an unknown outcome
	counts map[string]int
}

func (h *linHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *linHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	in, out := op.Input.(linInput), op.Output.(linOutput)
	kind := "read"
	if in.Move {
		kind = "move " + out.Result
	}
	h.counts[kind]++
}

func (h *linHistory) note(desc string, start int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, porcupine.Annotation{Tag: "nemesis", Start: start, End: h.now(), Description: desc})
}

// nothingApplied reports whether a failed call certainly changed nothing, so the client may
// try another node: the node said so (not_leader, no_leader, shutdown) or the connection was
// never made (the node is down).
func nothingApplied(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code == "not_leader" || ae.Code == "no_leader" || ae.Code == "shutdown"
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// linClient is one client process: it reads the cell and moves it with the epoch it last
// read, against any node, trying the next node only when nothing was applied.
type linClient struct {
	t     *testing.T
	h     *linHistory
	id    int // porcupine client id; a new one after an unknown outcome
	rng   *rand.Rand
	nodes []*Client // one per node, each a single attempt
	cell  CellID
	last  *linState // what this client last read
}

const linOpTimeout = 2 * time.Second

// try runs f against the nodes, starting at a random one, until it returns an error other than
// "nothing applied", or every node said so twice.
func (c *linClient) try(ctx context.Context, f func(*Client) error) error {
	var err error
	k := c.rng.IntN(len(c.nodes))
	for i := range 2 * len(c.nodes) {
		if i == len(c.nodes) && !sleepCtx(ctx, 50*time.Millisecond) {
			return err
		}
		err = f(c.nodes[(k+i)%len(c.nodes)])
		if err == nil || !nothingApplied(err) {
			return err
		}
	}
	return err
}

func (c *linClient) read(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	call := c.h.now()
	var got linState
	err := c.try(ctx, func(cl *Client) error {
		r, err := cl.Cells(ctx, ReadOptions{})
		if err != nil {
			return err
		}
		for _, cell := range r.Cells {
			if cell.ID == c.cell {
				got = linState{Owner: cell.Owner, Epoch: cell.Epoch}
				return nil
			}
		}
		return fmt.Errorf("cell %d missing from %+v", c.cell, r.Cells)
	})
	if err != nil {
		return // a failed read tells nothing and changes nothing
	}
	c.h.add(porcupine.Operation{ClientId: c.id, Input: linInput{}, Call: call,
		Output: linOutput{Result: linOK, State: got}, Return: c.h.now()})
	c.last = &got
}

func (c *linClient) move(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	to := ServerID(1 + c.rng.IntN(3))
	for to == c.last.Owner && c.rng.IntN(8) != 0 { // now and then, a move to the owner
		to = ServerID(1 + c.rng.IntN(3))
	}
	in := linInput{Move: true, Epoch: c.last.Epoch, To: to}
	call := c.h.now()
	err := c.try(ctx, func(cl *Client) error {
		_, err := cl.Move(ctx, Move{Cell: c.cell, Epoch: in.Epoch, To: in.To})
		return err
	})
	out := linOutput{Result: linOK}
	ret := c.h.now()
	switch {
	case err == nil:
	case errors.Is(err, ErrStaleEpoch):
		out.Result = linStale
	case errors.Is(err, ErrAlreadyOwner):
		out.Result = linAlreadyOwner
	case nothingApplied(err):
		return // every node refused: the move did not happen
	default:
		var ae *APIError
		if errors.As(err, &ae) && ae.Code != "leadership_lost" && ae.Code != "timeout" {
			c.t.Errorf("move: unexpected answer %v (code %q)", err, ae.Code)
		}
		// The move may take effect at any time from now on: it ends with the history.
		out.Result, ret = linUnknown, math.MaxInt64
	}
	c.h.add(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: out, Return: ret})
	if out.Result == linUnknown {
		c.id = int(c.h.nextID.Add(1)) - 1 // this process hangs forever; a new one takes over
		c.last = nil
	}
}

// TestLinearizability: four clients read and move one cell through the real HTTP API of three
// real nodes while a nemesis crashes and restarts the leader, isolates the leader or a
// follower, cuts single links, and loses the leader's answers to forwarded requests; porcupine
// then checks that the history of reads and compare-and-set moves is linearizable.
func TestLinearizability(t *testing.T) {
	const (
		clients  = 4
		quietEnd = 1500 * time.Millisecond // no fault in the last stretch, so the cluster settles
	)
	ctx := testCtx(t)
	c := startFaultCluster(t)
	all := c.client()
	for _, id := range []ServerID{1, 2, 3} {
		if err := retryWrite(t, func() error {
			_, err := all.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:1", Capacity: 100, LeaseTTL: Duration(5 * time.Minute)})
			return err
		}); err != nil {
			t.Fatalf("register server %d: %v", id, err)
		}
	}
	m, err := all.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cell := m.Cells[0]
	init := linState{Owner: cell.Owner, Epoch: cell.Epoch}

	// The seed picks the clients' operations and the nemesis's faults and pauses; timing does
	// the rest, so a seed replays a schedule, not a history. MERIDIAN_LIN_SEED sets it.
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MERIDIAN_LIN_SEED"); v != "" {
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("MERIDIAN_LIN_SEED: %v", err)
		}
	}
	t.Logf("seed %d (MERIDIAN_LIN_SEED)", seed)
	h := &linHistory{start: time.Now(), counts: map[string]int{}}
	h.nextID.Store(clients)
	var stopped atomic.Bool

	var wg sync.WaitGroup
	for w := range clients {
		hc := &http.Client{Transport: newTransport()}
		defer hc.CloseIdleConnections()
		lc := &linClient{t: t, h: h, id: w, rng: rand.New(rand.NewPCG(seed, uint64(w))), cell: cell.ID}
		for _, id := range c.ids {
			nc := NewClient([]string{c.cfgs[id].HTTPAddr}, hc)
			nc.Rounds = 1
			lc.nodes = append(lc.nodes, nc)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() && ctx.Err() == nil {
				if lc.last == nil || lc.rng.IntN(2) == 0 {
					lc.read(ctx)
				} else {
					lc.move(ctx)
				}
			}
		}()
	}

	t.Cleanup(func() { stopped.Store(true); wg.Wait() }) // before the nodes close, if the test fails early

	// The nemesis: each kind of fault once, in a fixed order, one at a time, each undone
	// before the next; the clients go on for quietEnd after the last so the cluster settles.
	rng := rand.New(rand.NewPCG(seed, 99))
	pause := func(lo, hi time.Duration) { time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo)))) }
	leader := func() uint64 {
		var l *Node
		eventually(t, "a leader between faults", func() bool { l = c.leader(); return l != nil })
		return l.ID()
	}
	faults := []func(){
		func() {
			lid, start := leader(), h.now()
			c.kill(lid)
			pause(500*time.Millisecond, 900*time.Millisecond)
			if err := c.restart(lid); err != nil {
				t.Fatal(err)
			}
			h.note(fmt.Sprintf("crash leader %d, restart", lid), start)
		},
		func() {
			// Requests a follower forwards reach the leader; the answers are lost. Short: every
			// write forwarded meanwhile has an unknown outcome, and each one left open to the
			// end of the history widens porcupine's search.
			lid, start := leader(), h.now()
			f := c.others(lid)[rng.IntN(2)]
			c.net.loseReplies(f, lid)
			pause(300*time.Millisecond, 600*time.Millisecond)
			c.net.heal()
			h.note(fmt.Sprintf("lose leader %d's answers to node %d's forwarded requests", lid, f), start)
		},
		func() {
			lid, start := leader(), h.now()
			c.net.isolate(lid, c.ids)
			pause(600*time.Millisecond, time.Second)
			c.net.heal()
			h.note(fmt.Sprintf("isolate leader %d", lid), start)
		},
		func() {
			lid, start := leader(), h.now()
			f := c.others(lid)[rng.IntN(2)]
			c.net.isolate(f, c.ids)
			pause(600*time.Millisecond, time.Second)
			c.net.heal()
			h.note(fmt.Sprintf("isolate follower %d", f), start)
		},
		func() {
			lid, start := leader(), h.now()
			f := c.others(lid)[rng.IntN(2)]
			c.net.partition([]uint64{lid}, []uint64{f})
			pause(600*time.Millisecond, time.Second)
			c.net.heal()
			h.note(fmt.Sprintf("cut link %d–%d", lid, f), start)
		},
	}
	for _, fault := range faults {
		pause(200*time.Millisecond, 500*time.Millisecond)
		fault()
	}
	time.Sleep(quietEnd)
	stopped.Store(true)
	wg.Wait()

	// A last linearizable read once the cluster has settled, and one map on every node.
	c.net.heal()
	final := &linClient{t: t, h: h, id: int(h.nextID.Add(1)) - 1, rng: rand.New(rand.NewPCG(seed, 100)), cell: cell.ID, nodes: []*Client{all}}
	eventually(t, "a final linearizable read", func() bool {
		final.read(ctx)
		return final.last != nil
	})
	fm, err := all.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.converged(ctx, fm)

	h.mu.Lock()
	ops, notes := h.ops, h.notes
	t.Logf("%d operations %v; %d faults; refused dials %v", len(ops), h.counts, len(notes), c.net.refusedDials())
	h.mu.Unlock()
	if h.counts["move "+linOK] < 5 || h.counts["read"] < 20 {
		t.Fatalf("too little happened to check: %v", h.counts)
	}

	model := linModel(init)
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, 10*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		info.AddAnnotations(notes)
		// Not t.TempDir: it is removed when the test ends, and a person must open this.
		path := "(none)"
		if dir, err := os.MkdirTemp("", "meridian-linearizability-"); err != nil {
			t.Errorf("visualization: %v", err)
		} else if err := porcupine.VisualizePath(model, info, filepath.Join(dir, "history.html")); err != nil {
			t.Errorf("writing the visualization: %v", err)
		} else {
			path = filepath.Join(dir, "history.html")
		}
		if res == porcupine.Unknown {
			t.Fatalf("porcupine could not decide within its timeout (seed %d); visualization: %s", seed, path)
		}
		t.Fatalf("the history is not linearizable (seed %d); visualization: %s", seed, path)
	}
}

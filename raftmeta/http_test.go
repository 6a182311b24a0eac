package raftmeta

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHTTPBadInput: malformed, unknown, oversized and impossible requests get JSON errors with
// the right codes and statuses, and change nothing.
func TestHTTPBadInput(t *testing.T) {
	ctx := testCtx(t)
	n := bootstrap(t, testConfig(t, 1))
	base := "http://" + n.HTTPAddr()
	before := n.FSM().Map()

	huge := `{"epoch": 1, "axis": "x", "at": 1, "pad": "` + strings.Repeat("x", MaxRequestBody) + `"}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", "POST", "/v1/cells/1/split", `{"epoch": 1,`, 400, "bad_request"},
		{"not an object", "POST", "/v1/cells/1/split", `[1, 2]`, 400, "bad_request"},
		{"wrong type", "POST", "/v1/cells/1/split", `{"epoch": "one"}`, 400, "bad_request"},
		{"unknown field", "POST", "/v1/cells/1/split", `{"epoch": 1, "axis": "x", "at": 10, "bogus": 1}`, 400, "bad_request"},
		{"trailing data", "POST", "/v1/cells/1/split", `{"epoch": 1} {}`, 400, "bad_request"},
		{"empty body", "POST", "/v1/cells/1/split", ``, 400, "bad_request"},
		{"huge body", "POST", "/v1/cells/1/split", huge, 413, "bad_request"},
		{"bad path id", "POST", "/v1/cells/abc/split", `{"epoch": 1, "axis": "x", "at": 10}`, 400, "bad_request"},
		{"zero path id", "POST", "/v1/cells/0/move", `{"epoch": 1, "to": 1}`, 400, "bad_request"},
		{"unknown cell", "POST", "/v1/cells/999/split", `{"epoch": 1, "axis": "x", "at": 10}`, 404, "unknown_cell"},
		{"unknown node", "POST", "/v1/nodes/999/shift", `{"at": 10, "epochs": {"1": 1}}`, 404, "unknown_node"},
		{"unknown server heartbeat", "POST", "/v1/servers/42/heartbeat", `{"load": {"entities": 1}}`, 404, "unknown_server"},
		{"unknown server drain", "POST", "/v1/servers/42/drain", ``, 404, "unknown_server"},
		{"drain body not empty", "POST", "/v1/servers/42/drain", `{"x": 1}`, 400, "bad_request"},
		{"register id 0", "POST", "/v1/servers", `{"id": 0, "addr": "a:1"}`, 400, "bad_request"},
		{"bad lease ttl", "POST", "/v1/servers", `{"id": 1, "addr": "a:1", "lease_ttl": "soon"}`, 400, "bad_request"},
		{"numeric lease ttl", "POST", "/v1/servers", `{"id": 1, "addr": "a:1", "lease_ttl": 3}`, 400, "bad_request"},
		{"lease ttl too long", "POST", "/v1/servers", `{"id": 1, "addr": "a:1", "lease_ttl": "100h"}`, 400, "bad_request"},
		{"bad axis", "POST", "/v1/cells/1/split", `{"epoch": 1, "axis": "y", "at": 10}`, 400, "bad_axis"},
		{"bad index", "GET", "/v1/map?index=abc", ``, 400, "bad_request"},
		{"bad wait", "GET", "/v1/map?index=1&wait=forever", ``, 400, "bad_request"},
		{"bad stale", "GET", "/v1/map?stale=maybe", ``, 400, "bad_request"},
		{"join without id", "POST", "/v1/join", `{"raft_addr": "127.0.0.1:1"}`, 400, "bad_request"},
		{"join bad addr", "POST", "/v1/join", `{"id": 9, "raft_addr": "nowhere"}`, 400, "bad_request"},
		{"remove non-member", "POST", "/v1/remove", `{"id": 9}`, 400, "bad_request"},
		{"staged unknown change", "POST", "/v1/changes/99/staged", `{"transfer": 0, "server": 1}`, 404, "unknown_change"},
		{"staged no body", "POST", "/v1/changes/99/staged", ``, 400, "bad_request"},
		{"staged server 0", "POST", "/v1/changes/99/staged", `{"transfer": 0, "server": 0}`, 400, "bad_request"},
		{"staged bad transfer", "POST", "/v1/changes/99/staged", `{"transfer": -1, "server": 1}`, 400, "bad_request"},
		{"staged bad id", "POST", "/v1/changes/x/staged", `{"transfer": 0, "server": 1}`, 400, "bad_request"},
		{"abort unknown change", "POST", "/v1/changes/99/abort", `{"reason": "test"}`, 404, "unknown_change"},
		{"abort unknown field", "POST", "/v1/changes/99/abort", `{"why": "test"}`, 400, "bad_request"},
		{"abort long reason", "POST", "/v1/changes/99/abort", `{"reason": "` + strings.Repeat("x", MaxReasonLen+1) + `"}`, 400, "bad_request"},
		{"prepare no op", "POST", "/v1/changes", `{"timeout": "1s"}`, 400, "bad_request"},
		{"prepare drain", "POST", "/v1/changes", `{"op": "CXsic2VydmVyIjoxfQ=="}`, 400, "bad_request"},
		{"prepare bad timeout", "POST", "/v1/changes", `{"op": "CHsiY2VsbCI6MSwiZXBvY2giOjEsInRvIjoyfQ==", "timeout": "1h"}`, 400, "bad_request"},
		{"prepare unknown cell", "POST", "/v1/changes", `{"op": "CHsiY2VsbCI6OSwiZXBvY2giOjEsInRvIjoyfQ=="}`, 404, "unknown_cell"},
		{"no such endpoint", "GET", "/v1/nope", ``, 404, "not_found"},
		{"wrong method", "PUT", "/v1/map", ``, 405, "method_not_allowed"},
	} {
		req, err := http.NewRequestWithContext(ctx, tc.method, base+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var eb errorBody
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Errorf("%s: body is not JSON: %q", tc.name, b)
			continue
		}
		if resp.StatusCode != tc.status || eb.Error.Code != tc.code || eb.Error.Message == "" {
			t.Errorf("%s: HTTP %d %q (%s), want %d %q", tc.name, resp.StatusCode, eb.Error.Code, eb.Error.Message, tc.status, tc.code)
		}
	}
	if after := n.FSM().Map(); after.Version != before.Version {
		t.Fatalf("bad requests changed the map: version %d → %d", before.Version, after.Version)
	}

	// The Go client maps codes back to sentinels.
	c := clientOf(n)
	if _, err := c.Split(ctx, Split{Cell: 999, Epoch: 1, Axis: AxisX, At: 10}); !errors.Is(err, ErrUnknownCell) {
		t.Fatalf("client split of an unknown cell: %v, want ErrUnknownCell", err)
	}
	if _, err := c.Heartbeat(ctx, 42, HeartbeatRequest{}); !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("client heartbeat of an unknown server: %v, want ErrUnknownServer", err)
	}
	if _, err := c.Register(ctx, RegisterRequest{ID: 0}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("client register id 0: %v, want ErrBadRequest", err)
	}
}

// TestHTTPWrites exercises every write endpoint once through the client.
func TestHTTPWrites(t *testing.T) {
	ctx := testCtx(t)
	n := bootstrap(t, testConfig(t, 1))
	c := clientOf(n)
	for _, id := range []ServerID{1, 2} {
		if _, err := c.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:1", ClientAddr: "127.0.0.1:2", Capacity: 10, LeaseTTL: Duration(5 * time.Minute)}); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	if _, err := c.Heartbeat(ctx, 1, HeartbeatRequest{Load: Load{Entities: 5}}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	cells, err := c.Cells(ctx, ReadOptions{})
	if err != nil || len(cells.Cells) != 1 {
		t.Fatalf("cells: %v %+v", err, cells)
	}
	root := cells.Cells[0]
	// The split gives the high half to server 2: a change, committed once server 2 stages it.
	sr := commitChange(ctx, t, c, "split", func() (*WriteResult, error) {
		return c.Split(ctx, Split{Cell: root.ID, Epoch: root.Epoch, Axis: AxisX, At: 8192, NewOwner: 2})
	})
	m, err := c.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	low, high := m.Cells[0], m.Cells[1]
	if len(sr.Cells) != 1 || high.ID != sr.Cells[0] || m.Tree == nil || high.Owner != 2 || low.Owner != 1 {
		t.Fatalf("split result %+v, map %+v", sr, m)
	}
	// The shift hands a strip of server 1's cell to server 2.
	commitChange(ctx, t, c, "shift", func() (*WriteResult, error) {
		return c.Shift(ctx, Shift{Node: m.Tree.ID, At: 8000, Epochs: map[CellID]Epoch{low.ID: low.Epoch, high.ID: high.Epoch}})
	})
	m, _ = c.Map(ctx, ReadOptions{})
	low, high = m.Cells[0], m.Cells[1]
	if high.Bounds[0] != 8000 {
		t.Fatalf("after the shift: %+v", m.Cells)
	}
	commitChange(ctx, t, c, "move", func() (*WriteResult, error) {
		return c.Move(ctx, Move{Cell: high.ID, Epoch: high.Epoch, To: low.Owner})
	})
	m, _ = c.Map(ctx, ReadOptions{})
	low, high = m.Cells[0], m.Cells[1]
	// Both cells are server 1's: the merge moves nothing and applies at once.
	if mr, err := c.Merge(ctx, Merge{Low: low.ID, LowEpoch: low.Epoch, High: high.ID, HighEpoch: high.Epoch}); err != nil || mr.Change != 0 {
		t.Fatalf("merge: %+v, %v", mr, err)
	}
	// Draining server 1: the leader moves its cell to server 2 by a two-phase move.
	if _, err := c.Drain(ctx, 1); err != nil {
		t.Fatalf("drain: %v", err)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	for len(m.Changes) == 0 {
		if m, err = c.Map(ctx, ReadOptions{Index: m.Version, Wait: testDeadline}); err != nil {
			t.Fatal(err)
		}
	}
	if ch := m.Changes[0]; ch.OpType != CmdMove || len(ch.Transfers) != 1 || ch.Transfers[0].From != 1 || ch.Transfers[0].To != 2 {
		t.Fatalf("drain change %+v", ch)
	}
	if _, err := c.Staged(ctx, m.Changes[0].ID, 0, 2); err != nil {
		t.Fatalf("staged: %v", err)
	}
	if _, err := c.Deregister(ctx, 1); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	srv, err := c.Servers(ctx, ReadOptions{Stale: true})
	if err != nil || len(srv.Servers) != 1 || srv.Servers[0].ID != 2 {
		t.Fatalf("servers: %v %+v", err, srv)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	if len(m.Cells) != 1 || m.Cells[0].Owner != 2 {
		t.Fatalf("final map: %+v", m.Cells)
	}
	st, err := c.Status(ctx)
	if err != nil || st.State != "leader" || st.Leader == nil || st.Leader.ID != 1 || len(st.Peers) != 1 {
		t.Fatalf("status: %v %+v", err, st)
	}
	// /metrics is served beside /v1 when the registry is a Gatherer.
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"meridian_raft_leader 1", "meridian_raft_commits_total", "meridian_raft_apply_duration_seconds",
		"meridian_meta_leader_changes_total", `meridian_meta_planned_ops_total{op="drain_move",result="prepared"} 1`} {
		if !strings.Contains(string(b), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// commitChange runs a write that must start a two-phase change and stages every transfer of it
// as its target would; it returns the answer of the last staging (the commit).
func commitChange(ctx context.Context, t *testing.T, c *Client, what string, write func() (*WriteResult, error)) *WriteResult {
	t.Helper()
	wr, err := write()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if wr.Change == 0 || len(wr.Cells) != 0 {
		t.Fatalf("%s: %+v, want a change", what, wr)
	}
	cs, err := c.Changes(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(cs.Changes, func(ch Change) bool { return ch.ID == wr.Change })
	if i < 0 {
		t.Fatalf("%s: change %d not pending: %+v", what, wr.Change, cs)
	}
	var res *WriteResult
	for k, tr := range cs.Changes[i].Transfers {
		if res, err = c.Staged(ctx, wr.Change, k, tr.To); err != nil {
			t.Fatalf("%s: staged %d: %v", what, k, err)
		}
	}
	cs, err = c.Changes(ctx, ReadOptions{})
	if err != nil || len(cs.Resolved) == 0 || cs.Resolved[len(cs.Resolved)-1] != (ResolvedChange{ID: wr.Change, Committed: true}) {
		t.Fatalf("%s: after staging: %v %+v", what, err, cs)
	}
	return res
}

// TestHTTPChanges: a two-phase move through the HTTP API: the change in the map, a wrong
// staging, the commit at the transfer's epoch; a prepared change aborted and the stale messages
// about it; the leader aborting a change past its deadline; the planner's operations.
func TestHTTPChanges(t *testing.T) {
	ctx := testCtx(t)
	cfg := testConfig(t, 1)
	cfg.ReaperInterval = 20 * time.Millisecond
	cfg.PlanInterval = 20 * time.Millisecond
	var plan atomic.Pointer[Command] // the planner proposes this once
	cfg.Planner = func(m Map) []Command {
		if op := plan.Swap(nil); op != nil {
			return []Command{*op}
		}
		return nil
	}
	n := bootstrap(t, cfg)
	c := clientOf(n)
	for _, id := range []ServerID{1, 2} {
		if _, err := c.Register(ctx, RegisterRequest{ID: id, Addr: "127.0.0.1:1", LeaseTTL: Duration(5 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := c.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cell := m.Cells[0]
	if cell.Owner != 1 {
		t.Fatalf("cell %+v, want owner 1", cell)
	}

	// A move between live servers starts a change; the cell is migrating, its epoch unchanged.
	wr, err := c.Move(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: 2})
	if err != nil || wr.Change != ChangeID(wr.Index) || wr.Version != wr.Index {
		t.Fatalf("move: %+v, %v", wr, err)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	want := Change{ID: wr.Change, OpType: CmdMove, Cells: []CellID{cell.ID},
		Transfers: []Transfer{{From: 1, To: 2, Region: cell.Bounds, Cell: cell.ID, Epoch: cell.Epoch + 1}}}
	if len(m.Changes) != 1 {
		t.Fatalf("changes %+v", m.Changes)
	}
	got := m.Changes[0]
	if got.Deadline-got.Created != int64(cfg.ChangeTimeout) {
		t.Fatalf("change %d: created %d deadline %d, want %v apart", got.ID, got.Created, got.Deadline, cfg.ChangeTimeout)
	}
	got.Op, got.Created, got.Deadline = nil, 0, 0
	if !reflect.DeepEqual(got, want) || m.Cells[0].State != CellMigrating || m.Cells[0].Epoch != cell.Epoch {
		t.Fatalf("change %+v, want %+v; cell %+v", got, want, m.Cells[0])
	}
	// Another operation on the cell is refused while it migrates.
	if _, err := c.Split(ctx, Split{Cell: cell.ID, Epoch: cell.Epoch, Axis: AxisX, At: 100}); !errors.Is(err, ErrCellMigrating) {
		t.Fatalf("split of a migrating cell: %v", err)
	}
	// Only the transfer's target may stage it.
	if _, err := c.Staged(ctx, wr.Change, 0, 1); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("staged by the source: %v, want bad_request", err)
	}
	sr, err := c.Staged(ctx, wr.Change, 0, 2)
	if err != nil || sr.Change != 0 {
		t.Fatalf("staged: %+v, %v", sr, err)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	if cl := m.Cells[0]; cl.Owner != 2 || cl.Epoch != cell.Epoch+1 || cl.State != CellActive || len(m.Changes) != 0 ||
		!reflect.DeepEqual(m.Resolved, []ResolvedChange{{ID: wr.Change, Committed: true}}) {
		t.Fatalf("after staging: cells %+v changes %+v resolved %+v", m.Cells, m.Changes, m.Resolved)
	}
	if _, err := c.Staged(ctx, wr.Change, 0, 2); !errors.Is(err, ErrUnknownChange) {
		t.Fatalf("staging a committed change: %v, want unknown_change", err)
	}

	// Prepare (any operation, here a move back) and Abort.
	cell = m.Cells[0]
	pr, err := c.Prepare(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: 1}, time.Minute)
	if err != nil || pr.Change == 0 {
		t.Fatalf("prepare: %+v, %v", pr, err)
	}
	if _, err := c.Abort(ctx, pr.Change, "changed my mind"); err != nil {
		t.Fatalf("abort: %v", err)
	}
	cs, err := c.Changes(ctx, ReadOptions{Stale: true})
	if err != nil || len(cs.Changes) != 0 || cs.Resolved[len(cs.Resolved)-1] != (ResolvedChange{ID: pr.Change, Reason: "changed my mind"}) {
		t.Fatalf("changes after abort: %v %+v", err, cs)
	}
	if _, err := c.Abort(ctx, pr.Change, ""); !errors.Is(err, ErrUnknownChange) {
		t.Fatalf("second abort: %v, want unknown_change", err)
	}
	if _, err := c.Staged(ctx, pr.Change, 0, 1); !errors.Is(err, ErrUnknownChange) {
		t.Fatalf("staging an aborted change: %v, want unknown_change", err)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	if m.Cells[0] != cell {
		t.Fatalf("abort changed the cell: %+v → %+v", cell, m.Cells[0])
	}

	// A change nobody stages is aborted by the leader at its deadline.
	pr, err = c.Prepare(ctx, Move{Cell: cell.ID, Epoch: cell.Epoch, To: 1}, 50*time.Millisecond)
	if err != nil || pr.Change == 0 {
		t.Fatalf("prepare: %+v, %v", pr, err)
	}
	for {
		if m, err = c.Map(ctx, ReadOptions{Index: m.Version, Wait: testDeadline}); err != nil {
			t.Fatal(err)
		}
		if len(m.Changes) == 0 {
			break
		}
	}
	if r := m.Resolved[len(m.Resolved)-1]; r != (ResolvedChange{ID: pr.Change, Reason: "deadline passed"}) || m.Cells[0] != cell {
		t.Fatalf("after the deadline: resolved %+v, cell %+v", r, m.Cells[0])
	}
	eventually(t, "changes_aborted_total to reach 1", func() bool { return testutil.ToFloat64(n.met.changesAborted) == 1 })

	// The planner's operations are proposed as Prepare: a split without a new owner is applied
	// at once, a move starts a change.
	var op Command = Split{Cell: cell.ID, Epoch: cell.Epoch, Axis: AxisZ, At: 4096}
	plan.Store(&op)
	for len(m.Cells) != 2 {
		if m, err = c.Map(ctx, ReadOptions{Index: m.Version, Wait: testDeadline}); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.Changes) != 0 {
		t.Fatalf("planned split: changes %+v", m.Changes)
	}
	op = Move{Cell: m.Cells[1].ID, Epoch: m.Cells[1].Epoch, To: 1}
	plan.Store(&op)
	for len(m.Changes) == 0 {
		if m, err = c.Map(ctx, ReadOptions{Index: m.Version, Wait: testDeadline}); err != nil {
			t.Fatal(err)
		}
	}
	if ch := m.Changes[0]; ch.OpType != CmdMove || ch.Transfers[0].To != 1 || ch.Deadline-ch.Created != int64(cfg.ChangeTimeout) {
		t.Fatalf("planned move: %+v", ch)
	}
	eventually(t, "the planned ops to be counted", func() bool {
		return testutil.ToFloat64(n.met.planned.WithLabelValues("split", planApplied)) == 1 &&
			testutil.ToFloat64(n.met.planned.WithLabelValues("move", planPrepared)) == 1
	})
}

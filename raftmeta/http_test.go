package raftmeta

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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
	sr, err := c.Split(ctx, Split{Cell: root.ID, Epoch: root.Epoch, Axis: AxisX, At: 8192, NewOwner: 2})
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	m, err := c.Map(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	low, high := m.Cells[0], m.Cells[1]
	if high.ID != sr.Cells[0] || m.Tree == nil {
		t.Fatalf("split result %+v, map %+v", sr, m)
	}
	if _, err := c.Shift(ctx, Shift{Node: m.Tree.ID, At: 8000, Epochs: map[CellID]Epoch{low.ID: low.Epoch, high.ID: high.Epoch}}); err != nil {
		t.Fatalf("shift: %v", err)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	low, high = m.Cells[0], m.Cells[1]
	if _, err := c.Move(ctx, Move{Cell: high.ID, Epoch: high.Epoch, To: low.Owner}); err != nil {
		t.Fatalf("move: %v", err)
	}
	m, _ = c.Map(ctx, ReadOptions{})
	low, high = m.Cells[0], m.Cells[1]
	if _, err := c.Merge(ctx, Merge{Low: low.ID, LowEpoch: low.Epoch, High: high.ID, HighEpoch: high.Epoch}); err != nil {
		t.Fatalf("merge: %v", err)
	}
	if _, err := c.Drain(ctx, 1); err != nil {
		t.Fatalf("drain: %v", err)
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
	for _, name := range []string{"meridian_raft_leader 1", "meridian_raft_commits_total", "meridian_raft_apply_duration_seconds", "meridian_meta_leader_changes_total"} {
		if !strings.Contains(string(b), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

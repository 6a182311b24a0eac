package raftmeta

// The HTTP/JSON API every node serves (DESIGN.md §2).
//
// Reads — GET /v1/map, /v1/cells, /v1/servers:
//   - Linearizable by default: a follower forwards the request to the leader; the leader runs
//     the read-index protocol (Node.linearizableRead: its term's barrier applied, commit index,
//     VerifyLeader, FSM caught up to that index) and serves its FSM. A deposed or partitioned
//     leader fails VerifyLeader and answers 503 instead of a stale map.
//   - ?stale serves the local FSM on any node, without contacting the leader.
//   - Blocking query: ?index=N returns as soon as the map version exceeds N, or after ?wait
//     (a Go duration, or seconds; default and maximum 5m) with the current map. With ?stale it
//     waits on the local FSM; without, on the leader, followed by the linearizable read.
//   - Every read sets X-Meridian-Index (the map version: pass it back as ?index=),
//     X-Meridian-Applied-Index (the FSM's last applied log index), X-Meridian-Known-Leader
//     (true/false), X-Meridian-Last-Contact (ms since this node heard from the leader; 0 on
//     the leader), X-Meridian-Node (the node that served it) and X-Meridian-Consistency
//     (linearizable or stale).
//
// GET /v1/status is this node's own view (never forwarded); GET and POST /v1/peers exchange
// the table of node addresses (node.go).
//
// Writes — POST /v1/servers, POST /v1/servers/{id}/heartbeat, DELETE /v1/servers/{id},
// POST /v1/servers/{id}/drain, POST /v1/cells/{id}/split, POST /v1/cells/{id}/move,
// POST /v1/cells/merge, POST /v1/nodes/{id}/shift, POST /v1/changes,
// POST /v1/changes/{id}/staged, POST /v1/changes/{id}/abort, POST /v1/join, POST /v1/remove —
// are validated on the node that receives them (so bad input is a 400 even without a leader),
// then proposed if it leads, else forwarded to the leader (one hop: a forwarded request that
// reaches a non-leader answers 503 not_leader and the client tries another node). The leader
// stamps now into register, heartbeat and prepare commands (and the reaper into mark-dead);
// Apply never reads a clock. A write answers {"index", "version", "cells"}, plus "change" when
// it started a two-phase change.
//
// Two-phase changes (changes.go). Split, move, merge and shift are proposed as a Prepare with
// the node's ChangeTimeout (unless Config.DirectOps): one that moves a region between live
// servers answers "change": its ID, and takes effect when the targets have staged their
// transfers (POST /v1/changes/{id}/staged {"transfer": N, "server": S}) or never, if it is
// aborted (POST /v1/changes/{id}/abort {"reason": "..."}, the deadline, a server leaving).
// POST /v1/changes {"op": <EncodeCommand bytes, base64>, "timeout": "5s"} prepares any of the
// four; GET /v1/changes reads the pending changes and the last outcomes (like /v1/map, whose
// "changes" and "resolved" they are). Drain marks the server draining and the leader moves its
// cells by two-phase moves (Drain with Migrate).
//
// Errors are {"error": {"code", "message"}} with the stable codes of ErrorCode: 400 for bad
// input (bodies over 1 MiB are 413 bad_request), 404 unknown_cell / unknown_server /
// unknown_node / unknown_change / not_found, 409 for a command the map rejects (stale_epoch, not_siblings,
// cell_too_small, ...), 503 not_leader / no_leader / shutdown / leadership_lost, 504 timeout,
// 500 internal. not_leader, no_leader and shutdown mean nothing was applied; leadership_lost
// and timeout mean the outcome is unknown.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxRequestBody bounds every request body.
const MaxRequestBody = 1 << 20

// MaxWait bounds a blocking query's wait (and is its default).
const MaxWait = 5 * time.Minute

// Response headers.
const (
	HeaderIndex        = "X-Meridian-Index"
	HeaderAppliedIndex = "X-Meridian-Applied-Index"
	HeaderKnownLeader  = "X-Meridian-Known-Leader"
	HeaderLastContact  = "X-Meridian-Last-Contact"
	HeaderNode         = "X-Meridian-Node"
	HeaderConsistency  = "X-Meridian-Consistency"
	headerForwardedBy  = "X-Meridian-Forwarded-By"
)

// Duration is a time.Duration that JSON carries as a Go duration string ("3s", "250ms").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"3s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RegisterRequest is the body of POST /v1/servers. LeaseTTL omitted: the node's default.
type RegisterRequest struct {
	ID         ServerID `json:"id"`
	Addr       string   `json:"addr"`
	ClientAddr string   `json:"client_addr"`
	Capacity   int      `json:"capacity"`
	LeaseTTL   Duration `json:"lease_ttl,omitempty"`
}

// HeartbeatRequest is the body of POST /v1/servers/{id}/heartbeat.
type HeartbeatRequest struct {
	Load     Load     `json:"load"`
	LeaseTTL Duration `json:"lease_ttl,omitempty"`
}

// SplitRequest is the body of POST /v1/cells/{id}/split.
type SplitRequest struct {
	Epoch    Epoch    `json:"epoch"`
	Axis     Axis     `json:"axis"`
	At       float64  `json:"at"`
	NewOwner ServerID `json:"new_owner"`
}

// MoveRequest is the body of POST /v1/cells/{id}/move.
type MoveRequest struct {
	Epoch Epoch    `json:"epoch"`
	To    ServerID `json:"to"`
}

// MergeRequest is the body of POST /v1/cells/merge.
type MergeRequest = Merge

// ShiftRequest is the body of POST /v1/nodes/{id}/shift.
type ShiftRequest struct {
	At     float64          `json:"at"`
	Epochs map[CellID]Epoch `json:"epochs"`
}

// WriteResult answers every map write: the log index it was applied at, the map version after
// it, the cells it created (a split's new high cell, when it was applied at once or a staging
// committed it), and the two-phase change it started, if any.
type WriteResult struct {
	Index   uint64   `json:"index"`
	Version uint64   `json:"version"`
	Cells   []CellID `json:"cells"`
	Change  ChangeID `json:"change,omitempty"`
}

// PrepareRequest is the body of POST /v1/changes. Timeout omitted: the node's ChangeTimeout.
type PrepareRequest struct {
	Op      []byte   `json:"op"` // EncodeCommand of a Split, Merge, Shift or Move (base64 in JSON)
	Timeout Duration `json:"timeout,omitempty"`
}

// StagedRequest is the body of POST /v1/changes/{id}/staged.
type StagedRequest struct {
	Transfer int      `json:"transfer"`
	Server   ServerID `json:"server"`
}

// AbortRequest is the body of POST /v1/changes/{id}/abort (optional; an empty reason is
// "aborted by request").
type AbortRequest struct {
	Reason string `json:"reason"`
}

// ChangesResponse is GET /v1/changes.
type ChangesResponse struct {
	Version  uint64           `json:"version"`
	Index    uint64           `json:"index"`
	Changes  []Change         `json:"changes"`
	Resolved []ResolvedChange `json:"resolved"`
}

// CellsResponse is GET /v1/cells.
type CellsResponse struct {
	Version uint64 `json:"version"`
	Index   uint64 `json:"index"`
	Cells   []Cell `json:"cells"`
}

// ServersResponse is GET /v1/servers.
type ServersResponse struct {
	Version uint64   `json:"version"`
	Index   uint64   `json:"index"`
	Servers []Server `json:"servers"`
}

// Status is GET /v1/status: one node's view of the cluster.
type Status struct {
	ID            uint64       `json:"id"`
	RaftAddr      string       `json:"raft_addr"`
	HTTPAddr      string       `json:"http_addr"`
	State         string       `json:"state"` // leader, follower, candidate, shutdown
	Leader        *PeerStatus  `json:"leader"`
	Term          uint64       `json:"term"`
	LastIndex     uint64       `json:"last_index"`
	CommitIndex   uint64       `json:"commit_index"`
	AppliedIndex  uint64       `json:"applied_index"` // the FSM's last applied command
	Version       uint64       `json:"version"`       // the map version
	LastContactMS int64        `json:"last_contact_ms"`
	Peers         []PeerStatus `json:"peers"` // the latest Raft configuration
}

// PeerStatus is one member of the Raft configuration.
type PeerStatus struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"` // "" if not known to this node
	Suffrage string `json:"suffrage"`            // voter, nonvoter, staging
	Leader   bool   `json:"leader,omitempty"`
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// tooLarge is a body over MaxRequestBody (a bad request, served as 413).
type tooLarge struct{}

func (tooLarge) Error() string {
	return fmt.Sprintf("%v: request body larger than %d bytes", ErrBadRequest, MaxRequestBody)
}
func (tooLarge) Unwrap() error { return ErrBadRequest }

// methods dispatches on the request method, answering 405 in JSON otherwise.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeErrorCode(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s not allowed on %s", r.Method, r.URL.Path))
}

// handler builds the API's routes (and /metrics if reg is a Gatherer).
func (n *Node) handler(reg prometheus.Registerer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/map", methods{"GET": n.handleRead(func(m Map) any { return m })})
	mux.Handle("/v1/cells", methods{"GET": n.handleRead(func(m Map) any {
		return CellsResponse{Version: m.Version, Index: m.Index, Cells: nonNil(m.Cells)}
	})})
	mux.Handle("/v1/servers", methods{
		"GET": n.handleRead(func(m Map) any {
			return ServersResponse{Version: m.Version, Index: m.Index, Servers: nonNil(m.Servers)}
		}),
		"POST": n.handleWrite(n.buildRegister),
	})
	mux.Handle("/v1/servers/{id}", methods{"DELETE": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathServer(r)
		if err != nil {
			return nil, err
		}
		return Deregister{Server: id}, decodeOptional(body)
	})})
	mux.Handle("/v1/servers/{id}/heartbeat", methods{"POST": n.handleWrite(n.buildHeartbeat)})
	mux.Handle("/v1/servers/{id}/drain", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathServer(r)
		if err != nil {
			return nil, err
		}
		return Drain{Server: id, Migrate: !n.cfg.DirectOps}, decodeOptional(body)
	})})
	mux.Handle("/v1/cells/{id}/split", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathID(r, "cell")
		if err != nil {
			return nil, err
		}
		var q SplitRequest
		if err := decodeStrict(body, &q); err != nil {
			return nil, err
		}
		if err := finiteField("at", q.At); err != nil {
			return nil, err
		}
		return n.mapOp(Split{Cell: CellID(id), Epoch: q.Epoch, Axis: q.Axis, At: q.At, NewOwner: q.NewOwner})
	})})
	mux.Handle("/v1/cells/{id}/move", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathID(r, "cell")
		if err != nil {
			return nil, err
		}
		var q MoveRequest
		if err := decodeStrict(body, &q); err != nil {
			return nil, err
		}
		return n.mapOp(Move{Cell: CellID(id), Epoch: q.Epoch, To: q.To})
	})})
	mux.Handle("/v1/cells/merge", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		var q MergeRequest
		if err := decodeStrict(body, &q); err != nil {
			return nil, err
		}
		return n.mapOp(q)
	})})
	mux.Handle("/v1/nodes/{id}/shift", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathID(r, "node")
		if err != nil {
			return nil, err
		}
		var q ShiftRequest
		if err := decodeStrict(body, &q); err != nil {
			return nil, err
		}
		if err := finiteField("at", q.At); err != nil {
			return nil, err
		}
		return n.mapOp(Shift{Node: NodeID(id), At: q.At, Epochs: q.Epochs})
	})})
	mux.Handle("/v1/changes", methods{
		"GET": n.handleRead(func(m Map) any {
			return ChangesResponse{Version: m.Version, Index: m.Index, Changes: nonNil(m.Changes), Resolved: nonNil(m.Resolved)}
		}),
		"POST": n.handleWrite(n.buildPrepare),
	})
	mux.Handle("/v1/changes/{id}/staged", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathID(r, "change")
		if err != nil {
			return nil, err
		}
		var q StagedRequest
		if err := decodeStrict(body, &q); err != nil {
			return nil, err
		}
		if q.Transfer < 0 || q.Server == 0 {
			return nil, fmt.Errorf("%w: transfer %d must be ≥ 0 and server %d ≥ 1", ErrBadRequest, q.Transfer, q.Server)
		}
		return Staged{Change: ChangeID(id), Transfer: q.Transfer, Server: q.Server}, nil
	})})
	mux.Handle("/v1/changes/{id}/abort", methods{"POST": n.handleWrite(func(r *http.Request, body []byte) (Command, error) {
		id, err := pathID(r, "change")
		if err != nil {
			return nil, err
		}
		var q AbortRequest
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeStrict(body, &q); err != nil {
				return nil, err
			}
		}
		if q.Reason == "" {
			q.Reason = "aborted by request"
		}
		if len(q.Reason) > MaxReasonLen {
			return nil, fmt.Errorf("%w: reason is %d bytes, more than %d", ErrBadRequest, len(q.Reason), MaxReasonLen)
		}
		return Abort{Change: ChangeID(id), Reason: q.Reason}, nil
	})})
	mux.Handle("/v1/join", methods{"POST": n.handleJoin})
	mux.Handle("/v1/remove", methods{"POST": n.handleRemove})
	mux.Handle("/v1/status", methods{"GET": n.handleStatus})
	mux.Handle("/v1/peers", methods{"GET": n.handlePeers, "POST": n.handlePeers})
	if g, ok := reg.(prometheus.Gatherer); ok {
		mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{Registry: reg}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErrorCode(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ---- reads ----

// readOptions are a read's query parameters.
type readOptions struct {
	stale bool
	block bool // ?index given
	index uint64
	wait  time.Duration
}

func parseReadOptions(r *http.Request) (readOptions, error) {
	q := r.URL.Query()
	o := readOptions{wait: MaxWait}
	if q.Has("stale") {
		switch v := q.Get("stale"); v {
		case "", "1", "true":
			o.stale = true
		case "0", "false":
		default:
			return o, fmt.Errorf("%w: stale=%q: want true or false", ErrBadRequest, v)
		}
	}
	if q.Has("index") {
		v, err := strconv.ParseUint(q.Get("index"), 10, 64)
		if err != nil {
			return o, fmt.Errorf("%w: index=%q: want a map version (unsigned integer)", ErrBadRequest, q.Get("index"))
		}
		o.block, o.index = true, v
	}
	if q.Has("wait") {
		v := q.Get("wait")
		d, err := time.ParseDuration(v)
		if err != nil {
			s, err2 := strconv.ParseUint(v, 10, 32)
			if err2 != nil {
				return o, fmt.Errorf("%w: wait=%q: want a duration such as 30s", ErrBadRequest, v)
			}
			d = time.Duration(s) * time.Second
		}
		if d < 0 {
			return o, fmt.Errorf("%w: wait=%q must not be negative", ErrBadRequest, v)
		}
		o.wait = min(d, MaxWait)
	}
	return o, nil
}

// handleRead serves a view of the map with the read semantics in the file comment.
func (n *Node) handleRead(view func(Map) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o, err := parseReadOptions(r)
		if err != nil {
			n.writeError(w, err)
			return
		}
		if !o.stale && !n.IsLeader() {
			n.forward(w, r, nil)
			return
		}
		ctx := r.Context()
		if o.block {
			wctx, cancel := context.WithTimeout(ctx, o.wait)
			_, _ = n.fsm.WaitVersion(wctx, o.index)
			cancel()
			if ctx.Err() != nil {
				n.abandoned(w)
				return
			}
		}
		consistency := "stale"
		if !o.stale {
			if err := n.linearizableRead(ctx); err != nil {
				n.writeError(w, err)
				return
			}
			consistency = "linearizable"
		}
		m := n.fsm.Map()
		h := w.Header()
		h.Set(HeaderIndex, strconv.FormatUint(m.Version, 10))
		h.Set(HeaderAppliedIndex, strconv.FormatUint(m.Index, 10))
		h.Set(HeaderConsistency, consistency)
		n.setNodeHeaders(h)
		writeJSON(w, http.StatusOK, view(m))
	}
}

func (n *Node) setNodeHeaders(h http.Header) {
	id, _ := n.Leader()
	h.Set(HeaderKnownLeader, strconv.FormatBool(id != 0))
	h.Set(HeaderLastContact, strconv.FormatInt(n.lastContactMS(), 10))
	h.Set(HeaderNode, strconv.FormatUint(n.cfg.ID, 10))
}

// lastContactMS is the time since this node last heard from the leader (0 on the leader, -1
// if never).
func (n *Node) lastContactMS() int64 {
	if n.IsLeader() {
		return 0
	}
	lc := n.raft.LastContact()
	if lc.IsZero() {
		return -1
	}
	return time.Since(lc).Milliseconds()
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Status())
}

// Status returns this node's view of the cluster (GET /v1/status).
func (n *Node) Status() Status {
	st := Status{
		ID:            n.cfg.ID,
		RaftAddr:      n.raftAddr,
		HTTPAddr:      n.httpAddr,
		State:         strings.ToLower(n.raft.State().String()),
		Term:          n.raft.CurrentTerm(),
		LastIndex:     n.raft.LastIndex(),
		CommitIndex:   n.raft.CommitIndex(),
		AppliedIndex:  n.fsm.Index(),
		Version:       n.fsm.Version(),
		LastContactMS: n.lastContactMS(),
		Peers:         []PeerStatus{},
	}
	laddr, lid := n.raft.LeaderWithID()
	if lid != "" {
		id, _ := strconv.ParseUint(string(lid), 10, 64)
		_, haddr := n.Leader()
		st.Leader = &PeerStatus{ID: id, RaftAddr: string(laddr), HTTPAddr: haddr, Suffrage: "voter", Leader: true}
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			id, _ := strconv.ParseUint(string(s.ID), 10, 64)
			p := PeerStatus{ID: id, RaftAddr: string(s.Address), Suffrage: suffrage(s.Suffrage), Leader: s.ID == lid}
			if info, ok := n.peers.get(id); ok {
				p.HTTPAddr = info.HTTPAddr
			}
			if p.Leader && st.Leader != nil {
				st.Leader.Suffrage = p.Suffrage
			}
			st.Peers = append(st.Peers, p)
		}
	}
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return strings.ToLower(s.String())
}

func (n *Node) handlePeers(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, err := readBody(w, r)
		if err != nil {
			n.writeError(w, err)
			return
		}
		var msg PeersMessage
		if err := decodeStrict(body, &msg); err != nil {
			n.writeError(w, err)
			return
		}
		n.peers.merge(msg.Peers)
	}
	writeJSON(w, http.StatusOK, PeersMessage{Peers: n.peers.list()})
}

// ---- writes ----

// handleWrite validates a write on this node, then proposes it here (leader) or forwards it.
func (n *Node) handleWrite(build func(r *http.Request, body []byte) (Command, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			n.writeError(w, err)
			return
		}
		cmd, err := build(r, body)
		if err != nil {
			n.writeError(w, err)
			return
		}
		if !n.IsLeader() {
			n.forward(w, r, body)
			return
		}
		res, err := n.Propose(r.Context(), cmd)
		if err != nil {
			n.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, WriteResult{Index: res.Index, Version: res.Version, Cells: nonNil(res.Cells), Change: res.Change})
	}
}

// mapOp is what the split, merge, shift and move endpoints propose: op wrapped in a Prepare
// with the node's ChangeTimeout (stamped now), or op itself with DirectOps.
func (n *Node) mapOp(op Command) (Command, error) {
	if n.cfg.DirectOps {
		return op, nil
	}
	b, err := EncodeCommand(op)
	if err != nil {
		return nil, err
	}
	return Prepare{Op: b, Now: time.Now().UnixNano(), Timeout: int64(n.cfg.ChangeTimeout)}, nil
}

func (n *Node) buildPrepare(r *http.Request, body []byte) (Command, error) {
	var q PrepareRequest
	if err := decodeStrict(body, &q); err != nil {
		return nil, err
	}
	if _, err := decodeOp(q.Op); err != nil {
		return nil, err
	}
	timeout := time.Duration(q.Timeout)
	if timeout == 0 {
		timeout = n.cfg.ChangeTimeout
	}
	if timeout < 0 || timeout > MaxChangeTimeout {
		return nil, fmt.Errorf("%w: timeout %v must be in (0, %v]", ErrBadRequest, timeout, MaxChangeTimeout)
	}
	return Prepare{Op: q.Op, Now: time.Now().UnixNano(), Timeout: int64(timeout)}, nil
}

func (n *Node) leaseTTL(d Duration) (int64, error) {
	if d == 0 {
		return int64(n.cfg.LeaseTTL), nil
	}
	if v := time.Duration(d); v < minLeaseTTL || v > maxLeaseTTL {
		return 0, fmt.Errorf("%w: lease_ttl %v must be in [%v, %v]", ErrBadRequest, v, minLeaseTTL, maxLeaseTTL)
	}
	return int64(d), nil
}

func (n *Node) buildRegister(r *http.Request, body []byte) (Command, error) {
	var q RegisterRequest
	if err := decodeStrict(body, &q); err != nil {
		return nil, err
	}
	if q.ID == 0 {
		return nil, fmt.Errorf("%w: id must be ≥ 1", ErrBadRequest)
	}
	if q.Capacity < 0 {
		return nil, fmt.Errorf("%w: capacity %d must be ≥ 0", ErrBadRequest, q.Capacity)
	}
	ttl, err := n.leaseTTL(q.LeaseTTL)
	if err != nil {
		return nil, err
	}
	return Register{Server: q.ID, Addr: q.Addr, ClientAddr: q.ClientAddr, Capacity: q.Capacity,
		Now: time.Now().UnixNano(), LeaseTTL: ttl}, nil
}

func (n *Node) buildHeartbeat(r *http.Request, body []byte) (Command, error) {
	id, err := pathServer(r)
	if err != nil {
		return nil, err
	}
	var q HeartbeatRequest
	if err := decodeStrict(body, &q); err != nil {
		return nil, err
	}
	ttl, err := n.leaseTTL(q.LeaseTTL)
	if err != nil {
		return nil, err
	}
	return Heartbeat{Server: id, Now: time.Now().UnixNano(), LeaseTTL: ttl, Load: q.Load}, nil
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		n.writeError(w, err)
		return
	}
	var q JoinRequest
	if err := decodeStrict(body, &q); err != nil {
		n.writeError(w, err)
		return
	}
	if !n.IsLeader() {
		n.forward(w, r, body)
		return
	}
	idx, err := n.addVoter(r.Context(), q)
	if err != nil {
		n.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, JoinResponse{Index: idx, Peers: n.peers.list()})
}

func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		n.writeError(w, err)
		return
	}
	var q RemoveRequest
	if err := decodeStrict(body, &q); err != nil {
		n.writeError(w, err)
		return
	}
	if !n.IsLeader() {
		n.forward(w, r, body)
		return
	}
	idx, err := n.removeServer(r.Context(), q.ID)
	if err != nil {
		n.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, WriteResult{Index: idx, Version: n.fsm.Version(), Cells: []CellID{}})
}

// ---- forwarding ----

// forward relays r (with body) to the leader and copies the answer back. It makes one hop: a
// request that was already forwarded and reached a non-leader gets 503 not_leader. A write
// whose request reached the leader but whose answer did not come back is 504 timeout (the
// outcome is unknown), not no_leader: only a failure before the request was sent means that
// nothing was applied.
func (n *Node) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get(headerForwardedBy) != "" {
		n.writeError(w, n.notLeaderErr())
		return
	}
	id, addr := n.Leader()
	switch {
	case id == 0:
		n.writeError(w, fmt.Errorf("%w: node %d knows of no leader", ErrNoLeader, n.cfg.ID))
		return
	case id == n.cfg.ID:
		// Became the leader meanwhile; the client retries and lands here again.
		n.writeError(w, fmt.Errorf("%w: node %d's leadership changed during the request", ErrNotLeader, n.cfg.ID))
		return
	case addr == "":
		n.writeError(w, fmt.Errorf("%w: the leader is node %d but node %d does not know its HTTP address yet", ErrNoLeader, id, n.cfg.ID))
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		n.writeError(w, err)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set(headerForwardedBy, strconv.FormatUint(n.cfg.ID, 10))
	var sent atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteHeaders: func() { sent.Store(true) },
	}))
	resp, err := n.hc.Do(req)
	if err != nil {
		if r.Method != http.MethodGet && sent.Load() {
			// The leader may have received the write and applied it. no_leader or shutdown
			// would tell the client that nothing was applied and to retry elsewhere, where a
			// retried move would fail with stale_epoch although the first one took effect.
			n.writeError(w, fmt.Errorf("%w: forwarded to the leader (node %d at %s), but its answer was lost: %v (the outcome is unknown)", ErrTimeout, id, addr, err))
			return
		}
		if r.Context().Err() != nil {
			n.abandoned(w)
			return
		}
		n.writeError(w, fmt.Errorf("%w: forwarding to the leader (node %d at %s): %v", ErrNoLeader, id, addr, err))
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if k == "Content-Type" || strings.HasPrefix(k, "X-Meridian-") {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// ---- helpers ----

// abandoned answers a request whose context ended: the node is closing (503 shutdown, so the
// client tries another node) or the client went away (nothing to answer).
func (n *Node) abandoned(w http.ResponseWriter) {
	if n.ctx.Err() != nil {
		n.writeError(w, fmt.Errorf("%w: node %d is shutting down", ErrShutdown, n.cfg.ID))
	}
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge{}
		}
		return nil, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON object into v, rejecting unknown fields and trailing
// data.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%w: the request needs a JSON body", ErrBadRequest)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: trailing data after the JSON value", ErrBadRequest)
	}
	return nil
}

// decodeOptional accepts an empty body or an empty JSON object.
func decodeOptional(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var v struct{}
	return decodeStrict(body, &v)
}

func finiteField(name string, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: %s must be finite", ErrBadRequest, name)
	}
	return nil
}

func pathID(r *http.Request, what string) (uint64, error) {
	s := r.PathValue("id")
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: %s id %q: want an integer ≥ 1", ErrBadRequest, what, s)
	}
	return v, nil
}

func pathServer(r *http.Request) (ServerID, error) {
	v, err := pathID(r, "server")
	return ServerID(v), err
}

// StatusForCode is the HTTP status the API answers an error code with.
func StatusForCode(code string) int {
	switch code {
	case "bad_request", "malformed_command", "unknown_command", "invalid_world", "bad_axis", "invalid_config":
		return http.StatusBadRequest
	case "unknown_cell", "unknown_server", "unknown_node", "unknown_change", "not_found":
		return http.StatusNotFound
	case "not_leader", "no_leader", "shutdown", "leadership_lost":
		return http.StatusServiceUnavailable
	case "timeout":
		return http.StatusGatewayTimeout
	case "internal", "corrupt_snapshot", "":
		return http.StatusInternalServerError
	}
	return http.StatusConflict // the map rejected the command: stale_epoch, not_siblings, ...
}

func (n *Node) writeError(w http.ResponseWriter, err error) {
	code := ErrorCode(err)
	status := StatusForCode(code)
	if errors.As(err, new(tooLarge)) {
		status = http.StatusRequestEntityTooLarge
	}
	if status == http.StatusInternalServerError {
		n.log.Error("internal error serving a request", "err", err)
	}
	n.setNodeHeaders(w.Header())
	writeErrorCode(w, status, code, err.Error())
}

func writeErrorCode(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

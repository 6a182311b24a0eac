package raftmeta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client is the Go client of the HTTP API, for the admin CLI and cell servers. It holds the
// HTTP addresses of several nodes and needs no leader: any node forwards writes and
// linearizable reads to the leader. A call tries its addresses in turn, starting with the last
// that answered, moving on after a connection error or a 503 that says nothing was applied
// (not_leader, no_leader, shutdown); after a whole round fails it waits Backoff (doubling) and
// tries again, Rounds times in all, so a call spans a leader election. Retrying writes is safe
// because every write is idempotent or fenced by an epoch: a repeated split or move fails with
// stale_epoch (or cell_migrating, if the first started a change) rather than applying twice; a
// repeated Staged is a no-op; a repeated Abort fails with unknown_change.
//
// Errors from the API are *APIError; errors.Is(err, ErrStaleEpoch) (or any sentinel of
// errors.go) works on them. When no node answers, the error wraps ErrNoLeader.
// A Client is safe for concurrent use.
type Client struct {
	addrs   []string // base URLs
	hc      *http.Client
	last    atomic.Uint32 // index of the address that last answered
	Rounds  int           // rounds over all addresses (default 5)
	Backoff time.Duration // pause after the first failed round (default 50ms), doubling
}

// ReadOptions qualify a read. The zero value is a linearizable, non-blocking read.
type ReadOptions struct {
	Stale bool          // serve from whichever node answers, without asking the leader
	Index uint64        // > 0: blocking query; return once the map version exceeds Index
	Wait  time.Duration // bound of a blocking query (0: the server's default, MaxWait)
}

// APIError is an error answered by a node.
type APIError struct {
	Status  int    // HTTP status
	Code    string // stable code (ErrorCode), "" if the answer was not one of ours
	Message string
	Addr    string // the node that answered
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (HTTP %d from %s)", e.Code, e.Status, e.Addr)
	}
	return fmt.Sprintf("HTTP %d from %s", e.Status, e.Addr)
}

// Unwrap returns the sentinel of the error's code, so errors.Is works.
func (e *APIError) Unwrap() error { return ErrorForCode(e.Code) }

// retryable reports whether another node may succeed where this answer failed, with nothing
// applied.
func (e *APIError) retryable() bool {
	switch e.Code {
	case "not_leader", "no_leader", "shutdown":
		return true
	case "":
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway
	}
	return false
}

// NewClient returns a client of the nodes at addrs ("host:port" or "http://host:port").
// httpClient nil: a client with connection timeouts but no overall timeout (blocking
// queries last up to MaxWait; bound calls with their context).
func NewClient(addrs []string, httpClient *http.Client) *Client {
	c := &Client{hc: httpClient, Rounds: 5, Backoff: 50 * time.Millisecond}
	if c.hc == nil {
		c.hc = &http.Client{Transport: newTransport()}
	}
	for _, a := range addrs {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		c.addrs = append(c.addrs, a)
	}
	return c
}

// newTransport is an HTTP transport for talking to metadata nodes on a LAN.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Addrs returns the base URLs the client tries.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

// Map returns the partition map.
func (c *Client) Map(ctx context.Context, o ReadOptions) (*Map, error) {
	var m Map
	if err := c.do(ctx, http.MethodGet, "/v1/map"+o.query(), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Cells returns the cells (sorted by ID) and the map version they belong to.
func (c *Client) Cells(ctx context.Context, o ReadOptions) (*CellsResponse, error) {
	var r CellsResponse
	if err := c.do(ctx, http.MethodGet, "/v1/cells"+o.query(), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Servers returns the registered cell servers (sorted by ID) and the map version.
func (c *Client) Servers(ctx context.Context, o ReadOptions) (*ServersResponse, error) {
	var r ServersResponse
	if err := c.do(ctx, http.MethodGet, "/v1/servers"+o.query(), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Status returns the view of the first node that answers.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// NodeStatus returns the view of the node at addr (one attempt, no failover).
func (c *Client) NodeStatus(ctx context.Context, addr string) (*Status, error) {
	var s Status
	one := NewClient([]string{addr}, c.hc)
	if len(one.addrs) == 0 {
		return nil, fmt.Errorf("%w: empty address", ErrBadRequest)
	}
	if err := one.once(ctx, one.addrs[0], http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Register registers (or re-registers) a cell server and starts its lease.
func (c *Client) Register(ctx context.Context, r RegisterRequest) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/servers", r)
}

// Heartbeat renews server id's lease and reports its load.
func (c *Client) Heartbeat(ctx context.Context, id ServerID, r HeartbeatRequest) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/servers/"+u64(uint64(id))+"/heartbeat", r)
}

// Deregister removes a server that leaves cleanly; its cells are reassigned.
func (c *Client) Deregister(ctx context.Context, id ServerID) (*WriteResult, error) {
	return c.write(ctx, http.MethodDelete, "/v1/servers/"+u64(uint64(id)), nil)
}

// Drain marks a server draining; the leader then moves its cells to other live servers by
// two-phase moves (at once with Config.DirectOps).
func (c *Client) Drain(ctx context.Context, id ServerID) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/servers/"+u64(uint64(id))+"/drain", nil)
}

// Split cuts cell s.Cell at s.At on s.Axis; WriteResult.Cells holds the new high cell. Split,
// Move, Merge and Shift are two-phase (see Change): when the operation moves a region between
// live servers, WriteResult.Change names the change it started and the map changes when the
// change commits (unless the nodes run with Config.DirectOps).
func (c *Client) Split(ctx context.Context, s Split) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/cells/"+u64(uint64(s.Cell))+"/split",
		SplitRequest{Epoch: s.Epoch, Axis: s.Axis, At: s.At, NewOwner: s.NewOwner})
}

// Move gives cell m.Cell to server m.To.
func (c *Client) Move(ctx context.Context, m Move) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/cells/"+u64(uint64(m.Cell))+"/move", MoveRequest{Epoch: m.Epoch, To: m.To})
}

// Merge joins two sibling cells.
func (c *Client) Merge(ctx context.Context, m Merge) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/cells/merge", m)
}

// Shift moves tree node s.Node's split line to s.At.
func (c *Client) Shift(ctx context.Context, s Shift) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/nodes/"+u64(uint64(s.Node))+"/shift", ShiftRequest{At: s.At, Epochs: s.Epochs})
}

// Prepare starts a two-phase change of op (a Split, Merge, Shift or Move) that the leader aborts
// if it is not complete after timeout (0: the node's ChangeTimeout). WriteResult.Change is the
// change's ID, or 0 if op moved no region between live servers and was applied at once.
func (c *Client) Prepare(ctx context.Context, op Command, timeout time.Duration) (*WriteResult, error) {
	b, err := EncodeCommand(op)
	if err != nil {
		return nil, err
	}
	return c.write(ctx, http.MethodPost, "/v1/changes", PrepareRequest{Op: b, Timeout: Duration(timeout)})
}

// Staged reports that server (the transfer's target) holds the entities of transfer number
// transfer of change. When it is the change's last unstaged transfer the change commits.
func (c *Client) Staged(ctx context.Context, change ChangeID, transfer int, server ServerID) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/changes/"+u64(uint64(change))+"/staged", StagedRequest{Transfer: transfer, Server: server})
}

// Abort abandons a pending change; its cells stay as they were.
func (c *Client) Abort(ctx context.Context, change ChangeID, reason string) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/changes/"+u64(uint64(change))+"/abort", AbortRequest{Reason: reason})
}

// Changes returns the pending changes (sorted by ID) and the last resolved ones.
func (c *Client) Changes(ctx context.Context, o ReadOptions) (*ChangesResponse, error) {
	var r ChangesResponse
	if err := c.do(ctx, http.MethodGet, "/v1/changes"+o.query(), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Join asks the cluster to add a metadata node as a voter.
func (c *Client) Join(ctx context.Context, r JoinRequest) (*JoinResponse, error) {
	var out JoinResponse
	if err := c.do(ctx, http.MethodPost, "/v1/join", r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Remove asks the cluster to remove metadata node id.
func (c *Client) Remove(ctx context.Context, id uint64) (*WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/remove", RemoveRequest{ID: id})
}

func (c *Client) write(ctx context.Context, method, path string, in any) (*WriteResult, error) {
	var out WriteResult
	if err := c.do(ctx, method, path, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func (o ReadOptions) query() string {
	v := url.Values{}
	if o.Stale {
		v.Set("stale", "true")
	}
	if o.Index > 0 {
		v.Set("index", u64(o.Index))
		if o.Wait > 0 {
			v.Set("wait", o.Wait.String())
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// do runs one call with failover across addresses and rounds.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if len(c.addrs) == 0 {
		return fmt.Errorf("%w: the client has no metadata node addresses", ErrBadRequest)
	}
	rounds := max(c.Rounds, 1)
	backoff := c.Backoff
	var lastErr error
	for round := 0; round < rounds; round++ {
		if round > 0 && backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w: %w (last error: %v)", ErrTimeout, ctx.Err(), lastErr)
			case <-t.C:
			}
			backoff *= 2
		}
		start := int(c.last.Load())
		for i := range c.addrs {
			k := (start + i) % len(c.addrs)
			err := c.once(ctx, c.addrs[k], method, path, in, out)
			if err == nil {
				c.last.Store(uint32(k))
				return nil
			}
			var ae *APIError
			if errors.As(err, &ae) && !ae.retryable() {
				c.last.Store(uint32(k))
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w (last error: %v)", ErrTimeout, ctx.Err(), err)
			}
			lastErr = err
		}
	}
	var ae *APIError
	if errors.As(lastErr, &ae) {
		return lastErr // already a sentinel (no_leader, not_leader, shutdown)
	}
	return fmt.Errorf("%w: no metadata node answered (tried %s): %w", ErrNoLeader, strings.Join(c.addrs, ", "), lastErr)
}

// once is one request to one node.
func (c *Client) once(ctx context.Context, base, method, path string, in, out any) error {
	return doJSON(ctx, c.hc, method, base+path, nil, in, out)
}

// doJSON sends in (nil: no body) as JSON and decodes a 2xx answer into out, or an error answer
// into an *APIError.
func doJSON(ctx context.Context, hc *http.Client, method, u string, hdr http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%w: encoding the request: %v", ErrBadRequest, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", req.URL.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode, Addr: req.URL.Host}
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			ae.Code, ae.Message = eb.Error.Code, eb.Error.Message
		} else {
			ae.Message = fmt.Sprintf("HTTP %d from %s: %s", resp.StatusCode, req.URL.Host, strings.TrimSpace(string(b[:min(len(b), 200)])))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the answer of %s: %w", req.URL.Host, err)
	}
	return nil
}

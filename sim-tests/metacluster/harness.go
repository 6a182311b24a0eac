// Package metacluster runs real `meridian meta` processes on 127.0.0.1 for tests that need a
// process to die: SIGKILL of the leader, of every node, restarts from the data directories.
package metacluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/meridian once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meridian-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "meridian")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/meridian-mmo/meridian/cmd/meridian").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Proc is a child process of the harness: a meridian subcommand whose output goes to a log
// file, which the harness can SIGKILL and restart.
type Proc struct {
	Bin     string
	LogPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start runs the binary with args, appending its output to LogPath.
func (p *Proc) Start(t testing.TB, args ...string) {
	t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
}

// Kill sends SIGKILL (no clean shutdown) and waits for the process to exit.
func (p *Proc) Kill(t testing.TB) { p.signal(t, syscall.SIGKILL) }

// Stop sends SIGTERM (a clean shutdown) and waits for the process to exit.
func (p *Proc) Stop(t testing.TB) { p.signal(t, syscall.SIGTERM) }

func (p *Proc) signal(t testing.TB, sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("%s did not exit within 10 s of %v", p.LogPath, sig)
	}
}

// Running reports whether the process is up (not stopped by the harness).
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Logs returns the end of the process's log, for failure messages.
func (p *Proc) Logs() string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Node is one `meridian meta` process.
type Node struct {
	Proc
	ID       int
	RaftAddr string
	HTTPAddr string
	DataDir  string
}

// Cluster is a set of meta nodes.
type Cluster struct {
	t     testing.TB
	bin   string
	args  []string
	Nodes []*Node
}

// FreeAddr returns a 127.0.0.1 TCP address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs n nodes: the first bootstraps, the others join it; it returns once every node
// reports the same leader and n voters.
func Start(t testing.TB, n int) *Cluster { return StartArgs(t, n) }

// StartArgs is Start with extra flags for every node (e.g. --world 512).
func StartArgs(t testing.TB, n int, args ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t), args: args}
	root := t.TempDir()
	for i := 1; i <= n; i++ {
		nd := &Node{ID: i, RaftAddr: FreeAddr(t), HTTPAddr: FreeAddr(t),
			DataDir: filepath.Join(root, fmt.Sprintf("node%d", i)),
			Proc:    Proc{Bin: c.bin, LogPath: filepath.Join(root, fmt.Sprintf("node%d.log", i))}}
		c.Nodes = append(c.Nodes, nd)
		extra := []string{"--bootstrap"}
		if i > 1 {
			extra = []string{"--join", c.Nodes[0].HTTPAddr}
		}
		c.start(nd, extra...)
		if i == 1 {
			c.WaitLeader(30 * time.Second)
		}
	}
	c.WaitVoters(n, 30*time.Second)
	t.Cleanup(c.KillAll)
	return c
}

// HTTPAddrs lists every node's HTTP address.
func (c *Cluster) HTTPAddrs() []string {
	var a []string
	for _, nd := range c.Nodes {
		a = append(a, nd.HTTPAddr)
	}
	return a
}

func (c *Cluster) start(nd *Node, extra ...string) {
	c.t.Helper()
	args := append([]string{"meta", "--id", strconv.Itoa(nd.ID), "--raft-addr", nd.RaftAddr,
		"--http-addr", nd.HTTPAddr, "--data", nd.DataDir, "--log-level", "debug"}, c.args...)
	nd.Start(c.t, append(args, extra...)...)
}

// Kill sends SIGKILL to a node (no clean shutdown) and waits until it has exited.
func (c *Cluster) Kill(nd *Node) { nd.Proc.Kill(c.t) }

// KillAll SIGKILLs every node.
func (c *Cluster) KillAll() {
	for _, nd := range c.Nodes {
		c.Kill(nd)
	}
}

// Restart starts a killed node again from its data directory, with neither --bootstrap nor
// --join: a restarted node rejoins from its state.
func (c *Cluster) Restart(nd *Node) { c.start(nd) }

var httpc = &http.Client{Timeout: 2 * time.Second}

// Do sends a request to a node's API and decodes a JSON answer into out (nil: discard).
func (nd *Node) Do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+nd.HTTPAddr+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// Status asks a node for its status.
func (nd *Node) Status() (raftmeta.Status, error) {
	var s raftmeta.Status
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := nd.Do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// WaitLeader waits until every running node names the same leader and returns it.
func (c *Cluster) WaitLeader(within time.Duration) *Node {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l != nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, nd := range c.Nodes {
		c.t.Logf("node %d log:\n%s", nd.ID, nd.Logs())
	}
	c.t.Fatalf("no agreed leader within %v", within)
	return nil
}

func (c *Cluster) agreedLeader() *Node {
	leader := uint64(0)
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		s, err := nd.Status()
		if err != nil || s.Leader == nil || (leader != 0 && s.Leader.ID != leader) {
			return nil
		}
		leader = s.Leader.ID
	}
	for _, nd := range c.Nodes {
		if uint64(nd.ID) == leader && nd.Running() {
			return nd
		}
	}
	return nil
}

// WaitVoters waits until the leader reports n peers.
func (c *Cluster) WaitVoters(n int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l != nil {
			if s, err := l.Status(); err == nil && len(s.Peers) == n {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, nd := range c.Nodes {
		c.t.Logf("node %d log:\n%s", nd.ID, nd.Logs())
	}
	c.t.Fatalf("cluster did not reach %d voters within %v", n, within)
}

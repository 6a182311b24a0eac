package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
)

// Kinds of process.
const (
	KindMeta    = "meta"
	KindCell    = "cell"
	KindGateway = "gateway"
)

// killWait bounds the wait for a process to exit after SIGKILL: it always does, unless the
// kernel is stuck.
const killWait = 10 * time.Second

// Proc is one child process of the harness: a meridian subcommand whose standard output and
// error go to LogPath.
type Proc struct {
	Name        string // meta1, cell2, gateway: also the name of its log (Name.log) and data directory
	Kind        string // KindMeta, KindCell or KindGateway
	ID          int    // its --id
	MetricsAddr string // host:port serving /metrics (a meta node: its HTTP address; a cell server: also /debug/entities)
	LogPath     string
	DataDir     string   // its --data ("" for the gateway)
	HTTPAddr    string   // a meta node's HTTP API address (= MetricsAddr)
	RaftAddr    string   // a meta node's Raft address
	Args        []string // the command line after the binary

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed once the process has exited and been reaped
	state    *os.ProcessState
	waitErr  error
	signaled bool // the harness killed or stopped it on purpose
}

// Pid is the process's id (0 before it started).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Alive reports whether the process has started and not exited.
func (p *Proc) Alive() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Exited is closed once the process has exited (nil before it started).
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// ExitState is how the process ended (nil while it runs).
func (p *Proc) ExitState() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// unexpected reports whether the process has exited without the harness killing or stopping it.
func (p *Proc) unexpected() bool {
	p.mu.Lock()
	signaled, exited := p.signaled, p.exited
	p.mu.Unlock()
	return exited != nil && !signaled && !p.Alive()
}

// exitDesc describes how the process ended.
func (p *Proc) exitDesc() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.state != nil:
		return p.state.String()
	case p.waitErr != nil:
		return p.waitErr.Error()
	}
	return "running"
}

// Scrape reads the process's /metrics.
func (p *Proc) Scrape(ctx context.Context) (promscrape.Scrape, error) {
	sc, err := promscrape.FetchMetrics(ctx, p.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	return sc, nil
}

// Tail returns the last n bytes (at most) of the process's log.
func (p *Proc) Tail(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(n) {
		_, _ = f.Seek(fi.Size()-int64(n), io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, int64(n)))
	return string(b)
}

// start runs bin with p.Args, its output appended to p.LogPath, in a process group of its own.
func (p *Proc) start(bin string, env []string) error {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "# harness %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(p.Args, " "))
	cmd := exec.Command(bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.signaled, p.state, p.waitErr = cmd, exited, false, nil, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.state, p.waitErr = cmd.ProcessState, err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// signal sends sig to the process's group while the process runs, and marks it signalled.
func (p *Proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	p.signaled = true
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return // reaped: its pid may belong to someone else by now
	default:
	}
	signalGroup(cmd.Process, sig)
}

// wait waits until the process has exited, at most within; false if it has not.
func (p *Proc) wait(within time.Duration) bool {
	exited := p.Exited()
	if exited == nil {
		return true
	}
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C:
		return false
	}
}

// Kill sends SIGKILL to the process (and its group) and waits for it to exit.
func (p *Proc) Kill() error {
	p.signal(syscall.SIGKILL)
	if !p.wait(killWait) {
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGKILL", p.Name, p.Pid(), killWait)
	}
	return nil
}

// Stop sends SIGTERM (a clean shutdown), waits up to within for the process to exit, then
// SIGKILLs it. The error says whether it needed SIGKILL.
func (p *Proc) Stop(within time.Duration) error {
	p.signal(syscall.SIGTERM)
	if p.wait(within) {
		return nil
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s did not exit within %v of SIGTERM: killed", p.Name, within)
}

// holdings asks a cell server what it holds (GET /debug/entities).
func (p *Proc) holdings(ctx context.Context) (cellserver.Holdings, error) {
	var h cellserver.Holdings
	if p.Kind != KindCell {
		return h, fmt.Errorf("%s is not a cell server", p.Name)
	}
	if err := promscrape.GetJSON(ctx, p.MetricsAddr, "/debug/entities", &h); err != nil {
		return h, fmt.Errorf("%s: %w", p.Name, err)
	}
	return h, nil
}

// freeTCP returns a 127.0.0.1 TCP address that was free a moment ago.
func freeTCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freeUDP returns a 127.0.0.1 UDP address that was free a moment ago.
func freeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// childEnv is the environment of every child: ours without MERIDIAN_* (every flag of the
// cluster comes from Config, not from whatever the caller's environment holds), plus extra.
// MERIDIAN_PPROF alone passes through: it only adds profiling, and lets a person profile a
// child of a sim (/debug/pprof/ on its metrics address).
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MERIDIAN_") || strings.HasPrefix(kv, "MERIDIAN_PPROF=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var errClosed = errors.New("harness: cluster closed")

package procs

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
)

// Process is a `meridian cell` or `meridian gateway` process with the address of its metrics
// endpoint (which also serves /debug/entities).
type Process struct {
	metacluster.Proc
	Name        string // cell1, cell2, ..., gateway: also the name of its log (Name.log)
	MetricsAddr string
}

// Scrape reads the process's /metrics.
func (p *Process) Scrape(ctx context.Context) (promscrape.Scrape, error) {
	sc, err := promscrape.FetchMetrics(ctx, p.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	return sc, nil
}

// Launcher starts the cell servers and gateways of one test in one directory.
type Launcher struct {
	// Dir holds each process's log (Dir/NAME.log) and a cell server's data (Dir/NAME); see
	// TestDir.
	Dir string
	// Args are flags every process gets after its own and --metrics-addr, e.g. --log-level debug.
	Args []string
	// KillAtEnd: a process still running when the test ends is SIGKILLed; otherwise it gets
	// SIGTERM (a clean shutdown) and 10 s to exit.
	KillAtEnd bool
}

// Start runs `meridian args... --metrics-addr ADDR l.Args...` with a free metrics address and
// its output in Dir/name.log, and stops it when the test ends.
func (l Launcher) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, MetricsAddr: metacluster.FreeAddr(t),
		Proc: metacluster.Proc{Bin: metacluster.Binary(t), LogPath: filepath.Join(l.Dir, name+".log")}}
	p.Start(t, slices.Concat(args, []string{"--metrics-addr", p.MetricsAddr}, l.Args)...)
	t.Cleanup(func() {
		if l.KillAtEnd {
			p.Kill(t)
		} else {
			p.Stop(t)
		}
	})
	return p
}

// StartCell starts cell server id (named cellID, its data in Dir/cellID) in cluster mode: it
// registers with the meta nodes at the HTTP addresses meta and links to its peers from a free
// port. args are more flags (e.g. --listen for a client edge of its own; without it clients
// come through a gateway).
func (l Launcher) StartCell(t testing.TB, id int, meta []string, args ...string) *Process {
	t.Helper()
	name := fmt.Sprintf("cell%d", id)
	return l.Start(t, name, slices.Concat([]string{"cell", "--id", strconv.Itoa(id), "--meta", strings.Join(meta, ","),
		"--data", filepath.Join(l.Dir, name), "--peer", "127.0.0.1:0"}, args)...)
}

// StartGateway starts gateway 1 (named gateway), which routes by the map of the meta nodes at
// the HTTP addresses meta, listening for clients on a free UDP address, which it returns.
func (l Launcher) StartGateway(t testing.TB, meta []string, args ...string) (gw *Process, clientAddr string) {
	t.Helper()
	clientAddr = FreeUDP(t)
	gw = l.Start(t, "gateway", slices.Concat([]string{"gateway", "--id", "1", "--meta", strings.Join(meta, ","),
		"--listen", clientAddr}, args)...)
	return gw, clientAddr
}

// TestDir is the directory a test's processes keep their data and logs in: a temporary one,
// removed after the test; or, when keepIn is set, a new one below it named after the test and
// the time, which is kept (and named in the test's log).
func TestDir(t testing.TB, keepIn string) string {
	t.Helper()
	if keepIn == "" {
		return t.TempDir()
	}
	dir, err := filepath.Abs(filepath.Join(keepIn, fmt.Sprintf("%s-%d", t.Name(), time.Now().Unix())))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("logs and data in %s", dir)
	return dir
}

// FreeUDP returns a 127.0.0.1 UDP address that was free a moment ago.
func FreeUDP(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// LogTails logs the end of each process's log (nil ones are skipped), for a failed test.
func LogTails(t testing.TB, ps ...*Process) {
	t.Helper()
	for _, p := range ps {
		if p != nil {
			t.Logf("%s log (%s), the end:\n%s", p.Name, p.LogPath, p.Logs())
		}
	}
}

//go:build unix

package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
)

// within bounds every wait of these tests: generous, so that a slow machine passes and a hang
// fails rather than blocks.
const within = 3 * time.Minute

// binaryEnv names a meridian binary for these tests to use instead of building cmd/meridian
// (for instance while cmd/meridian is being edited).
const binaryEnv = "MERIDIAN_TEST_BINARY"

// binary is the meridian binary the tests start: $MERIDIAN_TEST_BINARY, or a build of
// cmd/meridian.
func binary(t *testing.T) string {
	if b := os.Getenv(binaryEnv); b != "" {
		return b
	}
	return metacluster.Binary(t)
}

// config is a cluster of 3 meta nodes and cells cell servers in a test's directory.
func config(t *testing.T, cells int, partitioning string) Config {
	return Config{
		Binary:       binary(t),
		Dir:          t.TempDir(),
		Cells:        cells,
		Partitioning: partitioning,
		StartTimeout: within,
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// gone reports whether no process has the pid (reaped, not a zombie).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// leftovers lists the processes that carry EnvDir=dir in their environment (Linux: /proc;
// elsewhere none can be found).
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	mark := []byte(EnvDir + "=" + dir + "\x00")
	var out []string
	for _, e := range entries {
		if strings.Trim(e.Name(), "0123456789") != "" {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append(env, 0), mark) {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

// checkNoneLeft fails the test if a process of c, or any process the harness started in dir,
// is still there.
func checkNoneLeft(t *testing.T, c *Cluster, dir string) {
	t.Helper()
	if c != nil {
		for _, p := range c.Procs() {
			if p.Alive() || !gone(p.Pid()) {
				t.Errorf("%s (pid %d) is still there after Close", p.Name, p.Pid())
			}
			if !gone(-p.Pid()) {
				t.Errorf("the process group of %s (%d) is still there after Close", p.Name, p.Pid())
			}
		}
	}
	if left := leftovers(t, dir); len(left) > 0 {
		t.Errorf("processes of the harness left behind:\n%s", strings.Join(left, "\n"))
	}
}

// logTails logs the end of every process's log, for a failed test.
func logTails(t *testing.T, c *Cluster) {
	if !t.Failed() || c == nil {
		return
	}
	for _, p := range c.Procs() {
		t.Logf("%s (%s), the end:\n%s", p.Name, p.LogPath, p.Tail(3000))
	}
}

func TestGridSide(t *testing.T) {
	for n, want := range map[int]int{1: 2, 2: 3, 3: 3, 4: 4, 5: 4, 6: 5, 12: 6, 13: 7} {
		if g := GridSide(n); g != want {
			t.Errorf("GridSide(%d) = %d, want %d", n, g, want)
		}
	}
	w := raftmeta.World{Max: [2]float64{900, 900}}
	lines := gridLines(w, 3)
	if len(lines) != 2+3*2 {
		t.Fatalf("%d cuts for a 3×3 grid", len(lines))
	}
	if l := lines[0]; l.axis != raftmeta.AxisX || l.at != 300 || l.px != 450 {
		t.Fatalf("first cut %+v", l)
	}
	if l := lines[len(lines)-1]; l.axis != raftmeta.AxisZ || l.at != 600 || l.px != 750 || l.pz != 750 {
		t.Fatalf("last cut %+v", l)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Cells: 1},
		{Dir: t.TempDir()},
		{Dir: t.TempDir(), Cells: 1, Partitioning: "grid"},
		{Dir: t.TempDir(), Cells: 1, World: -1},
	} {
		if c, err := Start(context.Background(), cfg); err == nil {
			c.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}

// TestDynamic: 3 meta nodes and 2 cell servers with the partitioner on. The map lists both
// servers alive and owning every cell; both answer /debug/entities and every process /metrics;
// cell server 2 SIGKILLed is gone; Close leaves no process behind.
func TestDynamic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	cfg := config(t, 2, "")
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer logTails(t, c)
	defer c.Close()
	if len(c.Metas) != 3 || len(c.Cells) != 2 || c.Gateway == nil || c.GatewayAddr == "" || len(c.MetaHTTP) != 3 {
		t.Fatalf("cluster %+v", c)
	}
	if c.Cfg.Partitioning != Dynamic || c.Cfg.World != DefaultWorld {
		t.Fatalf("defaults not filled in: %+v", c.Cfg)
	}
	for _, p := range c.Procs() {
		if !p.Alive() || p.Pid() == 0 {
			t.Fatalf("%s not running", p.Name)
		}
		if _, err := os.Stat(p.LogPath); err != nil || filepath.Dir(p.LogPath) != cfg.Dir {
			t.Fatalf("%s log %s: %v", p.Name, p.LogPath, err)
		}
		sc, err := p.Scrape(ctx)
		if err != nil || len(sc) == 0 {
			t.Fatalf("%s /metrics: %d samples, %v", p.Name, len(sc), err)
		}
	}

	if _, err := os.Stat("/proc/self/environ"); err == nil {
		if left := leftovers(t, cfg.Dir); len(left) != 6 {
			t.Fatalf("%d processes found by their environment, want 6:\n%s", len(left), strings.Join(left, "\n"))
		}
	}

	m, err := c.Map(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.World.Max[0]-m.World.Min[0] != DefaultWorld {
		t.Fatalf("world %+v", m.World)
	}
	alive := map[raftmeta.ServerID]bool{}
	for _, s := range m.Servers {
		alive[s.ID] = s.Alive
	}
	if !alive[1] || !alive[2] {
		t.Fatalf("servers %+v", m.Servers)
	}
	for _, cl := range m.Cells {
		if !alive[cl.Owner] {
			t.Fatalf("cell %+v not owned by a live server", cl)
		}
	}
	for _, p := range c.Cells {
		h, err := c.Holdings(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if h.Fenced {
			t.Fatalf("%s fenced: %+v", p.Name, h)
		}
		t.Logf("%s holds %d entities at map version %d", p.Name, len(h.Real), h.MapVersion)
	}
	if _, err := c.Holdings(ctx, c.Gateway); err == nil {
		t.Fatal("holdings of the gateway")
	}

	pid := c.Cells[1].Pid()
	if err := c.KillCell(2); err != nil {
		t.Fatal(err)
	}
	if c.Cells[1].Alive() || !gone(pid) {
		t.Fatalf("cell2 (pid %d) still there after KillCell", pid)
	}
	if st := c.Cells[1].ExitState(); st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("cell2 ended %v, not by SIGKILL", st)
	}
	if err := c.KillCell(7); err == nil {
		t.Fatal("KillCell of a cell server that is not there")
	}
	if dead := c.Unexpected(); len(dead) != 0 {
		t.Fatalf("processes that exited on their own: %v", dead[0].Name)
	}
	if !c.Cells[0].Alive() || !c.Gateway.Alive() {
		t.Fatal("cell1 or the gateway went down with cell2")
	}

	id, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := c.Metas[id-1]
	if killed.ID != id || killed.Alive() || !gone(killed.Pid()) {
		t.Fatalf("meta%d (pid %d) still there after KillLeader", id, killed.Pid())
	}
	// The other two elect a leader: the map can be read again.
	for {
		st, err := c.Meta.Status(ctx)
		if err == nil && st.Leader != nil && st.Leader.ID != uint64(id) {
			if _, err := c.Map(ctx); err == nil {
				t.Logf("meta%d leads after meta%d was killed", st.Leader.ID, id)
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no new meta leader: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	checkNoneLeft(t, c, cfg.Dir)
	if err2 := c.Close(); fmt.Sprint(err2) != fmt.Sprint(nil) {
		t.Errorf("second Close: %v", err2)
	}
}

// TestStatic: with 2 cell servers the world is a 3×3 grid of equal cells, dealt alternately
// by cell id, nothing pending, and the gateway is linked to both servers; the end of Start's
// context stops everything.
func TestStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	cfg := config(t, 2, Static)
	cfg.World = 600
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer logTails(t, c)
	defer c.Close()

	m, err := c.Map(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Cells) != 9 || len(m.Changes) != 0 {
		t.Fatalf("map version %d: %d cells, %d changes pending: %+v", m.Version, len(m.Cells), len(m.Changes), m.Cells)
	}
	seen := map[[2]float64]bool{}
	for i, cl := range m.Cells {
		if want := raftmeta.ServerID(i%2 + 1); cl.Owner != want || cl.State != raftmeta.CellActive {
			t.Errorf("cell %d (number %d by id): owner %d, state %s; want owner %d, active", cl.ID, i, cl.Owner, cl.State, want)
		}
		b := cl.Bounds
		if math.Abs(b[2]-b[0]-200) > 1e-6 || math.Abs(b[3]-b[1]-200) > 1e-6 {
			t.Errorf("cell %d bounds %v: not 200 m square", cl.ID, b)
		}
		seen[[2]float64{math.Round(b[0]), math.Round(b[1])}] = true
	}
	if len(seen) != 9 {
		t.Errorf("cells at %d distinct corners: %v", len(seen), seen)
	}
	sc, err := c.Gateway.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if links, v := sc.Sum("meridian_gateway_links_up"), sc.Sum("meridian_gateway_map_version"); links != 2 || v < float64(m.Version) {
		t.Fatalf("gateway: %v links up, map version %v (map %d)", links, v, m.Version)
	}

	cancel() // the end of Start's context closes the cluster
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(within):
		t.Fatal("Close did not return")
	}
	checkNoneLeft(t, c, cfg.Dir)
}

// TestStartFailure: a cell server that cannot start fails Start, which names it and stops the
// meta nodes it had started.
func TestStartFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	cfg := config(t, 1, "")
	cfg.CellArgs = []string{"--no-such-flag"}
	c, err := Start(context.Background(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("Start succeeded with a cell server that cannot start")
	}
	if !strings.Contains(err.Error(), "cell1 exited") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("error does not name cell1 and its complaint: %v", err)
	}
	checkNoneLeft(t, nil, cfg.Dir)
}

// TestStaticGridTooFine: a grid finer than the meta nodes' minimum cell size fails Start at
// once with the meta nodes' reason, and nothing is left running.
func TestStaticGridTooFine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	cfg := config(t, 2, Static)
	cfg.World = 600                                   // a 3×3 grid of 200 m cells
	cfg.MetaArgs = []string{"--min-cell-size", "300"} // but no cell narrower than 300 m
	c, err := Start(context.Background(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("Start succeeded")
	}
	if !errors.Is(err, raftmeta.ErrCellTooSmall) {
		t.Fatalf("error is not the meta nodes' cell_too_small: %v", err)
	}
	t.Log(err)
	checkNoneLeft(t, nil, cfg.Dir)
}

// parentEnv, set, makes TestParentKilled the parent side of itself: start a cluster in the
// directory it names, say "ready", and wait to be killed.
const parentEnv = "HARNESS_TEST_PARENT_DIR"

// TestParentKilled: a program that started a cluster and is SIGKILLed before Close leaves no
// process behind (Linux: the children's parent-death signal).
func TestParentKilled(t *testing.T) {
	if dir := os.Getenv(parentEnv); dir != "" {
		cfg := Config{Binary: os.Getenv(binaryEnv), Dir: dir, Metas: 1, Cells: 1, StartTimeout: within}
		if _, err := Start(context.Background(), cfg); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		time.Sleep(within)
		os.Exit(1)
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("needs /proc to find the children")
	}
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^TestParentKilled$", "-test.v")
	parent.Env = append(os.Environ(), parentEnv+"="+dir, binaryEnv+"="+binary(t))
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.Stderr = parent.Stdout
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = parent.Process.Kill(); _ = parent.Wait() }()
	sc := bufio.NewScanner(out)
	var said []string
	for sc.Scan() && sc.Text() != "ready" {
		said = append(said, sc.Text())
	}
	if sc.Text() != "ready" {
		t.Fatalf("the parent did not start its cluster:\n%s", strings.Join(said, "\n"))
	}
	if n := len(leftovers(t, dir)); n != 3 {
		t.Fatalf("%d processes of the parent's cluster found, want 3", n)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	deadline := time.Now().Add(within)
	for {
		left := leftovers(t, dir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind by the killed parent:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

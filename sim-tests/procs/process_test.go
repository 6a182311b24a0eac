package procs

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
)

func TestTestDir(t *testing.T) {
	if dir := TestDir(t, ""); !strings.HasPrefix(dir, os.TempDir()) {
		t.Fatalf("without keepIn: %s, not a temporary directory", dir)
	}
	keep := t.TempDir()
	dir := TestDir(t, keep)
	if filepath.Dir(dir) != keep || !strings.HasPrefix(filepath.Base(dir), "TestTestDir-") {
		t.Fatalf("with keepIn %s: %s", keep, dir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("%s: %v", dir, err)
	}
}

func TestFreeUDP(t *testing.T) {
	addr := FreeUDP(t)
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("%s not free: %v", addr, err)
	}
	c.Close()
}

func TestLogTails(t *testing.T) {
	dir := t.TempDir()
	p := &Process{Name: "cell1", Proc: metacluster.Proc{LogPath: filepath.Join(dir, "cell1.log")}}
	if err := os.WriteFile(p.LogPath, []byte("the last line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &logTB{TB: t}
	LogTails(rec, nil, p)
	if len(rec.logs) != 1 || !strings.Contains(rec.logs[0], "cell1 log ("+p.LogPath+"), the end:\nthe last line") {
		t.Fatalf("logged %q", rec.logs)
	}
}

// logTB records what is logged.
type logTB struct {
	testing.TB
	logs []string
}

func (l *logTB) Logf(format string, args ...any) {
	l.logs = append(l.logs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func TestWaitFor(t *testing.T) {
	calls := 0
	WaitFor(t, time.Second, time.Millisecond, "three calls", func() (bool, string) {
		calls++
		return calls == 3, ""
	})
	if calls != 3 {
		t.Fatalf("%d calls", calls)
	}
	start := time.Now()
	msg := fatalOf(t, func(tb testing.TB) {
		WaitFor(tb, 20*time.Millisecond, 5*time.Millisecond, "never", func() (bool, string) { return false, "still not" })
	})
	if msg != "never: not within 20ms: still not" || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("after %v: %q", time.Since(start), msg)
	}
}

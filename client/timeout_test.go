package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"

	"github.com/meridian-mmo/meridian/client"
	"github.com/meridian-mmo/meridian/wire"
)

// silentServer is a KCP server on 127.0.0.1 that welcomes one session and then neither sends
// nor reads anything: its receive window fills and stays full.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := kcp.ListenWithOptions("127.0.0.1:0", nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *kcp.UDPSession, 1)
	go func() {
		s, err := l.AcceptKCP()
		if err != nil {
			return
		}
		s.SetNoDelay(1, 10, 2, 1)
		s.SetWindowSize(32, 32)
		if _, _, err := wire.NewFrameReader(s).Next(); err != nil { // the hello
			return
		}
		w := wire.Welcome{Version: wire.ProtocolVersion, Entity: 7, ServerTick: 1, TickHz: 20,
			WorldMax: [2]int32{wire.QuantisePos(64), wire.QuantisePos(64)}}
		_, _ = s.Write(w.AppendFrame(nil))
		accepted <- s
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case s := <-accepted:
			s.Close()
		default:
		}
	})
	return l.Addr().String()
}

// TestIdleTimeout: a server that goes silent ends the session with ErrTimeout (the watchdog,
// not a KCP read deadline).
func TestIdleTimeout(t *testing.T) {
	cfg := client.DefaultConfig(silentServer(t), []byte("player-1"))
	cfg.IdleTimeout = 300 * time.Millisecond
	c, err := client.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
	case <-time.After(time.Minute):
		t.Fatal("the session outlived a silent server by a minute")
	}
	if err := c.Err(); !errors.Is(err, client.ErrTimeout) || !strings.Contains(err.Error(), "nothing from the server") {
		t.Fatalf("ended with %v, want ErrTimeout for idleness", err)
	}
}

// TestStuckWriteTimeout: a server that stops draining the session fills the KCP window; the
// write that blocks on it fails with ErrTimeout and the session ends, instead of blocking the
// caller forever.
func TestStuckWriteTimeout(t *testing.T) {
	cfg := client.DefaultConfig(silentServer(t), []byte("player-1"))
	cfg.IdleTimeout = time.Hour // only the write may end it
	cfg.KCPWindow = 16
	c, err := client.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var werr error
	for i := 0; i < 100000 && werr == nil; i++ {
		_, werr = c.SendInput(1, 0, 0, 0)
	}
	if !errors.Is(werr, client.ErrTimeout) || !strings.Contains(werr.Error(), "could not be sent") {
		t.Fatalf("the write into a full window returned %v, want ErrTimeout", werr)
	}
	<-c.Done()
	if !errors.Is(c.Err(), client.ErrTimeout) {
		t.Fatalf("the session ended with %v, want ErrTimeout", c.Err())
	}
}

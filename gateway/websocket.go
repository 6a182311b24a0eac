package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// WebSocket transport for browser clients (docs/wire.md §2): binary messages whose payloads,
// concatenated, are the frame stream. The session code sees a net.Conn (websocket.NetConn), so
// a WebSocket session is exactly a KCP session to everything above the transport: same hello,
// limits, ids, queues and metrics (meridian_gateway_connections_total{transport="websocket"}
// tells them apart). The writer hands each batch of queued frames to one Write, i.e. one binary
// message holding whole frames.

const (
	// wsCloseGrace bounds the WebSocket closing handshake: a client that does not answer
	// the close frame in time has its TCP connection closed under it.
	wsCloseGrace = time.Second
	// wsHandshakeTimeout bounds reading the HTTP upgrade request.
	wsHandshakeTimeout = 5 * time.Second
)

// wsServer is the HTTP server whose handler upgrades to WebSocket sessions.
type wsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
	once sync.Once
}

func (w *wsServer) close() {
	w.once.Do(func() { _ = w.srv.Close() }) // closes the listener and connections not yet upgraded
}

func (w *wsServer) wait() { <-w.done }

// ListenWebSocket serves WebSocket clients on addr (TCP; path "/ws", and "/" too) until Close.
// It may be called once, before or after Serve; it returns the bound address.
func (l *Listener) ListenWebSocket(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: websocket listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", l.serveWebSocket)
	mux.HandleFunc("/", l.serveWebSocket)
	w := &wsServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: wsHandshakeTimeout,
			MaxHeaderBytes:    16 << 10,
			// The handler needs the TCP connection to bound the closing handshake (wsConn).
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, tcpConnKey{}, c)
			},
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		_ = ln.Close()
		return nil, errors.New("gateway: listener closed")
	case l.ws != nil:
		l.mu.Unlock()
		_ = ln.Close()
		return nil, errors.New("gateway: ListenWebSocket called twice")
	}
	l.ws = w
	l.mu.Unlock()
	go func() {
		defer close(w.done)
		if err := w.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("gateway: websocket server", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// WSAddr is the bound WebSocket address, or nil without ListenWebSocket.
func (l *Listener) WSAddr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ws == nil {
		return nil
	}
	return l.ws.ln.Addr()
}

func (l *Listener) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	l.wg.Add(1) // Close waits for this handler to hand the connection over
	l.mu.Unlock()
	defer l.wg.Done()

	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled, // snapshots are bit-packed deltas already
		OriginPatterns:  l.cfg.WSOriginPatterns,
	})
	if err != nil {
		// Accept has answered the request (426, 403, ...).
		l.metrics.SessionsRejected.WithLabelValues("bad_upgrade").Inc()
		return
	}
	raw, _ := r.Context().Value(tcpConnKey{}).(net.Conn)
	// The session outlives this handler: NetConn gets its own context, not the request's.
	ctx, cancel := context.WithCancel(context.Background())
	l.accept(transport{
		conn: &wsConn{Conn: websocket.NetConn(ctx, c, websocket.MessageBinary), ws: c, raw: raw, cancel: cancel},
		name: "websocket",
		ip:   hostOf(remoteAddr(r.RemoteAddr)),
	})
}

type tcpConnKey struct{}

// wsConn is websocket.NetConn with a bounded close: the closing handshake (a close frame each
// way) gets wsCloseGrace, then the TCP connection is closed under it.
type wsConn struct {
	net.Conn
	ws     *websocket.Conn
	raw    net.Conn           // the hijacked TCP connection (nil: unknown)
	cancel context.CancelFunc // cancels NetConn's context
	once   sync.Once
}

func (c *wsConn) Close() error {
	var err error
	c.once.Do(func() {
		t := time.AfterFunc(wsCloseGrace, func() {
			c.cancel()
			if c.raw != nil {
				_ = c.raw.Close()
			}
		})
		err = c.ws.Close(websocket.StatusNormalClosure, "")
		t.Stop()
		c.cancel()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// remoteAddr turns an http.Request's RemoteAddr into a net.Addr for hostOf.
type remoteAddr string

func (a remoteAddr) Network() string { return "tcp" }
func (a remoteAddr) String() string  { return string(a) }

package pgtest

import (
	"errors"
	"sync"
	"testing"
)

// Cluster is a PostgreSQL cluster of one test's own, which the test can stop and start again
// (to see what its code does while the database is down) without disturbing other tests. It
// is an ephemeral cluster like the shared one (same settings, a Unix socket in its own
// temporary directory, the server tied to the test binary), whatever MERIDIAN_TEST_PG_URL
// says: stopping a server one does not own is not an option. So it needs the binaries (see
// the package comment); without them, NewCluster skips the test, or fails it when PostgreSQL
// is required, as URL does.
//
// Its methods fail the test (t.Fatal) on error, so they must be called from the test's
// goroutine; they are safe to call concurrently with each other.
type Cluster struct {
	t  testing.TB
	mu sync.Mutex
	c  *cluster
}

// NewCluster initialises a new cluster and starts it; it is stopped and removed when the test
// ends. Pgtest.Main is not needed for it.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findBinDir()
	if err != nil {
		var u *unavailableError
		if errors.As(err, &u) {
			if required() {
				t.Fatalf("pgtest: PostgreSQL is required here (%s set) but unavailable for a cluster of the test's own: %s", requiredBy(), u.reason)
			}
			t.Skipf("pgtest: skipping, no PostgreSQL binaries for a cluster of the test's own: %s", u.reason)
		}
		t.Fatalf("pgtest: %v", err)
	}
	c, err := startCluster(bin)
	if err != nil {
		t.Fatalf("pgtest: starting a cluster: %v", err)
	}
	cl := &Cluster{t: t, c: c}
	t.Cleanup(func() {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: removing the cluster: %v", err)
		}
	})
	return cl
}

// URL returns a connection string (a postgres:// URL) for the cluster's "postgres" database,
// which the test has to itself. It stays valid across Stop and Start.
func (c *Cluster) URL() string { return c.c.adminURL }

// Stop shuts the server down cleanly (a fast shutdown: sessions are ended, a checkpoint is
// written) and waits for it to exit. Connections fail until Start. Stopping a stopped cluster
// does nothing.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.shutdown()
}

// Kill shuts the server down immediately (SIGQUIT, as pg_ctl stop -m immediate: no
// checkpoint; Start runs crash recovery) and waits for it to exit.
func (c *Cluster) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.kill()
}

// Start starts the stopped server again on the same data and socket and waits until it
// accepts connections. Starting a running cluster does nothing.
func (c *Cluster) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c.running() {
		return
	}
	if err := c.c.start(); err != nil {
		c.t.Fatalf("pgtest: restarting the cluster: %v", err)
	}
}

// Running reports whether the server process is alive.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.running()
}

package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCluster: a cluster of the test's own keeps its data across a clean stop, an immediate
// one and restarts, refuses connections while stopped, and is removed when the test ends.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	var dir string
	t.Run("run", func(t *testing.T) {
		c := NewCluster(t)
		dir = c.c.dir
		if !c.Running() {
			t.Fatal("a new cluster is not running")
		}
		conn := connect(t, c.URL())
		if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		for i, stop := range []func(){c.Stop, c.Kill} {
			stop()
			if c.Running() {
				t.Fatalf("stop %d: still running", i)
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if conn, err := pgx.Connect(cctx, c.URL()); err == nil {
				_ = conn.Close(ctx)
				t.Fatalf("stop %d: a connection succeeded", i)
			}
			cancel()
			stop() // a second stop does nothing
			c.Start()
			c.Start() // nor does a second start
			if !c.Running() {
				t.Fatalf("stop %d: not running after Start", i)
			}
			var n int
			if err := connect(t, c.URL()).QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil || n != 1 {
				t.Fatalf("stop %d: after the restart the table holds %d rows, %v", i, n, err)
			}
		}
	})
	if dir == "" {
		return
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory %s is still there after its test: %v", dir, err)
	}
}

package cellserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meridian-mmo/meridian/persistence"
)

// failSyncs fails every sync of the store's write-ahead log once switched on.
type failSyncs struct{ on atomic.Bool }

func (f *failSyncs) String() string { return "failSyncs" }

func (f *failSyncs) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return errorfs.ErrInjected
	}
	return nil
}

// TestClusterCheckpointsAndStopsOnFsyncFailure: a cell server in cluster mode writes checkpoints
// of its cell to its local store; when a sync of the store fails it calls OnFatal once and Run
// returns the error (ErrFsync): it never goes on with a store that may have lost a write.
func TestClusterCheckpointsAndStopsOnFsyncFailure(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := startMetaNode(t, log)

	inj := &failSyncs{}
	fatal := make(chan error, 4)
	cfg := DefaultClusterConfig(7, 1)
	cfg.Meta = []string{node.HTTPAddr()}
	cfg.Edge.Listen = ""
	cfg.CheckpointDir, cfg.CheckpointEvery = "ckpt", 2
	cfg.CheckpointFS = errorfs.Wrap(vfs.NewMem(), inj)
	cfg.OnFatal = func(err error) { fatal <- err }
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := NewCluster(ctx, cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	eventually(t, 10*time.Second, "checkpoints of the server's cell written", func() bool {
		return testutil.ToFloat64(c.ckpt.met.results.WithLabelValues("written")) >= 3
	})
	inj.on.Store(true)
	select {
	case err := <-fatal:
		if !errors.Is(err, persistence.ErrFsync) {
			t.Fatalf("OnFatal got %v, want ErrFsync", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed sync did not reach OnFatal")
	}
	select {
	case err := <-done:
		if !errors.Is(err, persistence.ErrFsync) {
			t.Fatalf("Run returned %v, want ErrFsync", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after the store failed")
	}
	if n := len(fatal); n != 0 {
		t.Fatalf("OnFatal called %d more times", n)
	}
}

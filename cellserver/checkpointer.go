package cellserver

import (
	"context"
	"errors"
	"github.com/cockroachdb/pebble/v2/vfs"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mmo/meridian/internal/promutil"
	"github.com/meridian-mmo/meridian/persistence"
	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/wire"
)

// checkpointer is the Cluster's I/O edge to the local Pebble store (DESIGN.md §5): every
// ClusterConfig.CheckpointEvery ticks the tick goroutine hands it the Member's checkpoints of
// the cells it owns (Member.Checkpoints), and its own goroutine writes each cell as one synced
// batch (persistence.Store.WriteCheckpoint: epoch-fenced, never per entity, never without the
// WAL). The tick never waits for the disk: when the previous round is still being written, a
// round is skipped (counted). A failed fsync poisons the Store, which calls the Cluster's
// fatal handler: the process must stop (the Store never retries).
type checkpointer struct {
	store *persistence.Store
	log   *slog.Logger
	q     chan []CellCheckpoint
	met   *checkpointMetrics
}

type checkpointMetrics struct {
	seconds  prometheus.Histogram
	entities prometheus.Counter
	results  *prometheus.CounterVec // result
	restored prometheus.Counter
}

func newCheckpointMetrics(reg prometheus.Registerer) *checkpointMetrics {
	return &checkpointMetrics{
		seconds: promutil.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_checkpoint_seconds", Help: "Time to write one cell's checkpoint to the local store (one synced batch).",
			Buckets: []float64{.0005, .001, .002, .004, .006, .008, .010, .015, .025, .050, .100, .250}})),
		entities: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_checkpoint_entities_total", Help: "Entities written in cell checkpoints."})),
		results: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_checkpoints_total",
			Help: "Cell checkpoints, by result: written; stale (a newer epoch is stored: the cell moved on); skipped (the previous round was still being written); failed."},
			[]string{"result"})),
		restored: promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_checkpoint_restored_entities_total", Help: "Entities brought back from this server's checkpoints at start."})),
	}
}

// openCheckpointer opens the store in dir; fatal is called once if a sync fails.
func openCheckpointer(dir string, fs vfs.FS, reg prometheus.Registerer, log *slog.Logger, fatal func(error)) (*checkpointer, error) {
	opts := persistence.DefaultStoreOptions()
	opts.FS = fs
	opts.Logger = log
	opts.OnFatal = fatal
	st, err := persistence.OpenStore(dir, opts)
	if err != nil {
		return nil, err
	}
	return &checkpointer{store: st, log: log, q: make(chan []CellCheckpoint, 1), met: newCheckpointMetrics(reg)}, nil
}

// restore brings back, before the first tick, the entities of every cell the map still gives
// this server at the epoch its checkpoint was written at (a restart within the lease: the cells
// were not given away). A checkpoint of an older epoch is ignored (the cell changed hands).
//
// fence (nil: none) filters the records of all the checkpoints at once (one question to
// PostgreSQL, however many cells) before they are restored.
func (cp *checkpointer) restore(m *Member, mp *raftmeta.Map, self raftmeta.ServerID, t wire.Tick, fence func([]wire.EntityRecord) []wire.EntityRecord) int {
	type found struct {
		cell  raftmeta.Cell
		saved persistence.Checkpoint
	}
	var cps []found
	var all []wire.EntityRecord
	for _, c := range mp.Cells {
		if c.Owner != self {
			continue
		}
		saved, ok, err := cp.store.LoadCheckpoint(uint64(c.ID))
		switch {
		case err != nil:
			cp.log.Error("checkpoint: load failed", "cell", c.ID, "err", err)
			continue
		case !ok || saved.Epoch != uint64(c.Epoch):
			continue
		}
		cps = append(cps, found{c, saved})
		all = append(all, saved.Entities...)
	}
	if fence != nil && len(all) > 0 {
		kept := map[wire.EntityID]bool{}
		for _, r := range fence(all) {
			kept[r.ID] = true
		}
		for i := range cps {
			cps[i].saved.Entities = slices.DeleteFunc(cps[i].saved.Entities, func(r wire.EntityRecord) bool { return !kept[r.ID] })
		}
	}
	n := 0
	for _, f := range cps {
		k := m.Restore(CellCheckpoint{Cell: f.cell.ID, Epoch: f.cell.Epoch, Tick: wire.Tick(f.saved.Tick), Entities: f.saved.Entities}, t)
		cp.log.Info("checkpoint: restored a cell", "cell", f.cell.ID, "epoch", f.cell.Epoch, "tick", f.saved.Tick, "entities", k)
		n += k
	}
	cp.met.restored.Add(float64(n))
	return n
}

// offer hands a round of checkpoints to the writer, or skips it if the writer is busy.
func (cp *checkpointer) offer(round []CellCheckpoint) {
	if len(round) == 0 {
		return
	}
	select {
	case cp.q <- round:
	default:
		cp.met.results.WithLabelValues("skipped").Add(float64(len(round)))
	}
}

// run writes the rounds until ctx ends.
func (cp *checkpointer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case round := <-cp.q:
			for _, c := range round {
				start := time.Now()
				err := cp.store.WriteCheckpoint(persistence.Checkpoint{Cell: uint64(c.Cell), Epoch: uint64(c.Epoch), Tick: uint32(c.Tick), Entities: c.Entities})
				switch {
				case err == nil:
					cp.met.seconds.Observe(time.Since(start).Seconds())
					cp.met.entities.Add(float64(len(c.Entities)))
					cp.met.results.WithLabelValues("written").Inc()
				case errors.Is(err, persistence.ErrStaleEpoch):
					cp.met.results.WithLabelValues("stale").Inc()
				case errors.Is(err, persistence.ErrFsync):
					cp.met.results.WithLabelValues("failed").Inc()
					return // the Store called the fatal handler; nothing more can be written
				default:
					cp.met.results.WithLabelValues("failed").Inc()
					cp.log.Error("checkpoint: write failed", "cell", c.Cell, "epoch", c.Epoch, "err", err)
				}
			}
		}
	}
}

func (cp *checkpointer) close() error { return cp.store.Close() }

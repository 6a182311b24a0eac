package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/meridian-mmo/meridian/partitioner"
	"github.com/meridian-mmo/meridian/raftmeta"
)

// runMeta runs one metadata (Raft) node: `meridian meta --id N --raft-addr H:P --http-addr H:P
// --data DIR [--bootstrap | --join H:P]`. The HTTP API (and /metrics, unless --metrics-addr
// moves it) is served on --http-addr.
func runMeta(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian meta", flag.ContinueOnError)
	d := raftmeta.DefaultConfig()
	var (
		cfg      = d
		world    float64
		metrics  string
		logLevel string
	)
	fs.Uint64Var(&cfg.ID, "id", 0, "node id (≥ 1, unique in the cluster, never reused)")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7300", "TCP address for Raft traffic between nodes")
	fs.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "Raft address the other nodes dial (default: --raft-addr)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8300", "TCP address of the HTTP API (and /metrics)")
	fs.StringVar(&cfg.HTTPAdvertise, "http-advertise", "", "HTTP address the other nodes forward to (default: --http-addr)")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory: Raft log, snapshots, node address table (required)")
	fs.BoolVar(&cfg.Bootstrap, "bootstrap", false, "start a new one-node cluster if --data holds no state (the first node only)")
	fs.StringVar(&cfg.Join, "join", "", "HTTP address of any node of the cluster to join if --data holds no state")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", d.JoinTimeout, "give up joining after this long")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", d.HeartbeatTimeout, "Raft heartbeat timeout (a follower without contact this long starts an election)")
	fs.DurationVar(&cfg.ElectionTimeout, "election-timeout", d.ElectionTimeout, "Raft election timeout (≥ --heartbeat-timeout)")
	fs.DurationVar(&cfg.LeaderLeaseTimeout, "leader-lease-timeout", d.LeaderLeaseTimeout, "a leader without quorum contact this long steps down (≤ --heartbeat-timeout)")
	fs.DurationVar(&cfg.CommitTimeout, "commit-timeout", d.CommitTimeout, "longest an idle leader waits before telling followers the commit index")
	fs.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", d.SnapshotInterval, "how often Raft checks whether to snapshot")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", d.SnapshotThreshold, "snapshot after this many new log entries")
	fs.Uint64Var(&cfg.TrailingLogs, "trailing-logs", d.TrailingLogs, "log entries kept after a snapshot")
	fs.DurationVar(&cfg.ApplyTimeout, "apply-timeout", d.ApplyTimeout, "longest a write waits to commit")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", d.LeaseTTL, "cell server lease granted by a register or heartbeat that names none")
	fs.DurationVar(&cfg.DeadMargin, "dead-margin", d.DeadMargin, "a cell server is marked dead this long after its lease ends")
	fs.DurationVar(&cfg.ReaperInterval, "reaper-interval", d.ReaperInterval, "how often the leader looks for lapsed leases")
	fs.Float64Var(&world, "world", d.World.Max[0]-d.World.Min[0], "side of the square world, metres (used once, when the first leader creates the map)")
	fs.Float64Var(&cfg.MinCellSize, "min-cell-size", d.MinCellSize, "no cell may be narrower, metres (used once, with --world)")
	pc := partitioner.DefaultConfig()
	partition := true
	fs.BoolVar(&partition, "partitioner", true, "run the load-driven partitioner on the leader (false: the map changes only by admin commands)")
	fs.DurationVar(&cfg.PlanInterval, "plan-interval", d.PlanInterval, "how often the leader's partitioner runs")
	fs.DurationVar(&cfg.ChangeTimeout, "change-timeout", d.ChangeTimeout, "a migration not complete after this long is aborted")
	fs.IntVar(&pc.SplitLoad, "split-load", pc.SplitLoad, "partitioner: split any cell with more entities than this")
	fs.Float64Var(&pc.SplitFraction, "split-fraction", pc.SplitFraction, "partitioner: split a cell holding more than this fraction of a server's fair share")
	fs.IntVar(&pc.MergeLoad, "merge-load", pc.MergeLoad, "partitioner: merge sibling cells holding fewer entities than this together")
	fs.Float64Var(&pc.Imbalance, "imbalance", pc.Imbalance, "partitioner: rebalance while the busiest server is this fraction above the mean")
	fs.IntVar(&pc.MinTransfer, "min-transfer", pc.MinTransfer, "partitioner: do not shift or move for fewer entities than this")
	fs.StringVar(&metrics, "metrics-addr", "", "separate HTTP address for /metrics (default: served on --http-addr)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(logLevel)
	if err != nil {
		return err
	}
	cfg.World = raftmeta.World{Min: [2]float64{0, 0}, Max: [2]float64{world, world}}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w (see meridian meta -h)", err)
	}
	if partition {
		planner, err := partitioner.New(pc)
		if err != nil {
			return fmt.Errorf("%w (see meridian meta -h)", err)
		}
		cfg.Planner = func(m raftmeta.Map) []raftmeta.Command {
			ops := planner.Plan(&m)
			for _, r := range planner.Reasons() {
				log.Info("partitioner", "op", r)
			}
			return ops
		}
	}
	reg := newRegistry()
	node, err := raftmeta.StartContext(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer node.Close()
	maddr, err := serveMetrics(ctx, metrics, reg, log)
	if err != nil {
		return err
	}
	if maddr == "" {
		maddr = node.HTTPAddr() + "/metrics"
	}
	log.Info("metadata node up", "id", cfg.ID, "raft", node.RaftAddr(), "http", node.HTTPAddr(), "metrics", maddr, "data", cfg.DataDir)
	<-ctx.Done()
	log.Info("shutting down")
	start := time.Now()
	err = node.Close()
	log.Info("metadata node stopped", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// Command meridian is the one binary of Meridian: each subcommand wires packages together
// (DESIGN.md §6). Nothing here is logic worth testing on its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

var commands = []command{
	{"cell", "run a cell server (standalone: it owns the whole world and serves clients over KCP)", runCell},
	{"gateway", "run a gateway: the client edge (KCP, WebSocket) routing each session to the cell server that owns its entity", runGateway},
	{"bots", "run a crowd of bots against a gateway (or a standalone cell server) over real KCP", runBots},
	{"demo", "one cell server and a crowd of bots in this process, with live figures", runDemo},
	{"sim", "a whole local cluster (3 meta, cell servers, a gateway) + bots + a scenario (hotspot, migration, ...) + a report", runSim},
	{"meta", "run a metadata (Raft) node: the replicated partition map and its HTTP API", runMeta},
	{"map", "show the partition map: ascii drawing, table, json or svg (--watch follows changes)", runMap},
	{"servers", "list the registered cell servers and their load", runServers},
	{"cells", "list the cells: bounds, owner, epoch, state, load", runCells},
	{"status", "show the metadata cluster's Raft members and leader", runStatus},
	{"split", "split a cell in two (admin)", runSplit},
	{"merge", "merge a cell with its sibling (admin)", runMerge},
	{"move", "give a cell to another server (admin)", runMove},
	{"drain", "move every cell off a server and stop giving it new ones (admin)", runDrain},
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: meridian <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'meridian <command> -h' for a command's flags. Every flag can also be set\nthrough the environment as MERIDIAN_<FLAG> (dashes become underscores).\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name == os.Args[1] {
			err := c.run(ctx, os.Args[2:])
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(2)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "meridian %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "meridian: unknown command %q\n\n", os.Args[1])
	usage()
	os.Exit(2)
}

// parseFlags parses args, then fills every flag not given on the command line from
// MERIDIAN_<NAME> in the environment.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "MERIDIAN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// newRegistry returns a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// route is an extra handler served beside /metrics.
type route struct {
	pattern string
	handler http.Handler
}

// serveMetrics serves /metrics (and extra routes) on addr until ctx ends ("" disables it).
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger, extra ...route) (string, error) {
	if addr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for _, r := range extra {
		mux.Handle(r.pattern, r.handler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return ln.Addr().String(), nil
}

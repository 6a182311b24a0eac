package main

// The admin commands (DESIGN.md §6): inspect the partition map and change it by hand through
// the metadata service's HTTP API. Rendering and the questions asked of a map before a change
// (which cells a merge joins, where a split cuts) live in raftmeta/mapview; this file only wires
// flags, the API client and the terminal together.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
	"github.com/meridian-mmo/meridian/raftmeta/mapview"
)

// defaultMeta is the metadata service's default HTTP address (meridian meta --http-addr).
const defaultMeta = "127.0.0.1:8300"

// watchWait is how long one blocking query of --watch waits for a newer map.
const watchWait = 30 * time.Second

// metaFlags are the flags every admin command shares.
type metaFlags struct {
	meta    string
	timeout time.Duration
}

func addMetaFlags(fs *flag.FlagSet, o *metaFlags) {
	fs.StringVar(&o.meta, "meta", defaultMeta, "metadata service HTTP addresses, comma-separated (any node: writes are forwarded to the leader)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up on a request after this long")
}

// client returns an API client for the --meta addresses.
func (o *metaFlags) client() (*raftmeta.Client, error) {
	addrs := splitAddrs(o.meta)
	if len(addrs) == 0 {
		return nil, errors.New("--meta: no address given")
	}
	return raftmeta.NewClient(addrs, nil), nil
}

// splitAddrs splits a comma-separated address list, dropping blanks.
func splitAddrs(list string) []string {
	var addrs []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// call runs one request under --timeout.
func (o *metaFlags) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return explain(f(ctx))
}

// explain turns an error a node answered into "what went wrong (code)", the code being the
// API's stable error code, so that an operator can tell "cell too small" from "not leader" at
// a glance. Other errors (no node reachable, timeouts) keep their text.
func explain(err error) error {
	if err == nil {
		return nil
	}
	var ae *raftmeta.APIError
	if errors.As(err, &ae) && ae.Code != "" {
		msg := strings.TrimPrefix(ae.Message, "raftmeta: ")
		switch ae.Code {
		case "stale_epoch":
			msg += "; the map changed since it was read: look again and retry"
		case "no_leader", "not_leader":
			msg += "; the cluster has no leader right now (an election, or too few nodes up): `meridian status` shows the members"
		}
		return fmt.Errorf("%s (%s)", msg, ae.Code)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "raftmeta: "))
}

// optFloat is a float flag that knows whether it was given.
type optFloat struct {
	v   float64
	set bool
}

func (f *optFloat) String() string {
	if !f.set {
		return ""
	}
	return strconv.FormatFloat(f.v, 'f', -1, 64)
}

func (f *optFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

// ---- meridian map ----

type mapFlags struct {
	metaFlags
	output   string
	watch    bool
	stale    bool
	out      string
	width    int
	height   int
	color    string
	plain    bool
	svgWidth int
}

func runMap(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian map", flag.ContinueOnError)
	var o mapFlags
	addMetaFlags(fs, &o.metaFlags)
	fs.StringVar(&o.output, "o", "ascii", "output: ascii (a drawing with a legend), table, json or svg")
	fs.BoolVar(&o.watch, "watch", false, "redraw on every change of the map (blocking queries); Ctrl-C stops")
	fs.BoolVar(&o.stale, "stale", false, "read from whichever node answers, even a follower that may lag (no leader needed)")
	fs.StringVar(&o.out, "out", "", "write to this file instead of standard output (with --watch: replaced on every change; json on stdout is one document per version)")
	fs.IntVar(&o.width, "width", 0, "ascii: width of the drawing in characters (0: the terminal's)")
	fs.IntVar(&o.height, "height", 0, "ascii: height of the whole output in lines (0: the terminal's)")
	fs.StringVar(&o.color, "color", "auto", "ascii: colour owners with ANSI codes: auto (on a terminal, unless NO_COLOR is set), always or never")
	fs.BoolVar(&o.plain, "plain", false, "ascii: draw borders with +-| instead of box-drawing characters")
	fs.IntVar(&o.svgWidth, "svg-width", 800, "svg: width of the picture in pixels")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	render, err := o.renderer()
	if err != nil {
		return err
	}
	if o.watch && o.output == "svg" && o.out == "" {
		return errors.New("--watch with -o svg needs --out FILE (the file is rewritten on every change)")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	if !o.watch {
		m, err := getMap(ctx, &o.metaFlags, c, raftmeta.ReadOptions{Stale: o.stale})
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := render(&buf, *m); err != nil {
			return err
		}
		return o.emit(buf.Bytes())
	}
	return o.watchMap(ctx, c, render)
}

// renderer returns the function that renders a map in the chosen output format.
func (o *mapFlags) renderer() (func(io.Writer, raftmeta.Map) error, error) {
	switch o.output {
	case "table":
		return func(w io.Writer, m raftmeta.Map) error {
			if err := mapview.Summary(w, m); err != nil {
				return err
			}
			fmt.Fprintln(w)
			if err := mapview.Table(w, m); err != nil {
				return err
			}
			fmt.Fprintln(w)
			return mapview.Servers(w, m)
		}, nil
	case "json":
		return writeJSON, nil
	case "svg":
		return func(w io.Writer, m raftmeta.Map) error {
			return mapview.SVG(w, m, mapview.SVGOptions{Width: o.svgWidth})
		}, nil
	case "ascii":
		color, err := o.useColor()
		if err != nil {
			return nil, err
		}
		return func(w io.Writer, m raftmeta.Map) error {
			cols, rows := o.width, o.height
			if cols <= 0 || rows <= 0 {
				tc, tr := terminalSize()
				cols, rows = orDefault(cols, tc), orDefault(rows, tr)
			}
			// Header, legend (a line per server and up to three more), --watch's status line.
			rows -= 5 + len(m.Servers)
			return mapview.ASCII(w, m, mapview.ASCIIOptions{
				Width: cols, Height: max(rows, 8), Color: color, Plain: o.plain, IDs: true,
			})
		}, nil
	}
	return nil, fmt.Errorf("-o %q: want table, json, ascii or svg", o.output)
}

// orDefault returns v, or def when v is not positive.
func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func (o *mapFlags) useColor() (bool, error) {
	switch o.color {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		_, noColor := os.LookupEnv("NO_COLOR")
		return o.out == "" && !noColor && isTerminal(os.Stdout), nil
	}
	return false, fmt.Errorf("--color %q: want auto, always or never", o.color)
}

// emit writes one rendering to --out (atomically: readers never see half a file) or stdout.
func (o *mapFlags) emit(b []byte) error {
	if o.out == "" {
		_, err := os.Stdout.Write(b)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(o.out), "."+filepath.Base(o.out)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), o.out)
}

// watchMap follows the map with blocking queries and renders every new version. Errors (a
// leader election, a node restarting) are reported and retried; only Ctrl-C ends it.
func (o *mapFlags) watchMap(ctx context.Context, c *raftmeta.Client, render func(io.Writer, raftmeta.Map) error) error {
	clear := o.out == "" && (o.output == "ascii" || o.output == "table")
	var last uint64
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		// The blocking query outlives --timeout: give it the wait on top.
		qctx, cancel := context.WithTimeout(ctx, watchWait+o.timeout)
		m, err := c.Map(qctx, raftmeta.ReadOptions{Stale: o.stale, Index: last, Wait: watchWait})
		cancel()
		err = explain(err)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "meridian map: %v; retrying in %v\n", err, backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		if last != 0 && m.Version <= last {
			continue // the wait ran out with no change
		}
		last = m.Version
		var buf bytes.Buffer
		if clear {
			buf.WriteString("\x1b[H\x1b[2J")
		}
		if err := render(&buf, *m); err != nil {
			return err
		}
		if clear {
			fmt.Fprintf(&buf, "watching %s: map version %d at %s; Ctrl-C stops\n", o.meta, m.Version, time.Now().Format("15:04:05"))
		}
		if err := o.emit(buf.Bytes()); err != nil {
			return err
		}
		if o.out != "" {
			fmt.Fprintf(os.Stderr, "%s: map version %d\n", o.out, m.Version)
		}
	}
	return nil
}

// writeJSON writes v as indented JSON.
func writeJSON[T any](w io.Writer, v T) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// isTerminal reports whether f is a character device (a terminal, not a file or a pipe).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// terminalSize is the terminal's size in characters: $COLUMNS and $LINES, else what `stty size`
// says of standard input, else 80 × 24.
func terminalSize() (cols, rows int) {
	cols, _ = strconv.Atoi(os.Getenv("COLUMNS"))
	rows, _ = strconv.Atoi(os.Getenv("LINES"))
	if cols > 0 && rows > 0 {
		return cols, rows
	}
	cmd := exec.Command("stty", "size")
	cmd.Stdin = os.Stdin
	if out, err := cmd.Output(); err == nil {
		var r, c int
		if _, err := fmt.Sscan(string(out), &r, &c); err == nil && r > 0 && c > 0 {
			return c, r
		}
	}
	return 80, 24
}

// ---- meridian servers, cells ----

// runList is `meridian servers` and `meridian cells`: a table (or JSON) of one part of the map.
// The table comes from the whole map (a cell's row names its owner's state, a server's row
// counts its cells); the JSON is the API's own answer for that part (GET /v1/cells, /v1/servers).
func runList(name string, table func(io.Writer, raftmeta.Map) error,
	part func(context.Context, *raftmeta.Client, raftmeta.ReadOptions) (any, error)) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		fs := flag.NewFlagSet("meridian "+name, flag.ContinueOnError)
		var o metaFlags
		addMetaFlags(fs, &o)
		output := fs.String("o", "table", "output: table or json")
		stale := fs.Bool("stale", false, "read from whichever node answers, even a follower that may lag")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if *output != "table" && *output != "json" {
			return fmt.Errorf("-o %q: want table or json", *output)
		}
		c, err := o.client()
		if err != nil {
			return err
		}
		ro := raftmeta.ReadOptions{Stale: *stale}
		if *output == "json" {
			var v any
			if err := o.call(ctx, func(ctx context.Context) (err error) {
				v, err = part(ctx, c, ro)
				return err
			}); err != nil {
				return err
			}
			return writeJSON(os.Stdout, v)
		}
		m, err := getMap(ctx, &o, c, ro)
		if err != nil {
			return err
		}
		return table(os.Stdout, *m)
	}
}

var (
	runServers = runList("servers", mapview.Servers, func(ctx context.Context, c *raftmeta.Client, o raftmeta.ReadOptions) (any, error) {
		return c.Servers(ctx, o)
	})
	runCells = runList("cells", mapview.Table, func(ctx context.Context, c *raftmeta.Client, o raftmeta.ReadOptions) (any, error) {
		return c.Cells(ctx, o)
	})
)

// ---- meridian status ----

func runStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian status", flag.ContinueOnError)
	var o metaFlags
	addMetaFlags(fs, &o)
	output := fs.String("o", "text", "output: text or json (the answering node's status)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("-o %q: want text or json", *output)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	var st *raftmeta.Status
	if err := o.call(ctx, func(ctx context.Context) (err error) {
		st, err = c.Status(ctx)
		return err
	}); err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(os.Stdout, st)
	}
	// Ask every member for its own view, to show who is up and how far each has applied.
	views := map[uint64]*raftmeta.Status{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range st.Peers {
		if p.HTTPAddr == "" {
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, min(o.timeout, 2*time.Second))
			defer cancel()
			if v, err := c.NodeStatus(pctx, p.HTTPAddr); err == nil {
				mu.Lock()
				views[p.ID] = v
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return mapview.Status(os.Stdout, *st, views)
}

// ---- meridian split, merge, move, drain ----

// getMap reads the map under --timeout.
func getMap(ctx context.Context, o *metaFlags, c *raftmeta.Client, ro raftmeta.ReadOptions) (*raftmeta.Map, error) {
	var m *raftmeta.Map
	err := o.call(ctx, func(ctx context.Context) (err error) {
		m, err = c.Map(ctx, ro)
		return err
	})
	return m, err
}

// readMap reads the current map linearizably: a change must start from the latest epochs.
func readMap(ctx context.Context, o *metaFlags, c *raftmeta.Client) (raftmeta.Map, error) {
	m, err := getMap(ctx, o, c, raftmeta.ReadOptions{})
	if err != nil {
		return raftmeta.Map{}, err
	}
	return *m, nil
}

// cellOf returns cell id of m, or an error naming the map version.
func cellOf(m raftmeta.Map, id uint64) (raftmeta.Cell, error) {
	c, ok := mapview.FindCell(m, raftmeta.CellID(id))
	if !ok {
		return c, fmt.Errorf("cell %d is not in the map (version %d); `meridian cells` lists them (unknown_cell)", id, m.Version)
	}
	return c, nil
}

func runSplit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian split", flag.ContinueOnError)
	var o metaFlags
	addMetaFlags(fs, &o)
	cell := fs.Uint64("cell", 0, "the cell to split (required)")
	axis := fs.String("axis", "", "x or z (default: the cell's longer side, x when square)")
	var at optFloat
	fs.Var(&at, "at", "where to cut on the axis, in metres (default: the cell's midpoint; the partitioner, unlike this command, cuts at the median of the cell's entities)")
	owner := fs.Uint64("owner", 0, "server to own the new high half (default: the cell's owner)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cell == 0 {
		return errors.New("--cell: required")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	m, err := readMap(ctx, &o, c)
	if err != nil {
		return err
	}
	cl, err := cellOf(m, *cell)
	if err != nil {
		return err
	}
	ax, mid, err := mapview.SplitPoint(cl, raftmeta.Axis(*axis))
	if err != nil {
		return fmt.Errorf("--axis: %w", err)
	}
	if at.set {
		mid = at.v
	}
	var res *raftmeta.WriteResult
	err = o.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.Split(ctx, raftmeta.Split{Cell: cl.ID, Epoch: cl.Epoch, Axis: ax, At: mid, NewOwner: raftmeta.ServerID(*owner)})
		return err
	})
	if err != nil {
		return err
	}
	if res.Change != 0 {
		fmt.Printf("split of cell %d at %s=%s started as change %d: the high side moves to server %d once it has staged its entities (map version %d)\n",
			cl.ID, ax, strconv.FormatFloat(mid, 'f', -1, 64), res.Change, *owner, res.Version)
		return nil
	}
	high := "a new cell"
	if len(res.Cells) > 0 {
		high = fmt.Sprintf("cell %d", res.Cells[0])
	}
	fmt.Printf("split cell %d at %s=%s: it keeps the low side, %s the high side (map version %d)\n",
		cl.ID, ax, strconv.FormatFloat(mid, 'f', -1, 64), high, res.Version)
	return nil
}

func runMerge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian merge", flag.ContinueOnError)
	var o metaFlags
	addMetaFlags(fs, &o)
	cell := fs.Uint64("cell", 0, "a cell to merge with its sibling in the k-d tree (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cell == 0 {
		return errors.New("--cell: required")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	m, err := readMap(ctx, &o, c)
	if err != nil {
		return err
	}
	if _, err := cellOf(m, *cell); err != nil {
		return err
	}
	low, high, err := mapview.MergePair(m, raftmeta.CellID(*cell))
	if err != nil {
		return err
	}
	var res *raftmeta.WriteResult
	if err := o.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.Merge(ctx, raftmeta.Merge{Low: low.ID, LowEpoch: low.Epoch, High: high.ID, HighEpoch: high.Epoch})
		return err
	}); err != nil {
		return err
	}
	if res.Change != 0 {
		fmt.Printf("merge of cells %d and %d started as change %d: cell %d's area moves to server %d once it has staged its entities (map version %d)\n",
			low.ID, high.ID, res.Change, high.ID, low.Owner, res.Version)
		return nil
	}
	fmt.Printf("merged cells %d and %d into cell %d (map version %d)\n", low.ID, high.ID, low.ID, res.Version)
	return nil
}

func runMove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian move", flag.ContinueOnError)
	var o metaFlags
	addMetaFlags(fs, &o)
	cell := fs.Uint64("cell", 0, "the cell to move (required)")
	to := fs.Uint64("to", 0, "the live server to give it to (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cell == 0 {
		return errors.New("--cell: required")
	}
	if *to == 0 {
		return errors.New("--to: required")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	m, err := readMap(ctx, &o, c)
	if err != nil {
		return err
	}
	cl, err := cellOf(m, *cell)
	if err != nil {
		return err
	}
	var res *raftmeta.WriteResult
	if err := o.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.Move(ctx, raftmeta.Move{Cell: cl.ID, Epoch: cl.Epoch, To: raftmeta.ServerID(*to)})
		return err
	}); err != nil {
		return err
	}
	if res.Change != 0 {
		fmt.Printf("move of cell %d from server %d to server %d started as change %d: it completes once server %d has staged its entities (map version %d)\n",
			cl.ID, cl.Owner, *to, res.Change, *to, res.Version)
		return nil
	}
	fmt.Printf("moved cell %d from server %d to server %d (map version %d)\n", cl.ID, cl.Owner, *to, res.Version)
	return nil
}

func runDrain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meridian drain", flag.ContinueOnError)
	var o metaFlags
	addMetaFlags(fs, &o)
	server := fs.Uint64("server", 0, "the server to drain: it takes no new cells and its cells move to other live servers (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *server == 0 {
		return errors.New("--server: required")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	var res *raftmeta.WriteResult
	if err := o.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.Drain(ctx, raftmeta.ServerID(*server))
		return err
	}); err != nil {
		return err
	}
	fmt.Printf("server %d is draining: it takes no new cells, and the leader moves its cells to other live servers by two-phase moves (map version %d)\n", *server, res.Version)
	return nil
}

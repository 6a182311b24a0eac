package datadriven

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Rewrite is the -rewrite flag: RunFile then rewrites each script with the actual outputs
// instead of comparing them (review every change before keeping it).
var Rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the data-driven test scripts (testdata/*.txt)")

// TestData is one command block of a script.
type TestData struct {
	Pos      string // file:line of the command
	Line     string // the command line as written
	Cmd      string // the command: the line's first word
	CmdArgs  []Arg  // the other words, in order
	Expected string // the lines between ---- and the blank line that ends the block
}

// Arg is one argument of a command: key=value, or a positional word (no '='), which has an
// empty Key and the word as Val.
type Arg struct {
	Key, Val string
}

// Args returns the command's arguments for reading by key; see NewArgs.
func (d *TestData) Args(t testing.TB) *Args { return NewArgs(t, d.Pos, d.CmdArgs) }

// block is a command (d != nil) or a run of lines kept verbatim (comments and blank lines).
type block struct {
	verbatim string
	d        *TestData
}

// parse splits a script into blocks. name prefixes the positions.
func parse(name, src string) ([]block, error) {
	lines := strings.Split(strings.TrimRight(src, "\n"), "\n")
	var blocks []block
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			blocks = append(blocks, block{verbatim: line + "\n"})
			continue
		}
		d := &TestData{Pos: fmt.Sprintf("%s:%d", name, i+1), Line: line}
		fields := strings.Fields(line)
		d.Cmd = fields[0]
		for _, w := range fields[1:] {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				k, v = "", w
			} else if k == "" {
				return nil, fmt.Errorf("%s: argument %q has no key", d.Pos, w)
			}
			d.CmdArgs = append(d.CmdArgs, Arg{Key: k, Val: v})
		}
		i++
		if i >= len(lines) || lines[i] != "----" {
			return nil, fmt.Errorf("%s: %q must be followed by ----", d.Pos, line)
		}
		var want []string
		for i+1 < len(lines) && lines[i+1] != "" {
			i++
			want = append(want, lines[i])
		}
		if i+1 < len(lines) {
			i++ // the blank line that ends the block
		}
		d.Expected = strings.Join(want, "\n")
		blocks = append(blocks, block{d: d})
	}
	return blocks, nil
}

// RunFile runs every command block of the script at path in order; f returns the actual
// output of a command (without a trailing newline; it must not contain a blank line, which
// would end the block). An output that differs from the expected one is an error, and the
// script goes on. With -rewrite the outputs are not compared: the file is rewritten with them,
// its comments, blank lines and command lines as they were.
func RunFile(t *testing.T, path string, f func(t *testing.T, d *TestData) string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parse(path, string(src))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, b := range blocks {
		if b.d == nil {
			out.WriteString(b.verbatim)
			continue
		}
		d := b.d
		got := f(t, d)
		if !*Rewrite && got != d.Expected {
			t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", d.Pos, d.Line, got, d.Expected)
		}
		out.WriteString(d.Line + "\n----\n" + got + "\n\n")
	}
	if *Rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Walk runs f in a subtest for every file matching glob (named after the file, without its
// extension), so that each script starts from fresh state: f typically builds its harness
// and calls RunFile. No match is an error.
func Walk(t *testing.T, glob string, f func(t *testing.T, path string)) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s", glob)
	}
	for _, file := range files {
		base := filepath.Base(file)
		t.Run(strings.TrimSuffix(base, filepath.Ext(base)), func(t *testing.T) { f(t, file) })
	}
}

package datadriven

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const script = `# a comment
  # an indented comment

echo a=1 b=x
----
a=1 b=x

sum 1 2 3
----
6
# not a comment: part of the expected output

echo
----
`

// echo renders a command's arguments; sum adds its positional ones.
func echo(t *testing.T, d *TestData) string {
	switch d.Cmd {
	case "echo":
		var w []string
		for _, a := range d.CmdArgs {
			w = append(w, a.Key+"="+a.Val)
		}
		return strings.Join(w, " ")
	case "sum":
		p := NewArgs(t, d.Pos, nil)
		n := 0
		for _, a := range d.CmdArgs {
			n += p.ParseInt(a.Val)
		}
		return strconv.Itoa(n)
	}
	t.Fatalf("%s: unknown command %s", d.Pos, d.Cmd)
	return ""
}

func TestParse(t *testing.T) {
	blocks, err := parse("s.txt", script)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []TestData
	var verbatim string
	for _, b := range blocks {
		if b.d != nil {
			cmds = append(cmds, *b.d)
		} else {
			verbatim += b.verbatim
		}
	}
	want := []TestData{
		{Pos: "s.txt:4", Line: "echo a=1 b=x", Cmd: "echo", CmdArgs: []Arg{{"a", "1"}, {"b", "x"}}, Expected: "a=1 b=x"},
		{Pos: "s.txt:8", Line: "sum 1 2 3", Cmd: "sum", CmdArgs: []Arg{{"", "1"}, {"", "2"}, {"", "3"}},
			Expected: "6\n# not a comment: part of the expected output"},
		{Pos: "s.txt:13", Line: "echo", Cmd: "echo"},
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Errorf("commands\n%+v\nwant\n%+v", cmds, want)
	}
	if verbatim != "# a comment\n  # an indented comment\n\n" {
		t.Errorf("verbatim lines %q", verbatim)
	}
	for _, bad := range []string{"cmd\nexpected", "cmd", "cmd =v\n----\n"} {
		if _, err := parse("bad.txt", bad); err == nil {
			t.Errorf("parse(%q) did not fail", bad)
		}
	}
}

func withRewrite(t *testing.T, on bool) {
	old := *Rewrite
	*Rewrite = on
	t.Cleanup(func() { *Rewrite = old })
}

func TestRunFileRewrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.txt")
	// A missing and a wrong expected output, a stale one for the last command and extra blank
	// lines at the end; -rewrite fixes them, keeping comments and blank lines.
	const stale = `# a comment
  # an indented comment

echo a=1 b=x
----

sum 1 2 3
----
7
# not a comment: part of the expected output

echo
----
old


`
	if err := os.WriteFile(path, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	withRewrite(t, true)
	RunFile(t, path, echo)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The "# not a comment" line was expected output of sum: rewriting replaces it.
	want := strings.Replace(script, "\n# not a comment: part of the expected output\n", "\n", 1)
	if string(got) != want {
		t.Fatalf("rewritten\n%s\nwant\n%s", got, want)
	}

	// The rewritten file passes, and rewriting it again changes nothing.
	*Rewrite = false
	RunFile(t, path, echo)
	*Rewrite = true
	RunFile(t, path, echo)
	again, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, got) {
		t.Fatalf("second rewrite changed the file:\n%s", again)
	}
}

func TestWalk(t *testing.T) {
	withRewrite(t, false)
	dir := t.TempDir()
	for _, name := range []string{"a.txt", "b.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("echo file="+name+"\n----\nfile="+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var ran []string
	Walk(t, filepath.Join(dir, "*.txt"), func(t *testing.T, path string) {
		ran = append(ran, t.Name())
		RunFile(t, path, echo)
	})
	if want := []string{"TestWalk/a", "TestWalk/b"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("subtests %v, want %v", ran, want)
	}
}

func TestArgs(t *testing.T) {
	p := NewArgs(t, "s.txt:1", []Arg{{"id", "7"}, {"x", "1.5"}, {"n", "3"}, {"u", "9"}, {"s", "a"}, {"k", "v"}})
	p.Alias("id", "server")
	if !p.Has("server") || p.Has("id") {
		t.Error("alias id → server")
	}
	if got := p.Int("server"); got != 7 {
		t.Errorf("server %d", got)
	}
	if p.Float("x") != 1.5 || p.Int("n") != 3 || p.Uint("u") != 9 || p.Str("s") != "a" {
		t.Error("typed reads")
	}
	if v, ok := p.Lookup("missing"); ok || v != "" {
		t.Error("Lookup of a missing argument")
	}
	if p.Opt("missing", "def") != "def" {
		t.Error("Opt default")
	}
	if rest := p.Rest(); !reflect.DeepEqual(rest, []Arg{{"k", "v"}}) {
		t.Errorf("Rest %v", rest)
	}
	p.Done()
}

// TestOnlyTestsImport checks that no production (non-test) file of the module imports this
// package.
func TestOnlyTestsImport(t *testing.T) {
	const self = `"github.com/meridian-mmo/meridian/internal/datadriven"`
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(src, []byte(self)) {
			t.Errorf("%s imports internal/datadriven, which is for tests only", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

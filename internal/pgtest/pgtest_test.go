package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// TestURL: each call gives a separate, working database, dropped when its test ends.
func TestURL(t *testing.T) {
	ctx := context.Background()
	var inner string
	t.Run("sub", func(t *testing.T) {
		a, b := URL(t), URL(t)
		if a == b {
			t.Fatalf("two calls gave the same database: %s", a)
		}
		ca, cb := connect(t, a), connect(t, b)
		if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("a table created in one test database is visible in the other")
		}
		if err := ca.QueryRow(ctx, "SELECT current_database()").Scan(&inner); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(inner, "meridiantest_testurl_sub_") {
			t.Errorf("database name %q does not name the test", inner)
		}
		if os.Getenv(EnvURL) == "" {
			var fsync string
			if err := ca.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
				t.Fatal(err)
			}
			if fsync != "off" {
				t.Errorf("the ephemeral cluster runs with fsync=%s, want off", fsync)
			}
		}
		// Left open on purpose: the drop must still succeed (WITH (FORCE)).
		leak, err := pgx.Connect(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		_ = leak
	})
	if t.Failed() || inner == "" {
		return
	}
	admin, err := server()
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, admin)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", inner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", inner)
	}
}

// TestURLParallel: parallel tests asking at once (the first ones while the cluster starts) each
// get a working database.
func TestURLParallel(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			var one int
			if err := connect(t, URL(t)).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Errorf("SELECT 1: %d, %v", one, err)
			}
		})
	}
}

func TestDBName(t *testing.T) {
	long := strings.Repeat("TestSomething/With Spaces-and-Ünïcode", 5)
	a, b := dbName(long), dbName(long)
	if a == b {
		t.Errorf("dbName gave %s twice", a)
	}
	for _, n := range []string{a, b, dbName("")} {
		if len(n) > 63 {
			t.Errorf("%s is %d bytes, over PostgreSQL's 63", n, len(n))
		}
		for _, r := range n {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
				t.Errorf("%s holds %q", n, r)
			}
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:p@h:5/postgres?sslmode=disable", "postgres://u:p@h:5/db1?sslmode=disable"},
		{"postgres://u@/postgres?host=%2Ftmp%2Fs&dbname=other", "postgres://u@/db1?host=%2Ftmp%2Fs"},
		{"postgresql://h", "postgresql://h/db1"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=db1"},
	} {
		got, err := withDatabase(c.in, "db1")
		if err != nil || got != c.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Errorf("%q: %v", got, err)
		} else if cfg.Database != "db1" {
			t.Errorf("%q connects to database %q", got, cfg.Database)
		}
	}
}

func TestRequired(t *testing.T) {
	for _, c := range []struct {
		require, ci string
		want        bool
	}{
		{"", "", false},
		{"1", "", true},
		{"yes", "", true},
		{"", "true", true},
		{"0", "true", false},
		{"false", "1", false},
	} {
		t.Setenv(EnvRequire, c.require)
		t.Setenv("CI", c.ci)
		if got := required(); got != c.want {
			t.Errorf("%s=%q CI=%q: required() = %v, want %v", EnvRequire, c.require, c.ci, got, c.want)
		}
	}
}

const helperEnv = "MERIDIAN_PGTEST_HELPER"

// TestHelperNoPostgreSQL is run by TestNoPostgreSQL in a child process with no PostgreSQL to
// find; on its own it does nothing.
func TestHelperNoPostgreSQL(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestNoPostgreSQL")
	}
	URL(t)
	t.Log("URL returned") // not reached
}

// TestNoPostgreSQL: with neither a server URL nor the binaries, a test is skipped, or fails when
// PostgreSQL is required.
func TestNoPostgreSQL(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		name string
		env  []string
		fail bool
		want string
	}{
		{"skip", nil, false, "--- SKIP: TestHelperNoPostgreSQL"},
		{"require", []string{EnvRequire + "=1"}, true, "PostgreSQL is required here (" + EnvRequire + "=1 set) but unavailable"},
		{"ci", []string{"CI=true"}, true, "PostgreSQL is required here (CI=true set) but unavailable"},
		{"ci-opt-out", []string{"CI=true", EnvRequire + "=0"}, false, "--- SKIP: TestHelperNoPostgreSQL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNoPostgreSQL$", "-test.v", "-test.count=1")
			for _, kv := range os.Environ() {
				k, _, _ := strings.Cut(kv, "=")
				switch k {
				case EnvURL, EnvRequire, EnvBin, "CI", "PATH":
					continue
				}
				cmd.Env = append(cmd.Env, kv)
			}
			cmd.Env = append(cmd.Env, helperEnv+"=1", "PATH="+empty, EnvBin+"="+empty)
			cmd.Env = append(cmd.Env, c.env...)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != c.fail {
				t.Errorf("the child failed: %v, want %v; output:\n%s", failed, c.fail, out)
			}
			if !bytes.Contains(out, []byte(c.want)) {
				t.Errorf("the child's output lacks %q:\n%s", c.want, out)
			}
		})
	}
}

// TestOnlyTestsImport checks that no production (non-test) file of the module imports this
// package; sim-tests/ may, as nothing imports it.
func TestOnlyTestsImport(t *testing.T) {
	const self = `"github.com/meridian-mmo/meridian/internal/pgtest"`
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			n := d.Name()
			if path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor" || n == "sim-tests") {
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
			t.Errorf("%s imports internal/pgtest, which is for tests only", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

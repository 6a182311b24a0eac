package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The environment variables pgtest reads (see the package comment).
const (
	EnvURL     = "MERIDIAN_TEST_PG_URL" // an existing server to create the test databases in
	EnvRequire = "MERIDIAN_REQUIRE_PG"  // fail rather than skip when no PostgreSQL is available
	EnvBin     = "MERIDIAN_TEST_PG_BIN" // the only directory to look for initdb and postgres in
)

// adminTimeout bounds connecting to the server and creating or dropping a database.
const adminTimeout = 30 * time.Second

var (
	mu         sync.Mutex
	mainActive bool     // Main is running the tests
	started    bool     // the ephemeral cluster was started (or its start failed)
	clu        *cluster // the ephemeral cluster, when started without error
	cluErr     error    // why it could not be started

	dbSeq atomic.Int64
)

// unavailableError says that no PostgreSQL can be had at all (no URL, no binaries): the one
// case in which a test is skipped rather than failed, unless PostgreSQL is required.
type unavailableError struct{ reason string }

func (e *unavailableError) Error() string { return e.reason }

// Main runs the tests, then stops the ephemeral cluster if one was started and removes its
// directory, and exits with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	mu.Lock()
	mainActive = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	c := clu
	clu, mainActive = nil, false
	mu.Unlock()
	if c != nil {
		if err := c.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping the ephemeral PostgreSQL cluster: %v\n", err)
		}
	}
	os.Exit(code)
}

// URL returns a connection string for a new, empty database that only this test uses; it is
// dropped (WITH (FORCE), closing connections left open) when the test and its subtests end.
// The string has the form of the server's: a postgres:// URL for the ephemeral cluster.
//
// URL skips the test when no PostgreSQL is available, or fails it if PostgreSQL is required
// (see the package comment).
func URL(t testing.TB) string {
	t.Helper()
	admin, err := server()
	if err != nil {
		var u *unavailableError
		if errors.As(err, &u) {
			if required() {
				t.Fatalf("pgtest: PostgreSQL is required here (%s set) but unavailable: %s", requiredBy(), u.reason)
			}
			t.Skipf("pgtest: skipping, no PostgreSQL: %s", u.reason)
		}
		t.Fatalf("pgtest: %v", err)
	}
	name := dbName(t.Name())
	if err := adminExec(admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// server returns an administrative connection string: MERIDIAN_TEST_PG_URL's, or the ephemeral
// cluster's, starting it on first use.
func server() (string, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if _, err := pgx.ParseConfig(u); err != nil {
			return "", fmt.Errorf("%s: %v", EnvURL, err)
		}
		return u, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if !started {
		// Missing binaries are reported whether or not Main is in use, so that a package whose
		// TestMain lacks Main still skips cleanly on a machine without PostgreSQL.
		bin, err := findBinDir()
		if err != nil {
			return "", err
		}
		if !mainActive {
			return "", errors.New("no " + EnvURL + " and this test binary's TestMain does not call pgtest.Main, " +
				"which stops the ephemeral cluster: add func TestMain(m *testing.M) { pgtest.Main(m) }")
		}
		started = true
		clu, cluErr = startCluster(bin)
	}
	if cluErr != nil {
		return "", cluErr
	}
	if clu == nil {
		return "", errors.New("the ephemeral cluster was stopped (URL called after Main's tests ended)")
	}
	return clu.adminURL, nil
}

// required reports whether a missing PostgreSQL fails tests instead of skipping them.
func required() bool {
	if v := os.Getenv(EnvRequire); v != "" {
		return v != "0" && !strings.EqualFold(v, "false")
	}
	return os.Getenv("CI") != ""
}

func requiredBy() string {
	if os.Getenv(EnvRequire) != "" {
		return EnvRequire + "=" + os.Getenv(EnvRequire)
	}
	return "CI=" + os.Getenv("CI")
}

// dbName makes a unique database name (at most 63 bytes, PostgreSQL's limit) that says which
// test it belongs to.
func dbName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 24 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("meridiantest_%s_%d_%s", b.String(), dbSeq.Add(1), hex.EncodeToString(rnd[:]))
}

// withDatabase returns the connection string admin with its database replaced by name.
func withDatabase(admin, name string) (string, error) {
	if strings.Contains(admin, "://") {
		u, err := url.Parse(admin)
		if err != nil {
			return "", fmt.Errorf("parsing the server URL: %v", err)
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		if q.Has("dbname") || q.Has("database") {
			q.Del("dbname")
			q.Del("database")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// Keyword/value form: a later keyword overrides an earlier one. The name needs no quoting.
	return admin + " dbname=" + name, nil
}

func adminExec(admin, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Package pgtest gives tests a fresh PostgreSQL database each.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.URL(t) // a new, empty database, dropped when the test ends
//		...
//	}
//
// # Which server
//
// If MERIDIAN_TEST_PG_URL is set (a pgx connection string, URL or keyword/value form, whose
// user may CREATE DATABASE), every URL call creates a database in that server. Otherwise the
// first URL call of a test binary starts an ephemeral cluster, shared by the binary's tests:
// initdb into a directory made by os.MkdirTemp, then the postgres server listening only on a
// Unix socket in that directory (listen_addresses is empty, so no TCP port is taken and parallel
// test binaries cannot collide). Main stops it when the tests are done (an immediate shutdown,
// what `pg_ctl stop -m immediate` sends) and removes the directory; URL refuses to start a
// cluster in a binary whose TestMain does not call Main, as nothing would remove it.
//
// The server is run as a child process rather than through pg_ctl so that it is tied to the
// test binary: it gets SIGQUIT (immediate shutdown) if the binary dies without reaching the end
// of Main, e.g. killed by go test's -timeout, instead of lingering. The directory of such a
// binary (named meridian-pgtest-*) is removed by the next cluster start: each binary holds a
// flock on <dir>/lock while its cluster lives. The server's log is <dir>/postgres.log; a start
// that fails reports the log's tail.
//
// The ephemeral cluster trades durability for speed, which a throwaway test database does not
// need: fsync=off, synchronous_commit=off and full_page_writes=off (a crash of the machine can
// corrupt it; nothing else can), initdb --no-sync, trust authentication on the socket (only its
// owner and root can reach the socket directory), and max_connections=200 so that parallel
// tests with their own pools do not run out.
//
// # A cluster of a test's own
//
// NewCluster starts a separate ephemeral cluster that one test can stop (Stop, a fast
// shutdown; Kill, an immediate one) and start again (Start: same data, same socket, so the
// connection string from URL stays valid), to see what its code does while PostgreSQL is down.
// It needs the binaries even when MERIDIAN_TEST_PG_URL is set, and is removed when its test
// ends.
//
// # Finding the binaries
//
// initdb and postgres are looked for in MERIDIAN_TEST_PG_BIN if set (and only there), else in
// the directories of initdb and postgres found on PATH (symlinks resolved), else in
// /usr/lib/postgresql/*/bin, newest version first (Debian and Ubuntu install them there, off
// PATH).
//
// # Running as root
//
// initdb and postgres refuse to run as root. When the test binary runs as root (CI containers
// often do), pgtest runs both as the system user "postgres" if it exists (Debian's postgresql
// package creates it), else as "nobody", with supplementary groups dropped, and chowns the
// temporary directory to that user. The user must be able to reach the directory: os.TempDir()
// (TMPDIR, default /tmp) and its parents must be searchable by it — /tmp is; a TMPDIR under
// /root is not (set TMPDIR=/tmp then). The tests themselves keep running as root; they connect
// through the socket, which root can always reach.
//
// # No PostgreSQL
//
// With neither MERIDIAN_TEST_PG_URL nor the binaries, URL skips the test with a message saying
// what to install or set — unless PostgreSQL is required: MERIDIAN_REQUIRE_PG is set to anything
// but "" / "0" / "false", or it is unset and CI is set (non-empty). Then URL fails the test
// instead, so that CI cannot go green by skipping every database test. (.ci/run installs
// Debian's postgresql package when the binaries are missing and sets MERIDIAN_REQUIRE_PG=1.)
// Any other failure — initdb or the server failing to start, a configured server that cannot be
// reached — always fails the test.
//
// Databases are named meridiantest_<test name>_<n>_<random>. A test binary killed before its
// cleanups ran leaves its databases behind in a MERIDIAN_TEST_PG_URL server; they can be found
// and dropped by that prefix.
//
// It is for tests only: production code must not import it (TestOnlyTestsImport checks that).
package pgtest

//go:build unix

package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	superuser    = "postgres" // the cluster's bootstrap superuser (initdb -U)
	socketPort   = "5432"     // only names the socket file: the server listens on no TCP port
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// serverSettings are the postgres -c settings of the ephemeral cluster (see the package
// comment for why each is safe for a throwaway test cluster).
var serverSettings = []string{
	"listen_addresses=", // Unix socket only
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
	"max_connections=200",
}

// cluster is an ephemeral PostgreSQL cluster: initialised by initCluster, its server started
// by start (again after kill or shutdown: the data directory outlives the process).
type cluster struct {
	dir      string   // the temporary directory holding everything; removed by stop
	lock     *os.File // dir/lock, flocked while the cluster lives
	adminURL string
	proc     *os.Process
	done     chan struct{} // closed when the server process has exited

	bin                 string              // the directory of initdb and postgres
	id                  *syscall.Credential // who runs the server (nil: ourselves)
	data, sock, logPath string
}

// findBinDir returns a directory holding initdb and postgres, or an *unavailableError.
func findBinDir() (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		if hasBinaries(d) {
			return d, nil
		}
		return "", &unavailableError{fmt.Sprintf("%s=%s does not hold initdb and postgres", EnvBin, d)}
	}
	var dirs []string
	for _, name := range []string{"initdb", "postgres"} {
		if p, err := exec.LookPath(name); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				dirs = append(dirs, filepath.Dir(r)) // Debian's /usr/local/bin/initdb → /usr/lib/postgresql/N/bin
			}
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.SliceStable(versioned, func(i, j int) bool { // newest first
		vi, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(versioned[i])), 64)
		vj, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(versioned[j])), 64)
		return vi > vj
	})
	dirs = append(dirs, versioned...)
	for _, d := range dirs {
		if hasBinaries(d) {
			return d, nil
		}
	}
	return "", &unavailableError{"set " + EnvURL + " to a server's connection string, or install PostgreSQL " +
		"(initdb and postgres were found neither on PATH nor in /usr/lib/postgresql/*/bin; on Debian: apt-get install postgresql)"}
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// startCluster runs initdb into a new temporary directory and starts the server on a Unix
// socket there, waiting until it accepts connections.
func startCluster(bin string) (*cluster, error) {
	c, err := initCluster(bin)
	if err != nil {
		return nil, err
	}
	if err := c.start(); err != nil {
		_ = os.RemoveAll(c.dir)
		_ = c.lock.Close()
		return nil, err
	}
	return c, nil
}

// initCluster runs initdb into a new temporary directory, which it locks; the server is not
// started. On error nothing is left behind.
func initCluster(bin string) (_ *cluster, err error) {
	id, err := serverIdentity()
	if err != nil {
		return nil, err
	}
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	// Held until the cluster is stopped or this process dies: sweepStale leaves the directory
	// alone while it is held.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	defer func() {
		if err != nil {
			if lock != nil {
				_ = lock.Close()
			}
			_ = os.RemoveAll(dir)
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("locking %s: %v", dir, err)
	}
	data, sock, logPath := filepath.Join(dir, "data"), filepath.Join(dir, "sock"), filepath.Join(dir, "postgres.log")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, err
	}
	if id != nil {
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, int(id.Uid), int(id.Gid)); err != nil {
				return nil, fmt.Errorf("giving %s to the server's user: %v", p, err)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = serverEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: id}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb (%s) failed: %v%s\n%s", filepath.Join(bin, "initdb"), err, rootHint(id), out)
	}
	c := &cluster{dir: dir, lock: lock, bin: bin, id: id, data: data, sock: sock, logPath: logPath}
	c.adminURL = (&url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Path:     "/postgres",
		RawQuery: url.Values{"host": {sock}, "port": {socketPort}, "sslmode": {"disable"}}.Encode(),
	}).String()
	return c, nil
}

// start starts the cluster's server (which must not be running) and waits until it accepts
// connections. On error the server is not running.
func (c *cluster) start() (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"-D", c.data, "-k", c.sock, "-p", socketPort}
	for _, s := range serverSettings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = serverProcAttr(c.id)

	done := make(chan struct{})
	c.done = done
	// The parent-death signal is sent when the thread that started the child exits, not the
	// process: start it from a goroutine locked to its thread, which lives until the server
	// exits (a locked goroutine's thread is only ever destroyed when the goroutine returns).
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.proc = cmd.Process
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting postgres: %v", err)
	}
	defer func() {
		if err != nil {
			c.kill()
		}
	}()

	for {
		select {
		case <-done:
			return fmt.Errorf("postgres exited during start-up%s; its log (%s) ends:\n%s", rootHint(c.id), c.logPath, logTail(c.logPath))
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within %v; its log (%s) ends:\n%s", startTimeout, c.logPath, logTail(c.logPath))
		case <-time.After(20 * time.Millisecond):
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(pctx, c.adminURL)
		pcancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
	}
}

// stop shuts the server down immediately (SIGQUIT, as pg_ctl stop -m immediate) and removes the
// cluster's directory.
func (c *cluster) stop() error {
	c.kill()
	err := os.RemoveAll(c.dir)
	_ = c.lock.Close()
	return err
}

// dirPrefix names the clusters' temporary directories in os.TempDir().
const dirPrefix = "meridian-pgtest-"

// staleAge is how long a directory must have been left unchanged before sweepStale may remove
// it: longer than its creator takes between making it and locking its lock file.
const staleAge = time.Minute

// sweepStale removes the directories of clusters whose test binary died before Main's end
// (killed by go test's -timeout, say): their lock is free, and the server they started is gone
// (it got SIGQUIT when the binary died, on Linux). Best effort: errors are ignored.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil && !serverAlive(dir) {
			_ = os.RemoveAll(dir)
		}
		_ = f.Close()
	}
}

// serverAlive reports whether the postmaster.pid of the cluster in dir names a live process.
func serverAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// kill shuts the server down immediately (SIGQUIT) and waits for it to exit; the next start
// runs crash recovery. A server not running is left alone.
func (c *cluster) kill() { c.signal(syscall.SIGQUIT) }

// shutdown shuts the server down cleanly (SIGINT, as pg_ctl stop -m fast: sessions are ended,
// a checkpoint is written) and waits for it to exit. A server not running is left alone.
func (c *cluster) shutdown() { c.signal(syscall.SIGINT) }

// running reports whether the server process is alive.
func (c *cluster) running() bool {
	if c.proc == nil || c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *cluster) signal(sig syscall.Signal) {
	if c.proc == nil || c.done == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.proc.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		_ = c.proc.Kill()
		<-c.done
	}
}

// serverIdentity returns the unprivileged user to run initdb and postgres as when this process
// runs as root (both refuse root), or nil to run them as ourselves.
func serverIdentity() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		// Groups empty and NoSetGroups false: the supplementary groups are dropped too.
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root, and neither user postgres nor nobody exists to run initdb and postgres as (both refuse root)")
}

// serverEnv is the environment of initdb and postgres: ours without the libpq variables (PGDATA,
// PGPORT, PGHOST, … would point them elsewhere), with a fixed locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func rootHint(id *syscall.Credential) string {
	if id == nil {
		return ""
	}
	return fmt.Sprintf(" (running as uid %d because we are root: it must be able to reach %s; set TMPDIR=/tmp if it cannot)",
		id.Uid, os.TempDir())
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(bytes.TrimSpace(b))
}

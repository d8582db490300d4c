package main

// The PostgreSQL backend: Debian's PostgreSQL server, run by this program as
// a child on a unix socket inside the data directory (no TCP listener), its
// cluster made on first use. FerretDB then stores each MongoDB database as a
// schema of the cluster's `postgres` database.
//
// PostgreSQL refuses to run as root; when this program is root (a container,
// CI) the cluster belongs to, and the server runs as, the `postgres` user the
// Debian package creates.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// pgSocketPort names the socket file (.s.PGSQL.<port>); nothing listens on TCP.
	pgSocketPort = 5432
	// pgPoolSize is FerretDB's pool (pool_max_conns): the same 100 as its SQLite pool, so the
	// cloud's statement bound (cloud/src/storage/command-bounds.ts) holds for both.
	pgPoolSize     = 100
	pgReadyTimeout = 30 * time.Second
	pgStopTimeout  = 2 * time.Second
)

// postgresServer is the running server: its connection URL for FerretDB and how to stop it.
type postgresServer struct {
	cmd    *exec.Cmd
	exited chan struct{}
	// connURL reaches the server (pgx's connection parameters only); url adds FerretDB's pool size.
	connURL string
	url     string
	logger  *slog.Logger
}

// debianPostgresBin is the bin directory of the newest PostgreSQL Debian installed (it keeps each
// major version under /usr/lib/postgresql/<version>), or the usual one if none is there.
func debianPostgresBin() string {
	best, bestVersion := "/usr/lib/postgresql/15/bin", 0
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	for _, postgres := range dirs {
		bin := filepath.Dir(postgres)
		if version, err := strconv.Atoi(filepath.Base(filepath.Dir(bin))); err == nil && version > bestVersion {
			best, bestVersion = bin, version
		}
	}
	return best
}

// owner is who runs the cluster: this process, or `postgres` when this process is root.
type owner struct {
	cred *syscall.Credential
	uid  int
	gid  int
}

func clusterOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return owner{}, fmt.Errorf("running as root, PostgreSQL needs the postgres user (Debian's postgresql package makes it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return owner{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

// run starts a PostgreSQL tool as the cluster's owner and waits for it.
func (o owner) run(binary string, args ...string) error {
	cmd := exec.Command(binary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", filepath.Base(binary), err, out)
	}
	return nil
}

// startPostgres makes the cluster under dir/pg if it is not there yet and starts the server on a
// socket in dir/pg-socket; it returns once the server accepts connections.
func startPostgres(ctx context.Context, dir, binDir string, logger *slog.Logger) (*postgresServer, error) {
	for _, tool := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(binDir, tool)); err != nil {
			return nil, fmt.Errorf("PostgreSQL's %s not found in %s (Debian: apt-get install postgresql): %w", tool, binDir, err)
		}
	}
	o, err := clusterOwner()
	if err != nil {
		return nil, err
	}
	pgData := filepath.Join(dir, "pg")
	socketDir := filepath.Join(dir, "pg-socket")
	for _, d := range []string{pgData, socketDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chown(d, o.uid, o.gid); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(pgData, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		logger.Info("making the PostgreSQL cluster", "dir", pgData)
		err := o.run(filepath.Join(binDir, "initdb"), "-D", pgData, "-U", "ferretdb", "--auth=trust",
			"--encoding=UTF8", "--locale=C", "--no-instructions")
		if err != nil && o.cred != nil && strings.Contains(err.Error(), "Permission denied") {
			return nil, fmt.Errorf("%w\nthe postgres user must be able to reach %s: every directory above it needs o+x", err, dir)
		}
		if err != nil {
			return nil, err
		}
	}

	cmd := exec.Command(filepath.Join(binDir, "postgres"), "-D", pgData,
		"-k", socketDir, "-p", strconv.Itoa(pgSocketPort),
		"-c", "listen_addresses=",
		"-c", "max_connections="+strconv.Itoa(pgPoolSize+20),
		"-c", "unix_socket_permissions=0777",
		// FerretDB's statements are prepared and reused; only a custom plan can use an index (pgidindex.go).
		"-c", "plan_cache_mode=force_custom_plan",
	)
	// The server goes when this process goes, however it goes (SIGQUIT: PostgreSQL's immediate
	// shutdown; its crash recovery replays the WAL at the next start).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	cmd.Stderr = os.Stderr
	server := &postgresServer{cmd: cmd, exited: make(chan struct{}), logger: logger}
	// Pdeathsig follows the thread that started the child: keep that thread for the process's life.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(server.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}

	query := url.Values{"host": {socketDir}, "port": {strconv.Itoa(pgSocketPort)}}
	server.connURL = "postgres://ferretdb@/postgres?" + query.Encode()
	query.Set("pool_max_conns", strconv.Itoa(pgPoolSize))
	server.url = "postgres://ferretdb@/postgres?" + query.Encode()
	if err := server.waitReady(ctx); err != nil {
		server.stop()
		return nil, err
	}
	return server, nil
}

func (s *postgresServer) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(pgReadyTimeout)
	for {
		select {
		case <-s.exited:
			return errors.New("PostgreSQL exited during start-up (its log is above)")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attempt, s.connURL)
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL did not accept connections within %s: %w", pgReadyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop asks for a fast shutdown (active transactions rolled back), then an immediate one.
func (s *postgresServer) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(pgStopTimeout):
		s.logger.Warn("PostgreSQL did not stop in time, stopping it immediately")
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.exited:
		case <-time.After(pgStopTimeout):
			_ = s.cmd.Process.Kill()
		}
	}
}

// stopIfRunning stops the server, if this process started one.
func (s *postgresServer) stopIfRunning() {
	if s != nil {
		s.stop()
	}
}

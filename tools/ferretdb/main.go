// Command ferretdb runs FerretDB v1 as the platform's embedded
// MongoDB-compatible store for development and tests, on its SQLite backend
// or on Debian's PostgreSQL (postgres.go), which this program then runs too.
//
// The upstream cmd/ferretdb binary panics when built with `go install` (its
// version file is not part of the module), so we embed the library package.
// On start it prints one line `MONGODB_URI=<uri>` so a parent process can
// discover the port it was given.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// idIndexInterval is how soon a new collection gets its `_id` lookup index (idindex.go, pgidindex.go).
const idIndexInterval = 500 * time.Millisecond

// stopDeadline bounds a graceful stop: past it the process exits anyway (a
// handler wedged on its connection pool must not keep it alive).
const stopDeadline = 3 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on (loopback only in development)")
	dataDir := flag.String("data", "./data/ferretdb", "directory for the databases (SQLite files, or the PostgreSQL cluster)")
	backend := flag.String("backend", "sqlite", "storage: sqlite, or postgresql (Debian's server, run by this program)")
	pgBin := flag.String("pg-bin", "", "where PostgreSQL's initdb and postgres are (default: Debian's newest, /usr/lib/postgresql/<version>/bin)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(2, "invalid -log-level %q: %v", *logLevel, err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *backend != "sqlite" && *backend != "postgresql" {
		fail(2, "-backend must be sqlite or postgresql, got %q", *backend)
	}

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		fail(2, "data dir: %v", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		fail(1, "cannot create data dir %s: %v", abs, err)
	}
	// Two servers on one set of files block each other's writes: refuse to be the second.
	if err := lockDataDir(abs); err != nil {
		fail(1, "%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go exitWithParent(ctx, stop)

	config := &ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: *listen}, Logger: logger, Handler: *backend}
	var keeper interface {
		run(context.Context, time.Duration)
	}
	var pg *postgresServer
	if *backend == "postgresql" {
		bin := *pgBin
		if bin == "" {
			bin = debianPostgresBin()
		}
		if pg, err = startPostgres(ctx, abs, bin, logger); err != nil {
			fail(1, "%v", err)
		}
		config.PostgreSQLURL = pg.url
		keeper = newPgIDIndexKeeper(pg.connURL, logger)
	} else {
		config.SQLiteURL = "file:" + abs + "/"
		keeper = newIDIndexKeeper(abs, logger)
	}

	f, err := ferretdb.New(config)
	if err != nil {
		pg.stopIfRunning()
		fail(1, "%v", err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.Run(ctx); err != nil {
			logger.Error("ferretdb stopped", "error", err)
		}
	}()
	go keeper.run(ctx, idIndexInterval)

	fmt.Printf("MONGODB_URI=%s\n", f.MongoDBURI())
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(stopDeadline):
			logger.Error("ferretdb did not stop in time, exiting", "deadline", stopDeadline)
			pg.stopIfRunning()
			os.Exit(1)
		}
	}
	pg.stopIfRunning()
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(code)
}

// exitWithParent stops the server when the process that started it is gone
// (it runs in its own process group, so no terminal signal reaches it then).
func exitWithParent(ctx context.Context, stop context.CancelFunc) {
	parent := os.Getppid()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if os.Getppid() != parent {
				stop()
				return
			}
		}
	}
}

// Command ferretdb runs FerretDB v1 on its SQLite backend as the platform's
// embedded MongoDB-compatible store for development and tests.
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

// idIndexInterval is how soon a new collection gets its `_id` lookup index (idindex.go).
const idIndexInterval = 500 * time.Millisecond

// stopDeadline bounds a graceful stop: past it the process exits anyway (a
// handler wedged on its connection pool must not keep it alive).
const stopDeadline = 3 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on (loopback only in development)")
	dataDir := flag.String("data", "./data/ferretdb", "directory for the SQLite databases")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: invalid -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: data dir: %v\n", err)
		os.Exit(2)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: cannot create data dir %s: %v\n", abs, err)
		os.Exit(1)
	}
	// Two servers on one set of SQLite files block each other's writes: refuse to be the second.
	if err := lockDataDir(abs); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go exitWithParent(ctx, stop)

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.Run(ctx); err != nil {
			logger.Error("ferretdb stopped", "error", err)
		}
	}()

	go newIDIndexKeeper(abs, logger).run(ctx, idIndexInterval)

	fmt.Printf("MONGODB_URI=%s\n", f.MongoDBURI())
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(stopDeadline):
			logger.Error("ferretdb did not stop in time, exiting", "deadline", stopDeadline)
			os.Exit(1)
		}
	}
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

package main

// FerretDB v1.24's SQLite backend looks documents up by `_id` with
// `WHERE _ferretdb_sjson->'$._id' = ?`, but the unique index it creates for
// `_id` is on `_ferretdb_sjson->"_id"`: a different expression, so SQLite never
// uses it and every point read, update and delete by `_id` scans the whole
// table (EXPLAIN: "SCAN <table>"). Measured: finding one missing id among 72
// hour buckets of ~100 KB took 258 ms, and it grows with the collection.
//
// idIndexKeeper adds, beside FerretDB's own, an index on exactly the
// expression its queries use, to every collection table of every database
// in the data directory, and keeps doing so for tables created later.
// FerretDB does not list it (its metadata does not know it) and dropping the
// collection drops the table with it. Uniqueness stays FerretDB's index's job.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses
)

// idIndexSuffix names our index: "<table>" + idIndexSuffix. FerretDB names its
// own "<table>_<index name>", so a user's index would need this exact name to clash.
const idIndexSuffix = "__kestrel_id_lookup"

// idIndexExpr is metadata.IDColumn in FerretDB v1.24.2 (internal/backends/sqlite/metadata).
const idIndexExpr = `_ferretdb_sjson->'$._id'`

type idIndexKeeper struct {
	dir    string
	logger *slog.Logger
}

func newIDIndexKeeper(dir string, logger *slog.Logger) *idIndexKeeper {
	return &idIndexKeeper{dir: dir, logger: logger}
}

// run checks every interval until ctx ends.
func (k *idIndexKeeper) run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		k.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// pass indexes the tables that lack the index, in every database file.
func (k *idIndexKeeper) pass(ctx context.Context) {
	files, err := filepath.Glob(filepath.Join(k.dir, "*.sqlite"))
	if err != nil {
		k.logger.Warn("listing databases for _id indexes failed", "error", err)
		return
	}
	for _, file := range files {
		if err := k.indexFile(ctx, file); err != nil && ctx.Err() == nil {
			// A database dropped since it was listed, most likely; the next pass sees.
			k.logger.Debug("adding _id indexes failed", "file", filepath.Base(file), "error", err)
		}
	}
}

// indexFile opens the database for this pass only (FerretDB deletes the file when the database is
// dropped, and a connection kept open would hold on to the deleted file), never creating it.
func (k *idIndexKeeper) indexFile(ctx context.Context, file string) error {
	// Same pragmas as FerretDB's own connections (its pool/uri.go): wait for locks, WAL.
	uri := "file:" + file + "?mode=rw&_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)"
	db, err := sql.Open("sqlite", uri)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tables, err := unindexedTables(ctx, db)
	if err != nil {
		return err
	}
	for _, table := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (%s)`, table+idIndexSuffix, table, idIndexExpr)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		k.logger.Debug("_id index added", "file", filepath.Base(file), "table", table)
	}
	return nil
}

// unindexedTables lists FerretDB's collection tables (those with its document column) that lack our index.
func unindexedTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT t.name, t.sql FROM sqlite_master t
		WHERE t.type = 'table' AND NOT EXISTS (
			SELECT 1 FROM sqlite_master i WHERE i.type = 'index' AND i.tbl_name = t.name AND i.name = t.name || ?
		)`, idIndexSuffix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		var ddl sql.NullString
		if err := rows.Scan(&name, &ddl); err != nil {
			return nil, err
		}
		if strings.HasPrefix(name, "_ferretdb_") || strings.HasPrefix(name, "sqlite_") {
			continue
		}
		if strings.Contains(ddl.String, "_ferretdb_sjson") {
			tables = append(tables, name)
		}
	}
	return tables, rows.Err()
}

package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A database laid out as FerretDB v1.24 lays one out: its metadata table, one collection table with
// the document column and FerretDB's own `_id` index, and a table that is not a collection.
func ferretLikeDatabase(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "kestrel.sqlite")
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE "_ferretdb_collections" (name TEXT NOT NULL UNIQUE, table_name TEXT NOT NULL UNIQUE, settings TEXT NOT NULL)`,
		`CREATE TABLE "devices_1a2b3c4d" (_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`,
		`CREATE UNIQUE INDEX "devices_1a2b3c4d__id_" ON "devices_1a2b3c4d" (_ferretdb_sjson->"_id")`,
		`CREATE TABLE "other" (x INTEGER)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

func queryPlan(t *testing.T, file string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The lookup exactly as FerretDB's backend writes it (internal/backends/sqlite/collection.go).
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "devices_1a2b3c4d" WHERE `+idIndexExpr+` = ?`, `"dev-1"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

func indexes(t *testing.T, file string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%' || ? ORDER BY name`, idIndexSuffix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

func TestKeeperIndexesTheExpressionFerretDBQueries(t *testing.T) {
	dir := t.TempDir()
	file := ferretLikeDatabase(t, dir)
	if plan := queryPlan(t, file); !strings.HasPrefix(plan, "SCAN") {
		t.Fatalf("FerretDB's own index should not serve its lookup (the defect this works around); plan: %s", plan)
	}

	keeper := newIDIndexKeeper(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	keeper.pass(context.Background())

	if plan := queryPlan(t, file); !strings.Contains(plan, "USING INDEX devices_1a2b3c4d"+idIndexSuffix) {
		t.Fatalf("lookup by _id does not use the added index; plan: %s", plan)
	}
	if got := indexes(t, file); len(got) != 1 || got[0] != "devices_1a2b3c4d"+idIndexSuffix {
		t.Fatalf("want one index, on the collection table only; got %v", got)
	}
	keeper.pass(context.Background())
	if got := indexes(t, file); len(got) != 1 {
		t.Fatalf("a second pass must add nothing; got %v", got)
	}
}

func TestKeeperNeverCreatesADatabase(t *testing.T) {
	dir := t.TempDir()
	file := ferretLikeDatabase(t, dir)
	// FerretDB deletes the file of a dropped database; a pass racing with that must not bring it back.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	keeper := newIDIndexKeeper(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := keeper.indexFile(context.Background(), file); err == nil {
		t.Fatal("opening a database that is gone should fail")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the pass created %s again (stat: %v)", file, err)
	}
}

package sqlitedb

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
)

func TestOpen_DurableSettings(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "a.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	var sync, fk int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 || fk != 1 {
		t.Fatalf("journal_mode=%s synchronous=%d foreign_keys=%d, want wal 2 1", mode, sync, fk)
	}
}

// TestOpen_secureDelete: a value overwritten or deleted through a
// writable handle is gone from the database file after a checkpoint, not
// left in a page's free space.
func TestOpen_secureDelete(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "330106199101300696"
	stmts := []string{
		`CREATE TABLE r (id INTEGER PRIMARY KEY, subject TEXT, pad TEXT)`,
		`INSERT INTO r (subject, pad) SELECT '` + secret + `', hex(randomblob(200)) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)`,
		`UPDATE r SET subject = '' WHERE id = 1`,
		`DELETE FROM r WHERE id = 2`,
		`UPDATE r SET subject = NULL, pad = 'x' WHERE id = 3`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(secret)) {
			t.Fatalf("%s still holds the value that was overwritten and deleted", filepath.Base(f))
		}
	}
}

func TestMigrate_AppliesOncePerComponent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	v1 := fstest.MapFS{
		"0001_init.sql": {Data: []byte("CREATE TABLE t (x INTEGER);")},
	}
	v2 := fstest.MapFS{
		"0001_init.sql":  {Data: []byte("CREATE TABLE t (x INTEGER);")},
		"0002_more.sql":  {Data: []byte("ALTER TABLE t ADD COLUMN y TEXT; INSERT INTO t VALUES (1, 'a');")},
		"README.md":      {Data: []byte("not a migration")},
		"0003_later.sql": {Data: []byte("INSERT INTO t VALUES (2, 'b');")},
	}
	for i, fsys := range []fstest.MapFS{v1, v2, v2} {
		db, err := Open(ctx, path, Options{Component: "c", Migrations: fsys})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		db.Close()
	}
	// A second component in the same file has its own version.
	other := fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE u (z INTEGER);")}}
	db, err := Open(ctx, path, Options{Component: "other", Migrations: other})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("t has %d rows, want 2 (each migration applied exactly once)", n)
	}
	var v int
	if err := db.QueryRow("SELECT version FROM ferry_schema WHERE component = 'c'").Scan(&v); err != nil || v != 3 {
		t.Fatalf("version = %d, %v; want 3", v, err)
	}
}

func TestMigrate_BadMigrations(t *testing.T) {
	ctx := context.Background()
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":  {"init.sql": {Data: []byte("SELECT 1;")}},
		"duplicate": {"0001_a.sql": {Data: []byte("SELECT 1;")}, "1_b.sql": {Data: []byte("SELECT 1;")}},
		"bad sql":   {"0001_a.sql": {Data: []byte("CREATE TABLE (;")}},
		"zero":      {"0000_a.sql": {Data: []byte("SELECT 1;")}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.db")
			db, err := Open(ctx, path, Options{Component: "c", Migrations: fsys})
			if err == nil {
				db.Close()
				t.Fatal("Open accepted bad migrations")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the database", err)
			}
		})
	}
}

func TestOpen_ApplicationID(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := Open(ctx, path, Options{ApplicationID: 0x66727931})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(ctx, path, Options{ApplicationID: 0x66727931}); err != nil {
		t.Fatalf("reopen with same id: %v", err)
	}
	db.Close()
	if db, err = Open(ctx, path, Options{ApplicationID: 0x12345678}); err == nil {
		db.Close()
		t.Fatal("opened a database of another kind")
	}
}

func TestOpen_ReadOnlyCannotWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ro.db")
	w, err := Open(ctx, path, Options{Component: "c", Migrations: fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE t (x);")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ro, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Exec("INSERT INTO t VALUES (1)"); err == nil {
		t.Fatal("read-only handle wrote a row")
	}
	if _, err := w.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ro.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read-only handle sees %d rows, %v", n, err)
	}
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "missing.db"), Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}

// TestOpen_PrivateFiles checks that a new database and its WAL are
// owner-only, whatever the umask: they hold citizens' data.
func TestOpen_PrivateFiles(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	file := filepath.Join(t.TempDir(), "spool.db")
	db, err := Open(context.Background(), file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{file, file + "-wal", file + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", filepath.Base(f), perm)
		}
	}
}

// Package sqlitedb opens the SQLite databases ferry keeps its state in, with
// the settings its durability promises depend on, and applies embedded,
// numbered schema migrations.
//
// # Durability
//
// mattn/go-sqlite3 sets synchronous=NORMAL unless told otherwise, and in WAL
// mode NORMAL may roll back a committed transaction after a power cut. Every
// writable database here is opened in WAL mode with synchronous=FULL, and
// [Open] reads both settings back and refuses to continue if either did not
// take effect. Writers use BEGIN IMMEDIATE (_txlock=immediate) so a
// read-then-write transaction waits on busy_timeout instead of failing with
// SQLITE_BUSY, and a writable handle has exactly one connection.
//
// # Deleted data
//
// A writable database is opened with secure_delete on, and Open checks it:
// content that is deleted or overwritten is zeroed in the file instead of
// lingering in a page's free space or on the freelist, so that personal
// data a spool drops (a request's subject and params once it is final) is
// gone from the file, not only from the rows.
//
// # Migrations
//
// A component's schema is a set of files named NNNN_description.sql in an
// [fs.FS] (usually embedded). [Open] applies, in order and each in its own
// transaction, the files whose number is above the version recorded for that
// component in the ferry_schema table. Several components may share one
// database file (the intranet keeps its ledger inside the replica), so
// versions are kept per component rather than in PRAGMA user_version.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	// The SQLite driver, registered as "sqlite3".
	_ "github.com/mattn/go-sqlite3"
)

// DefaultBusyTimeout is how long a connection waits for a lock before
// returning SQLITE_BUSY.
const DefaultBusyTimeout = 10 * time.Second

// Options says how to open a database.
type Options struct {
	// ReadOnly opens the file with mode=ro and query_only, on a pool of
	// connections. The file must exist.
	ReadOnly bool
	// MaxReaders bounds the read-only pool; 0 means 4.
	MaxReaders int
	// ApplicationID, when not zero, is stored in PRAGMA application_id of a
	// new database, and a database carrying a different non-zero id is
	// refused.
	ApplicationID int32
	// Component names the schema in ferry_schema; it is required when
	// Migrations is set.
	Component string
	// Migrations holds NNNN_name.sql files at its root.
	Migrations fs.FS
}

// createPrivate creates file empty with mode 0600 if it does not exist.
func createPrivate(file string) error {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Open opens the SQLite database at file with the options, verifies its
// settings and applies pending migrations.
func Open(ctx context.Context, file string, opt Options) (*sql.DB, error) {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.Itoa(int(DefaultBusyTimeout/time.Millisecond)))
	q.Set("_fk", "true")
	if opt.ReadOnly {
		q.Set("mode", "ro")
		q.Set("_query_only", "true")
	} else {
		q.Set("_journal_mode", "WAL")
		// _sync is applied after _journal_mode, so FULL survives the
		// driver's WAL default of NORMAL.
		q.Set("_sync", "FULL")
		q.Set("_txlock", "immediate")
		// Deleted and overwritten content is zeroed, not left in the
		// pages' free space or on the freelist: the spool drops a
		// request's subject and params once it is final, and a copy
		// lingering in the file would keep the personal data it was
		// dropped for.
		q.Set("_secure_delete", "true")
	}
	if !opt.ReadOnly {
		// The spools and ledgers hold citizens' requests and results:
		// create a new database owner-only. SQLite gives its -wal and -shm
		// files the permissions of the database file.
		if err := createPrivate(file); err != nil {
			return nil, fmt.Errorf("open database %s: %w", file, err)
		}
	}
	dsn := "file:" + (&url.URL{Path: file}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", file, err)
	}
	if opt.ReadOnly {
		n := opt.MaxReaders
		if n <= 0 {
			n = 4
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
	} else {
		// One writer connection: SQLite serialises writers anyway, and a
		// single connection keeps per-connection pragmas uniform.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
	}
	db.SetConnMaxLifetime(0)
	if err := check(ctx, db, opt); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", file, err)
	}
	if opt.Migrations != nil && !opt.ReadOnly {
		if err := Migrate(ctx, db, opt.Component, opt.Migrations); err != nil {
			db.Close()
			return nil, fmt.Errorf("open database %s: %w", file, err)
		}
	}
	return db, nil
}

func check(ctx context.Context, db *sql.DB, opt Options) error {
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	if !opt.ReadOnly {
		var mode string
		if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return fmt.Errorf("read journal_mode: %w", err)
		}
		if !strings.EqualFold(mode, "wal") {
			return fmt.Errorf("journal_mode is %q, want wal", mode)
		}
		var sync int
		if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			return fmt.Errorf("read synchronous: %w", err)
		}
		if sync < 2 { // 2 = FULL, 3 = EXTRA
			return fmt.Errorf("synchronous is %d, want FULL (2)", sync)
		}
		var secure int
		if err := db.QueryRowContext(ctx, "PRAGMA secure_delete").Scan(&secure); err != nil {
			return fmt.Errorf("read secure_delete: %w", err)
		}
		if secure != 1 {
			return fmt.Errorf("secure_delete is %d, want 1", secure)
		}
	}
	if opt.ApplicationID != 0 {
		var id int32
		if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&id); err != nil {
			return fmt.Errorf("read application_id: %w", err)
		}
		switch {
		case id == opt.ApplicationID:
		case id == 0 && !opt.ReadOnly:
			if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", opt.ApplicationID)); err != nil {
				return fmt.Errorf("set application_id: %w", err)
			}
		default:
			return fmt.Errorf("application_id is %#x, want %#x: not a database of this kind", id, opt.ApplicationID)
		}
	}
	return nil
}

type migration struct {
	version int
	name    string
}

// Migrate applies the migrations in fsys that are newer than the version
// recorded for component.
func Migrate(ctx context.Context, db *sql.DB, component string, fsys fs.FS) error {
	if component == "" {
		return errors.New("migrate: component name is required")
	}
	migs, err := list(fsys)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ferry_schema (
		component TEXT PRIMARY KEY,
		version   INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("create ferry_schema: %w", err)
	}
	for _, m := range migs {
		if err := apply(ctx, db, component, fsys, m); err != nil {
			return err
		}
	}
	return nil
}

func list(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var migs []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share number %d", prev, name, v)
		}
		seen[v] = name
		migs = append(migs, migration{version: v, name: name})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	return migs, nil
}

func apply(ctx context.Context, db *sql.DB, component string, fsys fs.FS, m migration) error {
	body, err := fs.ReadFile(fsys, m.name)
	if err != nil {
		return fmt.Errorf("read migration %s: %w", m.name, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	defer tx.Rollback()
	var cur int
	err = tx.QueryRowContext(ctx, `SELECT version FROM ferry_schema WHERE component = ?`, component).Scan(&cur)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("migration %s: read version: %w", m.name, err)
	}
	if cur >= m.version {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_schema (component, version) VALUES (?, ?)
		ON CONFLICT (component) DO UPDATE SET version = excluded.version`, component, m.version); err != nil {
		return fmt.Errorf("migration %s: record version: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.name, err)
	}
	return nil
}

// Package sqlguard proves, and enforces at run time, what a policy
// statement may touch in the replica: which tables and columns it may read,
// which tables it may insert into and which columns it may update.
//
// # How
//
// SQLite calls an authorizer callback while it compiles a statement, once
// for every table column the statement reads, every table it writes, every
// function it calls and every other action (PRAGMA, ATTACH, DDL,
// transactions). The callback sees through views and into trigger bodies:
// a view's underlying columns and a trigger's INSERT or DELETE are reported
// like the statement's own. [Authorizer] builds a callback that allows only
// what an [Access] lists and records the rest as [Denial]s. [Prove] compiles
// a statement under it, once, at policy load or lint time, and also checks
// SQLite's own read-only test (sqlite3_stmt_readonly). [Guard] installs it
// around a statement's execution, so that a statement recompiled at run
// time (SQLite recompiles after any schema change, such as a trigger added
// after the policy was proven) is checked again.
//
// # What is allowed
//
//   - Reads (SQLITE_READ) of the (table, column) pairs listed in
//     Access.Read. A table referenced without any column read (SELECT
//     count(*) FROM t) is reported with an empty column and is allowed when
//     the table is listed at all. SELECT * reads every column, so it passes
//     only if every column is listed. The rowid of a table without an
//     INTEGER PRIMARY KEY is the column "ROWID".
//   - Views: reading a view is reported both as reads of the view's
//     columns and as reads of the underlying table columns, so a view is
//     allowed only when its columns and everything it reads are listed.
//   - SELECT (SQLITE_SELECT, also for subqueries and CTEs).
//   - Calls of the functions in [Functions]: deterministic built-ins that
//     compute from their arguments (aggregates, string, date and null
//     handling). Not listed, hence denied: random, randomblob and zeroblob
//     (nothing to do with the replica's data, and randomblob and zeroblob
//     can allocate a gigabyte), load_extension, the sqlite_* introspection
//     functions, changes, total_changes and last_insert_rowid (connection
//     state, which on the writer includes ferry's own ledger statements),
//     the json functions and any application-defined function. CAST and
//     CASE are not functions. A column's DEFAULT expression is reported as
//     a call too (strftime for the sample's appointments.created_at).
//   - In [Write] mode only: INSERT into the tables listed in Access.Insert
//     and UPDATE of the (table, column) pairs in Access.Update (this
//     includes an UPSERT's DO UPDATE SET).
//
// Everything else is denied: DELETE, DDL, PRAGMA, ATTACH and DETACH,
// BEGIN/COMMIT/ROLLBACK, SAVEPOINT, ANALYZE, REINDEX, recursive CTEs
// (WITH RECURSIVE: no policy query needs one, and it is the one way a
// statement loops without bound), any action on a database other than
// main, and every action on SQLite's own tables (sqlite_schema is reported
// as sqlite_master) and ferry's (ferry_*) whatever the Access lists.
//
// With foreign keys enabled (ferry's connections use _fk=true), an INSERT
// or UPDATE of a child table reads the parent key columns, and the
// authorizer reports those reads: an Access for a write lists them.
//
// # What the authorizer cannot see
//
// [Prove] adds three checks of the statement's text, since SQLite never
// asks the authorizer about them:
//
//   - A second statement after a ';' is not compiled with the first (the
//     driver runs it afterwards), so a ';' is allowed only at the end.
//   - INSERT OR REPLACE, REPLACE INTO and UPDATE OR REPLACE delete the rows
//     they conflict with without an SQLITE_DELETE callback, so the keyword
//     REPLACE is allowed only as the replace() function. In Write mode a
//     written table whose CREATE TABLE declares ON CONFLICT REPLACE is
//     refused for the same reason.
//   - A NUL byte ends the statement early for SQLite.
//
// # The driver's callback arguments
//
// mattn/go-sqlite3 passes the callback (action, arg1, arg2, arg3) where
// arg1 and arg2 are SQLite's two action-specific arguments and arg3 is the
// database name ("main", "temp", an attached name, or "" where SQLite gives
// none, as for the table-only read of count(*) and for functions). SQLite's
// fourth argument, the name of the innermost trigger or view, is dropped by
// the driver, so a denial cannot say which trigger or view caused it.
package sqlguard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/mattn/go-sqlite3"
)

// Mode says whether a statement may write.
type Mode int

// Modes.
const (
	// Read statements may only read, and must pass sqlite3_stmt_readonly.
	Read Mode = iota + 1
	// Write statements may insert into and update what their Access lists,
	// and must write.
	Write
)

// String returns "read" or "write".
func (m Mode) String() string {
	switch m {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Access lists what a statement may touch. Table and column names compare
// as SQLite compares identifiers: ASCII letters without regard to case.
type Access struct {
	// Read maps a table (or view) to the columns the statement may read.
	// A listed table with no columns allows only column-free references
	// such as count(*).
	Read map[string][]string
	// Insert lists the tables the statement may INSERT into (Write mode).
	Insert []string
	// Update maps a table to the columns the statement may UPDATE (Write
	// mode).
	Update map[string][]string
}

// Functions is the allow-list of SQL functions a statement may call, in
// lower case. See the package documentation for what is left out and why.
var Functions = []string{
	// aggregates and window functions
	"avg", "count", "dense_rank", "group_concat", "max", "min", "rank", "row_number",
	"string_agg", "sum", "total",
	// null handling and conditionals
	"coalesce", "if", "iif", "ifnull", "nullif",
	// strings
	"char", "concat", "concat_ws", "format", "glob", "hex", "instr", "length", "like",
	"lower", "ltrim", "octet_length", "printf", "quote", "replace", "rtrim", "substr",
	"substring", "trim", "unhex", "unicode", "upper",
	// numbers and types
	"abs", "round", "sign", "typeof",
	// dates and times
	"date", "datetime", "julianday", "strftime", "time", "timediff", "unixepoch",
	// planner hints
	"likelihood", "likely", "unlikely",
}

var functionSet = func() map[string]bool {
	m := make(map[string]bool, len(Functions))
	for _, f := range Functions {
		m[f] = true
	}
	return m
}()

// ErrDenied is matched (with errors.Is) by every *ProofError: the statement
// does something its Access does not allow.
var ErrDenied = errors.New("sqlguard: statement not allowed")

// ErrNotSQLite is returned when a connection is not a mattn/go-sqlite3 one.
var ErrNotSQLite = errors.New("sqlguard: not a mattn/go-sqlite3 connection")

// ErrNotConsulted is returned by Guard when fn succeeded but SQLite never
// called the authorizer: fn ran no statement on the guarded connection
// (it used another connection of the pool, say), so nothing was checked.
var ErrNotConsulted = errors.New("sqlguard: the authorizer was never consulted (statement run on another connection?)")

// Denial is one action the authorizer refused.
type Denial struct {
	// Action is SQLite's action code (sqlite3.SQLITE_READ, ...).
	Action int
	// Arg1 and Arg2 are SQLite's action-specific arguments, such as table
	// and column for SQLITE_READ; DB is the database name, if any.
	Arg1, Arg2, DB string
	// Reserved reports that the table is SQLite's or ferry's own, denied
	// whatever the Access lists.
	Reserved bool
}

// String describes the denial for an error message, such as "reads
// vehicles.vin" or "deletes from appointments".
func (d Denial) String() string {
	s := d.describe()
	if d.DB != "" && !strings.EqualFold(d.DB, "main") {
		s += " in database " + d.DB
	}
	if d.Reserved {
		s += " (reserved table)"
	}
	return s
}

func (d Denial) describe() string {
	a1, a2 := d.Arg1, d.Arg2
	switch d.Action {
	case sqlite3.SQLITE_READ:
		if a2 == "" {
			return "reads table " + a1
		}
		return "reads " + a1 + "." + a2
	case sqlite3.SQLITE_INSERT:
		return "inserts into " + a1
	case sqlite3.SQLITE_UPDATE:
		return "updates " + a1 + "." + a2
	case sqlite3.SQLITE_DELETE:
		return "deletes from " + a1
	case sqlite3.SQLITE_FUNCTION:
		return "calls " + a2 + "()"
	case sqlite3.SQLITE_PRAGMA:
		if a2 != "" {
			return "runs PRAGMA " + a1 + "(" + a2 + ")"
		}
		return "runs PRAGMA " + a1
	case sqlite3.SQLITE_TRANSACTION:
		return "runs " + a1 + " (transaction control)"
	case sqlite3.SQLITE_SAVEPOINT:
		return "runs savepoint " + a1 + " " + a2
	case sqlite3.SQLITE_ATTACH:
		return "attaches database " + a1
	case sqlite3.SQLITE_DETACH:
		return "detaches database " + a1
	case sqlite3.SQLITE_ALTER_TABLE:
		return "alters table " + a2
	case sqlite3.SQLITE_ANALYZE:
		return "runs ANALYZE " + a1
	case sqlite3.SQLITE_REINDEX:
		return "runs REINDEX " + a1
	case sqlite3.SQLITE_SELECT:
		return "selects (not allowed in this context)"
	case sqliteRecursive:
		return "uses a recursive CTE"
	case sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TEMP_INDEX:
		return "creates index " + a1
	case sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_VTABLE:
		return "creates table " + a1
	case sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_TRIGGER:
		return "creates trigger " + a1
	case sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_CREATE_TEMP_VIEW:
		return "creates view " + a1
	case sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TEMP_INDEX:
		return "drops index " + a1
	case sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_VTABLE:
		return "drops table " + a1
	case sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_TRIGGER:
		return "drops trigger " + a1
	case sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_DROP_TEMP_VIEW:
		return "drops view " + a1
	}
	return fmt.Sprintf("performs SQLite action %d (%s %s)", d.Action, a1, a2)
}

// sqliteRecursive is SQLITE_RECURSIVE, which the driver does not export.
const sqliteRecursive = 33

// Denials collects the denials of one or more statements, each once, in the
// order they happened. It is safe for concurrent use; the zero value is
// ready.
type Denials struct {
	mu   sync.Mutex
	seen map[Denial]bool
	list []Denial
}

// add records d unless it is already recorded.
func (ds *Denials) add(d Denial) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.seen[d] {
		return
	}
	if ds.seen == nil {
		ds.seen = make(map[Denial]bool)
	}
	ds.seen[d] = true
	ds.list = append(ds.list, d)
}

// List returns a copy of the recorded denials.
func (ds *Denials) List() []Denial {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return append([]Denial(nil), ds.list...)
}

// Len returns the number of recorded denials.
func (ds *Denials) Len() int {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return len(ds.list)
}

// ProofError says why a statement is not allowed: the denied actions and
// the statement-level problems. It matches ErrDenied.
type ProofError struct {
	Mode     Mode
	Denials  []Denial
	Problems []string // such as "is not read-only" or "contains more than one statement"
	// Err is the error SQLite returned while compiling or running the
	// statement, if any (often "not authorized").
	Err error
}

// Error lists every denial and problem.
func (e *ProofError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s statement not allowed: ", e.Mode)
	var parts []string
	parts = append(parts, e.Problems...)
	for _, d := range e.Denials {
		parts = append(parts, d.String())
	}
	b.WriteString(strings.Join(parts, "; "))
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	return b.String()
}

// Unwrap returns the SQLite error, if any.
func (e *ProofError) Unwrap() error { return e.Err }

// Is reports whether target is ErrDenied.
func (e *ProofError) Is(target error) bool { return target == ErrDenied }

// lowerASCII folds ASCII letters only, as SQLite does for identifiers.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// reserved reports whether table belongs to SQLite or to ferry.
func reserved(table string) bool {
	t := lowerASCII(table)
	return strings.HasPrefix(t, "sqlite_") || strings.HasPrefix(t, "ferry_")
}

type pair struct{ table, column string }

// policy is an Access compiled for fast look-up.
type policy struct {
	mode   Mode
	tables map[string]bool // tables listed in Read
	read   map[pair]bool
	insert map[string]bool
	update map[pair]bool
}

func compile(mode Mode, acc Access) *policy {
	p := &policy{mode: mode, tables: map[string]bool{}, read: map[pair]bool{}, insert: map[string]bool{}, update: map[pair]bool{}}
	for t, cols := range acc.Read {
		t = lowerASCII(t)
		p.tables[t] = true
		for _, c := range cols {
			p.read[pair{t, lowerASCII(c)}] = true
		}
	}
	if mode == Write {
		for _, t := range acc.Insert {
			p.insert[lowerASCII(t)] = true
		}
		for t, cols := range acc.Update {
			t = lowerASCII(t)
			for _, c := range cols {
				p.update[pair{t, lowerASCII(c)}] = true
			}
		}
	}
	return p
}

// allowed decides one callback: whether the action is allowed, and whether
// it is reserved (denied whatever the Access says).
func (p *policy) allowed(op int, a1, a2, db string) (ok, res bool) {
	switch op {
	case sqlite3.SQLITE_SELECT:
		return true, false
	case sqlite3.SQLITE_FUNCTION:
		return functionSet[lowerASCII(a2)], false
	case sqlite3.SQLITE_READ, sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE:
	default:
		return false, false
	}
	if db != "" && lowerASCII(db) != "main" {
		return false, false
	}
	if reserved(a1) {
		return false, true
	}
	t := lowerASCII(a1)
	switch op {
	case sqlite3.SQLITE_READ:
		if a2 == "" {
			return p.tables[t], false
		}
		return p.read[pair{t, lowerASCII(a2)}], false
	case sqlite3.SQLITE_INSERT:
		return p.insert[t], false
	default: // SQLITE_UPDATE
		return p.update[pair{t, lowerASCII(a2)}], false
	}
}

// auth is the state of one installed callback.
type auth struct {
	p       *policy
	d       *Denials
	enforce bool // deny; otherwise record and allow compile-only actions

	mu      sync.Mutex
	calls   int
	selects bool            // SQLITE_SELECT seen
	writes  map[string]bool // tables inserted into or updated, allowed or not
}

// compileOnlySafe lists the actions that do nothing while a statement is
// only compiled, so that Prove may let compilation go on after a denial to
// report every one. PRAGMA, by contrast, takes effect while compiling
// (PRAGMA query_only = 0 would switch a read-only guard off).
func compileOnlySafe(op int) bool {
	switch op {
	case sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION,
		sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqliteRecursive:
		return true
	}
	return false
}

func (a *auth) callback(op int, a1, a2, db string) int {
	ok, res := a.p.allowed(op, a1, a2, db)
	a.mu.Lock()
	a.calls++
	if op == sqlite3.SQLITE_SELECT {
		a.selects = true
	}
	if op == sqlite3.SQLITE_INSERT || op == sqlite3.SQLITE_UPDATE {
		if a.writes == nil {
			a.writes = map[string]bool{}
		}
		a.writes[a1] = true
	}
	a.mu.Unlock()
	if ok {
		return sqlite3.SQLITE_OK
	}
	if a.d != nil {
		a.d.add(Denial{Action: op, Arg1: a1, Arg2: a2, DB: db, Reserved: res})
	}
	if !a.enforce && compileOnlySafe(op) {
		return sqlite3.SQLITE_OK
	}
	return sqlite3.SQLITE_DENY
}

func (a *auth) consulted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls > 0
}

// Authorizer returns an authorizer callback, for
// (*sqlite3.SQLiteConn).RegisterAuthorizer, that allows what acc lists for
// a statement of the given mode (see the package documentation) and returns
// SQLITE_DENY for everything else, recording each denial in d if d is not
// nil. In Read mode acc.Insert and acc.Update are ignored.
func Authorizer(mode Mode, acc Access, d *Denials) func(int, string, string, string) int {
	a := &auth{p: compile(mode, acc), d: d, enforce: true}
	return a.callback
}

// setAuthorizer installs cb (nil removes it) on c's driver connection.
func setAuthorizer(c *sql.Conn, cb func(int, string, string, string) int) error {
	return c.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("%w: %T", ErrNotSQLite, dc)
		}
		sc.RegisterAuthorizer(cb)
		return nil
	})
}

func checkMode(mode Mode) error {
	if mode != Read && mode != Write {
		return fmt.Errorf("sqlguard: unknown mode %d", int(mode))
	}
	return nil
}

// Prove compiles stmt on c under the authorizer for (mode, acc), removes
// the authorizer, and checks the statement: in Read mode it must be
// read-only (sqlite3_stmt_readonly) and select; in Write mode it must
// write. It also makes the text checks of the package documentation.
//
// Prove never runs the statement, so it works on a read-only connection as
// well as on a writable one; c must not be used by anyone else meanwhile,
// nor be inside a transaction whose schema snapshot is stale. It first runs
// one query of sqlite_schema so that c compiles against the current schema
// rather than its cached copy.
// It returns nil, a *ProofError (matching ErrDenied) listing every denied
// action and problem, or another error: the statement does not compile
// (syntax error, no such table), c is not a SQLite connection, ctx ended.
func Prove(ctx context.Context, c *sql.Conn, mode Mode, acc Access, stmt string) error {
	if err := checkMode(mode); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Compiling uses the connection's cached schema, which may predate
	// another connection's change (a trigger dropped or added). A statement
	// that reads sqlite_schema verifies the schema cookie and reloads it.
	var n int
	if err := c.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n); err != nil {
		return fmt.Errorf("prove statement: load schema: %w", err)
	}
	pe := &ProofError{Mode: mode, Problems: textProblems(stmt)}
	var d Denials
	a := &auth{p: compile(mode, acc), d: &d}
	var (
		readonly bool
		prepErr  error
	)
	err := c.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("%w: %T", ErrNotSQLite, dc)
		}
		sc.RegisterAuthorizer(a.callback)
		defer sc.RegisterAuthorizer(nil)
		// PrepareContext compiles without the driver's statement cache.
		st, err := sc.PrepareContext(ctx, stmt)
		if err != nil {
			prepErr = err
			return nil
		}
		defer st.Close()
		readonly = st.(*sqlite3.SQLiteStmt).Readonly()
		return nil
	})
	if err != nil {
		return fmt.Errorf("prove statement: %w", err)
	}
	pe.Denials = d.List()
	if prepErr != nil {
		if len(pe.Denials) > 0 || len(pe.Problems) > 0 {
			pe.Err = prepErr
			return pe
		}
		return fmt.Errorf("prove statement: compile: %w", prepErr)
	}
	switch mode {
	case Read:
		if !readonly {
			pe.Problems = append(pe.Problems, "is not read-only")
		}
		if !a.selects {
			pe.Problems = append(pe.Problems, "is not a SELECT")
		}
	case Write:
		if readonly || len(a.writes) == 0 {
			pe.Problems = append(pe.Problems, "neither inserts nor updates")
		}
		tables := make([]string, 0, len(a.writes))
		for t := range a.writes {
			tables = append(tables, t)
		}
		sort.Strings(tables)
		for _, t := range tables {
			var ddl sql.NullString
			err := c.QueryRowContext(ctx, `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?`, t).Scan(&ddl)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("prove statement: read definition of %s: %w", t, err)
			}
			if hasReplaceKeyword(ddl.String) {
				pe.Problems = append(pe.Problems, "writes table "+t+", whose definition resolves conflicts with REPLACE (deletes rows)")
			}
		}
	}
	if len(pe.Denials) > 0 || len(pe.Problems) > 0 {
		return pe
	}
	return nil
}

// textProblems returns what the statement's text shows that the authorizer
// cannot see.
func textProblems(stmt string) []string {
	var p []string
	if strings.IndexByte(stmt, 0) >= 0 {
		p = append(p, "contains a NUL byte")
	}
	body := strings.TrimRight(stmt, " \t\r\n\f\v;")
	if strings.IndexByte(body, ';') >= 0 {
		// Conservative: a ';' inside a string literal or a comment is
		// refused too, rather than tokenising SQL here.
		p = append(p, "contains more than one statement (a ';' before the end)")
	}
	if hasReplaceKeyword(stmt) {
		p = append(p, "uses REPLACE conflict resolution, which deletes the rows it conflicts with")
	}
	return p
}

// hasReplaceKeyword reports whether s contains the word REPLACE (any case)
// other than as a call, that is not followed by optional spaces and '('.
// It errs on the side of yes (a 'replace' in a string literal counts).
func hasReplaceKeyword(s string) bool {
	const w = "replace"
	ls := lowerASCII(s)
	for i := 0; ; {
		j := strings.Index(ls[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		i = end
		if start > 0 && identByte(ls[start-1]) || end < len(ls) && identByte(ls[end]) {
			continue // part of a longer identifier
		}
		rest := strings.TrimLeft(ls[end:], " \t\r\n\f\v")
		if !strings.HasPrefix(rest, "(") {
			return true
		}
	}
}

func identByte(c byte) bool {
	return c == '_' || c == '$' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c >= 0x80
}

// Guard runs fn with the authorizer for (mode, acc) installed on c and
// removes it afterwards, also when fn fails or panics, so that the
// statements fn compiles and runs on c are checked while they compile.
//
// fn must run its statement on c (c.QueryContext, c.ExecContext, a
// statement prepared on c, or a transaction begun on c) and must not close
// c. Installing an authorizer makes SQLite expire every statement prepared
// on the connection, so a statement prepared before the guard is compiled
// again, under it, when fn runs it; only a statement already stepping (rows
// opened before the guard) goes on unchecked. Keep
// ferry's own statements (savepoints, ledger) outside fn: the guard denies
// them. If the authorizer denied anything, Guard returns a *ProofError
// (matching ErrDenied) that wraps fn's error, even if fn swallowed it. If
// fn succeeded but SQLite never consulted the authorizer, Guard returns
// ErrNotConsulted. An error removing the authorizer is joined to the
// result; the connection should then be discarded.
func Guard(ctx context.Context, c *sql.Conn, mode Mode, acc Access, fn func() error) (err error) {
	if err := checkMode(mode); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var d Denials
	a := &auth{p: compile(mode, acc), d: &d, enforce: true}
	if err := setAuthorizer(c, a.callback); err != nil {
		return fmt.Errorf("guard: install authorizer: %w", err)
	}
	defer func() {
		if rerr := setAuthorizer(c, nil); rerr != nil {
			err = errors.Join(err, fmt.Errorf("guard: remove authorizer: %w", rerr))
		}
	}()
	err = fn()
	if d.Len() > 0 {
		return &ProofError{Mode: mode, Denials: d.List(), Err: err}
	}
	if err == nil && !a.consulted() {
		return ErrNotConsulted
	}
	return err
}

// SchemaDB opens a private in-memory SQLite database holding schemaSQL, for
// proving statements without a replica. It has one connection (an
// in-memory database lives and dies with its connection), enforces foreign
// keys like ferry's replica connections (so write statements are proven
// with the same parent-key reads), and is query-only once the schema is
// loaded.
func SchemaDB(ctx context.Context, schemaSQL string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file::memory:?_fk=true")
	if err != nil {
		return nil, fmt.Errorf("schema database: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if _, err := db.ExecContext(ctx, schemaSQL); err != nil {
		db.Close()
		return nil, fmt.Errorf("schema database: load schema: %w", err)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA query_only = 1`); err != nil {
		db.Close()
		return nil, fmt.Errorf("schema database: %w", err)
	}
	return db, nil
}

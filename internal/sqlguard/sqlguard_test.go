package sqlguard

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// extraSchema adds to the sample schema what the denial tests need: a
// table written by a trigger, a view and a table that resolves conflicts
// with REPLACE.
const extraSchema = `
CREATE TABLE audit (what TEXT, at TEXT);
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
CREATE TRIGGER notes_audit AFTER INSERT ON notes BEGIN
	INSERT INTO audit (what) VALUES ('note ' || new.id);
END;
CREATE VIEW owners AS SELECT plate, owner FROM vehicles;
CREATE TABLE tags (name TEXT UNIQUE ON CONFLICT REPLACE, n INTEGER);
CREATE TABLE ferry_secret (k TEXT, v TEXT);
`

func sampleSchema(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sample", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// conn returns a connection of db, closed at the end of the test.
func conn(t testing.TB, db *sql.DB) *sql.Conn {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// replica creates a real replica file with the sample schema plus
// extraSchema and returns its writer handle, its read-only pool and path.
func replica(t testing.TB) (w, ro *sql.DB, path string) {
	t.Helper()
	ctx := context.Background()
	path = filepath.Join(t.TempDir(), "replica.db")
	w, err := sqlitedb.Open(ctx, path, sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.ExecContext(ctx, sampleSchema(t)+extraSchema); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, `
		INSERT INTO drivers VALUES ('110101198001010010', 'Zhang San', 'M', '1980-01-01', '13800000000', '110101');
		INSERT INTO vehicles VALUES ('京A12345', 'small', '110101198001010010', 'car', 'X', 'red', '2020-01-01', '2026-01-01');
		INSERT INTO exam_slots VALUES (1, '2026-07-01', '09:00', 'North', 1, 2);
		INSERT INTO notes VALUES (1, 'first');`); err != nil {
		t.Fatal(err)
	}
	ro, err = sqlitedb.Open(ctx, path, sqlitedb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	return w, ro, path
}

type sampleOp struct {
	Name      string `yaml:"name"`
	Mode      string `yaml:"mode"`
	Statement string `yaml:"statement"`
}

func sampleOps(t testing.TB) []sampleOp {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sample", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Operations []sampleOp `yaml:"operations"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Operations) == 0 {
		t.Fatal("no operations in the sample policy")
	}
	return p.Operations
}

// sampleAccess lists exactly what each sample operation touches.
var sampleAccess = map[string]Access{
	"violations.query": {Read: map[string][]string{
		"violations": {"id", "occurred_at", "place", "code", "description", "fine_yuan", "points", "paid", "plate"},
		"vehicles":   {"plate", "owner"},
	}},
	"licence.status": {Read: map[string][]string{
		"licences": {"class", "status", "points", "issued_on", "valid_until", "id_number"},
		"drivers":  {"id_number", "name", "mobile"},
	}},
	"exam.slots": {Read: map[string][]string{
		"exam_slots":   {"id", "exam_date", "start_time", "centre", "subject", "capacity"},
		"appointments": {"slot_id"},
	}},
	"exam.book": {
		Read: map[string][]string{
			"exam_slots":   {"id", "capacity"},
			"appointments": {"slot_id", "id_number"},
			"drivers":      {"id_number"},
		},
		Insert: []string{"appointments"},
	},
	"licence.renew": {
		Read:   map[string][]string{"licences": {"id_number", "status", "valid_until"}},
		Update: map[string][]string{"licences": {"valid_until"}},
	},
}

func modeOf(t testing.TB, s string) Mode {
	t.Helper()
	switch s {
	case "read":
		return Read
	case "write":
		return Write
	}
	t.Fatalf("unknown mode %q", s)
	return 0
}

// without returns acc with column col of table removed from Read.
func without(acc Access, table, col string) Access {
	out := Access{Read: map[string][]string{}, Insert: acc.Insert, Update: acc.Update}
	for t, cols := range acc.Read {
		if t == table {
			cols = slices.DeleteFunc(slices.Clone(cols), func(c string) bool { return c == col })
		}
		out.Read[t] = cols
	}
	return out
}

func TestProve_sample(t *testing.T) {
	ctx := context.Background()
	schemaDB, err := SchemaDB(ctx, sampleSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { schemaDB.Close() })
	w, ro, _ := replica(t)
	conns := map[string]*sql.Conn{"schema": conn(t, schemaDB), "writer": conn(t, w), "read-only": conn(t, ro)}

	for _, op := range sampleOps(t) {
		acc, ok := sampleAccess[op.Name]
		if !ok {
			t.Fatalf("sample operation %s has no Access in this test", op.Name)
		}
		mode := modeOf(t, op.Mode)
		for name, c := range conns {
			t.Run(op.Name+"/"+name, func(t *testing.T) {
				if err := Prove(ctx, c, mode, acc, op.Statement); err != nil {
					t.Fatalf("Prove: %v", err)
				}
				for table, cols := range acc.Read {
					for _, col := range cols {
						err := Prove(ctx, c, mode, without(acc, table, col), op.Statement)
						want := "reads " + table + "." + col
						if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), want) {
							t.Errorf("without %s.%s: got %v, want a denial %q", table, col, err, want)
						}
					}
				}
				if len(acc.Update) > 0 {
					err := Prove(ctx, c, mode, Access{Read: acc.Read}, op.Statement)
					if want := "updates licences.valid_until"; !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), want) {
						t.Errorf("without Update: got %v, want %q", err, want)
					}
				}
				if len(acc.Insert) > 0 {
					err := Prove(ctx, c, mode, Access{Read: acc.Read}, op.Statement)
					if want := "inserts into appointments"; !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), want) {
						t.Errorf("without Insert: got %v, want %q", err, want)
					}
				}
				// A read statement is never allowed as a write, and the
				// reverse.
				other := Read
				if mode == Read {
					other = Write
				}
				if err := Prove(ctx, c, other, acc, op.Statement); !errors.Is(err, ErrDenied) {
					t.Errorf("as %s: got %v, want a denial", other, err)
				}
			})
		}
	}
}

func TestProve_denied(t *testing.T) {
	ctx := context.Background()
	w, ro, _ := replica(t)
	all := map[string][]string{
		"vehicles": {"plate", "owner"},
		"notes":    {"id", "body"},
		"owners":   {"plate", "owner"},
		"tags":     {"name", "n"},
	}
	tests := []struct {
		name string
		mode Mode
		acc  Access
		stmt string
		want []string // every one must appear in the error
	}{
		{"sqlite_schema", Read, Access{Read: all}, `SELECT name FROM sqlite_schema`, []string{"reads sqlite_master.name (reserved table)"}},
		{"sqlite_master listed", Read, Access{Read: map[string][]string{"sqlite_master": {"name"}}}, `SELECT name FROM sqlite_master`, []string{"reads sqlite_master.name (reserved table)"}},
		{"ferry table listed", Read, Access{Read: map[string][]string{"ferry_secret": {"k", "v"}}}, `SELECT k, v FROM ferry_secret`, []string{"reads ferry_secret.k (reserved table)", "reads ferry_secret.v"}},
		{"unlisted column", Read, Access{Read: map[string][]string{"vehicles": {"plate"}}}, `SELECT plate, owner FROM vehicles`, []string{"reads vehicles.owner"}},
		{"unlisted table", Read, Access{Read: all}, `SELECT class FROM licences`, []string{"reads licences.class"}},
		{"count of unlisted table", Read, Access{Read: all}, `SELECT count(*) FROM licences`, []string{"reads table licences"}},
		{"select star", Read, Access{Read: all}, `SELECT * FROM vehicles`, []string{"reads vehicles.brand", "reads vehicles.colour"}},
		{"view without its table", Read, Access{Read: map[string][]string{"owners": {"plate", "owner"}}}, `SELECT plate, owner FROM owners`, []string{"reads vehicles.plate", "reads vehicles.owner"}},
		{"view table without view", Read, Access{Read: map[string][]string{"vehicles": {"plate", "owner"}}}, `SELECT plate FROM owners`, []string{"reads owners.plate"}},
		{"cte insert", Read, Access{Read: all, Insert: []string{"notes"}}, `WITH x AS (SELECT 1 AS a) INSERT INTO notes (body) SELECT a FROM x`, []string{"inserts into notes", "is not read-only"}},
		{"second statement", Read, Access{Read: all}, "SELECT plate FROM vehicles; DELETE FROM notes", []string{"more than one statement"}},
		{"nul byte", Read, Access{Read: all}, "SELECT plate FROM vehicles\x00; DELETE FROM notes", []string{"NUL byte"}},
		{"random", Read, Access{Read: all}, `SELECT random(), plate FROM vehicles`, []string{"calls random()"}},
		{"randomblob", Read, Access{Read: all}, `SELECT hex(randomblob(8))`, []string{"calls randomblob()"}},
		{"load_extension", Read, Access{Read: all}, `SELECT load_extension('x')`, []string{"calls load_extension()"}},
		{"last_insert_rowid", Read, Access{Read: all}, `SELECT last_insert_rowid()`, []string{"calls last_insert_rowid()"}},
		{"recursive cte", Read, Access{Read: all}, `WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c`, []string{"recursive CTE"}},
		{"pragma", Read, Access{Read: all}, `PRAGMA table_info(vehicles)`, []string{"runs PRAGMA table_info(vehicles)"}},
		{"pragma query_only", Read, Access{Read: all}, `PRAGMA query_only = 0`, []string{"runs PRAGMA query_only(0)"}},
		{"attach", Write, Access{Read: all}, `ATTACH DATABASE 'x.db' AS x`, []string{"attaches database"}},
		{"begin", Write, Access{Read: all}, `BEGIN`, []string{"transaction control"}},
		{"savepoint", Write, Access{Read: all}, `SAVEPOINT s`, []string{"runs savepoint"}},
		{"empty", Read, Access{Read: all}, `-- nothing`, []string{"is not a SELECT"}},
		{"write: unlisted table", Write, Access{Read: all, Insert: []string{"notes"}}, `INSERT INTO tags (name, n) VALUES ('a', 1)`, []string{"inserts into tags"}},
		{"write: unlisted update column", Write, Access{Read: all, Update: map[string][]string{"notes": {"id"}}}, `UPDATE notes SET body = 'x' WHERE id = 1`, []string{"updates notes.body"}},
		{"write: delete", Write, Access{Read: all, Insert: []string{"notes"}}, `DELETE FROM notes WHERE id = 1`, []string{"deletes from notes", "neither inserts nor updates"}},
		{"write: drop", Write, Access{Read: all}, `DROP TABLE notes`, []string{"drops table notes"}},
		{"write: create", Write, Access{Read: all}, `CREATE TABLE x (a)`, []string{"creates table x"}},
		{"write: alter", Write, Access{Read: all}, `ALTER TABLE notes ADD COLUMN c`, []string{"alters table notes"}},
		{"write: trigger writes elsewhere", Write, Access{Read: all, Insert: []string{"notes"}}, `INSERT INTO notes (body) VALUES ('x')`, []string{"inserts into audit"}},
		{"write: or replace", Write, Access{Read: all, Insert: []string{"notes"}}, `INSERT OR REPLACE INTO notes (id, body) VALUES (1, 'x')`, []string{"REPLACE conflict resolution"}},
		{"write: replace into", Write, Access{Read: all, Insert: []string{"notes"}}, `REPLACE INTO notes (id, body) VALUES (1, 'x')`, []string{"REPLACE conflict resolution"}},
		{"write: update or replace", Write, Access{Read: all, Update: map[string][]string{"notes": {"id"}}}, `UPDATE OR REPLACE notes SET id = 2 WHERE id = 1`, []string{"REPLACE conflict resolution"}},
		{"write: schema replace", Write, Access{Read: all, Insert: []string{"tags"}}, `INSERT INTO tags (name, n) VALUES ('a', 1)`, []string{"writes table tags, whose definition resolves conflicts with REPLACE"}},
		{"write: upsert update", Write, Access{Read: all, Insert: []string{"notes"}, Update: map[string][]string{"notes": {"id"}}}, `INSERT INTO notes (id, body) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET body = excluded.body`, []string{"updates notes.body"}},
		{"write: select only", Write, Access{Read: all}, `SELECT plate FROM vehicles`, []string{"neither inserts nor updates"}},
	}
	conns := map[string]*sql.Conn{"writer": conn(t, w), "read-only": conn(t, ro)}
	for _, tt := range tests {
		for name, c := range conns {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				err := Prove(ctx, c, tt.mode, tt.acc, tt.stmt)
				var pe *ProofError
				if !errors.As(err, &pe) || !errors.Is(err, ErrDenied) {
					t.Fatalf("got %v, want a *ProofError", err)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			})
		}
	}

	// The statements above changed nothing, and the connections work
	// without an authorizer afterwards.
	var n int
	if err := conns["writer"].QueryRowContext(ctx, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("notes: %d rows, %v; want 1 row", n, err)
	}
	var qo int
	if err := conns["read-only"].QueryRowContext(ctx, `PRAGMA query_only`).Scan(&qo); err != nil || qo != 1 {
		t.Fatalf("query_only = %d, %v; want 1 (the denied PRAGMA must not take effect)", qo, err)
	}
}

func TestProve_allowed(t *testing.T) {
	ctx := context.Background()
	w, _, _ := replica(t)
	c := conn(t, w)
	tests := []struct {
		name string
		mode Mode
		acc  Access
		stmt string
	}{
		{"view and its table", Read, Access{Read: map[string][]string{"owners": {"plate"}, "vehicles": {"plate", "owner"}}}, `SELECT plate FROM owners`},
		{"case-insensitive names", Read, Access{Read: map[string][]string{"VEHICLES": {"Plate"}}}, `SELECT PLATE FROM Vehicles;`},
		{"functions", Read, Access{Read: map[string][]string{"vehicles": {"plate", "registered_on"}}}, `SELECT upper(substr(plate, 1, 2)), coalesce(date(registered_on, '+1 year'), 'x'), replace(plate, 'A', 'B'), CAST(length(plate) AS TEXT) FROM vehicles WHERE plate LIKE '京%'`},
		{"plain cte", Read, Access{Read: map[string][]string{"vehicles": {"plate"}}}, `WITH p AS (SELECT plate FROM vehicles) SELECT plate FROM p`},
		{"update listed", Write, Access{Read: map[string][]string{"notes": {"id"}}, Update: map[string][]string{"notes": {"body"}}}, `UPDATE notes SET body = 'y' WHERE id = 1`},
		{"trigger with its table listed", Write, Access{Read: map[string][]string{"notes": {"id"}}, Insert: []string{"notes", "audit"}}, `INSERT INTO notes (body) VALUES ('x')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Prove(ctx, c, tt.mode, tt.acc, tt.stmt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestProve_compileError(t *testing.T) {
	ctx := context.Background()
	w, _, _ := replica(t)
	c := conn(t, w)
	err := Prove(ctx, c, Read, Access{}, `SELECT x FROM no_such_table`)
	if err == nil || errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("got %v, want a compile error", err)
	}
	if err := Prove(ctx, c, Mode(7), Access{}, `SELECT 1`); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

// notAuthorized reports whether err is SQLite's SQLITE_AUTH error. Its
// message is "access to TABLE.COLUMN is prohibited" for a denied read and
// "not authorized" for any other denied action.
func notAuthorized(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrAuth
}

func TestGuard(t *testing.T) {
	ctx := context.Background()
	w, ro, _ := replica(t)
	small := Access{Read: map[string][]string{"vehicles": {"plate"}}}

	for name, db := range map[string]*sql.DB{"writer": w, "read-only": ro} {
		t.Run("blocks/"+name, func(t *testing.T) {
			c := conn(t, db)
			var owner string
			err := Guard(ctx, c, Read, small, func() error {
				return c.QueryRowContext(ctx, `SELECT owner FROM vehicles WHERE plate = ?`, "京A12345").Scan(&owner)
			})
			if !errors.Is(err, ErrDenied) || !notAuthorized(err) || !strings.Contains(err.Error(), "reads vehicles.owner") {
				t.Fatalf("got %v, want a not-authorized denial of vehicles.owner", err)
			}
			if owner != "" {
				t.Fatal("the denied column was read")
			}
			// The authorizer is gone: an unrelated statement works.
			var n int
			if err := c.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n); err != nil {
				t.Fatalf("after Guard: %v", err)
			}
		})
	}

	t.Run("allows", func(t *testing.T) {
		c := conn(t, ro)
		var plate string
		err := Guard(ctx, c, Read, small, func() error {
			return c.QueryRowContext(ctx, `SELECT plate FROM vehicles`).Scan(&plate)
		})
		if err != nil || plate != "京A12345" {
			t.Fatalf("got %q, %v", plate, err)
		}
	})

	t.Run("fn error", func(t *testing.T) {
		c := conn(t, w)
		boom := errors.New("boom")
		err := Guard(ctx, c, Read, small, func() error {
			var p string
			if err := c.QueryRowContext(ctx, `SELECT plate FROM vehicles`).Scan(&p); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want boom", err)
		}
		if _, err := c.ExecContext(ctx, `INSERT INTO notes (body) VALUES ('after error')`); err != nil {
			t.Fatalf("after Guard: %v", err)
		}
	})

	t.Run("panic", func(t *testing.T) {
		c := conn(t, w)
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			_ = Guard(ctx, c, Read, small, func() error { panic("fn panicked") })
		}()
		if _, err := c.ExecContext(ctx, `INSERT INTO notes (body) VALUES ('after panic')`); err != nil {
			t.Fatalf("after Guard: %v", err)
		}
	})

	t.Run("swallowed denial", func(t *testing.T) {
		c := conn(t, w)
		err := Guard(ctx, c, Write, Access{}, func() error {
			_, _ = c.ExecContext(ctx, `DELETE FROM notes`)
			return nil
		})
		if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "deletes from notes") {
			t.Fatalf("got %v, want the denial", err)
		}
	})

	t.Run("prepared before", func(t *testing.T) {
		c := conn(t, w)
		st, err := c.PrepareContext(ctx, `SELECT body FROM notes`)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		err = Guard(ctx, c, Read, small, func() error {
			var b string
			return st.QueryRowContext(ctx).Scan(&b)
		})
		if !errors.Is(err, ErrDenied) || !notAuthorized(err) || !strings.Contains(err.Error(), "reads notes.body") {
			t.Fatalf("got %v, want the recompiled statement denied", err)
		}
		var b string
		if err := st.QueryRowContext(ctx).Scan(&b); err != nil {
			t.Fatalf("after Guard: %v", err)
		}
	})

	t.Run("write denied", func(t *testing.T) {
		c := conn(t, w)
		err := Guard(ctx, c, Write, Access{Insert: []string{"notes"}}, func() error {
			_, err := c.ExecContext(ctx, `DELETE FROM notes`)
			return err
		})
		if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "not authorized") || !strings.Contains(err.Error(), "deletes from notes") {
			t.Fatalf("got %v, want a not-authorized denial", err)
		}
	})

	t.Run("other connection", func(t *testing.T) {
		c := conn(t, ro)
		err := Guard(ctx, c, Read, small, func() error {
			var n int
			return w.QueryRowContext(ctx, `SELECT count(*) FROM notes`).Scan(&n)
		})
		if !errors.Is(err, ErrNotConsulted) {
			t.Fatalf("got %v, want ErrNotConsulted", err)
		}
	})
}

// TestGuard_recompiled shows that Guard checks a statement again when
// SQLite recompiles it after a schema change: a trigger added while the
// guard is installed makes the same INSERT write another table, and Guard
// denies it. It also shows that Prove sees another connection's schema
// change rather than its connection's cached schema.
func TestGuard_recompiled(t *testing.T) {
	ctx := context.Background()
	w, _, path := replica(t)
	acc := Access{Insert: []string{"notes"}}
	stmt := `INSERT INTO notes (body) VALUES ('x')`
	other, err := sqlitedb.Open(ctx, path, sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	c := conn(t, w)
	if err := Prove(ctx, c, Write, acc, stmt); !errors.Is(err, ErrDenied) {
		t.Fatalf("with the audit trigger: got %v, want a denial", err)
	}
	if _, err := other.ExecContext(ctx, `DROP TRIGGER notes_audit`); err != nil {
		t.Fatal(err)
	}
	if err := Prove(ctx, c, Write, acc, stmt); err != nil {
		t.Fatalf("after the trigger was dropped elsewhere: %v", err)
	}
	st, err := c.PrepareContext(ctx, stmt)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var first error
	err = Guard(ctx, c, Write, acc, func() error {
		if _, first = st.ExecContext(ctx); first != nil {
			return first
		}
		// Someone adds a trigger behind the policy's back.
		if _, err := other.ExecContext(ctx, `CREATE TRIGGER sneaky AFTER INSERT ON notes BEGIN DELETE FROM vehicles; END`); err != nil {
			t.Fatal(err)
		}
		_, err := st.ExecContext(ctx) // recompiled: the schema changed
		return err
	})
	if first != nil {
		t.Fatalf("first insert: %v", first)
	}
	if !errors.Is(err, ErrDenied) || !notAuthorized(err) || !strings.Contains(err.Error(), "deletes from vehicles") {
		t.Fatalf("got %v, want the trigger's DELETE denied", err)
	}
	var n int
	if err := c.QueryRowContext(ctx, `SELECT count(*) FROM vehicles`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("vehicles: %d rows, %v; want 1", n, err)
	}
}

func TestGuard_writeTransaction(t *testing.T) {
	ctx := context.Background()
	w, _, _ := replica(t)
	c := conn(t, w)
	book := ""
	for _, op := range sampleOps(t) {
		if op.Name == "exam.book" {
			book = op.Statement
		}
	}
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int64
	err = Guard(ctx, c, Write, sampleAccess["exam.book"], func() error {
		res, err := tx.ExecContext(ctx, book, sql.Named("id_number", "110101198001010010"), sql.Named("slot_id", 1))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil || n != 1 {
		t.Fatalf("booked %d, %v; want 1 row", n, err)
	}
	// ferry's own statements run on the same connection afterwards.
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_secret VALUES ('ledger', 'ok')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestDenials(t *testing.T) {
	var d Denials
	cb := Authorizer(Read, Access{Read: map[string][]string{"t": {"a"}}}, &d)
	for range 2 {
		if got := cb(sqlite3.SQLITE_READ, "t", "b", "main"); got != sqlite3.SQLITE_DENY {
			t.Fatalf("read t.b: %d, want SQLITE_DENY", got)
		}
	}
	if got := cb(sqlite3.SQLITE_READ, "t", "a", "main"); got != sqlite3.SQLITE_OK {
		t.Fatalf("read t.a: %d, want SQLITE_OK", got)
	}
	if got := cb(sqlite3.SQLITE_READ, "t", "a", "temp"); got != sqlite3.SQLITE_DENY {
		t.Fatalf("read temp t.a: %d, want SQLITE_DENY", got)
	}
	if got := cb(sqlite3.SQLITE_INSERT, "t", "", "main"); got != sqlite3.SQLITE_DENY {
		t.Fatalf("insert in Read mode: %d, want SQLITE_DENY", got)
	}
	got := []string{}
	for _, x := range d.List() {
		got = append(got, x.String())
	}
	want := []string{"reads t.b", "reads t.a in database temp", "inserts into t"}
	if !slices.Equal(got, want) {
		t.Fatalf("denials %q, want %q", got, want)
	}
}

func TestSchemaDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := SchemaDB(ctx, `CREATE TABLE (`); err == nil {
		t.Fatal("bad schema accepted")
	}
	db, err := SchemaDB(ctx, `CREATE TABLE t (a)`)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1)`); err == nil {
		t.Fatal("the schema database is writable")
	}
}

// BenchmarkGuard compares a guarded query with the same query unguarded on
// the same connection, and reports their ratio.
func BenchmarkGuard(b *testing.B) {
	ctx := context.Background()
	_, ro, _ := replica(b)
	c := conn(b, ro)
	acc := sampleAccess["violations.query"]
	var stmt string
	for _, op := range sampleOps(b) {
		if op.Name == "violations.query" {
			stmt = op.Statement
		}
	}
	args := []any{sql.Named("plate", "京A12345"), sql.Named("id_number", "110101198001010010")}
	query := func() error {
		rows, err := c.QueryContext(ctx, stmt, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
		}
		return errors.Join(rows.Err(), rows.Close())
	}
	var plain, guarded time.Duration
	n := 0
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := query(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := Guard(ctx, c, Read, acc, query); err != nil {
			b.Fatal(err)
		}
		guarded += time.Since(t1)
		n++
		plain += t1.Sub(t0)
	}
	b.ReportMetric(float64(plain.Nanoseconds())/float64(n), "unguarded-ns/op")
	b.ReportMetric(float64(guarded.Nanoseconds())/float64(n), "guarded-ns/op")
	b.ReportMetric(float64(guarded)/float64(plain), "ratio")
}

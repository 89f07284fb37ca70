package sample_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	_ "github.com/mattn/go-sqlite3"

	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// newReplica writes a sample replica to a temporary directory and opens it.
func newReplica(t *testing.T) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "replica.db")
	if err := sample.WriteReplica(context.Background(), path); err != nil {
		t.Fatalf("WriteReplica: %v", err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_fk=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func samplePolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.yaml", sample.Policy())
	if err != nil {
		t.Fatalf("sample policy does not load: %v", err)
	}
	return p
}

func column(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestFiles_golden keeps testdata/sample equal to what the generator
// produces now.
func TestFiles_golden(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "sample")
	for _, f := range sample.Files() {
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatalf("%v\nhint: run go generate ./internal/sample", err)
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("testdata/sample/%s differs from the generator's output\nhint: run go generate ./internal/sample", f.Name)
		}
	}
}

func TestData_deterministic(t *testing.T) {
	if !bytes.Equal(sample.Data(), sample.Data()) {
		t.Fatal("Data differs between calls")
	}
}

// validID checks a GB 11643 number the way ISO 7064 MOD 11-2 states it:
// with the check character read as a value (X = 10), the weighted sum of
// all 18 characters, weights 2^(17-i) mod 11, is 1 mod 11.
func validID(s string) bool {
	if len(s) != 18 {
		return false
	}
	sum := 0
	for i := range 18 {
		var v int
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			v = int(c - '0')
		case c == 'X' && i == 17:
			v = 10
		default:
			return false
		}
		w := 1
		for range 17 - i {
			w = w * 2 % 11
		}
		sum += v * w
	}
	return sum%11 == 1
}

func TestValidID_knownNumbers(t *testing.T) {
	// Check digits worked by hand from the GB 11643 weights.
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"110101198001010010", true},
		{"11010119790614238X", true},
		{"110101198001010011", false},
		{"11010119790614238x", false},
		{"1101011980010100", false},
	} {
		if got := validID(tc.id); got != tc.ok {
			t.Errorf("validID(%s) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

func TestWriteReplica_data(t *testing.T) {
	db := newReplica(t)
	p := samplePolicy(t)

	ids := column(t, db, `SELECT id_number || '|' || birth_date || '|' || region_code || '|' || gender FROM drivers`)
	if len(ids) < 150 {
		t.Fatalf("%d drivers, want about 200", len(ids))
	}
	sawX := false
	for _, row := range ids {
		f := strings.Split(row, "|")
		id, birth, region, gender := f[0], f[1], f[2], f[3]
		if !validID(id) {
			t.Errorf("ID number %s: invalid check digit", id)
		}
		if err := evaluate(p, "licence.status", id, map[string]any{"id_number": id}); err != nil {
			t.Errorf("ID number %s: the policy refuses it: %v", id, err)
		}
		if id[:6] != region || id[6:14] != strings.ReplaceAll(birth, "-", "") {
			t.Errorf("ID number %s does not carry region %s and birth date %s", id, region, birth)
		}
		if male := (id[16]-'0')%2 == 1; male != (gender == "M") {
			t.Errorf("ID number %s: sequence parity does not match gender %s", id, gender)
		}
		sawX = sawX || id[17] == 'X'
	}
	if !sawX {
		t.Error("no ID number with check character X")
	}

	plates := column(t, db, `SELECT plate || '|' || plate_kind FROM vehicles`)
	someone := sample.Citizens()[0].IDNumber
	kinds := map[string]int{}
	for _, row := range plates {
		plate, kind, _ := strings.Cut(row, "|")
		kinds[kind]++
		if err := evaluate(p, "violations.query", someone, map[string]any{"plate": plate}); err != nil {
			t.Errorf("plate %s: the policy refuses it: %v", plate, err)
		}
		want := 7
		if kind == "new_energy" {
			want = 8
		}
		if n := utf8.RuneCountInString(plate); n != want {
			t.Errorf("%s plate %s has %d characters, want %d", kind, plate, n, want)
		}
	}
	if kinds["small"] == 0 || kinds["new_energy"] == 0 {
		t.Errorf("plate kinds %v, want both ordinary and new-energy plates", kinds)
	}

	for _, q := range []struct {
		query    string
		min, max int
	}{
		{`SELECT count(*) FROM licences`, 100, 200},
		{`SELECT count(*) FROM violations`, 150, 500},
		{`SELECT count(*) FROM violations WHERE paid = 0`, 1, 500},
		{`SELECT count(*) FROM exam_slots`, 24, 100},
		{`SELECT count(*) FROM appointments`, 1, 200},
		{`SELECT count(DISTINCT status) FROM licences`, 3, 3},
		{`SELECT count(*) FROM licences WHERE points NOT BETWEEN 0 AND 12`, 0, 0},
		{`SELECT count(*) FROM licences WHERE status = 'expired' AND valid_until >= '2026-06-15'`, 0, 0},
		{`SELECT count(DISTINCT subject) FROM exam_slots`, 4, 4},
		{`SELECT count(*) FROM pragma_foreign_key_check`, 0, 0},
		{`SELECT count(*) FROM exam_slots s WHERE s.capacity <= (SELECT count(*) FROM appointments a WHERE a.slot_id = s.id)`, 0, 0},
	} {
		if n := count(t, db, q.query); n < q.min || n > q.max {
			t.Errorf("%s = %d, want %d..%d", q.query, n, q.min, q.max)
		}
	}
}

// evaluate evaluates a request of the portal for subject with the policy.
func evaluate(p *policy.Policy, op, subject string, params map[string]any) error {
	_, err := check(p, op, subject, params)
	return err
}

// check evaluates a request of the portal for subject with the policy.
func check(p *policy.Policy, op, subject string, params map[string]any) (*policy.Checked, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	return p.Evaluate(policy.Request{Client: "portal", Subject: subject, Operation: op, Params: raw})
}

func TestCitizens(t *testing.T) {
	db := newReplica(t)
	cs := sample.Citizens()
	if len(cs) < 3 {
		t.Fatalf("%d citizens, want at least 3", len(cs))
	}
	seen := map[string]bool{}
	for i, c := range cs {
		if seen[c.IDNumber] {
			t.Errorf("citizen %d repeats ID number %s", i, c.IDNumber)
		}
		seen[c.IDNumber] = true
		if !validID(c.IDNumber) || c.Name == "" {
			t.Errorf("citizen %d: %+v", i, c)
		}
		if n := count(t, db, `SELECT count(*) FROM drivers d JOIN vehicles v ON v.owner = d.id_number
			JOIN licences l ON l.id_number = d.id_number
			WHERE d.id_number = ? AND d.name = ? AND v.plate = ? AND l.status = 'normal'`, c.IDNumber, c.Name, c.Plate); n != 1 {
			t.Errorf("citizen %d is not a licence holder in good standing owning plate %s", i, c.Plate)
		}
		if n := count(t, db, `SELECT count(*) FROM appointments WHERE id_number = ?`, c.IDNumber); n != 0 {
			t.Errorf("citizen %d already has %d bookings", i, n)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM violations WHERE plate = ? AND paid = 0`, cs[0].Plate); n == 0 {
		t.Error("the first citizen has no unpaid violation")
	}
	cs[0].Name = "changed"
	if sample.Citizens()[0].Name == "changed" {
		t.Error("Citizens returns shared memory")
	}
}

func TestWriteReplica_refusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := sample.WriteReplica(context.Background(), path)
	if !errors.Is(err, sample.ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatalf("existing file changed to %q", b)
	}
}

func TestWriteReplica_removesOnFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sample.WriteReplica(ctx, path); err == nil {
		t.Fatal("WriteReplica with a cancelled context succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial replica left behind: %v", err)
	}
}

// TestPolicy_statements runs every operation of the sample policy, through
// policy.Check, on a fresh replica.
func TestPolicy_statements(t *testing.T) {
	db := newReplica(t)
	p := samplePolicy(t)
	cs := sample.Citizens()
	c, other := cs[0], cs[1]

	type run struct {
		name   string
		op     string
		params map[string]any
		rows   int // reads: -1 means at least one; writes: rows affected
	}
	runs := []run{
		{"my violations", "violations.query", map[string]any{"id_number": c.IDNumber, "plate": c.Plate}, -1},
		{"someone else's plate", "violations.query", map[string]any{"id_number": c.IDNumber, "plate": other.Plate}, 0},
		{"licence", "licence.status", map[string]any{"id_number": c.IDNumber}, 1},
		{"unknown person's licence", "licence.status", map[string]any{"id_number": "110101198001010010"}, 0},
		{"slots", "exam.slots", map[string]any{"subject": 1}, -1},
		{"slots in a window", "exam.slots", map[string]any{"subject": 3, "date_from": "2026-07-01", "date_to": "2026-08-31"}, -1},
		{"slots in the past", "exam.slots", map[string]any{"subject": 2, "date_to": "2020-01-01"}, 0},
		{"book", "exam.book", map[string]any{"id_number": c.IDNumber, "slot_id": 1}, 1},
		{"book twice", "exam.book", map[string]any{"id_number": c.IDNumber, "slot_id": 1}, 0},
		{"book another", "exam.book", map[string]any{"id_number": other.IDNumber, "slot_id": 1}, 1},
		{"book an unknown slot", "exam.book", map[string]any{"id_number": c.IDNumber, "slot_id": 999999}, 0},
		{"book for an unknown person", "exam.book", map[string]any{"id_number": "110101198001010010", "slot_id": 2}, 0},
		{"renew", "licence.renew", map[string]any{"id_number": c.IDNumber}, 1},
		{"renew an unknown person's licence", "licence.renew", map[string]any{"id_number": "110101198001010010"}, 0},
	}
	covered := map[string]bool{}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			covered[r.op] = true
			subject, _ := r.params["id_number"].(string)
			chk, err := check(p, r.op, subject, r.params)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			stmt, err := db.Prepare(chk.Op.Statement)
			if err != nil {
				t.Fatalf("prepare %s: %v", r.op, err)
			}
			defer stmt.Close()
			if chk.Op.Mode == policy.ModeWrite {
				res, err := stmt.Exec(chk.Args...)
				if err != nil {
					t.Fatalf("exec: %v", err)
				}
				if n, _ := res.RowsAffected(); n != int64(r.rows) {
					t.Fatalf("%d rows affected, want %d", n, r.rows)
				}
				return
			}
			rows, err := stmt.Query(chk.Args...)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if (r.rows < 0 && n == 0) || (r.rows >= 0 && n != r.rows) {
				t.Fatalf("%d rows, want %d (-1: some)", n, r.rows)
			}
			if n > chk.Op.MaxRows && r.rows < 0 {
				t.Logf("%d rows exceed max_rows %d; the replica component cuts them", n, chk.Op.MaxRows)
			}
			if r.op == "exam.slots" && (len(cols) == 0 || cols[0] != "slot_id") {
				t.Fatalf("exam.slots columns %v, want slot_id first", cols)
			}
		})
	}
	for _, op := range p.Operations {
		if !covered[op.Name] {
			t.Errorf("operation %s is not exercised", op.Name)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM appointments WHERE slot_id = 1 AND id_number IN (?, ?) AND created_at != ''`, c.IDNumber, other.IDNumber); n != 2 {
		t.Errorf("%d new bookings in slot 1, want 2", n)
	}
}

// TestPolicy_slotsFillUp books a slot until it is full: the policy's write
// then adds nothing, and exam.slots stops listing the slot.
func TestPolicy_slotsFillUp(t *testing.T) {
	db := newReplica(t)
	p := samplePolicy(t)
	var capacity, booked int
	if err := db.QueryRow(`SELECT capacity, (SELECT count(*) FROM appointments WHERE slot_id = 5) FROM exam_slots WHERE id = 5`).Scan(&capacity, &booked); err != nil {
		t.Fatal(err)
	}
	people := column(t, db, `SELECT id_number FROM drivers WHERE id_number NOT IN (SELECT id_number FROM appointments WHERE slot_id = 5) ORDER BY id_number`)
	book := func(id string) int64 {
		t.Helper()
		chk, err := check(p, "exam.book", id, map[string]any{"id_number": id, "slot_id": 5})
		if err != nil {
			t.Fatal(err)
		}
		res, err := db.Exec(chk.Op.Statement, chk.Args...)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := res.RowsAffected()
		return n
	}
	free := capacity - booked
	for i := range free {
		if book(people[i]) != 1 {
			t.Fatalf("booking %d of %d free places failed", i+1, free)
		}
	}
	if book(people[free]) != 0 {
		t.Fatal("booked a place in a full slot")
	}
	chk, err := check(p, "exam.slots", "", map[string]any{"subject": 1})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(chk.Op.Statement, chk.Args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var rest [5]any
		if err := rows.Scan(&id, &rest[0], &rest[1], &rest[2], &rest[3], &rest[4]); err != nil {
			t.Fatal(err)
		}
		if id == 5 {
			t.Fatal("exam.slots lists the full slot 5")
		}
	}
}

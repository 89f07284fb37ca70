// Package sample is the sample deployment: a traffic-management replica
// (vehicles, drivers and licences, violations with fines, exam slots and
// appointments) and the policy that serves it.
//
// # Data
//
// The schema is schema.sql, embedded. The rows come from a deterministic
// generator (math/rand/v2 PCG with a fixed seed): about 200 people with
// GB 11643 resident ID numbers whose check digits are valid, their licences,
// vehicles with plates in the national formats (ordinary 京A12345, small
// new-energy 粤BD12345), a few hundred violations, 60 exam slots and some
// bookings. Every person is synthetic. `go generate ./internal/sample`
// writes readable copies to testdata/sample, and a test fails when the
// committed copies differ from what the generator produces.
//
// # Policy
//
// policy.yaml, embedded, is the whitelist for this replica: violations.query,
// licence.status, exam.slots, and two writes: exam.book, and licence.renew,
// which an admin approves (approval:). Its statements
// are tested against a replica written by [WriteReplica], and
// policy_cases.yaml ([PolicyCases]) holds its test cases for
// `ferryctl policy test`.
package sample

//go:generate go run ./gen -out ../../testdata/sample

import (
	"bytes"
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sync"

	// The SQLite driver, registered as "sqlite3".
	_ "github.com/mattn/go-sqlite3"
)

//go:embed schema.sql
var schemaSQL []byte

//go:embed policy.yaml
var policyYAML []byte

//go:embed policy_cases.yaml
var policyCasesYAML []byte

// generated is the sample data, built once.
var generated = sync.OnceValue(generate)

// dataSQL is the sample data as SQL, rendered once.
var dataSQL = sync.OnceValue(func() []byte { return generated().render() })

// Policy returns the sample policy YAML.
func Policy() []byte { return bytes.Clone(policyYAML) }

// PolicyCases returns the sample policy's test cases, the YAML that
// `ferryctl policy test` runs against the sample replica.
func PolicyCases() []byte { return bytes.Clone(policyCasesYAML) }

// Schema returns the replica schema as SQL.
func Schema() []byte { return bytes.Clone(schemaSQL) }

// Data returns the sample rows as SQL INSERT statements for Schema.
func Data() []byte { return bytes.Clone(dataSQL()) }

// File is one readable copy of the sample deployment.
type File struct {
	Name string // base name within testdata/sample
	Data []byte
}

// Files returns the readable copies the generator writes to testdata/sample.
func Files() []File {
	return []File{
		{Name: "schema.sql", Data: Schema()},
		{Name: "data.sql", Data: Data()},
		{Name: "policy.yaml", Data: Policy()},
		{Name: "policy_cases.yaml", Data: PolicyCases()},
	}
}

// Citizen is a person in the sample data, for demos and tests.
type Citizen struct {
	Name     string
	IDNumber string // 18 characters with a valid GB 11643 check digit
	Plate    string // a vehicle registered to this citizen
}

// Citizens returns a few citizens known to be in the generated data, the
// first of whom has at least one unpaid violation.
//
// All of them hold a licence with status normal, own the plate given, which
// has at least one violation, and have no exam bookings in the sample data,
// so each may book any slot once.
func Citizens() []Citizen { return slices.Clone(generated().citizens) }

// ErrExists is returned by WriteReplica when the file is already there.
var ErrExists = errors.New("replica file already exists")

// WriteReplica creates a new SQLite replica at path with the schema and the
// deterministic sample data.
//
// It refuses to touch an existing file (ErrExists). The schema and the
// rows go in in one transaction; on any failure the new file is removed.
func WriteReplica(ctx context.Context, path string) (err error) {
	// Claim the name first: O_EXCL makes "refuse if it exists" atomic, and
	// SQLite treats the empty file as a new database.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // citizens' records: owner only
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("write sample replica %s: %w", path, ErrExists)
		}
		return fmt.Errorf("write sample replica: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write sample replica: %w", err)
	}
	defer func() {
		if err != nil {
			for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
				_ = os.Remove(path + suffix)
			}
		}
	}()

	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_fk=true&_txlock=immediate&_sync=FULL"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return fmt.Errorf("write sample replica %s: %w", path, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write sample replica %s: close: %w", path, cerr)
		}
	}()
	db.SetMaxOpenConns(1)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write sample replica %s: %w", path, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, string(schemaSQL)); err != nil {
		return fmt.Errorf("write sample replica %s: schema: %w", path, err)
	}
	if _, err := tx.ExecContext(ctx, string(dataSQL())); err != nil {
		return fmt.Errorf("write sample replica %s: data: %w", path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write sample replica %s: commit: %w", path, err)
	}
	return nil
}

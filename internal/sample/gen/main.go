// Command gen writes the readable copies of the sample deployment (schema,
// generated data and policy) to a directory, testdata/sample by default:
//
//	go run ./internal/sample/gen            # from the repository root
//	go generate ./internal/sample           # the same, from anywhere
//
// The copies are for reading and for loading with the sqlite3 shell; a test
// in internal/sample fails when they differ from what the generator
// produces.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferrybridge/ferry/internal/sample"
)

func main() {
	out := flag.String("out", filepath.Join("testdata", "sample"), "directory to write the files to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gen: error: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range sample.Files() {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

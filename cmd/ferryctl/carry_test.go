package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrybridge/ferry/internal/keys"
)

// carryKeyDirs writes the key directories of zones dmz and intranet, each
// with the other as its peer, and returns them.
func carryKeyDirs(t *testing.T) (dmzKeys, intranetKeys string) {
	t.Helper()
	root := t.TempDir()
	d, err := keys.Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	i, err := keys.Generate("intranet")
	if err != nil {
		t.Fatal(err)
	}
	dmzKeys, intranetKeys = filepath.Join(root, "dmz"), filepath.Join(root, "intranet")
	for _, k := range []struct {
		dir       string
		own, peer *keys.Zone
	}{{dmzKeys, d, i}, {intranetKeys, i, d}} {
		if err := k.own.WriteDir(k.dir); err != nil {
			t.Fatal(err)
		}
		if err := keys.WritePeer(k.dir, k.peer.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return dmzKeys, intranetKeys
}

func TestCarryImport_Incomplete(t *testing.T) {
	dmzKeys, intranetKeys := carryKeyDirs(t)
	send, disc, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
	var files []string
	for seq := 1; seq <= 3; seq++ {
		n := fmt.Sprintf("requests-%020d-%032x.fxe", seq, seq)
		if err := os.WriteFile(filepath.Join(send, n), bytes.Repeat([]byte{byte(seq)}, 100), 0o640); err != nil {
			t.Fatal(err)
		}
		files = append(files, n)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"carry", "export", disc, "--from", send, "--keys", dmzKeys, "--json"}, &out, &errOut); code != exitOK {
		t.Fatalf("export: exit %d: %s", code, errOut.String())
	}
	var exp carryExportJSON
	if err := json.Unmarshal(out.Bytes(), &exp); err != nil || !exp.Exported || len(exp.Set.Files) != 3 || exp.Set.To != "intranet" {
		t.Fatalf("export output %s: %v", out.String(), err)
	}
	if err := os.Remove(filepath.Join(disc, files[1])); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	err := runCarryImport(context.Background(), carryImportOptions{To: recv, Keys: intranetKeys, JSON: true}, disc, &out)
	var ec *exitCodeError
	if !errors.As(err, &ec) || ec.code != exitIncomplete {
		t.Fatalf("err = %v, want exit code %d", err, exitIncomplete)
	}
	var rep carryImportJSON
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Complete || len(rep.Imported) != 2 || len(rep.Missing) != 1 || rep.Missing[0] != files[1] {
		t.Errorf("report = %+v", rep)
	}
	// Through the whole command: exit 3.
	errOut.Reset()
	if code := run(context.Background(), []string{"carry", "import", disc, "--to", recv, "--keys", intranetKeys}, &out, &errOut); code != exitIncomplete {
		t.Errorf("incomplete import: exit %d", code)
	}

	// The set refilled: complete, exit 0.
	if err := os.WriteFile(filepath.Join(disc, files[1]), bytes.Repeat([]byte{2}, 100), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := runCarryImport(context.Background(), carryImportOptions{To: recv, Keys: intranetKeys}, disc, &out); err != nil {
		t.Errorf("complete import: %v", err)
	}
}

func TestCarryExport_Flags(t *testing.T) {
	dmzKeys, _ := carryKeyDirs(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"no --from", []string{"carry", "export", "x", "--keys", dmzKeys}, exitUsage},
		{"bad size", []string{"carry", "export", "x", "--from", t.TempDir(), "--keys", dmzKeys, "--max-bytes", "lots"}, exitUsage},
		{"no keys", []string{"carry", "export", "x", "--from", t.TempDir(), "--keys", t.TempDir()}, exitFailure},
		{"nothing to export", []string{"carry", "export", filepath.Join(t.TempDir(), "x"), "--from", t.TempDir(), "--keys", dmzKeys}, exitOK},
		{"no --to", []string{"carry", "import", "x", "--keys", dmzKeys}, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errOut); code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errOut.String())
			}
		})
	}
}

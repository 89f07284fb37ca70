package admin

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/keys"
)

func TestWriteKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "admin-keys")
	keyFile, pubFile, err := WriteKey(dir, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	if keyFile != filepath.Join(dir, "alice.key") || pubFile != filepath.Join(dir, "alice.pub") {
		t.Fatalf("files %s %s", keyFile, pubFile)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, keyFile: 0o600, pubFile: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	s, err := LoadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k.Verifier("alice", s.KeyHash()); err != nil || v.Name() != "alice" {
		t.Fatalf("keyring does not hold the new key: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want 2 (no temp files left)", len(entries))
	}

	t.Run("never overwrites", func(t *testing.T) {
		before, _ := os.ReadFile(keyFile)
		if _, _, err := WriteKey(dir, "alice", nil); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("got %v, want fs.ErrExist", err)
		}
		after, _ := os.ReadFile(keyFile)
		if string(before) != string(after) {
			t.Fatal("the existing key was changed")
		}
	})
	t.Run("refuses when only the public file exists", func(t *testing.T) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "bob.pub"), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := WriteKey(d, "bob", nil); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("got %v, want fs.ErrExist", err)
		}
		if _, err := os.Stat(filepath.Join(d, "bob.key")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("bob.key was written: %v", err)
		}
	})
	t.Run("invalid names", func(t *testing.T) {
		for _, name := range []string{"", "Alice", "1alice", "al ice", "al+ice", "../x", "a/b", strings.Repeat("a", 65)} {
			if _, _, err := WriteKey(t.TempDir(), name, nil); err == nil || !strings.Contains(err.Error(), "invalid admin name") {
				t.Errorf("WriteKey(%q): got %v, want an invalid name error", name, err)
			}
		}
		if !ValidName(strings.Repeat("a", 64)) || !ValidName("a_b-9") {
			t.Error("ValidName refuses valid names")
		}
	})
}

func TestLoadSigner(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubFile, err := WriteKey(dir, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	skey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, name string, data []byte, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badName, _, err := note.GenerateKey(nil, "Alice.Example")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    func(t *testing.T) string
		wantErr error
		wantMsg string
	}{
		{name: "0600 loads", path: func(t *testing.T) string { return keyFile }},
		{name: "comments and blank lines", path: func(t *testing.T) string {
			return write(t, "c.key", append([]byte("# alice's key\n\n"), skey...), 0o600)
		}},
		{name: "0644 refused", path: func(t *testing.T) string { return write(t, "open.key", skey, 0o644) },
			wantErr: keys.ErrPermissions, wantMsg: "open.key"},
		{name: "0640 refused", path: func(t *testing.T) string { return write(t, "group.key", skey, 0o640) },
			wantErr: keys.ErrPermissions, wantMsg: "group.key"},
		{name: "0601 refused", path: func(t *testing.T) string { return write(t, "other.key", skey, 0o601) },
			wantErr: keys.ErrPermissions, wantMsg: "other.key"},
		{name: "symlink refused", path: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "link.key")
			if err := os.Symlink(keyFile, p); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: keys.ErrPermissions, wantMsg: "link.key"},
		{name: "directory refused", path: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "dir.key")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: keys.ErrPermissions, wantMsg: "dir.key"},
		{name: "missing", path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone.key") }, wantMsg: "gone.key"},
		{name: "public key instead", path: func(t *testing.T) string {
			data, _ := os.ReadFile(pubFile)
			return write(t, "pub-as.key", data, 0o600)
		}, wantMsg: "pub-as.key: not an admin private key"},
		{name: "empty", path: func(t *testing.T) string { return write(t, "empty.key", []byte("# nothing\n"), 0o600) },
			wantMsg: "empty.key: no key found"},
		{name: "key name not an admin name", path: func(t *testing.T) string { return write(t, "bad.key", []byte(badName+"\n"), 0o600) },
			wantMsg: "bad.key: invalid admin name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadSigner(tt.path(t))
			if tt.wantErr == nil && tt.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Name() != "alice" {
					t.Fatalf("signer %q", s.Name())
				}
				return
			}
			if err == nil {
				t.Fatal("LoadSigner succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "PRIVATE+KEY") {
				t.Fatalf("error %q quotes the private key", err)
			}
		})
	}
}

func TestLoadKeyring(t *testing.T) {
	_, alice := testKey(t, "alice")
	_, bob := testKey(t, "bob")
	// carol's verifier key carrying alice's public key bytes.
	raw := publicKey(alice)
	carolWithAlicesKey, err := note.NewEd25519VerifierKey("carol", []byte(raw[1:]))
	if err != nil {
		t.Fatal(err)
	}
	aliceSkey, _, err := note.GenerateKey(nil, "alice")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		files   map[string]string
		want    []string
		wantMsg string
		wantErr bool
	}{
		{name: "two admins", files: map[string]string{"alice.pub": alice + "\n", "bob.pub": "# bob, ops team\n\n" + bob + "\n"},
			want: []string{"alice", "bob"}},
		{name: "other files ignored", files: map[string]string{"alice.pub": alice + "\n", "README": "x", ".bob.pub.tmp-1": "x", "bob.key": "x"},
			want: []string{"alice"}},
		{name: "malformed key names file and line", files: map[string]string{"alice.pub": alice + "\n", "bob.pub": "# comment\n\nbob+1234+zzz\n"},
			wantMsg: "bob.pub:3: not an admin public key", wantErr: true},
		{name: "truncated key", files: map[string]string{"alice.pub": alice[:len(alice)-4] + "\n"},
			wantMsg: "alice.pub:1: not an admin public key", wantErr: true},
		{name: "two keys in one file", files: map[string]string{"alice.pub": alice + "\n# and\n" + bob + "\n"},
			wantMsg: "alice.pub:3: more than one key", wantErr: true},
		{name: "name does not match file", files: map[string]string{"alice.pub": bob + "\n"},
			wantMsg: `alice.pub:1: key is named "bob", but the file is named for "alice"`, wantErr: true},
		{name: "same key under two names", files: map[string]string{"alice.pub": alice + "\n", "carol.pub": carolWithAlicesKey + "\n"},
			wantMsg: `carol.pub:1: admin "carol" has the same public key as admin "alice"`, wantErr: true},
		{name: "private key installed", files: map[string]string{"alice.pub": aliceSkey + "\n"},
			wantMsg: "alice.pub:1: this is a private key", wantErr: true},
		{name: "empty file", files: map[string]string{"alice.pub": "\n"},
			wantMsg: "alice.pub: no admin public key found", wantErr: true},
		{name: "no keys", files: map[string]string{"README": "x"}, wantMsg: "holds no admin keys", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			k, err := LoadKeyring(dir)
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if got := k.Names(); !slices.Equal(got, tt.want) {
					t.Fatalf("Names = %v, want %v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeyring succeeded with %v, want an error", k.Names())
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "PRIVATE+KEY") {
				t.Fatalf("error %q quotes a private key", err)
			}
			var ce *config.Error
			if strings.Contains(tt.wantMsg, ".pub") && !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *config.Error", err)
			}
		})
	}

	t.Run("directory named .pub refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "alice.pub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), "alice.pub: not a regular file") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := LoadKeyring(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want fs.ErrNotExist", err)
		}
	})
}

func TestNewKeyring(t *testing.T) {
	_, alice := testKey(t, "alice")
	_, alice2, err := note.GenerateKey(nil, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeyring(alice, alice2); err == nil || !strings.Contains(err.Error(), `admin "alice" is already defined`) {
		t.Fatalf("duplicate name: got %v", err)
	}
	if _, err := NewKeyring(alice, alice); err == nil {
		t.Fatal("the same key twice was accepted")
	}
	var nilRing *Keyring
	if nilRing.Len() != 0 || nilRing.Names() != nil {
		t.Fatal("a nil keyring is not empty")
	}
	if _, err := nilRing.Verifier("alice", 1); err == nil {
		t.Fatal("a nil keyring knows someone")
	}
}

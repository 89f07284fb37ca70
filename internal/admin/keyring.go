package admin

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/config"
)

// Keyring is the set of known admins: one Ed25519 verifier key per admin
// name, no two admins sharing a key. It implements [note.Verifiers]. A nil
// *Keyring knows no one.
type Keyring struct {
	byName map[string]*adminKey
}

type adminKey struct {
	vkey     string
	verifier note.Verifier
	source   string // file:line or "argument N", for duplicate errors
}

// NewKeyring returns a keyring of the given verifier keys. Keys must be
// valid admin keys with distinct names and distinct public keys.
func NewKeyring(vkeys ...string) (*Keyring, error) {
	k := &Keyring{byName: make(map[string]*adminKey)}
	for i, vkey := range vkeys {
		if err := k.add(vkey, fmt.Sprintf("key %d", i+1), ""); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
	}
	return k, nil
}

// add adds vkey, read from source. If want is not empty, the key must be
// named want.
func (k *Keyring) add(vkey, source, want string) error {
	if strings.HasPrefix(vkey, "PRIVATE+") {
		return errors.New("this is a private key: install NAME.pub, never NAME.key")
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fmt.Errorf("not an admin public key: %w", err)
	}
	if err := checkName(v.Name()); err != nil {
		return err
	}
	if want != "" && v.Name() != want {
		return fmt.Errorf("key is named %q, but the file is named for %q", v.Name(), want)
	}
	if prev, ok := k.byName[v.Name()]; ok {
		return fmt.Errorf("admin %q is already defined by %s", v.Name(), prev.source)
	}
	// The key hash covers the name, so compare the key bytes themselves:
	// one key under two names would let one person count twice.
	raw := publicKey(vkey)
	for name, other := range k.byName {
		if publicKey(other.vkey) == raw {
			return fmt.Errorf("admin %q has the same public key as admin %q (%s)", v.Name(), name, other.source)
		}
	}
	k.byName[v.Name()] = &adminKey{vkey: vkey, verifier: v, source: source}
	return nil
}

// publicKey returns the decoded algorithm and key bytes of a verifier key
// that note.NewVerifier accepted.
func publicKey(vkey string) string {
	// name+hash+base64, split as note.NewVerifier does: the name has no
	// '+', but base64 may.
	_, rest, _ := strings.Cut(vkey, "+")
	_, key64, _ := strings.Cut(rest, "+")
	raw, _ := base64.StdEncoding.DecodeString(key64)
	return string(raw)
}

// LoadKeyring reads every NAME.pub file in dir (names starting with '.' are
// skipped). Each holds exactly one verifier key, named NAME, on its first
// line that is not blank or a '#' comment. A bad file, a name that does not
// match its file, or two files with the same key are errors naming the
// file and line (as *config.Error where a line is known). A directory
// without any admin key is an error too.
func LoadKeyring(dir string) (*Keyring, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read admins directory: %w", err)
	}
	k := &Keyring{byName: make(map[string]*adminKey)}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, PubSuffix) || strings.HasPrefix(name, ".") {
			continue
		}
		if err := k.loadFile(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	if len(k.byName) == 0 {
		return nil, fmt.Errorf("admins directory %s holds no admin keys (NAME%s files)", dir, PubSuffix)
	}
	return k, nil
}

func (k *Keyring) loadFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("admin key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("admin key file %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("admin key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return fmt.Errorf("admin key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return fmt.Errorf("admin key file %s: larger than %d bytes", path, maxKeyFileSize)
	}
	vkey, line, ok := firstKeyLine(data)
	if !ok {
		return &config.Error{File: path, Msg: "no admin public key found"}
	}
	if extra, n, ok := firstKeyLine(skipLines(data, line)); ok && extra != "" {
		return &config.Error{File: path, Line: line + n, Msg: "more than one key: one admin key per NAME.pub file"}
	}
	want := strings.TrimSuffix(filepath.Base(path), PubSuffix)
	if err := k.add(vkey, fmt.Sprintf("%s:%d", path, line), want); err != nil {
		return &config.Error{File: path, Line: line, Msg: err.Error()}
	}
	return nil
}

// skipLines returns data after its first n lines.
func skipLines(data []byte, n int) []byte {
	for ; n > 0; n-- {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		data = data[i+1:]
	}
	return data
}

// Names returns the known admins' names, sorted.
func (k *Keyring) Names() []string {
	if k == nil {
		return nil
	}
	names := make([]string, 0, len(k.byName))
	for name := range k.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Len returns the number of known admins.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.byName)
}

// Verifier implements [note.Verifiers]: it returns the verifier of the admin
// name if its key hash is hash, and a *note.UnknownVerifierError otherwise.
func (k *Keyring) Verifier(name string, hash uint32) (note.Verifier, error) {
	if k != nil {
		if a, ok := k.byName[name]; ok && a.verifier.KeyHash() == hash {
			return a.verifier, nil
		}
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// known reports whether (name, hash) is a known admin key.
func (k *Keyring) known(name string, hash uint32) (note.Verifier, bool) {
	v, err := k.Verifier(name, hash)
	return v, err == nil
}

var _ note.Verifiers = (*Keyring)(nil)

package carry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/dir"
)

// Reasons a verified file was not handed over, in [Report.Skipped].
const (
	// ReasonPresent: the receive directory already holds the file, with
	// the same bytes (it crossed before).
	ReasonPresent = "already_present"
	// ReasonNameTaken: the receive directory holds other bytes under the
	// file's name; they are left alone.
	ReasonNameTaken = "name_taken"
)

// ErrNoManifest is returned by [Import] for a directory without a
// CARRY-MANIFEST: not a carry set, or one whose export did not finish.
var ErrNoManifest = errors.New("no " + ManifestName + ": not a complete carry set")

// ErrIncomplete is returned by [Import], with its [Report], when a file the
// manifest lists is missing or corrupt. The verified files were imported.
var ErrIncomplete = errors.New("carry set incomplete")

// ImportOptions configures [Import].
type ImportOptions struct {
	// Dir is the carry set, such as a mounted disc. Import only reads it.
	Dir string
	// ReceiveDir is the receiving agent's medium directory.
	ReceiveDir string
	// Zone is the importing zone; the manifest must be addressed to it.
	Zone string
	// Peer holds the sending zone's public keys; the manifest must be
	// signed by Peer.Verifier.
	Peer *keys.Peer
	// Logger receives a record per set and per problem; nil discards.
	Logger *slog.Logger
}

// Problem names a file and what is wrong with it.
type Problem struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Report says what [Import] did with a carry set.
type Report struct {
	// Dir is the carry set directory.
	Dir string
	// Manifest is the verified manifest.
	Manifest *Manifest
	// Imported lists the files handed to the receive directory, in
	// manifest order.
	Imported []string
	// Skipped lists verified files not handed over because the receive
	// directory already holds their name (ReasonPresent, ReasonNameTaken).
	Skipped []Problem
	// Missing lists the files the manifest lists that are absent.
	Missing []string
	// Corrupt lists the files whose type, size or SHA-256 differ from the
	// manifest's (ReasonSizeMismatch, ReasonHashMismatch, ReasonSymlink,
	// ReasonNotRegular, ReasonReadError). None of them is imported.
	Corrupt []Problem
	// Extra lists the names in the set the manifest does not list (the
	// manifest itself aside). None of them is imported.
	Extra []string
}

// Complete reports whether every listed file was verified, so that it was
// imported or was already in the receive directory.
func (r *Report) Complete() bool { return len(r.Missing) == 0 && len(r.Corrupt) == 0 }

// Import verifies the carry set in o.Dir and publishes its verified
// files into o.ReceiveDir, in manifest order. It refuses the whole set,
// importing nothing, when the manifest is absent ([ErrNoManifest]) or fails
// verification (a [*ParseError]: bad or unknown signature, malformed,
// too large, or addressed to another zone). Otherwise it returns a
// Report, and also [ErrIncomplete] when a listed file is missing or
// corrupt; other errors (the receive directory failing) come with the
// Report so far.
func Import(ctx context.Context, o ImportOptions) (*Report, error) {
	if o.Dir == "" || o.ReceiveDir == "" {
		return nil, errors.New("import: carry set and receive directories are required")
	}
	if o.Peer == nil || o.Peer.Verifier == nil {
		return nil, errors.New("import: the peer's public keys are required")
	}
	if !keys.ValidZoneName(o.Zone) {
		return nil, fmt.Errorf("import: invalid zone name %q", o.Zone)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pub, err := dir.NewPublisher(o.ReceiveDir)
	if err != nil {
		return nil, fmt.Errorf("import: receive directory: %w", err)
	}
	set, err := openDir(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("import: carry set: %w", err)
	}
	defer set.Close()

	data, err := readManifest(set)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", o.Dir, err)
	}
	m, err := ParseManifest(data, o.Peer.Verifier, o.Zone)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", o.Dir, err)
	}

	r := &Report{Dir: o.Dir, Manifest: m}
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		listed[f.Name] = true
	}
	names, err := set.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("import %s: list: %w", o.Dir, err)
	}
	for _, n := range names {
		if n != ManifestName && !listed[n] {
			r.Extra = append(r.Extra, n)
		}
	}
	slices.Sort(r.Extra)
	for _, n := range r.Extra {
		log.Warn("carry: extra file not imported", logSet, m.ID, logFile, n)
	}

	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		data, reason, err := readListed(set, f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.Missing = append(r.Missing, f.Name)
			log.Warn("carry: file missing", logSet, m.ID, logFile, f.Name)
			continue
		case err != nil:
			r.Corrupt = append(r.Corrupt, Problem{Name: f.Name, Reason: reason})
			log.Warn("carry: file corrupt", logSet, m.ID, logFile, f.Name, logError, err)
			continue
		}
		_, lerr := os.Lstat(filepath.Join(o.ReceiveDir, f.Name))
		existed := lerr == nil
		// Publish writes a temporary file, fsyncs it, renames it without
		// replacing and fsyncs the directory; on the same bytes already
		// there it succeeds without writing.
		err = pub.Publish(ctx, f.Name, data)
		switch {
		case errors.Is(err, medium.ErrExists):
			r.Skipped = append(r.Skipped, Problem{Name: f.Name, Reason: ReasonNameTaken})
			log.Warn("carry: name taken in receive directory, not imported", logSet, m.ID, logFile, f.Name)
		case err != nil:
			return r, fmt.Errorf("import %s: %w", f.Name, err)
		case existed:
			r.Skipped = append(r.Skipped, Problem{Name: f.Name, Reason: ReasonPresent})
		default:
			r.Imported = append(r.Imported, f.Name)
		}
	}
	log.Info("carry: set imported", logSet, m.ID, logDir, o.Dir, logFiles, len(r.Imported),
		logSkipped, len(r.Skipped), logMissing, len(r.Missing), logCorrupt, len(r.Corrupt), logExtra, len(r.Extra))
	if !r.Complete() {
		return r, fmt.Errorf("import %s: %w: %d missing, %d corrupt", o.Dir, ErrIncomplete, len(r.Missing), len(r.Corrupt))
	}
	return r, nil
}

// readManifest reads the manifest of a carry set, a regular file of at
// most MaxManifestSize bytes.
func readManifest(set *os.File) ([]byte, error) {
	f, st, err := openRegular(set, ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoManifest
	}
	if err != nil {
		var re *refusedError
		if errors.As(err, &re) && re.reason != ReasonReadError {
			return nil, reject(ReasonMalformed, "%v", err)
		}
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	if st.Size > MaxManifestSize {
		return nil, reject(ReasonTooLarge, "%d bytes, at most %d allowed", st.Size, MaxManifestSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(data) > MaxManifestSize {
		return nil, reject(ReasonTooLarge, "more than %d bytes", MaxManifestSize)
	}
	return data, nil
}

// readListed reads the file f of a carry set, and checks its type, size
// and SHA-256 against the manifest. A missing file fails with an error
// matching fs.ErrNotExist; any other failure comes with its reason code.
func readListed(set *os.File, f File) ([]byte, string, error) {
	file, st, err := openRegular(set, f.Name)
	if err != nil {
		var re *refusedError
		if errors.As(err, &re) {
			return nil, re.reason, err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
		return nil, ReasonReadError, err
	}
	defer file.Close()
	if st.Size != f.Size {
		return nil, ReasonSizeMismatch, fmt.Errorf("%d bytes, the manifest says %d", st.Size, f.Size)
	}
	// Read at most one byte more than listed, so that a file that grows
	// is caught without reading it all.
	var buf bytes.Buffer
	buf.Grow(int(f.Size))
	if _, err := io.Copy(&buf, io.LimitReader(file, f.Size+1)); err != nil {
		return nil, ReasonReadError, fmt.Errorf("read: %w", err)
	}
	if int64(buf.Len()) != f.Size {
		return nil, ReasonSizeMismatch, fmt.Errorf("read %d bytes, the manifest says %d", buf.Len(), f.Size)
	}
	if sha256.Sum256(buf.Bytes()) != f.SHA256 {
		return nil, ReasonHashMismatch, errors.New("SHA-256 differs from the manifest's")
	}
	return buf.Bytes(), "", nil
}

// Package carry moves envelopes across the zone boundary on optical discs:
// it exports a batch of outgoing envelopes into a carry set, a directory
// to burn, with a signed manifest, and imports a carry set on the other
// side into a medium directory. The normative specification of the
// manifest is docs/carry.md; this comment only summarises it.
//
// # Format
//
// A carry set is a flat directory of envelope files, named as on any
// medium ("<channel>-<seq, 20 digits>-<id>.fxe"), plus one file,
// CARRY-MANIFEST ([ManifestName]). The manifest is a C2SP signed note
// signed by the sending zone's Ed25519 key. Its text names the set (a
// random 128-bit id), the sender zone and key id, the recipient zone, the
// creation time, the number of files and their total size, and then one
// line per file with its name, SHA-256 and size, in (channel, sequence)
// order. The encoding is canonical: [ParseManifest] accepts exactly one
// text for each manifest and returns a [*ParseError] for anything else.
//
// # Export
//
// [Export] takes envelopes from a send directory (the staging directory a
// dir medium publisher writes into), in order of channel then sequence,
// both read from the file name only; it takes only names that
// [envelope.ValidFileName] accepts and that have the envelope name shape,
// and never touches names starting with '.'. It takes files while the set
// (the files plus the manifest) stays within MaxBytes, and stops at the
// first file that does not fit, so a set never skips over an envelope.
//
// # Import
//
// [Import] verifies the manifest's signature against the peer's key
// before it reads anything else, checks that it is addressed to the
// importing zone, then checks every listed file's size and SHA-256 while
// reading it (without following symlinks, regular files only, within the
// listed size). Verified files are published into the receive directory
// with the dir medium's [dir.Publisher], in manifest order. The [Report]
// lists what was imported, what was already there, and what was missing,
// corrupt, or present but not listed; only verified files are imported.
//
// # Crash safety
//
// Export copies each file into the set and fsyncs it, fsyncs the set
// directory, writes the manifest (temporary name, fsync, rename, fsync
// directory), and only then removes the sources from the send directory.
// A crash at any point before the removals leaves every source in place, so
// nothing is lost; a crash during them leaves some, which the next export
// carries again. Envelopes that cross twice are harmless: the receiving
// agent deduplicates by envelope identity, and Import skips a file already
// present in the receive directory. Without a manifest a set is not a set:
// Import refuses a directory whose manifest is missing.
package carry

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ManifestName is the name of the carry manifest inside a carry set.
const ManifestName = "CARRY-MANIFEST"

// DefaultMaxBytes is the default size budget of a carry set: 650 MB, a CD,
// in decimal megabytes so that it stays within the disc with room for the
// file system.
const DefaultMaxBytes = 650_000_000

// MaxManifestSize is the largest manifest a reader accepts, in bytes. A
// manifest of MaxFiles files of the longest names fits in it.
const MaxManifestSize = 4 << 20

// MaxFiles is the most envelope files one carry set lists. Export leaves
// the rest for the next set.
const MaxFiles = 16384

// MaxFileSize is the largest envelope file a carry set may hold: the
// largest envelope a writer may produce.
const MaxFileSize = 64 << 20

// ErrNothingToExport is returned by [Export] when the send directory holds
// no envelope to carry. Nothing was written.
var ErrNothingToExport = errors.New("nothing to export")

// ErrOutDirNotEmpty is returned by [Export] when the output directory
// exists and is not empty.
var ErrOutDirNotEmpty = errors.New("output directory is not empty")

// TooLargeError is returned by [Export] for an envelope that does not fit
// into a carry set of the size budget even alone.
type TooLargeError struct {
	Name     string // the envelope file name
	Size     int64  // its size in bytes
	MaxBytes int64  // the budget it exceeds (files plus manifest)
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("envelope %s (%d bytes) does not fit into a carry set of at most %d bytes", e.Name, e.Size, e.MaxBytes)
}

// File is one envelope file of a carry set.
type File struct {
	Name   string
	Size   int64
	SHA256 [32]byte
}

// ParseSize parses a byte count for --max-bytes: a decimal number,
// optionally with a fraction, followed by an optional unit. K, M, G and T
// (with or without a trailing B) are decimal powers of 1000, so that
// "4.7G" is a DVD and "700M" a CD; Ki, Mi, Gi and Ti (with or without B)
// are powers of 1024. Units are case-insensitive. The result must be a
// positive whole number of bytes.
func ParseSize(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	num := s[:i]
	unit := strings.ToUpper(s[i:])
	unit = strings.TrimSuffix(unit, "B")
	var mult float64
	switch unit {
	case "":
		mult = 1
	case "K":
		mult = 1e3
	case "M":
		mult = 1e6
	case "G":
		mult = 1e9
	case "T":
		mult = 1e12
	case "KI":
		mult = 1 << 10
	case "MI":
		mult = 1 << 20
	case "GI":
		mult = 1 << 30
	case "TI":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want K, M, G, T or Ki, Mi, Gi, Ti)", s, s[len(num):])
	}
	if num == "" || num[0] == '.' || num[len(num)-1] == '.' || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("invalid size %q: want a number such as 650M or 4.7G", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid size %q: %w", s, err)
		}
		if n <= 0 {
			return 0, fmt.Errorf("invalid size %q: must be positive", s)
		}
		if mult > 1 && float64(n) > float64(1<<62)/mult {
			return 0, fmt.Errorf("invalid size %q: too large", s)
		}
		return n * int64(mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	v := f * mult
	if v > float64(1<<62) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	if v < 1 || v != float64(int64(v)) {
		return 0, fmt.Errorf("invalid size %q: not a positive whole number of bytes", s)
	}
	return int64(v), nil
}

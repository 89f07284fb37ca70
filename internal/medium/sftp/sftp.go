// Package sftp is the SFTP transfer medium: a drop directory on a boundary
// server that both agents reach as SSH clients (neither zone accepts
// connections from the other). [Publisher] uploads envelope files into
// the drop directory; [Receiver] downloads them into a local
// [medium.Inbox] and removes them from the server. What the medium does
// with the files (publishing, the scan loop, the janitor) is package
// remote's, shared with the FTPS medium; this package speaks SFTP.
//
// # Connection
//
// The client authenticates with a private key file that must not be
// readable or writable by group or others ([ErrKeyPermissions]). The
// server's host key must be pinned in a known_hosts file: a host missing
// from it, or presenting another key, fails with [ErrHostKey]; there is no
// option to skip the check. Only the host key algorithms of the keys
// pinned for the address are offered, so a server with several host keys
// is checked against the one that is pinned. The known_hosts entry names
// the address as the client dials it: "host" for port 22,
// "[host]:port" otherwise (hashed entries work).
//
// Every step is bounded: TCP connect, SSH handshake and SFTP start by
// DialTimeout, each SFTP operation by OpTimeout (an overrun closes the
// connection, which fails the operation), and a keepalive@openssh.com
// request goes out every Keepalive; no reply within Keepalive closes the
// connection. After a failure the connection is dropped and the next
// operation dials again, waiting an exponential backoff with jitter (100ms
// doubling to 30s) after consecutive failures. One connection is shared by
// all the calls of a Publisher or a Receiver.
//
// # Publishing
//
// [Publisher.Publish] uploads to a temporary name in the drop directory
// (".<name>.tmp-<16 hex>", created with O_CREATE|O_EXCL), closes the file
// and checks the error, fsyncs it with fsync@openssh.com where the server
// offers it, and then gives it its final name without ever replacing a
// file: with hardlink@openssh.com where offered (link(2) never replaces),
// then removing the temporary name; otherwise with SSH_FXP_RENAME, which
// OpenSSH refuses when the target exists (a server whose rename replaces
// is only safe because Publish checks the name first and envelope names
// are unique: two publishes of one name with different bytes racing
// there could replace each other). posix-rename@openssh.com is not
// used, because it replaces an existing file, which would break the rule
// that a name holding other bytes fails with [medium.ErrExists] and let
// a reader see different bytes under one final name. When the final name
// exists, Publish compares its bytes with the data: equal is success
// (an earlier or concurrent publish of the same file), different is
// [medium.ErrExists]. A failed or canceled upload removes its temporary
// file (on the next connection if the old one died) and never resumes.
// SFTP cannot fsync a directory: the durability of the final name on the
// server's disk is the server's.
//
// Files are created with the server's default mode. The receiving side's
// account must be able to read and remove them: run the sftp-server with
// a umask that allows it (OpenSSH: "Subsystem sftp internal-sftp -u 0007"
// with both accounts in one group), and give the drop directory to that
// group with the setgid bit.
//
// # Receiving
//
// [Receiver.Run] sends the inbox leftovers first, then lists the drop
// directory every Rescan. It takes names that pass [medium.ValidName] in
// name order (a temporary name starts with '.', so it never passes); it
// logs once and leaves alone anything that is not a regular file. It
// downloads each file into the inbox ([medium.Inbox.Add]: a temporary
// file, fsync, rename, fsync of the inbox directory), reading no more than
// the size the server reported, checks the size, removes the file from
// the server, and sends its name. A file is thus on the server, in the
// inbox, or briefly in both (a crash in between makes it a duplicate,
// below), never nowhere. If the server refuses the removal, the receiver
// logs it and does not take that name again while Run runs; if the
// connection fails first, the next listing that shows the same file (same
// size and modification time) removes it instead of taking it again.
//
// A file larger than the inbox size cap, and a file whose name the inbox
// still holds (a duplicate), are recorded in quarantine with a reason
// file alone ([medium.Inbox.QuarantineNote]: the payload is not kept) and
// removed from the server. Failures of the server or the connection are
// logged and retried at the next rescan; Run returns an error only when
// the local inbox fails.
//
// # Temp files
//
// An upload interrupted by a crash leaves a temporary file that no reader
// takes. A janitor removes files of our temporary pattern older than
// TempMaxAge from the drop directory: the Publisher for the directory it
// writes, the Receiver for the one it reads, each at most every
// TempMaxAge/4, logging how many it removed. The age is taken from the
// server's modification time against the local clock: keep the clocks
// within TempMaxAge of each other, and TempMaxAge well above the longest
// upload.
package sftp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// Defaults for the zero values of Config.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultOpTimeout   = 60 * time.Second
	DefaultKeepalive   = 15 * time.Second
	DefaultRescan      = 2 * time.Second
	DefaultTempMaxAge  = time.Hour
)

// chunkSize is how much one SFTP read or write operation moves; it bounds
// the memory a transfer holds and the work one OpTimeout covers.
const chunkSize = 1 << 20

// ErrKeyPermissions is returned (wrapped) when the private key file is
// accessible to its group or to others.
var ErrKeyPermissions = errors.New("sftp: key file is accessible to group or others")

// ErrHostKey is returned (wrapped) when the server's host key is not
// pinned in the known_hosts file, or differs from the pinned key.
var ErrHostKey = errors.New("sftp: host key not pinned or changed")

// Config is everything an SFTP drop needs. Paths are already absolute (the
// agent config resolves them against the config file's directory).
type Config struct {
	Address     string        // host:port of the boundary server
	User        string        // login name
	KeyFile     string        // the client's private key (OpenSSH format, unencrypted); must be mode 0600 or stricter
	KnownHosts  string        // known_hosts file pinning the server's host key(s) for Address; required
	Dir         string        // the drop directory on the server, as the server names it (absolute, e.g. /drop/requests)
	DialTimeout time.Duration // 0: 10s — TCP connect + SSH handshake + SFTP init
	OpTimeout   time.Duration // 0: 60s — any single SFTP operation (list, open, write chunk, rename, remove)
	Keepalive   time.Duration // 0: 15s — keepalive@openssh.com interval; a missed reply closes the connection
	Rescan      time.Duration // receiver only; 0: 2s — how often the drop directory is listed
	TempMaxAge  time.Duration // 0: 1h — the janitor removes our temp files older than this
	Logger      *slog.Logger  // nil: slog.Default()
}

// withDefaults checks cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Address == "":
		return cfg, errors.New("address is empty")
	case cfg.User == "":
		return cfg, errors.New("user is empty")
	case cfg.KeyFile == "":
		return cfg, errors.New("key file is empty")
	case cfg.KnownHosts == "":
		return cfg, errors.New("known_hosts file is empty: the server's host key must be pinned")
	}
	dir, err := remote.CheckDir(cfg.Dir)
	if err != nil {
		return cfg, err
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return cfg, fmt.Errorf("address %q: %w", cfg.Address, err)
	}
	cfg.Dir = dir
	err = remote.FillDurations(
		remote.Duration{Name: "dial timeout", Value: &cfg.DialTimeout, Default: DefaultDialTimeout},
		remote.Duration{Name: "op timeout", Value: &cfg.OpTimeout, Default: DefaultOpTimeout},
		remote.Duration{Name: "keepalive", Value: &cfg.Keepalive, Default: DefaultKeepalive},
		remote.Duration{Name: "rescan", Value: &cfg.Rescan, Default: DefaultRescan},
		remote.Duration{Name: "temp max age", Value: &cfg.TempMaxAge, Default: DefaultTempMaxAge},
	)
	if err != nil {
		return cfg, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

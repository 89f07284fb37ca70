// Package ftps is the FTPS transfer medium: a drop directory on a
// boundary FTP server that both agents reach as clients. [Publisher]
// uploads envelope files into the drop directory; [Receiver] downloads
// them into a local [medium.Inbox] and removes them from the server. What
// it does with the files (temporary upload, compare, place, the scan loop
// and its bookkeeping, the janitor) is package remote's, shared with the
// SFTP medium; this package speaks FTP with
// [github.com/jlaffaye/ftp].
//
// # TLS
//
// The control connection is upgraded with explicit TLS (AUTH TLS) before
// the login, at TLS 1.2 or later, and every data connection is protected
// too (PBSZ 0, PROT P after the login): the password and the envelopes
// never cross the network in clear. The server's certificate is checked
// in one of two ways: against a CA bundle (CAFile) for the name in
// ServerName (default: the host of Address), or by pinning the SHA-256 of
// its leaf certificate (CertSHA256, the hex of the DER, as `openssl x509
// -noout -fingerprint -sha256` prints it, colons allowed). A certificate
// that fails either check fails with [ErrCertificate] before the password
// is sent. Data connections resume the control connection's TLS session,
// which vsftpd's require_ssl_reuse (on by default) demands.
//
// Plain FTP (Plain) sends the password and the envelopes unencrypted; it
// is only for a closed network, and every NewPublisher and NewReceiver
// logs a warning about it.
//
// # Connection
//
// The password is read from PasswordFile, which must not be accessible
// to group or others ([ErrPasswordPermissions]); one trailing newline is
// trimmed. Transfers use passive mode (EPSV, then PASV if the server
// refuses EPSV): the server must allow its passive port range
// (pasv_min_port..pasv_max_port in vsftpd.conf) through the firewall
// towards both agents, and advertise an address they reach. The TCP
// connect, TLS handshake and login are bounded by DialTimeout; each
// command, and each chunk of a transfer, by OpTimeout (an overrun closes
// the connection, which fails the operation). A transfer of any length
// succeeds as long as each chunk does: an upload's STOR is one command,
// whose timeout every chunk it takes renews. A connection idle for
// longer than the idle check (30s) is probed with NOOP before use.
// After a failure the connection is dropped and the next operation dials
// again, after an exponential backoff with jitter (100ms doubling to 30s)
// between consecutive failures. FTP runs one command at a time on a
// connection, so a Publisher's publishes take turns.
//
// # Placing a file
//
// The upload goes to a temporary dot name (".<name>.tmp-<16 hex>", with
// 64 random bits: FTP has no exclusive create, so uniqueness stands in
// for it) that no receiver takes. FTP's rename (RNFR/RNTO) replaces an
// existing file on vsftpd and most servers, so Publish first checks that
// the final name does not exist (SIZE, then CWD to tell a directory from
// nothing) and only then renames. Between the check and the rename is a
// window in which another publish of the same name could be replaced.
// It is harmless as ferry uses the medium: envelope names are unique to
// their content, and a re-publish of a name carries the same bytes. A
// name that exists is compared byte by byte: equal is success, different
// [medium.ErrExists]. FTP cannot fsync: the durability of an uploaded
// file on the server's disk is the server's.
//
// # Listing
//
// vsftpd does not implement MLSD, so the drop directory is listed with
// "LIST -a" (dot files included, for the janitor) and vsftpd's ls-style
// lines are parsed; only lines starting with '-' are regular files. LIST
// shows modification times to the minute (to the day for files older
// than six months) in UTC, as vsftpd does by default (use_localtime=NO):
// keep it so, or the janitor misjudges ages by the time zone offset.
//
// # Permissions
//
// Files are created with the server's umask (vsftpd: local_umask, or
// anon_umask/virtual users' settings). The receiving side's account must
// be able to read and delete them: with two accounts, put both in one
// group, give the drop directory to that group with the setgid bit, and
// set local_umask=007 (file_open_mode=0666) so uploads are group
// readable and writable. Both accounts need write_enable=YES: the
// receiver deletes, the publisher stores and renames.
//
// vsftpd answers 550 to RETR and DELE both for a missing file and for one
// the account may not read or delete; a SIZE tells them apart, and a
// refusal comes back wrapping fs.ErrPermission, so the receiver leaves
// the file and says why instead of taking it for gone. A STOR refused
// before any byte moved (550, or 553 "Could not create file") is a
// permission error too, not a failure of the connection.
package ftps

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// Defaults for the zero values of Config.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultOpTimeout   = 60 * time.Second
	DefaultRescan      = 2 * time.Second
	DefaultTempMaxAge  = time.Hour
)

// idleCheck is how long a connection may sit idle before it is probed
// with NOOP on its next use. vsftpd closes a session idle for
// idle_session_timeout (300s by default).
const idleCheck = 30 * time.Second

// chunkSize is how much one read or write step moves between checks of
// the operation timeout and of ctx.
const chunkSize = 1 << 20

// Attribute keys for log records.
const (
	logAddr = "addr"
)

// plainWarning is logged every time a Publisher or Receiver is created
// for plain FTP.
const plainWarning = "plain FTP: credentials and envelopes cross the network unencrypted"

// ErrPasswordPermissions is returned (wrapped) when the password file is
// accessible to its group or to others.
var ErrPasswordPermissions = errors.New("ftps: password file is accessible to group or others")

// ErrCertificate is returned (wrapped) when the server's certificate does
// not verify against the CA file for the server name, or does not match
// the pinned SHA-256.
var ErrCertificate = errors.New("ftps: server certificate not trusted")

// Config is everything an FTPS drop needs. Paths are already absolute
// (the agent config resolves them against the config file's directory).
type Config struct {
	Address      string        // host:port of the control connection
	User         string        // login name
	PasswordFile string        // the password, one line; mode 0600 or stricter (ErrPasswordPermissions)
	Dir          string        // the drop directory on the server (absolute, server's view)
	CAFile       string        // PEM CA bundle that verifies the server certificate, or
	CertSHA256   string        // the pinned SHA-256 (hex) of the server's leaf certificate (DER); exactly one of the two unless Plain
	ServerName   string        // the name to verify in the certificate (CAFile mode); "": the host of Address
	Plain        bool          // plain FTP, no TLS: only on a closed network; NewPublisher/NewReceiver log a WARN every time
	DialTimeout  time.Duration // 0: 10s — TCP connect + TLS handshake + login
	OpTimeout    time.Duration // 0: 60s — any single command or transfer chunk
	Rescan       time.Duration // receiver only; 0: 2s — how often the drop directory is listed
	TempMaxAge   time.Duration // 0: 1h — the janitor removes our temp files older than this
	Logger       *slog.Logger  // nil: slog.Default()
}

// withDefaults checks cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Address == "":
		return cfg, errors.New("address is empty")
	case cfg.User == "":
		return cfg, errors.New("user is empty")
	case cfg.PasswordFile == "":
		return cfg, errors.New("password file is empty")
	}
	dir, err := remote.CheckDir(cfg.Dir)
	if err != nil {
		return cfg, err
	}
	if strings.ContainsAny(cfg.Dir, "\r\n") {
		return cfg, fmt.Errorf("dir %q holds a line break", cfg.Dir)
	}
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return cfg, fmt.Errorf("address %q: %w", cfg.Address, err)
	}
	switch {
	case cfg.Plain && (cfg.CAFile != "" || cfg.CertSHA256 != ""):
		return cfg, errors.New("plain FTP has no certificate: ca file and cert sha256 must be empty")
	case !cfg.Plain && cfg.CAFile == "" && cfg.CertSHA256 == "":
		return cfg, errors.New("neither a ca file nor a cert sha256: the server certificate must be verified or pinned")
	case cfg.CAFile != "" && cfg.CertSHA256 != "":
		return cfg, errors.New("both a ca file and a cert sha256: give exactly one")
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.Dir = dir
	err = remote.FillDurations(
		remote.Duration{Name: "dial timeout", Value: &cfg.DialTimeout, Default: DefaultDialTimeout},
		remote.Duration{Name: "op timeout", Value: &cfg.OpTimeout, Default: DefaultOpTimeout},
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

// readPassword reads the password from a file only its owner may access,
// trimming one trailing newline. Errors never quote the file's content.
func readPassword(file string) (string, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("password file %s is not a regular file", file)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("password file %s has mode %04o, want 0600 or stricter: %w", file, fi.Mode().Perm(), ErrPasswordPermissions)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	pw := strings.TrimSuffix(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	switch {
	case pw == "":
		return "", fmt.Errorf("password file %s is empty", file)
	case strings.ContainsAny(pw, "\r\n"):
		return "", fmt.Errorf("password file %s holds more than one line", file)
	}
	return pw, nil
}

package alarm

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrybridge/ferry/internal/keys"
)

// The Standard Webhooks headers of a delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Secret sizes and format (Standard Webhooks, symmetric).
const (
	// SecretPrefix starts the one line of a secret file, before the base64
	// of the secret.
	SecretPrefix = "whsec_"
	// MinSecretSize and MaxSecretSize bound a secret's size in bytes.
	MinSecretSize = 24
	MaxSecretSize = 64
	// secretSize is the size GenerateSecret makes.
	secretSize = 32
	// maxSecretFile bounds what ReadSecret reads.
	maxSecretFile = 4096
)

// Errors of [Verify], wrapped with details.
var (
	// ErrBadSignature means the headers are missing or malformed, or no
	// signature matches the secret and the body.
	ErrBadSignature = errors.New("webhook signature does not verify")
	// ErrTimestamp means the signature's timestamp is outside the
	// tolerance of the receiver's clock.
	ErrTimestamp = errors.New("webhook timestamp outside tolerance")
)

// ErrSecret is returned (wrapped) when a secret file or line is not a
// Standard Webhooks secret.
var ErrSecret = errors.New("invalid webhook secret")

// Sign returns the webhook-signature header value of a delivery: "v1,"
// and the base64 of HMAC-SHA256(secret, id + "." + unix seconds of ts +
// "." + body).
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, id, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(secret []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	io.WriteString(h, id)
	io.WriteString(h, ".")
	io.WriteString(h, ts)
	io.WriteString(h, ".")
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks the Standard Webhooks headers of a delivery against secret
// and body: webhook-timestamp must be within tolerance of now, and one of
// the space-separated "v1,…" signatures in webhook-signature must match
// (compared in constant time; other versions are skipped). It returns an
// error wrapping [ErrBadSignature] or [ErrTimestamp]. The receiver should
// also drop a webhook-id it has already processed.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	switch {
	case id == "":
		return fmt.Errorf("%w: no %s header", ErrBadSignature, HeaderID)
	case strings.Contains(id, "."):
		// The id and timestamp must not hold the separator of the signed text.
		return fmt.Errorf("%w: %s holds a full stop", ErrBadSignature, HeaderID)
	case ts == "":
		return fmt.Errorf("%w: no %s header", ErrBadSignature, HeaderTimestamp)
	case sigs == "":
		return fmt.Errorf("%w: no %s header", ErrBadSignature, HeaderSignature)
	}
	if len(ts) > 18 || strings.Trim(ts, "0123456789") != "" {
		return fmt.Errorf("%w: %s is not unix seconds", ErrBadSignature, HeaderTimestamp)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not unix seconds", ErrBadSignature, HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)).Abs(); d > tolerance {
		return fmt.Errorf("%w: %s is %s from now", ErrTimestamp, HeaderTimestamp, d.Round(time.Second))
	}
	want := mac(secret, id, ts, body)
	for sig := range strings.FieldsSeq(sigs) {
		b64, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no v1 signature matches", ErrBadSignature)
}

// DecodeSecret returns the secret of a "whsec_<base64>" line.
func DecodeSecret(line string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(line), SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: want %s<base64>", ErrSecret, SecretPrefix)
	}
	secret, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64", ErrSecret)
	}
	if len(secret) < MinSecretSize || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d to %d", ErrSecret, len(secret), MinSecretSize, MaxSecretSize)
	}
	return secret, nil
}

// ReadSecret reads the webhook secret from path: one "whsec_<base64>" line
// (blank lines and lines starting with # are skipped). It refuses a
// symlink, anything but a regular file, and a file with any group or
// other permission bits, with an error wrapping [keys.ErrPermissions]; the
// checks are made on the open file, so the file cannot be swapped between
// check and read.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("webhook secret %s: %w: a symlink", path, keys.ErrPermissions)
		}
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("webhook secret %s: %w: not a regular file", path, keys.ErrPermissions)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("webhook secret %s: %w: mode %04o, want 0600", path, keys.ErrPermissions, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("webhook secret %s: %w", path, err)
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("webhook secret %s: %w: file larger than %d bytes", path, ErrSecret, maxSecretFile)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		secret, err := DecodeSecret(line)
		if err != nil {
			return nil, fmt.Errorf("webhook secret %s: %w", path, err)
		}
		return secret, nil
	}
	return nil, fmt.Errorf("webhook secret %s: %w: no %s line", path, ErrSecret, SecretPrefix)
}

// GenerateSecret writes a new secret of 32 random bytes to path as one
// "whsec_<base64>" line, with mode 0600. It refuses to overwrite an
// existing file. The same line goes to the receiver, which verifies with
// it.
func GenerateSecret(path string) error {
	secret := make([]byte, secretSize)
	rand.Read(secret)
	line := SecretPrefix + base64.StdEncoding.EncodeToString(secret) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("generate webhook secret: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("generate webhook secret %s: %w", path, err)
	}
	// The umask can only narrow 0600; Chmod makes sure of it.
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := io.WriteString(f, line); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("generate webhook secret %s: %w", path, err)
	}
	// Make the new name durable too.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// newID returns a random event id: 16 bytes in hex.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SignRequest sets the webhook-timestamp and webhook-signature headers of
// r, whose webhook-id header is set, for body at now.
func SignRequest(r *http.Request, secret []byte, now time.Time, body []byte) {
	r.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	r.Header.Set(HeaderSignature, Sign(secret, r.Header.Get(HeaderID), now, body))
}

// ResignRetry signs a retry of r (retryablehttp's PrepareRetry) with its
// own timestamp, as Standard Webhooks asks; the id stays the same.
func ResignRetry(r *http.Request, secret []byte, now time.Time) error {
	rc, err := r.GetBody()
	if err != nil {
		return fmt.Errorf("re-sign a retry: %w", err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("re-sign a retry: %w", err)
	}
	// r is a shallow copy sharing the last attempt's header map.
	r.Header = r.Header.Clone()
	SignRequest(r, secret, now, body)
	return nil
}

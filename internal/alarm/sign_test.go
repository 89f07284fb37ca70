package alarm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/keys"
)

// TestSign_Vector checks Sign against an HMAC computed here by hand from
// the Standard Webhooks definition.
func TestSign_Vector(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"alarm":"disk_full"}`)
	ts := time.Unix(1674087231, 0)
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.1674087231." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
	if got := Sign(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{8}, 32)
	body := []byte(`{"id":"abc","alarm":"peer_silent"}`)
	now := time.Unix(1700000000, 0)
	headers := func(secret []byte, id string, ts time.Time, body []byte) http.Header {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(HeaderSignature, Sign(secret, id, ts, body))
		return h
	}
	tests := []struct {
		name   string
		header func() http.Header
		body   []byte
		want   error
	}{
		{"good", func() http.Header { return headers(secret, "abc", now, body) }, body, nil},
		{"skew within tolerance", func() http.Header { return headers(secret, "abc", now.Add(4*time.Minute), body) }, body, nil},
		{"changed body", func() http.Header { return headers(secret, "abc", now, body) },
			[]byte(`{"id":"abc","alarm":"disk_full"}`), ErrBadSignature},
		{"wrong secret", func() http.Header { return headers(other, "abc", now, body) }, body, ErrBadSignature},
		{"old timestamp", func() http.Header { return headers(secret, "abc", now.Add(-6*time.Minute), body) }, body, ErrTimestamp},
		{"future timestamp", func() http.Header { return headers(secret, "abc", now.Add(6*time.Minute), body) }, body, ErrTimestamp},
		{"changed id", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Set(HeaderID, "abd")
			return h
		}, body, ErrBadSignature},
		{"id with a full stop", func() http.Header { return headers(secret, "a.b", now, body) }, body, ErrBadSignature},
		{"changed timestamp", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Set(HeaderTimestamp, "1700000001")
			return h
		}, body, ErrBadSignature},
		{"signed timestamp", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Set(HeaderTimestamp, "+1700000000")
			return h
		}, body, ErrBadSignature},
		{"several signatures, one good", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Set(HeaderSignature, "v1a,AAAA "+Sign(other, "abc", now, body)+" v1,!!! "+h.Get(HeaderSignature))
			return h
		}, body, nil},
		{"good mac under another version", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Set(HeaderSignature, "v2"+strings.TrimPrefix(h.Get(HeaderSignature), "v1"))
			return h
		}, body, ErrBadSignature},
		{"no signature", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Del(HeaderSignature)
			return h
		}, body, ErrBadSignature},
		{"no id", func() http.Header {
			h := headers(secret, "abc", now, body)
			h.Del(HeaderID)
			return h
		}, body, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(secret, tt.header(), tt.body, now, 5*time.Minute)
			if tt.want == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestGenerateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook.secret")
	if err := GenerateSecret(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), SecretPrefix) || !strings.HasSuffix(string(data), "\n") {
		t.Fatalf("secret file %q: want one whsec_ line", data)
	}
	secret, err := ReadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 32 {
		t.Fatalf("secret of %d bytes, want 32", len(secret))
	}
	if err := GenerateSecret(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("GenerateSecret over an existing file: %v, want ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("GenerateSecret changed an existing file")
	}
	other := filepath.Join(t.TempDir(), "other.secret")
	if err := GenerateSecret(other); err != nil {
		t.Fatal(err)
	}
	if s2, _ := ReadSecret(other); bytes.Equal(s2, secret) {
		t.Fatal("two generated secrets are equal")
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	good := SecretPrefix + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 24)) + "\n"
	write := func(name, data string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", good, 0o600), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want error // nil: no error
	}{
		{"good", write("good", good, 0o600), nil},
		{"comment first", write("comment", "# alarms\n\n"+good, 0o400), nil},
		{"0644", write("loose", good, 0o644), keys.ErrPermissions},
		{"0640", write("group", good, 0o640), keys.ErrPermissions},
		{"symlink", link, keys.ErrPermissions},
		{"directory", filepath.Join(dir, "adir"), keys.ErrPermissions},
		{"missing", filepath.Join(dir, "missing"), os.ErrNotExist},
		{"no prefix", write("raw", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 24)), 0o600), ErrSecret},
		{"too short", write("short", SecretPrefix+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 23)), 0o600), ErrSecret},
		{"too long", write("long", SecretPrefix+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 65)), 0o600), ErrSecret},
		{"bad base64", write("b64", SecretPrefix+"!!!!", 0o600), ErrSecret},
		{"empty", write("empty", "", 0o600), ErrSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, err := ReadSecret(tt.path)
			if tt.want == nil {
				if err != nil || len(secret) < MinSecretSize {
					t.Fatalf("ReadSecret = %d bytes, %v", len(secret), err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadSecret = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "AQEB") {
				t.Fatalf("error %q shows the secret", err)
			}
		})
	}
}

// TestVerify_DocExample checks the worked example of docs/alarms.md (its
// signature was also computed with Python's hmac module).
func TestVerify_DocExample(t *testing.T) {
	secret, err := DecodeSecret("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{ID: "5f1c0f6e4a3b2d1c9e8f7a6b5c4d3e2f", Zone: "dmz", Alarm: QuarantineBurst, Severity: Critical,
		State: StateRaised, Message: "7 files quarantined within 10m0s", Time: time.Date(2025, 3, 1, 12, 0, 5, 0, time.UTC)}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	const wantBody = `{"id":"5f1c0f6e4a3b2d1c9e8f7a6b5c4d3e2f","zone":"dmz","alarm":"quarantine_burst","severity":"critical","state":"raised","message":"7 files quarantined within 10m0s","time":"2025-03-01T12:00:05Z"}`
	if string(body) != wantBody {
		t.Fatalf("body = %s, want %s", body, wantBody)
	}
	h := http.Header{}
	h.Set(HeaderID, ev.ID)
	h.Set(HeaderTimestamp, "1740830406")
	h.Set(HeaderSignature, "v1,ZMbno4Mc1om7CWZiB0kk8Xc8zL0DTWJGuii0qw8t5h0=")
	if err := Verify(secret, h, body, time.Unix(1740830406+60, 0), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := Sign(secret, ev.ID, time.Unix(1740830406, 0), body); got != h.Get(HeaderSignature) {
		t.Fatalf("Sign = %s", got)
	}
}

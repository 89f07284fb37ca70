package dmz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a CA, with what it issued, for the TLS tests.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferry test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, pool: pool}
}

// issue returns a certificate for name (a DNS name, or an IP address)
// with its key, in PEM, and as a tls.Certificate.
func (p *testPKI) issue(t testing.TB, serial int64, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

func (p *testPKI) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw})
}

// writeServerTLS writes the agent's certificate (serial) and key, and
// the client CA, under dir/tls.
func (p *testPKI) writeServerTLS(t testing.TB, dir string, serial int64) {
	t.Helper()
	cert, key, _ := p.issue(t, serial, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	tdir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"server.crt": cert, "server.key": key, "ca.crt": p.caPEM()} {
		if err := os.WriteFile(filepath.Join(tdir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// tlsClient returns an HTTP client that trusts p and presents certs.
func (p *testPKI) tlsClient(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: certs},
	}}
}

const tlsExtra = `    tls_name: other.example
tls:
  cert: tls/server.crt
  key: tls/server.key
  client_ca: tls/ca.crt
`

// TestTLS: the API over TLS with modern settings; a client bound to a
// certificate name (other) is served only on a connection that presented
// a certificate of the CA with that name, while an unbound client
// (portal) needs none; a renewed certificate is put in force by reload.
func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	_, _, otherCert := pki.issue(t, 10, "other.example", x509.ExtKeyUsageClientAuth)
	_, _, wrongCert := pki.issue(t, 11, "portal.example", x509.ExtKeyUsageClientAuth)
	e := startEnvWith(t, envOptions{
		extra:  tlsExtra,
		setup:  func(dir string) { pki.writeServerTLS(t, dir, 2) },
		client: pki.tlsClient(),
	})
	if !strings.HasPrefix(e.base, "https://") {
		t.Fatalf("base %s", e.base)
	}
	// Unbound client without a certificate.
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
		t.Fatalf("portal over TLS: HTTP %d %s", r.code, r.raw)
	}
	// Bound client: no certificate, another name, then its own.
	if r := e.do(t, http.MethodGet, "/v1/operations", tokenOther, "", nil); r.code != http.StatusForbidden || r.reason() != ReasonCertificateRequired {
		t.Fatalf("other without a certificate: HTTP %d %s", r.code, r.raw)
	}
	wrong := &env{base: e.base, client: pki.tlsClient(wrongCert)}
	if r := wrong.do(t, http.MethodGet, "/v1/operations", tokenOther, "", nil); r.code != http.StatusForbidden || r.reason() != ReasonCertificateRequired {
		t.Fatalf("other with portal's certificate: HTTP %d %s", r.code, r.raw)
	}
	right := &env{base: e.base, client: pki.tlsClient(otherCert)}
	if r := right.do(t, http.MethodGet, "/v1/operations", tokenOther, "", nil); r.code != http.StatusOK {
		t.Fatalf("other with its certificate: HTTP %d %s", r.code, r.raw)
	}
	if got := e.edgeRefusals(t, ReasonCertificateRequired); got != 2 {
		t.Errorf("ferry_api_refused_total{reason=certificate_required} = %v, want 2", got)
	}
	// A certificate from another CA is refused in the handshake.
	stranger := newTestPKI(t)
	_, _, strangerCert := stranger.issue(t, 12, "other.example", x509.ExtKeyUsageClientAuth)
	if _, err := (&env{client: pki.tlsClient(strangerCert)}).client.Get(e.base + "/healthz"); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}

	addr := e.agent.Addr().String()
	// Old protocol versions and plain HTTP are refused.
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
	// A TLS 1.2 CBC suite is refused; an AEAD one is served.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		c.Close()
		t.Error("a CBC cipher suite was accepted")
	}
	c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	c.Close()
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served on the TLS listener")
		}
	}

	// Renewal: a new certificate in the same files, then SIGHUP.
	serial := func() int64 {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 2 {
		t.Fatalf("serving certificate serial %d, want 2", s)
	}
	pki.writeServerTLS(t, e.dir, 3)
	if err := e.agent.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := serial(); s != 3 {
		t.Fatalf("after reload: serial %d, want 3", s)
	}
	// A key file others may read is refused on reload: the old
	// certificate stays.
	keyFile := filepath.Join(e.dir, "tls", "server.key")
	pki.writeServerTLS(t, e.dir, 4)
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.agent.Reload(); err == nil || !strings.Contains(err.Error(), "tls.key") {
		t.Fatalf("reload with a 0644 key: %v", err)
	}
	if s := serial(); s != 3 {
		t.Fatalf("after a refused reload: serial %d, want 3", s)
	}
	// And New refuses to start with it.
	cfg, err := LoadConfig(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "want 0600") {
		t.Fatalf("New with a 0644 TLS key: %v", err)
	}
}

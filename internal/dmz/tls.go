package dmz

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ferrybridge/ferry/internal/keys"
)

// serverTLS is the API listener's TLS: a certificate and, optionally, the
// CA client certificates are verified against. Both are read from their
// files by load, and again by Reload, so that a renewed certificate goes
// into force without dropping connections: each handshake takes the
// material in force when it starts.
type serverTLS struct {
	cur atomic.Pointer[tlsMaterial]
}

type tlsMaterial struct {
	cert *tls.Certificate
	cas  *x509.CertPool // nil: no client certificates asked for
}

// loadTLS reads cfg's files: the key must be 0600 (keys.CheckPrivate),
// the certificate must match it, and the client CA file must hold at
// least one certificate.
func loadTLS(cfg TLSConfig) (*tlsMaterial, error) {
	if err := keys.CheckPrivate(cfg.Key); err != nil {
		return nil, fmt.Errorf("tls.key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
	if err != nil {
		// LoadX509KeyPair names neither file; the config's keys do.
		return nil, fmt.Errorf("tls.cert and tls.key (%s, %s): %w", cfg.Cert, cfg.Key, err)
	}
	m := &tlsMaterial{cert: &cert}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
		m.cas = x509.NewCertPool()
		if !m.cas.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca: %s holds no PEM certificate", cfg.ClientCA)
		}
	}
	return m, nil
}

// config returns the listener's tls.Config: TLS 1.2 at least, and for
// TLS 1.2 only the ECDHE suites with an AEAD (forward secrecy, no CBC);
// TLS 1.3's suites and Go's default key exchanges (X25519MLKEM768
// first); HTTP/1.1 only. Client
// certificates are asked for, and verified when given, if a client CA is
// configured; whether one is required is decided per client, after
// authentication (clients[].tls_name).
func (s *serverTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		NextProtos:   []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			if m == nil {
				return nil, errors.New("no TLS certificate loaded")
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				CipherSuites: tls12Suites,
				NextProtos:   []string{"http/1.1"},
				Certificates: []tls.Certificate{*m.cert},
			}
			if m.cas != nil {
				c.ClientAuth = tls.VerifyClientCertIfGiven
				c.ClientCAs = m.cas
			}
			return c, nil
		},
	}
}

// tls12Suites are the TLS 1.2 cipher suites served (TLS 1.3's are not
// configurable, and all good).
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

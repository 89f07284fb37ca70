package e2e

import (
	"testing"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
)

// TestFTPS_RoundTrip runs both agents as processes exchanging envelopes
// through a real vsftpd with TLS forced for the login and every data
// connection, one drop per direction. Mid-stream the DMZ agent is
// SIGKILLed and restarted (clients retry with their Idempotency-Key, as
// docs/api.md tells them), and later vsftpd is stopped (killing every
// session) and started again: every accepted request still ends done and
// takes effect on the replica exactly once, and neither agent warns about
// plain FTP.
func TestFTPS_RoundTrip(t *testing.T) {
	d := effectsDeployment(t)
	srv := vsftpdtest.Start(t)
	// Each zone gets its own copy of the password file and the server's
	// CA. The DMZ verifies the server against the CA, the intranet pins
	// the certificate's SHA-256: both ways are exercised.
	d.roundTripVia(t, boundary{
		server:   "vsftpd",
		medium:   "ftps",
		protocol: "FTP",
		addr:     srv.Addr,
		user:     srv.User,
		files:    map[string]string{srv.PasswordFile: "password", srv.CAFile: "ca.pem"},
		auth: func(zone string) string {
			s := "  password_file: ftps/password\n"
			if zone == "dmz" {
				return s + "  ca_file: ftps/ca.pem\n"
			}
			return s + "  cert_sha256: " + srv.CertSHA256 + "\n"
		},
		restartDMZ:  true,
		neverLogged: "plain FTP",
		drop:        srv.Drop,
		stop:        srv.Stop,
		restart:     srv.Restart,
	})
}

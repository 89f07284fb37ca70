package ftps

import (
	"crypto/rand"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"testing"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestFTPS_CutThroughProxy reaches a real vsftpd through a TCP proxy that
// cuts every connection, control and data alike, each time 3 MiB have
// crossed it, while files of 1 MiB go up and down: nothing is lost,
// nothing arrives twice, nothing is left behind.
//
// FTP's passive data connections go to a port the server names, which a
// proxy cannot rewrite in a TLS control connection. So the proxy listens
// on a loopback address of its own (all of 127/8 is the loopback on
// Linux): for the control connection on a free port, and on every port
// of vsftpd's passive range, each forwarded to the same port on
// 127.0.0.1. The client dials data connections to the host of its control
// connection (EPSV names only a port; a PASV reply's address is ignored),
// so they reach the proxy too; the proxy dials vsftpd from 127.0.0.1 for
// both, as vsftpd's pasv_promiscuous=NO requires.
func TestFTPS_CutThroughProxy(t *testing.T) {
	srv := vsftpdtest.Start(t)
	host := proxyHost(t)
	routes := []mediumtest.Route{{Listen: net.JoinHostPort(host, "0"), Target: srv.Addr}}
	for port := srv.PasvMin; port <= srv.PasvMax; port++ {
		p := strconv.Itoa(port)
		routes = append(routes, mediumtest.Route{Listen: net.JoinHostPort(host, p), Target: net.JoinHostPort("127.0.0.1", p)})
	}
	px := mediumtest.StartProxyRoutes(t, routes...)

	e := newEnv(t, srv, envOptions{})
	e.cfg.Address = px.Addr
	// The certificate names 127.0.0.1, not the proxy's address.
	e.cfg.ServerName = "127.0.0.1"
	r := mediumtest.Start(t, e.receiver(t))
	const size = 1 << 20
	mediumtest.CutMidStream(t, px, e.publisher(t), r, e.in, e.drop, 8, size, 3<<20)
	// The cuts must land in the middle of uploads, as the server sees
	// them: a cut between two transfers would test only reconnection.
	partial := 0
	for _, m := range failedUpload.FindAllStringSubmatch(srv.Log(), -1) {
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 && n < size {
			partial++
		}
	}
	if partial == 0 {
		t.Fatal("vsftpd logged no upload cut short: the cuts did not land mid-transfer")
	}
	t.Logf("vsftpd logged %d uploads cut short", partial)
}

// failedUpload matches vsftpd's log line of an upload that failed (see
// vsftpdtest.Server.Log); the group is the bytes it received.
var failedUpload = regexp.MustCompile(`FAIL UPLOAD: Client "[^"]*", "[^"]*", (\d+) bytes`)

// proxyHost returns a random loopback address other than 127.0.0.1, so
// that proxies of test processes running at once do not collide on the
// ports of their passive ranges.
func proxyHost(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	// Each byte in 1..254: never 127.0.0.1 nor the broadcast address.
	return fmt.Sprintf("127.%d.%d.%d", 1+b[0]%254, 1+b[1]%254, 1+b[2]%254)
}

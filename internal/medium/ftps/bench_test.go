package ftps

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// curlClient is curl, the baseline FTPS client.
const curlClient = "/usr/bin/curl"

// curlStall is the least time_pretransfer counted as a stall of curl's
// transfer loop (a wait of a whole second before the data connect).
const curlStall = 900 * time.Millisecond

// BenchmarkPublishVsCurl publishes envelope files through the FTPS medium
// to a real vsftpd with explicit TLS, and uploads the same files with curl
// (one invocation, one login on one control connection, one -T glob
// naming every file of the batch, passive mode) in the same iteration. It
// reports both throughputs and their ratio (medium/curl); ns/op is the
// medium's time for one batch. Each side's files are checked in the drop
// (names, sizes) after each batch, untimed.
//
// The medium is connected before timing starts (an agent keeps its
// connection); curl's time includes its process start, its one TCP
// connection, TLS handshake and login. The medium does more per file than
// curl's STOR: it checks the final name (SIZE, then CWD to tell a
// directory from nothing), stores under a temporary name, checks the final
// name again and renames (RNFR/RNTO): eight commands where curl sends two
// (EPSV, STOR). Both open a TLS data connection per file that resumes the
// control connection's session (vsftpd's require_ssl_reuse); the medium
// at TLS 1.3, curl at TLS 1.2 (see below). curl-stalls/op counts curl's
// uploads per batch that waited a second in curl's transfer loop.
func BenchmarkPublishVsCurl(b *testing.B) {
	if _, err := os.Stat(curlClient); err != nil {
		b.Fatalf("%s not found: install curl (apt-get install curl)", curlClient)
	}
	for _, size := range []struct {
		name        string
		size, count int
	}{
		{"1KiB", 1 << 10, 200},
		{"64MiB", 64 << 20, 1},
	} {
		b.Run(size.name, func(b *testing.B) { benchPublishVsCurl(b, size.size, size.count) })
	}
}

func benchPublishVsCurl(b *testing.B, size, count int) {
	srv := vsftpdtest.Start(b)
	remote, local := srv.Drop(b, "bench")
	ctx := context.Background()
	p, err := NewPublisher(Config{Address: srv.Addr, User: srv.User, PasswordFile: srv.PasswordFile, CAFile: srv.CAFile, Dir: remote,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })

	// The same files for both: in memory for the medium, on disk (in the
	// page cache) for curl.
	data := make([]byte, size)
	rand.Read(data)
	src := b.TempDir()
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%06d.fxe", i)
		if err := os.WriteFile(filepath.Join(src, names[i]), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}

	// The password goes to curl in a 0600 netrc file, not on its command
	// line, where any local user could read it.
	host, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		b.Fatal(err)
	}
	password, err := os.ReadFile(srv.PasswordFile)
	if err != nil {
		b.Fatal(err)
	}
	netrc := filepath.Join(b.TempDir(), "netrc")
	if err := os.WriteFile(netrc, fmt.Appendf(nil, "machine %s login %s password %s\n", host, srv.User, strings.TrimSpace(string(password))), 0o600); err != nil {
		b.Fatal(err)
	}
	// "-T {a,b,...} URL/" uploads every file of the batch, each under its
	// own name in the drop, over one control connection; curl runs in src
	// so that the glob holds bare names. --ssl-reqd is explicit TLS (AUTH
	// TLS) for the login and PROT P for the data; passive mode is curl's
	// default (EPSV, then PASV). --tls-max 1.2 works around a bug of curl
	// 7.88 (Debian 12) against vsftpd: over TLS 1.3 every second upload
	// of a batch fails (426 at the close of the data connection, then 522
	// "session reuse required"; curl issues 4654 and 13904). The medium
	// runs TLS 1.3. -w prints each upload's time_pretransfer, for the
	// stalls below.
	args := []string{"--disable", "--silent", "--show-error", "--ssl-reqd", "--tls-max", "1.2",
		"--cacert", srv.CAFile, "--netrc-file", netrc, "-w", "%{time_pretransfer}\n"}
	// FERRY_BENCH_CURL_ARGS adds arguments to curl's, such as
	// "--trace-time --trace-ascii FILE" to see where its time goes.
	args = append(args, strings.Fields(os.Getenv("FERRY_BENCH_CURL_ARGS"))...)
	args = append(args, "-T", "{"+strings.Join(names, ",")+"}", fmt.Sprintf("ftp://%s:%s%s/", host, port, remote))
	// client runs curl and returns how many of its uploads stalled: curl
	// 7.88 sometimes waits a whole second between the passive-mode reply
	// and the start of the data connect (EPSV and PASV alike), more often
	// the busier the machine. Such an upload spends at least that second before its
	// transfer starts; no other step of a 1 KiB or 64 MiB upload on
	// loopback comes near it.
	client := func() (stalls int) {
		cmd := exec.Command(curlClient, args...)
		cmd.Dir = src
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("curl -T: %v\n%s", err, stderr.Bytes())
		}
		lines := strings.Fields(string(out))
		if len(lines) != count {
			b.Fatalf("curl -T: %d uploads reported, want %d:\n%s", len(lines), count, out)
		}
		for _, l := range lines {
			pre, err := strconv.ParseFloat(l, 64)
			if err != nil {
				b.Fatalf("curl -T: time_pretransfer %q: %v", l, err)
			}
			if pre >= curlStall.Seconds() {
				stalls++
			}
		}
		return stalls
	}
	// collect checks that the batch arrived in the drop, every file under
	// its name with its size and nothing else, and removes it.
	collect := func(who string) {
		des, err := os.ReadDir(local)
		if err != nil {
			b.Fatal(err)
		}
		if len(des) != count {
			b.Fatalf("%s: %d files in the drop, want %d", who, len(des), count)
		}
		for _, de := range des {
			fi, err := de.Info()
			if err != nil {
				b.Fatal(err)
			}
			if !strings.HasPrefix(de.Name(), "bench-") || !fi.Mode().IsRegular() || fi.Size() != int64(size) {
				b.Fatalf("%s: %s in the drop (%v, %d bytes), want a bench- file of %d bytes", who, de.Name(), fi.Mode(), fi.Size(), size)
			}
			if err := os.Remove(filepath.Join(local, de.Name())); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Connect the medium, and check, untimed, that curl works and logs in
	// once for the whole batch.
	if err := p.Publish(ctx, "warmup.fxe", data[:1]); err != nil {
		b.Fatal(err)
	}
	if err := os.Remove(filepath.Join(local, "warmup.fxe")); err != nil {
		b.Fatal(err)
	}
	logins := strings.Count(srv.Log(), "OK LOGIN")
	client()
	if n := strings.Count(srv.Log(), "OK LOGIN") - logins; n != 1 {
		b.Fatalf("curl logged in %d times for one batch, want once", n)
	}
	collect("curl")

	var tMedium, tClient time.Duration
	stalls := 0
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		for _, n := range names {
			if err := p.Publish(ctx, n, data); err != nil {
				b.Fatal(err)
			}
		}
		tMedium += time.Since(start)
		b.StopTimer()
		collect("medium")
		start = time.Now()
		stalls += client()
		tClient += time.Since(start)
		collect("curl")
		b.StartTimer()
	}
	mediumtest.ReportRatio(b, int64(size)*int64(count), tMedium, tClient, "curl")
	b.ReportMetric(float64(stalls)/float64(b.N), "curl-stalls/op")
}

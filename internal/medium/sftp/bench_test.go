package sftp

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// sftpClient is OpenSSH's own SFTP client, the baseline.
const sftpClient = "/usr/bin/sftp"

// BenchmarkPublishVsOpenSSH publishes envelope files through the SFTP
// medium to a real OpenSSH sshd, and uploads the same files with
// OpenSSH's own client (sftp -b, one "put" per file, one session) in the
// same iteration. It reports both throughputs and their ratio
// (medium/openssh); ns/op is the medium's time for one batch.
//
// The medium is connected before timing starts (an agent keeps its
// connection); the client's time includes its one connection and
// handshake. The medium does more per file than a put: it compares with
// an existing final name, writes a temporary name, fsyncs
// (fsync@openssh.com) and links it into place; put only writes.
func BenchmarkPublishVsOpenSSH(b *testing.B) {
	if _, err := os.Stat(sftpClient); err != nil {
		b.Fatalf("%s not found: install openssh-client", sftpClient)
	}
	for _, size := range []struct {
		name        string
		size, count int
	}{
		{"1KiB", 1 << 10, 200},
		{"64MiB", 64 << 20, 1},
	} {
		b.Run(size.name, func(b *testing.B) { benchPublishVsOpenSSH(b, size.size, size.count) })
	}
}

func benchPublishVsOpenSSH(b *testing.B, size, count int) {
	srv := sshdtest.Start(b)
	remote, local := srv.Drop(b, "bench")
	ctx := context.Background()
	p, err := NewPublisher(Config{Address: srv.Addr, User: srv.User, KeyFile: srv.KeyFile, KnownHosts: srv.KnownHosts, Dir: remote,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })

	// The same files for both: in memory for the medium, on disk (in the
	// page cache) for the client.
	data := make([]byte, size)
	rand.Read(data)
	src := b.TempDir()
	var batch strings.Builder
	// FERRY_BENCH_SFTP_PUT="put -f" makes the client fsync each file too.
	put := cmp.Or(os.Getenv("FERRY_BENCH_SFTP_PUT"), "put")
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%06d.fxe", i)
		if err := os.WriteFile(filepath.Join(src, names[i]), data, 0o600); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&batch, "%s %s %s\n", put, filepath.Join(src, names[i]), path.Join(remote, names[i]))
	}
	batchFile := filepath.Join(b.TempDir(), "batch")
	if err := os.WriteFile(batchFile, []byte(batch.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.Addr, ":")
	args := []string{"-q", "-b", batchFile, "-F", "/dev/null", "-i", srv.KeyFile, "-P", port,
		"-o", "UserKnownHostsFile=" + srv.KnownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
	// FERRY_BENCH_SFTP_CIPHERS sets the client's ciphers (OpenSSH prefers
	// chacha20-poly1305, Go's ssh AES-GCM where the CPU has AES-NI).
	if c := os.Getenv("FERRY_BENCH_SFTP_CIPHERS"); c != "" {
		args = append(args, "-o", "Ciphers="+c)
	}
	args = append(args, srv.User+"@127.0.0.1")
	client := func() {
		cmd := exec.Command(sftpClient, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("sftp -b: %v\n%s", err, out)
		}
	}
	clear := func() {
		des, err := os.ReadDir(local)
		if err != nil {
			b.Fatal(err)
		}
		for _, de := range des {
			if err := os.Remove(filepath.Join(local, de.Name())); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Connect the medium, and check that the client works, untimed.
	if err := p.Publish(ctx, "warmup.fxe", data[:1]); err != nil {
		b.Fatal(err)
	}
	client()
	clear()

	var tMedium, tClient time.Duration
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
		clear()
		start = time.Now()
		client()
		tClient += time.Since(start)
		clear()
		b.StartTimer()
	}
	mediumtest.ReportRatio(b, int64(size)*int64(count), tMedium, tClient, "openssh")
}

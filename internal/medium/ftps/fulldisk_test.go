package ftps

import (
	"testing"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/internal/daemontest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestFTPS_FullDisk gives the drop a 2 MiB file system on the server (a
// tmpfs mounted over the drop directory, owned by the login user as the
// drop was, so the test needs root, as vsftpd does): a publish that does
// not fit fails, leaves no final name and no temporary file, and one
// that fits still goes through and arrives.
func TestFTPS_FullDisk(t *testing.T) {
	srv := vsftpdtest.Start(t)
	e := newEnv(t, srv, envOptions{})
	daemontest.MountTmpfs(t, e.drop, mediumtest.FullDiskRoom)
	mediumtest.FullDisk(t, e.publisher(t), e.receiver(t), e.in, e.drop)
}

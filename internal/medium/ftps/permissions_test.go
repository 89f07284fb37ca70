package ftps

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestPermissions runs the permission checks over a real vsftpd. Its
// sessions run as the system user ferrytest, so the test (root) makes
// the server refuse by changing the modes of the drop directory (owned
// by ferrytest, 0700) and of the files in it.
func TestPermissions(t *testing.T) {
	srv := vsftpdtest.Start(t)
	t.Run("PublishDenied", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		mediumtest.PublishDenied(t, e.publisher(t), e.drop, mediumtest.Chmod(t, e.drop, 0o700, 0o500))
	})
	t.Run("ReadDenied", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		log, rec := mediumtest.NewRecorder(t)
		e.cfg.Logger = log
		mediumtest.ReadDenied(t, e.publisher(t), e.receiver(t), e.cfg.Rescan, e.in, rec, e.drop, func(name string, on bool) {
			path := filepath.Join(e.drop, name)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			mediumtest.Chmod(t, path, fi.Mode().Perm()|0o400, 0)(on)
		})
	})
	t.Run("RemoveDenied", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		log, rec := mediumtest.NewRecorder(t)
		e.cfg.Logger = log
		mediumtest.RemoveDenied(t, e.publisher(t), e.receiver(t), e.cfg.Rescan, e.in, rec, e.drop, mediumtest.Chmod(t, e.drop, 0o700, 0o500))
	})
}

package dir

import (
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/internal/daemontest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestConformance runs the medium conformance suite over the directory
// medium three ways: with fsnotify, polling only, and with the drop
// directory on another file system than the inbox (the copy path).
func TestConformance(t *testing.T) {
	t.Run("fsnotify", func(t *testing.T) {
		mediumtest.Run(t, pairFunc(func(t *testing.T) envOptions { return envOptions{} }))
	})
	t.Run("poll", func(t *testing.T) {
		mediumtest.Run(t, pairFunc(func(t *testing.T) envOptions {
			return envOptions{pollOnly: true, rescan: 20 * time.Millisecond}
		}))
	})
	t.Run("exdev", func(t *testing.T) {
		mediumtest.Run(t, pairFunc(func(t *testing.T) envOptions { return envOptions{drop: otherFSDir(t)} }))
	})
}

// TestLarge sends a 256 MiB file through the directory medium both ways
// a receiver claims: by rename, and by copy from another file system (a
// tmpfs, so the test needs root, as CI has).
func TestLarge(t *testing.T) {
	t.Run("rename", func(t *testing.T) {
		mediumtest.Large(t, pairFunc(func(t *testing.T) envOptions { return envOptions{maxSize: mediumtest.LargeSize} }))
	})
	t.Run("exdev", func(t *testing.T) {
		mediumtest.Large(t, pairFunc(func(t *testing.T) envOptions {
			// A file system of its own, large enough for the file, the
			// second publish's temporary copy and some: /dev/shm, where
			// otherFSDir looks, is 64 MiB in a default container.
			drop := t.TempDir()
			daemontest.MountTmpfs(t, drop, 3*mediumtest.LargeSize)
			return envOptions{drop: drop, maxSize: mediumtest.LargeSize}
		}))
	})
}

// TestFullDisk gives the drop a file system of its own of 2 MiB (a tmpfs,
// so the test needs root).
func TestFullDisk(t *testing.T) {
	drop := t.TempDir()
	daemontest.MountTmpfs(t, drop, mediumtest.FullDiskRoom)
	e := newEnv(t, envOptions{drop: drop})
	mediumtest.FullDisk(t, e.pub, e.recv, e.in, drop)
}

// TestNames: a lister of the drop never sees a final name before its
// file is whole, and the receiver leaves alone names that are not
// envelope names (TestReceiver_Run_hostile covers the valid names of
// what is not a regular file, which this medium quarantines).
func TestNames(t *testing.T) {
	t.Run("AtomicVisibility", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		mediumtest.AtomicVisibility(t, e.pub, e.drop)
	})
	t.Run("IgnoresNames", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		mediumtest.IgnoresNames(t, e.pub, e.recv, e.in, e.drop)
	})
}

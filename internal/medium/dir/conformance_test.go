package dir

import (
	"testing"
	"time"

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
// a receiver claims: by rename, and by copy from another file system.
func TestLarge(t *testing.T) {
	t.Run("rename", func(t *testing.T) {
		mediumtest.Large(t, pairFunc(func(t *testing.T) envOptions { return envOptions{maxSize: mediumtest.LargeSize} }))
	})
	t.Run("exdev", func(t *testing.T) {
		mediumtest.Large(t, pairFunc(func(t *testing.T) envOptions {
			return envOptions{drop: otherFSDir(t), maxSize: mediumtest.LargeSize}
		}))
	})
}

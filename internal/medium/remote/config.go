package remote

import (
	"errors"
	"fmt"
	"path"
	"time"
)

// Duration is one duration setting of a protocol's config, for
// [FillDurations].
type Duration struct {
	Name    string         // as errors name it, e.g. "op timeout"
	Value   *time.Duration // the setting: 0 takes Default, a negative one is an error
	Default time.Duration
}

// FillDurations replaces each zero duration with its default. A negative
// duration is an error that names it.
func FillDurations(ds ...Duration) error {
	for _, d := range ds {
		if *d.Value < 0 {
			return fmt.Errorf("%s %v is negative", d.Name, *d.Value)
		}
		if *d.Value == 0 {
			*d.Value = d.Default
		}
	}
	return nil
}

// CheckDir checks the drop directory of a protocol's config, as the
// server names it, and returns it cleaned: it must be absolute.
func CheckDir(dir string) (string, error) {
	switch {
	case dir == "":
		return "", errors.New("dir is empty")
	case !path.IsAbs(dir):
		return "", fmt.Errorf("dir %q is not absolute", dir)
	}
	return path.Clean(dir), nil
}

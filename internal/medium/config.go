package medium

import "github.com/ferrybridge/ferry/internal/config"

// TypeDir is the directory medium (package medium/dir), the only type so
// far.
const TypeDir = "dir"

// Config is the block of an agent config that names the medium of one
// direction: its type, its directory, and for a receiving medium how often
// it is rescanned.
type Config struct {
	Type   string          `yaml:"type"`
	Dir    string          `yaml:"dir"`
	Rescan config.Duration `yaml:"rescan"` // receive only; 0 means the medium's default
}

// Check validates c as the medium an agent sends on (send) or receives
// from. It returns the message and the key ("type", "dir" or "rescan") of
// the first problem, or two empty strings.
func (c Config) Check(send bool) (msg, key string) {
	switch {
	case c.Type != TypeDir:
		return `unknown medium type "` + c.Type + `": want "` + TypeDir + `"`, "type"
	case c.Dir == "":
		return "required: the medium's directory", "dir"
	case c.Rescan < 0:
		return "must not be negative", "rescan"
	case send && c.Rescan != 0:
		return "only a receiving medium is rescanned", "rescan"
	}
	return "", ""
}

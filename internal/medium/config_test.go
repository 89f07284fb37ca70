package medium

import (
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/config"
)

func TestConfig_Check(t *testing.T) {
	for _, tc := range []struct {
		name      string
		c         Config
		send      bool
		key, want string
	}{
		{"receive ok", Config{Type: TypeDir, Dir: "x", Rescan: config.Duration(time.Second)}, false, "", ""},
		{"send ok", Config{Type: TypeDir, Dir: "x"}, true, "", ""},
		{"unknown type", Config{Type: "sftp", Dir: "x"}, false, "type", `unknown medium type "sftp": want "dir"`},
		{"no dir", Config{Type: TypeDir}, true, "dir", "required: the medium's directory"},
		{"negative rescan", Config{Type: TypeDir, Dir: "x", Rescan: -1}, false, "rescan", "must not be negative"},
		{"rescan on send", Config{Type: TypeDir, Dir: "x", Rescan: config.Duration(time.Second)}, true, "rescan", "only a receiving medium is rescanned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, key := tc.c.Check(tc.send)
			if msg != tc.want || key != tc.key {
				t.Fatalf("Check = %q, %q; want %q, %q", msg, key, tc.want, tc.key)
			}
		})
	}
}

package media

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/medium"
)

func TestCheck(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	d := t.TempDir()
	r, err := Check(ctx, medium.Config{Type: medium.TypeDir, Dir: d}, log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Medium != "dir "+d || !r.Healthy() || !r.Writable {
		t.Errorf("dir: %+v, want a healthy report of %s", r, d)
	}
	r, err = Check(ctx, medium.Config{Type: medium.TypeDir, Dir: filepath.Join(d, "gone")}, log)
	if err != nil || r.Healthy() {
		t.Errorf("missing dir: %+v, %v; want a report with a problem", r, err)
	}
	for _, cfg := range []medium.Config{
		{Type: "carrier-pigeon", Dir: d},
		{Type: medium.TypeSFTP, Address: "h:22", User: "u", Key: "k", Dir: "/drop"}, // no known_hosts
	} {
		if _, err := Check(ctx, cfg, log); err == nil || !strings.Contains(err.Error(), "medium") {
			t.Errorf("Check(%+v): %v, want a config error", cfg, err)
		}
	}
}

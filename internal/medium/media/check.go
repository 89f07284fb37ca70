package media

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/dir"
	"github.com/ferrybridge/ferry/internal/medium/ftps"
	"github.com/ferrybridge/ferry/internal/medium/sftp"
)

// Check checks the medium cfg names (`ferryctl medium check`): it
// reaches it as the agent would, writes, renames and removes a probe
// file, and reports free space and the files waiting; see
// medium.CheckReport. cfg must have its local paths resolved
// (medium.Config.Resolve). Failures of the medium are problems in the
// report; the error is for an invalid cfg or the end of ctx.
func Check(ctx context.Context, cfg medium.Config, log *slog.Logger) (*medium.CheckReport, error) {
	// The direction does not matter to a check; Check(false) accepts the
	// keys of both.
	if msg, key := cfg.Check(false); msg != "" {
		return nil, fmt.Errorf("medium %s: %s", key, msg)
	}
	switch cfg.Type {
	case medium.TypeDir:
		return dir.Check(ctx, cfg.Dir)
	case medium.TypeSFTP:
		return sftp.Check(ctx, sftpConfig(cfg, log))
	case medium.TypeFTPS, medium.TypeFTP:
		return ftps.Check(ctx, ftpsConfig(cfg, log))
	default:
		return nil, fmt.Errorf("check medium: unknown type %q", cfg.Type)
	}
}

package sftp

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// SFTP extensions the medium uses where the server offers them.
const (
	extFsync    = "fsync@openssh.com"
	extHardlink = "hardlink@openssh.com"
)

// Publisher uploads envelope files into a drop directory on an SFTP
// server. It is safe for concurrent use with distinct names; all calls
// share one connection.
type Publisher struct {
	cfg  Config
	c    *client
	core *remote.Publisher

	// noHardlink makes Publish rename even where the server offers
	// hardlink@openssh.com; tests use it to cover the rename path.
	noHardlink bool
}

var _ medium.Publisher = (*Publisher)(nil)

// NewPublisher checks cfg, reads and checks the key file and the
// known_hosts file, and returns a Publisher. It does not dial: the first
// Publish does.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg, c, err := open(cfg)
	if err != nil {
		return nil, fmt.Errorf("new sftp publisher: %w", err)
	}
	p := &Publisher{cfg: cfg, c: c}
	// The connection is shared with other publishes: the end of one
	// caller's ctx must not close it (shared, not exclusive). Publish
	// checks ctx between operations instead.
	p.core = remote.NewPublisher(session{c: c, noHardlink: &p.noHardlink}, remote.PublisherConfig{
		Dir: cfg.Dir, TempMaxAge: cfg.TempMaxAge, ChunkSize: chunkSize, Logger: cfg.Logger,
	})
	return p, nil
}

// Close closes the connection. Publish fails after Close.
func (p *Publisher) Close() error { return p.c.close() }

// Publish implements medium.Publisher; see the package doc for the steps.
func (p *Publisher) Publish(ctx context.Context, name string, data []byte) error {
	return p.core.Publish(ctx, name, data)
}

// PublishFrom implements medium.Publisher: Publish, reading src a chunk
// at a time.
func (p *Publisher) PublishFrom(ctx context.Context, name string, src io.ReaderAt, size int64) error {
	return p.core.PublishFrom(ctx, name, src, size)
}

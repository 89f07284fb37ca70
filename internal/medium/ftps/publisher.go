package ftps

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// Publisher uploads envelope files into a drop directory on an FTP
// server. It is safe for concurrent use with distinct names; the
// publishes take turns on one connection.
type Publisher struct {
	cfg  Config
	c    *client
	core *remote.Publisher
}

var _ medium.Publisher = (*Publisher)(nil)

// NewPublisher checks cfg, reads and checks the password file and the CA
// file or pin, and returns a Publisher. It does not dial: the first
// Publish does. With cfg.Plain it logs a warning.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg, c, err := open(cfg)
	if err != nil {
		return nil, fmt.Errorf("new ftps publisher: %w", err)
	}
	core := remote.NewPublisher(session{c: c}, remote.PublisherConfig{
		Dir: cfg.Dir, TempMaxAge: cfg.TempMaxAge, ChunkSize: chunkSize, Logger: cfg.Logger,
	})
	return &Publisher{cfg: cfg, c: c, core: core}, nil
}

// Close closes the connection. Publish fails after Close.
func (p *Publisher) Close() error { return p.c.close() }

// Publish implements medium.Publisher; see the package doc for the steps.
func (p *Publisher) Publish(ctx context.Context, name string, data []byte) error {
	if err := p.c.rc.Lock(ctx); err != nil {
		return err
	}
	defer p.c.rc.Unlock()
	return p.core.Publish(ctx, name, data)
}

// PublishFrom implements medium.Publisher: Publish, reading src a chunk
// at a time.
func (p *Publisher) PublishFrom(ctx context.Context, name string, src io.ReaderAt, size int64) error {
	return p.core.PublishFrom(ctx, name, src, size)
}

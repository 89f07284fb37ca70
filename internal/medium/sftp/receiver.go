package sftp

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// Receiver downloads envelope files from a drop directory on an SFTP
// server into an inbox. Run it once at a time per inbox.
type Receiver struct {
	cfg  Config
	c    *client
	core *remote.Receiver
}

var _ medium.Receiver = (*Receiver)(nil)

// NewReceiver checks cfg, reads and checks the key file and the
// known_hosts file, and returns a Receiver claiming into inbox. It does
// not dial: Run does.
func NewReceiver(cfg Config, inbox *medium.Inbox) (*Receiver, error) {
	if inbox == nil {
		return nil, errors.New("new sftp receiver: inbox is nil")
	}
	cfg, c, err := open(cfg)
	if err != nil {
		return nil, fmt.Errorf("new sftp receiver: %w", err)
	}
	// The connection is the receiver's alone, so the end of ctx closes it
	// at once (exclusive).
	core := remote.NewReceiver(session{c: c, exclusive: true}, inbox, remote.ReceiverConfig{
		Dir: cfg.Dir, Rescan: cfg.Rescan, TempMaxAge: cfg.TempMaxAge, ChunkSize: chunkSize, Logger: cfg.Logger,
	})
	return &Receiver{cfg: cfg, c: c, core: core}, nil
}

// Close closes the connection. Call it after Run has returned.
func (r *Receiver) Close() error { return r.c.close() }

// Run implements medium.Receiver; see the package doc.
func (r *Receiver) Run(ctx context.Context, out chan<- string) error {
	return r.core.Run(ctx, out)
}

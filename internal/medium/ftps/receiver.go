package ftps

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// Receiver downloads envelope files from a drop directory on an FTP
// server into an inbox. Run it once at a time per inbox.
type Receiver struct {
	cfg  Config
	c    *client
	core *remote.Receiver
}

var _ medium.Receiver = (*Receiver)(nil)

// NewReceiver checks cfg, reads and checks the password file and the CA
// file or pin, and returns a Receiver claiming into inbox. It does not
// dial: Run does. With cfg.Plain it logs a warning.
func NewReceiver(cfg Config, inbox *medium.Inbox) (*Receiver, error) {
	if inbox == nil {
		return nil, errors.New("new ftps receiver: inbox is nil")
	}
	cfg, c, err := open(cfg)
	if err != nil {
		return nil, fmt.Errorf("new ftps receiver: %w", err)
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
	if err := r.c.rc.Lock(ctx); err != nil {
		return err
	}
	defer r.c.rc.Unlock()
	return r.core.Run(ctx, out)
}

package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
)

// maxStatusSize caps a status answer.
const maxStatusSize = 4 << 20

// ErrNoAgent means nothing listens on the admin socket: the agent is not
// running (or the socket's path is wrong).
var ErrNoAgent = errors.New("no agent answers on the admin socket")

// Get fetches path from the agent listening on the admin socket at
// socket and returns the body of a 200 answer.
func Get(ctx context.Context, socket, path string) ([]byte, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%s: %w", socket, ErrNoAgent)
		case errors.Is(err, syscall.EACCES):
			return nil, fmt.Errorf("%s: permission denied: run as the agent's user or a member of the socket's group (admin.group)", socket)
		}
		return nil, fmt.Errorf("%s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusSize))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", socket, resp.Status)
	}
	return body, nil
}

// Fetch returns the snapshot of the agent listening on the admin socket.
func Fetch(ctx context.Context, socket string) (*Snapshot, error) {
	body, err := Get(ctx, socket, PathStatus)
	if err != nil {
		return nil, err
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("%s: status answer: %w", socket, err)
	}
	return &s, nil
}

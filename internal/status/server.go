package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths the admin socket serves.
const (
	// PathStatus answers the newest Snapshot as JSON.
	PathStatus = "/v1/status"
	// PathMetrics answers the metrics in Prometheus' text format; it is
	// the only path of the metrics listener.
	PathMetrics = "/metrics"
	// PathPprof is the root of Go's runtime profiles (net/http/pprof),
	// on the admin socket only: a CPU profile of a running agent is
	//
	//	curl --unix-socket /run/ferry/dmz/admin.sock -o cpu.prof \
	//	    'http://agent/debug/pprof/profile?seconds=30'
	PathPprof = "/debug/pprof/"
)

// SocketMode is the admin socket's mode: the agent's user and the admin
// group may connect, nobody else.
const SocketMode fs.FileMode = 0o660

// Server serves the admin socket and the metrics listener.
type Server struct {
	socket  net.Listener // nil: none configured
	metrics net.Listener // nil: none configured
	path    string       // the socket's path, removed when Serve returns
	handler http.Handler
	mhandle http.Handler
	log     *slog.Logger
}

// Snapshotter is what the socket's status answer comes from.
type Snapshotter interface {
	Snapshot() *Snapshot
}

// Listen opens the admin socket (mode SocketMode, group cfg.Group if
// set) and the metrics listener that cfg names, either of which may be
// absent. A stale socket file left by a killed agent is replaced; any
// other file at the socket's path is an error.
func Listen(cfg Config, snap Snapshotter, g prometheus.Gatherer, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{path: cfg.Socket, log: logger}
	var metrics http.Handler = http.NotFoundHandler()
	if g != nil {
		metrics = promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap.Snapshot())
	})
	mux.Handle("GET "+PathMetrics, metrics)
	// Profiles show the running code and its memory, not the requests'
	// data; they are for the admins who may read the socket anyway.
	mux.HandleFunc("GET "+PathPprof, pprof.Index)
	mux.HandleFunc("GET "+PathPprof+"cmdline", pprof.Cmdline)
	mux.HandleFunc("GET "+PathPprof+"profile", pprof.Profile)
	mux.HandleFunc("GET "+PathPprof+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+PathPprof+"trace", pprof.Trace)
	s.handler = mux
	mm := http.NewServeMux()
	mm.Handle("GET "+PathMetrics, metrics)
	s.mhandle = mm

	if cfg.Socket != "" {
		ln, err := listenSocket(cfg.Socket, cfg.Group)
		if err != nil {
			return nil, err
		}
		s.socket = ln
	}
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("admin: metrics listener on %s: %w", cfg.Metrics, err)
		}
		s.metrics = ln
	}
	return s, nil
}

// listenSocket opens the unix socket at path with mode SocketMode and
// group group ("" for the process's own).
func listenSocket(path, group string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket %s: longer than %d bytes, the limit of a unix socket's path: choose a shorter admin.socket", path, maxSocketPath)
	}
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("admin socket: group %q: %w", group, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("admin socket: group %q: gid %q", group, g.Gid)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket %s: a file that is not a socket is in the way", path)
		}
		// A socket nobody answers on is a stale one from an agent that
		// was killed; one that answers belongs to a running agent.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s: another agent is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket: remove stale %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// The listener removes the file when closed.
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin socket: give %s to group %s: %w", path, group, err)
		}
	}
	return ln, nil
}

// Addr returns the metrics listener's address, nil if there is none.
func (s *Server) Addr() net.Addr {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.Addr()
}

// Serve serves until ctx ends, then closes the listeners (removing the
// socket file) and returns nil, or the first listener's error.
func (s *Server) Serve(ctx context.Context) error {
	type srv struct {
		h  *http.Server
		ln net.Listener
	}
	var srvs []srv
	mk := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	}
	if s.socket != nil {
		srvs = append(srvs, srv{mk(s.handler), s.socket})
	}
	if s.metrics != nil {
		srvs = append(srvs, srv{mk(s.mhandle), s.metrics})
	}
	errc := make(chan error, len(srvs))
	for _, x := range srvs {
		go func() {
			if err := x.h.Serve(x.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("admin server: %w", err)
		}
	}
	for _, x := range srvs {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if x.h.Shutdown(sctx) != nil {
			x.h.Close()
		}
		cancel()
	}
	if len(srvs) == 0 {
		<-ctx.Done()
	}
	return err
}

// Close closes the listeners, removing the socket file. Serve does it
// when it returns; Close is for a server that never served.
func (s *Server) Close() {
	if s.socket != nil {
		s.socket.Close()
	}
	if s.metrics != nil {
		s.metrics.Close()
	}
}

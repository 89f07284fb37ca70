package mediumtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
)

// Route is one address a Proxy listens on and the server address it
// forwards every connection accepted there to.
type Route struct {
	Listen string // host:port; port 0 picks a free port
	Target string // host:port of the server
}

// Proxy forwards TCP connections to a server over one or more routes, and
// cuts every connection it carries when asked: a network path that drops
// connections mid-stream, in front of a real server.
//
// All routes share one cut switch and one byte counter, so a protocol
// that opens connections on several ports (FTP's passive data
// connections beside its control connection) is cut as one network path:
// control and data connections alike, wherever the bytes flow.
type Proxy struct {
	Addr  string   // the first route's address: where clients connect instead of the server
	Addrs []string // every route's address, in the order of the routes

	lns []net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool // no more connections: the proxy is closing
	wg     sync.WaitGroup
	cuts   atomic.Int64
	// cutAfter, when above 0, makes the proxy cut every connection once
	// it has carried that many bytes (both ways, all connections) since
	// the last cut: cuts that land mid-transfer however fast the machine.
	cutAfter atomic.Int64
	carried  atomic.Int64
}

// StartProxy starts a proxy on a free port of 127.0.0.1 in front of
// target; it is closed at cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return StartProxyRoutes(t, Route{Listen: "127.0.0.1:0", Target: target})
}

// StartProxyRoutes starts a proxy listening on every route's address,
// forwarding to its target; it is closed at cleanup. It fails t if an
// address cannot be listened on.
func StartProxyRoutes(t testing.TB, routes ...Route) *Proxy {
	t.Helper()
	if len(routes) == 0 {
		t.Fatal("mediumtest: a proxy needs at least one route")
	}
	p := &Proxy{conns: map[net.Conn]bool{}}
	for _, r := range routes {
		ln, err := net.Listen("tcp", r.Listen)
		if err != nil {
			for _, ln := range p.lns {
				ln.Close()
			}
			t.Fatalf("mediumtest: proxy: %v", err)
		}
		p.lns = append(p.lns, ln)
		p.Addrs = append(p.Addrs, ln.Addr().String())
	}
	p.Addr = p.Addrs[0]
	for i, ln := range p.lns {
		p.wg.Add(1)
		go p.accept(ln, routes[i].Target)
	}
	t.Cleanup(p.close)
	return p
}

func (p *Proxy) accept(ln net.Listener, target string) {
	defer p.wg.Done()
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			// Accepted before close and dialled after its Cut: no pipe
			// may start that close would wait for.
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns[in], p.conns[out] = true, true
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies from src to dst until either ends, then closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			if after := p.cutAfter.Load(); after > 0 && p.carried.Add(int64(n)) >= after {
				p.Cut()
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut closes every connection the proxy carries, both sides, and returns
// how many were open. The proxy goes on accepting new ones.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.carried.Store(0)
	for c := range p.conns {
		c.Close()
	}
	n := len(p.conns) / 2
	p.cuts.Add(int64(n))
	return n
}

// CutEvery makes the proxy cut every connection each time it has carried
// n more bytes (0: never by itself).
func (p *Proxy) CutEvery(n int64) { p.carried.Store(0); p.cutAfter.Store(n) }

// Cuts returns how many connections Cut has closed in all.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

func (p *Proxy) close() {
	for _, ln := range p.lns {
		ln.Close()
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
}

// CutMidStream checks that a remote medium reached through px loses
// nothing and delivers nothing twice while px cuts all its connections
// each time it has carried every more bytes: with r running a receiver
// into in, it publishes n files of size random bytes, each retried until
// Publish succeeds (a failed publish leaves no final name, and publishing
// the same bytes again is success), waits for all n, and checks that
// connections were cut and that drop, the local directory behind the
// drop, ends empty. every should be a few times size, so that a file can
// get through between two cuts.
func CutMidStream(t *testing.T, px *Proxy, p medium.Publisher, r *Running, in *medium.Inbox, drop string, n, size int, every int64) {
	t.Helper()
	px.CutEvery(every)
	want := map[string][]byte{}
	deadline := time.Now().Add(Deadline)
	for i := range n {
		name := fmt.Sprintf("cut-%03d.fxe", i)
		want[name] = RandomBytes(t, size)
		for {
			err := p.Publish(context.Background(), name, want[name])
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: still failing after %s: %v", name, Deadline, err)
			}
		}
	}
	_, got := Consume(t, r, in, n)
	px.CutEvery(0)
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s lost or changed while connections were cut", name)
		}
	}
	if px.Cuts() == 0 {
		t.Fatal("no connection was cut: the check proved nothing")
	}
	t.Logf("%d files of %d bytes through %d cut connections", n, size, px.Cuts())
	r.Quiet(t, 500*time.Millisecond)
	end := time.Now().Add(Deadline)
	for len(DropNames(t, drop)) != 0 {
		if time.Now().After(end) {
			t.Fatalf("drop holds %v after everything was received, want nothing", DropNames(t, drop))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NoLeak checks that rounds reconnects leave no goroutine and no file
// descriptor behind. Each round publishes one small file with p (the
// first try may meet the connection cut in the round before; the retry
// must reconnect and succeed) and then calls cut, which ends every
// connection on the server's side (a proxy's or test server's cut). At
// the end it calls closeAll, which closes p, and waits for the counts to
// come back to what they were before the first round.
func NoLeak(t *testing.T, rounds int, p medium.Publisher, cut, closeAll func()) {
	t.Helper()
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	for i := range rounds {
		name := fmt.Sprintf("l-%05d.fxe", i)
		if err := p.Publish(context.Background(), name, []byte("x")); err != nil {
			if err := p.Publish(context.Background(), name, []byte("x")); err != nil {
				t.Fatalf("round %d: Publish after a reconnect: %v", i, err)
			}
		}
		cut()
	}
	closeAll()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if g <= baseG && fd <= baseFD {
			t.Logf("%d reconnects: %d goroutines and %d descriptors, as before", rounds, g, fd)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("after %d reconnects: %d goroutines (%d before), %d open descriptors (%d before):\n%s", rounds, g, baseG, fd, baseFD, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count open descriptors: %v", err)
	}
	return len(ents)
}

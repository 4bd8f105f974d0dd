package netproxy

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// A Hook passes on one chunk of bytes that one end of a connection sent: it writes to dst
// what of chunk should reach the other end, if anything, and may block first. Returning an
// error closes the connection, both ends. A proxy calls a connection's hook for one
// direction with each chunk in the order it was read, never concurrently.
type Hook func(dst io.Writer, chunk []byte) error

// Config says what a Proxy does to the bytes it passes on. The zero Config passes them on
// as they come.
type Config struct {
	// ToClientDelay holds each chunk from the server this long after it was read before it
	// goes to the client, in order, as a long or congested link would; what the client
	// sends goes straight through. Default 0: no delay.
	ToClientDelay time.Duration

	// Hooks, when set, is called for each new connection and returns the hooks its bytes
	// pass through, one per direction, so a hook pair can share state of its own
	// connection. A nil hook writes every chunk unchanged. Default nil: no hooks.
	Hooks func() (toServer, toClient Hook)
}

// Proxy is a TCP proxy from a loopback address to a target. Its methods are safe to call
// concurrently.
type Proxy struct {
	target string
	addr   string
	cfg    Config
	pipes  sync.WaitGroup // the accept loops and the connections' pipes

	mu     sync.Mutex
	ln     net.Listener // nil while cut
	conns  map[net.Conn]bool
	healed chan struct{} // closed unless frozen
}

// New starts a proxy to target (host:port) on a free loopback port. When the test ends the
// proxy is cut and New's cleanup waits for every connection's pipes to stop.
func New(t testing.TB, target string, cfg Config) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), cfg: cfg, conns: map[net.Conn]bool{}, healed: make(chan struct{})}
	close(p.healed)
	p.serve(ln)
	t.Cleanup(func() { p.Cut(); p.pipes.Wait() })
	return p
}

// Addr is the proxy's host:port; it stays the same across Cut and Restore.
func (p *Proxy) Addr() string { return p.addr }

// Cut closes the listener and every connection: both ends see the peer vanish, and nothing
// can connect until Restore. It heals a frozen proxy too. Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.heal()
}

// Restore listens again on the proxy's address after Cut, waiting up to 10 seconds for the
// port to be free; it fails the test if it is not.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restoring the proxy on %s: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Freeze holds every byte in flight from now on: connections stay open, new ones are
// accepted, and nothing gets through in either direction until Heal or Cut.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
		p.healed = make(chan struct{})
	default:
	}
}

// Heal lets bytes through again after Freeze, those held first, in order.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heal()
}

func (p *Proxy) heal() {
	select {
	case <-p.healed:
	default:
		close(p.healed)
	}
}

// serve accepts connections on ln until it is closed, and pipes each to a new connection
// to the target.
func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.pipes.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.DialTimeout("tcp", p.target, time.Second)
			if err != nil {
				client.Close()
				continue
			}
			if !p.track(ln, client, server) {
				return
			}
			var toServer, toClient Hook
			if p.cfg.Hooks != nil {
				toServer, toClient = p.cfg.Hooks()
			}
			p.pipes.Go(func() { p.pipe(server, client, 0, toServer) })
			p.pipes.Go(func() { p.pipe(client, server, p.cfg.ToClientDelay, toClient) })
		}
	})
}

// track registers a connection pair unless ln was closed by a Cut meanwhile.
func (p *Proxy) track(ln net.Listener, client, server net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != ln {
		client.Close()
		server.Close()
		return false
	}
	p.conns[client], p.conns[server] = true, true
	return true
}

// chunk is what one read from a connection returned, and when it may be passed on.
type chunk struct {
	due  time.Time
	data []byte
}

// pipe passes what src sends on to dst, each chunk delay after it was read, held while the
// proxy is frozen, through hook. When either end closes or hook fails it closes both.
func (p *Proxy) pipe(dst, src net.Conn, delay time.Duration, hook Hook) {
	if hook == nil {
		hook = write
	}
	// Reading goes on while a chunk waits, so that the delay is a latency: it does not
	// add up from chunk to chunk.
	chunks := make(chan chunk, 1024)
	go func() {
		defer close(chunks)
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(delay), append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		src.Close()
		dst.Close()
		for range chunks { // until the reader, its src closed, stops
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.due)) // the link's latency, not a wait for work
		p.mu.Lock()
		healed := p.healed
		p.mu.Unlock()
		<-healed
		if err := hook(dst, c.data); err != nil {
			return
		}
	}
}

// write is the Hook that passes every chunk on unchanged.
func write(dst io.Writer, chunk []byte) error {
	_, err := dst.Write(chunk)
	return err
}

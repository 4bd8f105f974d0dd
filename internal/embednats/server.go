package embednats

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNoDir is returned by [Start] when Options.Dir is empty.
var ErrNoDir = errors.New("embednats: Options.Dir (JetStream store directory) is required")

const (
	// readyTimeout bounds the wait for the listeners of a started server.
	readyTimeout = 10 * time.Second
	// restartTimeout bounds the wait for the old server's ports to free up.
	restartTimeout = 30 * time.Second
	// portPollInterval is the pause between checks of a port still in use.
	portPollInterval = 25 * time.Millisecond
)

// Options configures [Start].
type Options struct {
	// Dir is the JetStream store directory. Required.
	Dir string
	// Host is the client listen address. Default: 127.0.0.1.
	Host string
	// Port is the client port. Default (0, or -1): a random free port, kept
	// across Restart.
	Port int
	// ServerName names the server; cluster nodes need distinct names.
	// Default: chosen by nats-server (its id), which changes on Restart;
	// set it for a cluster node.
	ServerName string
	// LazySync lets JetStream fsync on an interval (nats-server's default,
	// two minutes) instead of before every acknowledgement. Default (false):
	// SyncAlways.
	LazySync bool
	// Cluster makes the server a cluster node. Default (nil): standalone.
	Cluster *ClusterOptions
	// Logf receives the server's notices, warnings and errors.
	// Default: discard.
	Logf func(format string, args ...any)
}

// ClusterOptions configures the cluster (route) listener of a node.
type ClusterOptions struct {
	// Name is the cluster name, the same on every node. Required.
	Name string
	// Host is the route listen address. Default: Options.Host.
	Host string
	// Port is the route port. Default (0, or -1): a random free port, kept
	// across Restart.
	Port int
	// Routes are the route URLs of the other nodes, as
	// "nats-route://host:port" (or "nats://host:port").
	Routes []string
	// Advertise is the "host:port" the node tells the other nodes to route
	// to when they learn of it from a third one. Default: the address they
	// see its connections come from, with Port.
	Advertise string
}

// Server is a running (or shut down) embedded nats-server. Its methods are
// safe for concurrent use.
type Server struct {
	mu   sync.Mutex
	opts Options // resolved: ports are the ones actually bound
	ns   *server.Server
}

// Start starts a server and returns once it accepts connections and
// JetStream is enabled.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, ErrNoDir
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Cluster != nil {
		c := *opts.Cluster
		c.Routes = append([]string(nil), c.Routes...)
		if c.Name == "" {
			return nil, errors.New("embednats: Cluster.Name is required")
		}
		if c.Host == "" {
			c.Host = opts.Host
		}
		opts.Cluster = &c
	}
	ns, err := start(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ns: ns}
	// Pin random ports to the ones bound, for Restart.
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
	if s.opts.Cluster != nil {
		s.opts.Cluster.Port = ns.ClusterAddr().Port
	}
	return s, nil
}

// ClientURL returns the URL clients connect to, e.g. nats://127.0.0.1:4222.
// It stays the same across Restart.
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return (&url.URL{Scheme: "nats", Host: net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))}).String()
}

// RouteURL returns the URL other cluster nodes route to, or "" for a
// standalone server.
func (s *Server) RouteURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Cluster == nil {
		return ""
	}
	return routeURL(s.opts.Cluster.Host, s.opts.Cluster.Port)
}

// Name returns the server name (Options.ServerName, or the one nats-server
// chose).
func (s *Server) Name() string {
	return s.NATS().Name()
}

// NATS returns the running nats-server, for inspection (JetStreamIsLeader,
// JetStreamIsStreamLeader, ...). It changes on Restart.
func (s *Server) NATS() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// Running reports whether the server is running.
func (s *Server) Running() bool {
	return s.NATS().Running()
}

// Shutdown stops the server: clients are disconnected, JetStream state is
// flushed to the store, and a cluster node hands off its leaderships. It
// returns once the server has stopped. Shutdown is idempotent.
func (s *Server) Shutdown() {
	ns := s.NATS()
	ns.Shutdown()
	ns.WaitForShutdown()
}

// WaitForShutdown blocks until the server has stopped.
func (s *Server) WaitForShutdown() {
	s.NATS().WaitForShutdown()
}

// Restart shuts the server down if it runs and starts a new one with the
// same name, ports, routes and store directory. While a port is still held
// (by a closing listener or another process) it retries, for up to 30s.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ns.Shutdown()
	s.ns.WaitForShutdown()

	addrs := []string{net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))}
	if c := s.opts.Cluster; c != nil {
		addrs = append(addrs, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	}
	deadline := time.Now().Add(restartTimeout)
	for {
		err := waitFree(addrs, deadline)
		if err == nil {
			var ns *server.Server
			if ns, err = start(s.opts); err == nil {
				s.ns = ns
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embednats: restart: %w", err)
		}
		time.Sleep(50 * time.Millisecond) // a start that failed for another reason: not a busy loop
	}
}

// start builds, starts and waits for one nats-server.
func start(o Options) (*server.Server, error) {
	so := &server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       randomIfZero(o.Port),
		JetStream:  true,
		StoreDir:   o.Dir,
		SyncAlways: !o.LazySync,
		NoSigs:     true,
	}
	if c := o.Cluster; c != nil {
		so.Cluster = server.ClusterOpts{
			Name:      c.Name,
			Host:      c.Host,
			Port:      randomIfZero(c.Port),
			Advertise: c.Advertise,
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("embednats: route %q: %w", r, err)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embednats: %w", err)
	}
	if o.Logf != nil {
		prefix := "nats: "
		if o.ServerName != "" {
			prefix = "nats " + o.ServerName + ": "
		}
		ns.SetLoggerV2(logger{logf: o.Logf, prefix: prefix}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embednats: server on %s not ready for connections within %s", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), readyTimeout)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embednats: JetStream failed to start (store %s)", o.Dir)
	}
	return ns, nil
}

// waitFree polls until every addr can be listened on, or the deadline
// passes.
func waitFree(addrs []string, deadline time.Time) error {
	for _, addr := range addrs {
		for {
			l, err := net.Listen("tcp", addr)
			if err == nil {
				_ = l.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s still in use: %w", addr, err)
			}
			time.Sleep(portPollInterval)
		}
	}
	return nil
}

func randomIfZero(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

func routeURL(host string, port int) string {
	return (&url.URL{Scheme: "nats-route", Host: net.JoinHostPort(host, strconv.Itoa(port))}).String()
}

// logger adapts Logf to nats-server's Logger. Fatalf does not exit: the
// embedding process decides what a failed server means.
type logger struct {
	logf   func(format string, args ...any)
	prefix string
}

func (l logger) Noticef(format string, v ...any) { l.logf(l.prefix+format, v...) }
func (l logger) Warnf(format string, v ...any)   { l.logf(l.prefix+"WARN "+format, v...) }
func (l logger) Errorf(format string, v ...any)  { l.logf(l.prefix+"ERROR "+format, v...) }
func (l logger) Fatalf(format string, v ...any)  { l.logf(l.prefix+"FATAL "+format, v...) }
func (l logger) Debugf(string, ...any)           {}
func (l logger) Tracef(string, ...any)           {}

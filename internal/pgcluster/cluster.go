package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the name of the cluster's superuser role.
const Superuser = "postgres"

// osUser is the OS account the server runs as when the caller is root.
const osUser = "postgres"

const (
	// defaultStartTimeout bounds Start and Restart when ctx has no deadline.
	defaultStartTimeout = 60 * time.Second
	// pollInterval is the pause between readiness probes and start retries.
	pollInterval = 50 * time.Millisecond
)

// Options configures [Start].
type Options struct {
	// Dir is the data directory. A directory that already holds a cluster
	// is reused; a missing or empty one is initialized with initdb. Default:
	// a new temporary directory, removed by Stop, or by a later Start once
	// the process that made it has died without Stop.
	Dir string
	// Port is the TCP port on 127.0.0.1. Default (0): a free port.
	Port int
	// BinDir holds initdb and postgres. Default: [FindBinaries].
	BinDir string
	// Logf receives progress messages and the server's log lines.
	// Default: discard.
	Logf func(format string, args ...any)
}

// Cluster is a running (or killed) PostgreSQL server started by [Start].
// Its methods are safe for concurrent use.
type Cluster struct {
	binDir string
	dir    string
	// tmp is the temporary directory holding dir and the owner file, when
	// Start made it; removed by Stop.
	tmp  string
	cred *syscall.Credential
	logf func(format string, args ...any)
	tail *logTail

	mu      sync.Mutex
	port    int
	proc    *process
	stopped bool
}

// process is one postmaster run.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the postmaster has exited
	err  error         // exit status; read after done is closed
}

// Start initializes (unless opts.Dir already holds one) and starts a
// cluster, and returns once it accepts connections. ctx bounds the start
// (60s when it has no deadline). On error nothing is left running and a
// temporary directory is removed.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{
		binDir: opts.BinDir,
		dir:    opts.Dir,
		port:   opts.Port,
		logf:   opts.Logf,
		tail:   newLogTail(40),
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.dir == "" {
		sweepStale(os.TempDir(), c.logf)
	}
	if c.binDir == "" {
		dir, err := FindBinaries()
		if err != nil {
			return nil, err
		}
		c.binDir = dir
	}
	if os.Geteuid() == 0 {
		cred, err := lookupCredential(osUser)
		if err != nil {
			return nil, err
		}
		c.cred = cred
	}
	if err := c.prepareDir(); err != nil {
		c.removeOwnDir()
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := c.initdb(ctx); err != nil {
		c.removeOwnDir()
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startLocked(ctx, opts.Port == 0, false); err != nil {
		c.removeOwnDir()
		return nil, err
	}
	return c, nil
}

// URL returns a connection URL for database db as the superuser, e.g.
// postgres://postgres@127.0.0.1:54321/db?sslmode=disable.
func (c *Cluster) URL(db string) string {
	return buildURL(c.Port(), db)
}

// Port returns the TCP port the cluster listens on.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// Dir returns the data directory.
func (c *Cluster) Dir() string { return c.dir }

// Stop shuts the server down (fast shutdown: open sessions are
// disconnected, committed data is kept) and removes the data directory if
// Start created it. When ctx ends first the server is shut down
// immediately. Stop is idempotent.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	err := c.shutdownLocked(ctx)
	c.stopped = true
	if rerr := c.removeOwnDir(); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// Kill sends SIGKILL to the postmaster and waits until it has exited, as a
// crash would. Its backends notice and exit on their own; [Cluster.Restart]
// waits for them and runs crash recovery.
func (c *Cluster) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proc
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	c.proc = nil
	c.logf("pgcluster: killed postmaster on port %d", c.port)
}

// Restart starts the server again on the same port and data directory,
// after [Cluster.Kill] (or shuts it down first if it runs), and returns
// once it accepts connections. ctx bounds the restart (60s when it has no
// deadline); while leftovers of a killed server still hold its shared
// memory or port, Restart retries.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgcluster: restart after Stop")
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := c.shutdownLocked(ctx); err != nil {
		return err
	}
	return c.startLocked(ctx, false, true)
}

// startAttempts bounds Start's attempts when it picks the port: another
// process may take a free port before postgres binds it.
const startAttempts = 3

// startLocked starts the postmaster and waits until it accepts
// connections. When the postmaster exits during startup, it retries: with
// pickPort on a new free port, up to startAttempts times; with
// untilDeadline on the same port until ctx ends (a killed predecessor's
// backends may still hold the shared memory); otherwise not at all.
func (c *Cluster) startLocked(ctx context.Context, pickPort, untilDeadline bool) error {
	for attempt := 1; ; attempt++ {
		if pickPort {
			port, err := freePort()
			if err != nil {
				return err
			}
			c.port = port
		}
		p, err := c.spawn()
		if err != nil {
			return err
		}
		err = c.waitReady(ctx, p)
		if err == nil {
			c.proc = p
			c.logf("pgcluster: ready on port %d (data %s)", c.port, c.dir)
			return nil
		}
		select {
		case <-p.done:
			c.logf("pgcluster: attempt %d: %v", attempt, err)
		default:
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			<-p.done
			return err
		}
		if !untilDeadline && !(pickPort && attempt < startAttempts) {
			return err
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgcluster: starting on port %d: %w (last attempt: %w)", c.port, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// spawn starts one postmaster.
func (c *Cluster) spawn() (*process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: log pipe: %w", err)
	}
	cmd := c.command(exec.Command(c.bin("postgres"),
		"-D", c.dir,
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "shared_buffers=128MB",
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
	))
	// The postmaster's children inherit the write end, so read the pipe
	// ourselves instead of letting Wait wait for every writer to exit.
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("pgcluster: starting postgres: %w", err)
	}
	go c.copyLog(r)
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls with pgx until the server accepts a connection, the
// process exits or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, p *process) error {
	url := buildURL(c.port, "postgres")
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("pgcluster: postgres exited during startup (%v); log tail:\n%s", p.err, c.tail.String())
		default:
		}
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		err := c.ping(attempt, url)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgcluster: waiting for postgres on port %d: %w (last error: %w); log tail:\n%s", c.port, ctx.Err(), last, c.tail.String())
		case <-p.done:
			t.Stop()
		case <-t.C:
		}
	}
}

// ping connects to url and checks that the server there runs on c's data
// directory: another server (of another test binary, say) may hold the port
// that ours is still failing to bind, and answer first.
func (c *Cluster) ping(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return err
	}
	theirs, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("another server answers on port %d (data directory %s: %w)", c.port, dir, err)
	}
	ours, err := os.Stat(c.dir)
	if err != nil {
		return err
	}
	if !os.SameFile(theirs, ours) {
		return fmt.Errorf("another server answers on port %d (data directory %s)", c.port, dir)
	}
	return nil
}

// shutdownLocked stops a running postmaster: fast shutdown, immediate
// shutdown if ctx ends first.
func (c *Cluster) shutdownLocked(ctx context.Context) error {
	p := c.proc
	if p == nil {
		return nil
	}
	c.proc = nil
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	return fmt.Errorf("pgcluster: fast shutdown: %w; used immediate shutdown", ctx.Err())
}

func buildURL(port int, db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, port, url.PathEscape(db))
}

// prepareDir creates the data directory (or a temporary one) and hands it
// to the server's OS user.
func (c *Cluster) prepareDir() error {
	if c.dir == "" {
		tmp, err := os.MkdirTemp("", tempPattern)
		if err != nil {
			return fmt.Errorf("pgcluster: temp dir: %w", err)
		}
		c.tmp, c.dir = tmp, filepath.Join(tmp, "data")
		if err := os.WriteFile(filepath.Join(tmp, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("pgcluster: temp dir: %w", err)
		}
		if err := os.Mkdir(c.dir, 0o700); err != nil {
			return fmt.Errorf("pgcluster: temp dir: %w", err)
		}
		if c.cred != nil {
			// The server's OS user must pass through to its data directory.
			if err := os.Chmod(tmp, 0o711); err != nil {
				return fmt.Errorf("pgcluster: temp dir: %w", err)
			}
		}
	} else {
		abs, err := filepath.Abs(c.dir)
		if err != nil {
			return fmt.Errorf("pgcluster: data dir %q: %w", c.dir, err)
		}
		c.dir = abs
		// Parents we create must let the server's OS user through when we run as root:
		// only the data directory itself is private.
		if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
			return fmt.Errorf("pgcluster: data dir: %w", err)
		}
		if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pgcluster: data dir: %w", err)
		}
	}
	if c.cred == nil {
		return nil
	}
	if err := checkReachable(c.dir, c.cred); err != nil {
		return err
	}
	uid, gid := int(c.cred.Uid), int(c.cred.Gid)
	err := filepath.WalkDir(c.dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("pgcluster: handing %s to OS user %q: %w", c.dir, osUser, err)
	}
	return nil
}

// initdb initializes the data directory unless it already holds a cluster.
func (c *Cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.dir, "PG_VERSION")); err == nil {
		c.logf("pgcluster: reusing cluster in %s", c.dir)
		return nil
	}
	c.logf("pgcluster: initdb %s (binaries %s)", c.dir, c.binDir)
	cmd := c.command(exec.CommandContext(ctx, c.bin("initdb"),
		"-D", c.dir,
		"-U", Superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("pgcluster: initdb %s: %w\n%s", c.dir, err, out)
	}
	return nil
}

// bin returns the path of a PostgreSQL binary.
func (c *Cluster) bin(name string) string { return filepath.Join(c.binDir, name) }

// command prepares cmd to run in the data directory as the server's OS
// user when we are root, in its own process group so that a terminal's
// Ctrl-C reaches only the caller, which then stops the cluster.
func (c *Cluster) command(cmd *exec.Cmd) *exec.Cmd {
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	return cmd
}

func (c *Cluster) removeOwnDir() error {
	if c.tmp == "" {
		return nil
	}
	if err := os.RemoveAll(c.tmp); err != nil {
		return fmt.Errorf("pgcluster: removing %s: %w", c.tmp, err)
	}
	return nil
}

// checkReachable reports an error naming the first ancestor of dir that
// the OS user of cred cannot traverse, so a root caller gets a clear message
// instead of initdb's "permission denied".
func checkReachable(dir string, cred *syscall.Credential) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgcluster: data dir ancestor: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		switch {
		case !ok:
		case st.Uid == cred.Uid:
			ok = mode&0o100 != 0
		case st.Gid == cred.Gid:
			ok = mode&0o010 != 0
		default:
			ok = mode&0o001 != 0
		}
		if !ok {
			return fmt.Errorf("pgcluster: the server runs as OS user %q, which cannot reach %s: %s has mode %v (allow traversal, e.g. chmod o+x, or choose another Dir)", osUser, dir, p, mode)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: PostgreSQL refuses to run as root and OS user %q is missing (install the postgresql package, or run as another user): %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: uid of %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: gid of %q: %w", name, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultStartTimeout)
}

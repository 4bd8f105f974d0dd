package opstest

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binDir holds the binaries built once per test run; TestMain removes it.
var (
	binDir   string
	buildErr error
	build    sync.Once
)

// buildBinaries builds writer, relay and projector and returns their directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	build.Do(func() {
		dir, err := os.MkdirTemp("", "pgjet-opstest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goTool, "build", "-o", dir+string(filepath.Separator),
			"./cmd/writer", "./cmd/relay", "./cmd/projector")
		cmd.Dir = root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	require.NoError(t, buildErr)
	return binDir
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

// process is a pgjet binary running as a child process with JSON logs.
type process struct {
	name string
	cmd  *exec.Cmd
	addr string // its -http-addr, as it logged it
	done chan struct{}

	mu   sync.Mutex
	logs []map[string]any
	raw  []string
}

// startBinary starts bin from dir with env and args and waits until it serves HTTP. It is
// killed when the test ends if still running; its logs are printed if the test failed.
func startBinary(t *testing.T, dir, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: bin, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(dir, bin), args...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	p.cmd.Stdout = io.Discard
	require.NoError(t, p.cmd.Start())
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var entry map[string]any
			_ = json.Unmarshal([]byte(line), &entry)
			p.mu.Lock()
			p.raw = append(p.raw, line)
			if entry != nil {
				p.logs = append(p.logs, entry)
			}
			p.mu.Unlock()
			if entry["msg"] == "serving HTTP" {
				if a, ok := entry["addr"].(string); ok {
					select {
					case addr <- a:
					default:
					}
				}
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s logs:\n%s", p.name, strings.Join(p.raw, "\n"))
			p.mu.Unlock()
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("%s exited before serving HTTP", bin)
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not serve HTTP within 90s", bin)
	}
	return p
}

// url returns the URL of path on the process's HTTP address.
func (p *process) url(path string) string { return "http://" + p.addr + path }

// stop sends SIGTERM and waits for the process to exit; it returns the exit code.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

// logsAt returns the log entries at level.
func (p *process) logsAt(level string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, e := range p.logs {
		if e["level"] == level {
			out = append(out, e)
		}
	}
	return out
}

var client = &http.Client{Timeout: 10 * time.Second}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// eventually polls cond every 50ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, not waiting for work
	}
}

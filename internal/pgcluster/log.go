package pgcluster

import (
	"bufio"
	"io"
	"strings"
	"sync"
)

// logTail keeps the last lines of the server log for error messages.
type logTail struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newLogTail(n int) *logTail { return &logTail{lines: make([]string, n)} }

func (t *logTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines[t.next] = line
	t.next = (t.next + 1) % len(t.lines)
	if t.next == 0 {
		t.full = true
	}
}

// String returns the kept lines, oldest first.
func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	if t.full {
		out = append(out, t.lines[t.next:]...)
	}
	out = append(out, t.lines[:t.next]...)
	return strings.Join(out, "\n")
}

// copyLog forwards the server's output, line by line, to Logf and the tail
// until every process holding the pipe has exited.
func (c *Cluster) copyLog(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		c.tail.add(line)
		c.logf("postgres: %s", line)
	}
	// Keep draining after an overlong line so the server never blocks.
	_, _ = io.Copy(io.Discard, r)
}

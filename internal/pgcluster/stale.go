package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	// tempPattern names the temporary directories Start makes: each holds
	// the data directory "data" and ownerFile.
	tempPattern = "pgcluster-"
	// ownerFile holds the PID of the process that made a temporary
	// directory.
	ownerFile = "owner"
)

// sweepStale removes the temporary directories under tmp that Start made in
// processes that have died without Stop (a test binary killed by go test's
// timeout or by a signal): their postmasters got SIGQUIT, but nothing
// removed the data. A directory is kept while its owner process, or a
// postmaster recorded in its data directory, still exists, and when it has
// no owner file (made by another program, or still being made). Errors are
// ignored: sweeping is best effort.
func sweepStale(tmp string, logf func(format string, args ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, tempPattern+"*"))
	for _, dir := range dirs {
		owner, ok := readPID(filepath.Join(dir, ownerFile))
		if !ok || alive(owner) {
			continue
		}
		if pm, ok := readPID(filepath.Join(dir, "data", "postmaster.pid")); ok && alive(pm) {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			logf("pgcluster: removed %s, left by process %d", dir, owner)
		}
	}
}

// readPID reads the PID on the first line of file.
func readPID(file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	return pid, err == nil && pid > 0
}

// alive reports whether a process with this PID exists. A PID reused by
// another process counts as alive: the directory is then kept, never
// wrongly removed.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return !errors.Is(err, syscall.ESRCH)
}

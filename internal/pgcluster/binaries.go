package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotInstalled is returned when no PostgreSQL server binaries are found.
var ErrNotInstalled = errors.New("pgcluster: PostgreSQL server binaries (initdb, postgres) not found: install the postgresql package")

// debianRoot holds one directory per installed PostgreSQL major version.
const debianRoot = "/usr/lib/postgresql"

// FindBinaries returns the directory holding initdb and postgres: the
// highest version under /usr/lib/postgresql/<version>/bin, else the
// directory of initdb on PATH when postgres sits beside it. It returns an
// error wrapping [ErrNotInstalled] when neither exists.
func FindBinaries() (dir string, err error) {
	entries, _ := os.ReadDir(debianRoot)
	var best []int
	for _, e := range entries {
		v, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		bin := filepath.Join(debianRoot, e.Name(), "bin")
		if !hasServerBinaries(bin) {
			continue
		}
		if best == nil || versionLess(best, v) {
			best, dir = v, bin
		}
	}
	if dir != "" {
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if bin := filepath.Dir(p); hasServerBinaries(bin) {
			return bin, nil
		}
	}
	return "", fmt.Errorf("%w (looked in %s/*/bin and PATH)", ErrNotInstalled, debianRoot)
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// parseVersion parses a version directory name such as "16" or "9.6".
func parseVersion(name string) ([]int, bool) {
	parts := strings.Split(name, ".")
	v := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		v[i] = n
	}
	return v, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

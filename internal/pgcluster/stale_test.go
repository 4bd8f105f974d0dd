package pgcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSweepStale(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	deadPID := strconv.Itoa(dead.Process.Pid)
	self := strconv.Itoa(os.Getpid())

	mk := func(name string, files map[string]string) string {
		dir := filepath.Join(tmp, name)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
		for f, content := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(content), 0o600))
		}
		return dir
	}
	stale := mk(tempPattern+"stale", map[string]string{ownerFile: deadPID})
	live := mk(tempPattern+"live", map[string]string{ownerFile: self})
	serving := mk(tempPattern+"serving", map[string]string{ownerFile: deadPID, "data/postmaster.pid": self + "\n/data\n"})
	foreign := mk(tempPattern+"foreign", nil)
	other := mk("other", map[string]string{ownerFile: deadPID})

	sweepStale(tmp, t.Logf)
	require.NoDirExists(t, stale, "its owner is gone")
	require.DirExists(t, live, "its owner runs")
	require.DirExists(t, serving, "its postmaster runs")
	require.DirExists(t, foreign, "no owner file")
	require.DirExists(t, other, "not named like ours")
}

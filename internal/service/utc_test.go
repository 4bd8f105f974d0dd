package service

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/avro"
)

// localTimestampsChild is set in the environment of the child process the test runs:
// "control" leaves the zone as TZ says, "utc" calls useUTC first.
const localTimestampsChild = "PGJET_TEST_LOCAL_TIMESTAMPS"

// Local timestamps near daylight-saving changes keep their wall clock in a binary (Main
// calls useUTC), though TZ names a zone with such changes. Without it, in Europe/Berlin,
// 2026-03-29T02:30 (a wall clock skipped that night) was written as 03:30 and
// 2026-10-25T01:30 read back as 02:30. The zone is process-wide, so a child process of
// the test binary runs each way.
func TestLocalTimestampsKeepTheirWallClock(t *testing.T) {
	if mode := os.Getenv(localTimestampsChild); mode != "" {
		if mode == "utc" {
			useUTC()
		}
		fmt.Print(roundTripLocalTimestamps(t, "2026-03-29T02:30:00", "2026-10-25T01:30:00", "2026-06-01T12:00:00"))
		return
	}
	t.Parallel()
	child := func(mode string) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLocalTimestampsKeepTheirWallClock$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TZ=Europe/Berlin", localTimestampsChild+"="+mode)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	control := child("control")
	if !strings.Contains(control, "2026-03-29T03:30:00") {
		t.Skipf("TZ=Europe/Berlin did not shift a skipped wall clock (no time zone database?): %s", control)
	}
	require.Contains(t, child("utc"), "2026-03-29T02:30:00 2026-10-25T01:30:00 2026-06-01T12:00:00\n")
}

// roundTripLocalTimestamps writes each wall clock as a local-timestamp-millis from JSON,
// reads it back and returns the wall clocks read, space-separated.
func roundTripLocalTimestamps(t *testing.T, walls ...string) string {
	s, err := avro.Parse(`{"type":"record","name":"R","fields":[{"name":"t","type":{"type":"long","logicalType":"local-timestamp-millis"}}]}`)
	require.NoError(t, err)
	var got []string
	for _, w := range walls {
		v, err := s.FromJSON([]byte(`{"t":"` + w + `"}`))
		require.NoError(t, err)
		b, err := s.Encode(v)
		require.NoError(t, err)
		out, err := s.Decode(b)
		require.NoError(t, err)
		got = append(got, out.(map[string]any)["t"].(time.Time).Format("2006-01-02T15:04:05"))
	}
	return strings.Join(got, " ") + "\n"
}

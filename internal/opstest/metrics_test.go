package opstest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// root is the module's root directory.
func root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// documentedMetric is one row of the metrics table of docs/operations.md.
type documentedMetric struct {
	Name, Type, ExportedBy string
	// Labels maps each label to the values the row lists for it (none: any value).
	Labels map[string][]string
}

// labelCell matches one label of the labels column, "`result`: ok, error" or "`group`".
var labelCell = regexp.MustCompile("`([a-z_]+)`(?::([^;`]*))?")

// parseLabels reads the labels column of a metrics row.
func parseLabels(cell string) map[string][]string {
	out := map[string][]string{}
	for _, m := range labelCell.FindAllStringSubmatch(cell, -1) {
		var values []string
		for _, v := range strings.Split(m[2], ",") {
			if v = strings.TrimSpace(v); v != "" {
				values = append(values, v)
			}
		}
		out[m[1]] = values
	}
	return out
}

// Components that run as binaries; "all" rows belong to each of them.
var binaries = []string{"writer", "relay", "projector"}

// plannedBy is the "exported by" value of metrics that no binary exports yet: the Go
// consumer API's (package subscription), which only user services run today.
const plannedBy = "subscriber"

var metricRow = regexp.MustCompile("^\\|\\s*`(pgjet_[a-z0-9_]+)`\\s*\\|\\s*([a-z]+)\\s*\\|\\s*([a-z]+)\\s*\\|")

// documentedMetrics reads the metrics table of docs/operations.md.
func documentedMetrics(t testing.TB) []documentedMetric {
	t.Helper()
	f, err := os.Open(filepath.Join(root(t), "docs", "operations.md"))
	require.NoError(t, err)
	defer f.Close()
	var (
		out    []documentedMetric
		inside bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "<!-- metrics:begin -->":
			inside = true
		case line == "<!-- metrics:end -->":
			inside = false
		case inside && strings.HasPrefix(line, "| `"):
			m := metricRow.FindStringSubmatch(line)
			require.NotNil(t, m, "malformed metrics row: %s", line)
			require.Contains(t, []string{"counter", "gauge", "histogram"}, m[2], line)
			require.Contains(t, append([]string{"all", plannedBy}, binaries...), m[3], line)
			cells := strings.Split(line, "|")
			require.GreaterOrEqual(t, len(cells), 6, "metrics row without a labels column: %s", line)
			out = append(out, documentedMetric{Name: m[1], Type: m[2], ExportedBy: m[3], Labels: parseLabels(cells[4])})
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out, "no metrics table in docs/operations.md")
	return out
}

// documentedFor returns the metrics binary must export.
func documentedFor(t testing.TB, binary string) []documentedMetric {
	var out []documentedMetric
	for _, m := range documentedMetrics(t) {
		if m.ExportedBy == binary || m.ExportedBy == "all" {
			out = append(out, m)
		}
	}
	return out
}

// exposition is a parsed Prometheus text exposition: family name -> type, and samples.
type exposition struct {
	types   map[string]string
	samples map[string]float64 // "name{labels}" -> value
}

func parseExposition(t testing.TB, text string) exposition {
	t.Helper()
	e := exposition{types: map[string]string{}, samples: map[string]float64{}}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			require.Len(t, f, 2, line)
			e.types[f[0]] = f[1]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		var v float64
		_, err := fmt.Sscan(line[i+1:], &v)
		require.NoError(t, err, line)
		e.samples[line[:i]] = v
	}
	return e
}

// sum adds the samples of name whose label text contains every one of labels.
func (e exposition) sum(name string, labels ...string) (float64, bool) {
	total, found := 0.0, false
	for k, v := range e.samples {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		if slices.ContainsFunc(labels, func(want string) bool { return !strings.Contains(l, want) }) {
			continue
		}
		total, found = total+v, true
	}
	return total, found
}

func TestMetricsTableIsWellFormed(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, m := range documentedMetrics(t) {
		require.False(t, seen[m.Name], "%s is listed twice", m.Name)
		seen[m.Name] = true
		if m.Type == "counter" {
			require.True(t, strings.HasSuffix(m.Name, "_total"), "counter %s must end in _total", m.Name)
		} else {
			require.False(t, strings.HasSuffix(m.Name, "_total"), "%s %s must not end in _total", m.Type, m.Name)
		}
	}
}

// Metrics that no binary exports are exported by the subscription package: check they are
// at least defined there, so the table cannot drift from the code.
func TestPlannedMetricsAreDefinedInTheConsumerAPI(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(root(t), "subscription", "metrics.go"))
	require.NoError(t, err)
	for _, m := range documentedMetrics(t) {
		if m.ExportedBy == plannedBy {
			require.Contains(t, string(src), `"`+m.Name+`"`, "%s is documented as a subscriber metric", m.Name)
		}
	}
}

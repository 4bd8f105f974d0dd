package opstest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

var metricRef = regexp.MustCompile(`\bpgjet_[a-z0-9_]+\b`)

// referencedMetrics returns the pgjet metric families expr queries: histogram series
// (_bucket, _sum, _count) count as their family.
func referencedMetrics(t *testing.T, expr string, documented map[string]documentedMetric) []string {
	t.Helper()
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		if _, ok := documented[name]; !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suffix); cut && documented[base].Type == "histogram" {
					name = base
				}
			}
		}
		out = append(out, name)
	}
	return out
}

// balanced reports whether expr's brackets pair up: a cheap guard against broken PromQL.
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range expr {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

// dashboardExprs returns every "expr" in a Grafana dashboard, with the panel title.
func dashboardExprs(v any, title string, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		if s, ok := x["title"].(string); ok {
			title = s
		}
		for k, val := range x {
			if s, ok := val.(string); ok && k == "expr" {
				out[s] = title
				continue
			}
			dashboardExprs(val, title, out)
		}
	case []any:
		for _, val := range x {
			dashboardExprs(val, title, out)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// Every metric a Grafana dashboard panel or a Prometheus alert rule queries is in the
// metrics table of docs/operations.md, which TestBinariesServeDocumentedMetricsAndHealth
// checks against what the binaries export. Metrics that only the Go consumer API exports
// (no binary yet) are allowed and listed.
func TestDashboardsAndRulesQueryExportedMetrics(t *testing.T) {
	t.Parallel()
	documented := map[string]documentedMetric{}
	for _, m := range documentedMetrics(t) {
		documented[m.Name] = m
	}
	used := map[string]bool{}
	check := func(where, expr string) {
		require.True(t, balanced(expr), "%s: unbalanced brackets in %q", where, expr)
		requireFunctionsFitTypes(t, where, expr, documented)
		refs := referencedMetrics(t, expr, documented)
		require.True(t, len(refs) > 0 || strings.Contains(expr, "up{"), "%s: %q queries no pgjet metric", where, expr)
		for _, name := range refs {
			m, ok := documented[name]
			require.True(t, ok, "%s: %q queries %s, which is not in docs/operations.md's metrics table", where, expr, name)
			if m.Type == "histogram" && !strings.Contains(expr, name+"_") {
				t.Errorf("%s: histogram %s queried without _bucket, _sum or _count", where, name)
			}
			used[name] = true
		}
	}

	dir := filepath.Join(root(t), "dashboards")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 2, "an overview and a per-component dashboard")
	uids := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var d map[string]any
		require.NoError(t, json.Unmarshal(b, &d), f)
		uid, _ := d["uid"].(string)
		require.NotEmpty(t, uid, "%s: uid", f)
		require.False(t, uids[uid], "%s: uid %s used twice", f, uid)
		uids[uid] = true
		require.NotEmpty(t, d["title"], f)
		exprs := map[string]string{}
		dashboardExprs(d, "", exprs)
		require.NotEmpty(t, exprs, f)
		for expr, panel := range exprs {
			check(filepath.Base(f)+" panel "+panel, expr)
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	require.NoError(t, err)
	var rules ruleFile
	require.NoError(t, yaml.Unmarshal(b, &rules))
	ops, err := os.ReadFile(filepath.Join(root(t), "docs", "operations.md"))
	require.NoError(t, err)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: a rule without a name", g.Name)
			require.False(t, alerts[r.Alert], "alert %s defined twice", r.Alert)
			alerts[r.Alert] = true
			check("alert "+r.Alert, r.Expr)
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				require.NoError(t, err, "alert %s: for", r.Alert)
			}
			require.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], "alert %s: severity", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s: summary", r.Alert)
			anchor := strings.ToLower(r.Alert)
			require.Equal(t, "docs/operations.md#"+anchor, r.Annotations["runbook"], "alert %s: runbook", r.Alert)
			require.True(t, strings.Contains(string(ops), "\n### "+r.Alert+"\n"), "alert %s has no runbook section (### %[1]s) in docs/operations.md", r.Alert)
		}
	}
	// The alerts the issue asks for.
	for _, a := range []string{"PgjetOutboxStalled", "PgjetRelayDown", "PgjetProjectionLag", "PgjetConsumerLag", "PgjetDeadLettersGrowing", "PgjetMissedHeartbeats"} {
		require.True(t, alerts[a], "alert %s", a)
	}
	// A binary's own metrics leave with it, and every alert on them falls silent: each
	// binary needs an alert on its scrape target being down or gone.
	for _, bin := range binaries {
		down := `absent(up{job="pgjet-` + bin + `"})`
		found := false
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				found = found || strings.Contains(r.Expr, down)
			}
		}
		require.True(t, found, "no alert fires when no %s runs (an expr with %s)", bin, down)
	}
	var planned []string
	for name := range used {
		if documented[name].ExportedBy == plannedBy {
			planned = append(planned, name)
		}
	}
	slices.Sort(planned)
	t.Logf("queried metrics exported only by the Go consumer API (no binary yet): %v", planned)
}

var (
	// selector matches a metric name and its label matchers: pgjet_x{a="b", c=~"d|e"}.
	selector = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	// matcher matches one label matcher of a selector.
	matcher = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	// grouping matches the label list of by (...) and without (...).
	grouping = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)
	// topAggregation matches an expression that is an aggregation as a whole.
	topAggregation = regexp.MustCompile(`^\s*(sum|min|max|avg|count)\s*\(`)
	// legendLabel matches {{label}} in a Grafana legend and {{ $labels.label }} in an
	// alert annotation.
	legendLabel     = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	annotationLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// labelUse checks the labels expr selects and groups by against the metrics table: each
// must be a documented label of a metric expr queries (or job, instance, or le of a
// histogram's buckets), and a matcher's value one the table lists for it. It returns the
// labels expr's result keeps, for legends and annotations: those of its by (...) lists
// if it has any; none if it aggregates as a whole without one; otherwise every label of
// its metrics.
func labelUse(t *testing.T, where, expr string, documented map[string]documentedMetric) map[string]bool {
	t.Helper()
	allowed := map[string]bool{}
	for _, l := range targetLabels {
		allowed[l] = true
	}
	for _, name := range referencedMetrics(t, expr, documented) {
		for l := range documented[name].Labels {
			allowed[l] = true
		}
	}
	if strings.Contains(expr, "_bucket") {
		allowed["le"] = true
	}
	for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
		m, isPgjet := documented[sel[1]]
		for _, mt := range matcher.FindAllStringSubmatch(sel[2], -1) {
			label, op, value := mt[1], mt[2], mt[3]
			require.True(t, allowed[label], "%s: %q selects on label %s, which no metric it queries has (docs/operations.md)", where, expr, label)
			values := m.Labels[label]
			if !isPgjet || len(values) == 0 || op == "!=" || op == "!~" {
				continue
			}
			for _, v := range strings.Split(value, "|") {
				require.Contains(t, values, v, "%s: %q: %s has no %s=%q (docs/operations.md lists %v)", where, expr, sel[1], label, v, values)
			}
		}
	}
	kept := map[string]bool{}
	groups := grouping.FindAllStringSubmatch(expr, -1)
	for _, g := range groups {
		for _, l := range strings.Split(g[2], ",") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			require.True(t, allowed[l], "%s: %q groups %s %s, which no metric it queries has (docs/operations.md)", where, expr, g[1], l)
			if g[1] == "by" {
				kept[l] = true
			}
		}
	}
	if len(groups) == 0 && !topAggregation.MatchString(expr) {
		kept = allowed
	}
	return kept
}

type panelTarget struct{ panel, expr, legend string }

// dashboardTargets returns every query target of a Grafana dashboard.
func dashboardTargets(v any, panel string, out *[]panelTarget) {
	switch x := v.(type) {
	case map[string]any:
		if s, ok := x["title"].(string); ok {
			panel = s
		}
		if expr, ok := x["expr"].(string); ok {
			legend, _ := x["legendFormat"].(string)
			*out = append(*out, panelTarget{panel: panel, expr: expr, legend: legend})
		}
		for _, val := range x {
			dashboardTargets(val, panel, out)
		}
	case []any:
		for _, val := range x {
			dashboardTargets(val, panel, out)
		}
	}
}

// Every label a dashboard query or an alert rule selects on, groups by, shows in a
// legend or names in an annotation is one the queried metrics have (docs/operations.md's
// metrics table, which TestBinariesServeDocumentedMetricsAndHealth checks against the
// binaries), and every label value a matcher names is one the table lists: a misspelt
// label or value matches nothing, and a legend or summary naming a label the query
// aggregated away comes out empty.
func TestDashboardsAndRulesUseDocumentedLabels(t *testing.T) {
	t.Parallel()
	documented := map[string]documentedMetric{}
	for _, m := range documentedMetrics(t) {
		documented[m.Name] = m
	}
	dir := filepath.Join(root(t), "dashboards")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var d map[string]any
		require.NoError(t, json.Unmarshal(b, &d), f)
		var targets []panelTarget
		dashboardTargets(d, "", &targets)
		require.NotEmpty(t, targets, f)
		for _, tg := range targets {
			where := filepath.Base(f) + " panel " + tg.panel
			kept := labelUse(t, where, tg.expr, documented)
			for _, m := range legendLabel.FindAllStringSubmatch(tg.legend, -1) {
				require.True(t, kept[m[1]], "%s: legend %q shows {{%s}}, which %q does not keep", where, tg.legend, m[1], tg.expr)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	require.NoError(t, err)
	var rules ruleFile
	require.NoError(t, yaml.Unmarshal(b, &rules))
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			kept := labelUse(t, where, r.Expr, documented)
			for name, text := range r.Annotations {
				for _, m := range annotationLabel.FindAllStringSubmatch(text, -1) {
					require.True(t, kept[m[1]], "%s: annotation %s names $labels.%s, which %q does not keep", where, name, m[1], r.Expr)
				}
			}
		}
	}
}

var (
	// counterFunction matches a function of counters applied to a series selector.
	counterFunction = regexp.MustCompile(`\b(rate|irate|increase|resets)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	// gaugeFunction matches a function of gauges applied to a series selector.
	gaugeFunction = regexp.MustCompile(`\b(delta|idelta|deriv|predict_linear)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// requireFunctionsFitTypes checks that expr applies rate(), irate(), increase() and
// resets() to counters and histogram series only, delta(), idelta(), deriv() and
// predict_linear() to gauges only, and histogram_quantile() to _bucket series summed by
// le. The wrong pairs give numbers, just wrong ones: rate() takes a falling gauge for a
// counter reset, delta() of a counter jumps at every restart, and a quantile without le
// is no quantile.
func requireFunctionsFitTypes(t *testing.T, where, expr string, documented map[string]documentedMetric) {
	t.Helper()
	family := func(name string) (string, string) {
		if m, ok := documented[name]; ok {
			return name, m.Type
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(name, suffix); cut && documented[base].Type == "histogram" {
				return base, "histogram series"
			}
		}
		return name, ""
	}
	for _, m := range counterFunction.FindAllStringSubmatch(expr, -1) {
		if !strings.HasPrefix(m[2], "pgjet_") {
			continue
		}
		_, typ := family(m[2])
		require.Contains(t, []string{"counter", "histogram series"}, typ, "%s: %q applies %s() to %s, a %s", where, expr, m[1], m[2], typ)
	}
	for _, m := range gaugeFunction.FindAllStringSubmatch(expr, -1) {
		if !strings.HasPrefix(m[2], "pgjet_") {
			continue
		}
		_, typ := family(m[2])
		require.Equal(t, "gauge", typ, "%s: %q applies %s() to %s, a %s", where, expr, m[1], m[2], typ)
	}
	if strings.Contains(expr, "histogram_quantile(") {
		require.Contains(t, expr, "_bucket", "%s: %q: histogram_quantile() over a histogram's _bucket series", where, expr)
		le := false
		for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(g[2], ",") {
				le = le || g[1] == "by" && strings.TrimSpace(l) == "le"
			}
		}
		require.True(t, le, "%s: %q: histogram_quantile() needs its buckets summed by (le)", where, expr)
	}
}

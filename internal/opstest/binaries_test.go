package opstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
)

// readyChecks are the readiness checks each binary must report.
var readyChecks = map[string][]string{
	"writer":    {"postgres", "migrations", "nats"},
	"relay":     {"postgres", "migrations", "nats", "partitions", "outbox"},
	"projector": {"postgres", "migrations", "nats", "progress"},
}

// unboundedLabel matches a series labelled with a stream or event id.
var unboundedLabel = regexp.MustCompile(`[{,](stream|stream_id|event_id|id)="`)

func cancelledEvent(reason string) string {
	return fmt.Sprintf(`{"type":"pgjet.demo.order.OrderCancelled","data":{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":%q,"cancelled_at":"2026-11-26T10:00:00Z"}}`, reason)
}

func postAppend(t *testing.T, w *process, stream, expected string, events ...string) int {
	t.Helper()
	body := fmt.Sprintf(`{"expected_version":%s,"events":[%s]}`, expected, strings.Join(events, ","))
	req, err := http.NewRequest(http.MethodPost, w.url("/streams/"+stream), bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func scrape(t *testing.T, p *process) exposition {
	t.Helper()
	code, body := get(t, p.url("/metrics"))
	require.Equal(t, http.StatusOK, code, "%s /metrics", p.name)
	return parseExposition(t, string(body))
}

// readyz returns the status code and decoded body of /readyz.
func readyz(t *testing.T, p *process) (int, map[string]any) {
	t.Helper()
	code, body := get(t, p.url("/readyz"))
	var v map[string]any
	require.NoError(t, json.Unmarshal(body, &v), "%s /readyz body %s", p.name, body)
	return code, v
}

// The three binaries, run as processes against a fresh database and an in-process NATS
// server, serve every metric docs/operations.md lists for them, with its documented type,
// after an append, a conflict and a validation failure have flowed through; none labels a
// series with a stream or event id; /healthz and /readyz answer the documented JSON; and a
// NATS outage makes /readyz say so.
func TestBinariesServeDocumentedMetricsAndHealth(t *testing.T) {
	t.Parallel()
	dir := buildBinaries(t)
	dbURL := pgtest.DB(t)
	srv := natstest.Server(t)
	otlp := newOTLPReceiver(t)
	env := append([]string{
		"DATABASE_URL=" + dbURL, "NATS_URL=" + srv.ClientURL(), "LOG_FORMAT=json", "LOG_LEVEL=info",
		"PGJET_DATA_DIR=" + t.TempDir(),
	}, otlp.env()...)
	listen := []string{"-http-addr", "127.0.0.1:0"}
	writer := startBinary(t, dir, "writer", env, append(listen, "-schemas-dir", filepath.Join(root(t), "schemas", "avro"))...)
	relay := startBinary(t, dir, "relay", env, append(listen, "-poll-interval", "100ms")...)
	projector := startBinary(t, dir, "projector", env, append(listen, "-batch-size", "10")...)
	procs := []*process{writer, relay, projector}

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	require.Equal(t, http.StatusOK, postAppend(t, writer, "order-1", `"no_stream"`, cancelledEvent("a"), cancelledEvent("b"), cancelledEvent("c")))
	require.Equal(t, http.StatusConflict, postAppend(t, writer, "order-1", `"no_stream"`, cancelledEvent("d")))
	require.Equal(t, http.StatusUnprocessableEntity, postAppend(t, writer, "order-2", `"any"`, cancelledEvent("")))

	eventually(t, 60*time.Second, "the projector applies the 3 events", func() bool {
		n, _ := scrape(t, projector).sum("pgjet_projection_events_applied_total")
		return n >= 3
	})

	for _, p := range procs {
		e := scrape(t, p)
		for _, m := range documentedFor(t, p.name) {
			typ, ok := e.types[m.Name]
			require.True(t, ok, "%s does not export %s (documented in docs/operations.md)", p.name, m.Name)
			require.Equal(t, m.Type, typ, "%s: type of %s", p.name, m.Name)
		}
		for name := range e.types {
			if strings.HasPrefix(name, "pgjet_") {
				require.True(t, slices.ContainsFunc(documentedMetrics(t), func(m documentedMetric) bool { return m.Name == name }),
					"%s exports %s, which docs/operations.md does not list", p.name, name)
			}
		}
		for k := range e.samples {
			require.NotRegexp(t, unboundedLabel, k, "%s: unbounded label", p.name)
		}
		requireDocumentedLabels(t, p.name, e)
	}
	requireAlertedSeries(t, procs)
	w := scrape(t, writer)
	for result, want := range map[string]float64{"ok": 1, "conflict": 1, "invalid": 1} {
		n, _ := w.sum("pgjet_append_total", `result="`+result+`"`)
		require.Equal(t, want, n, "pgjet_append_total{result=%q}", result)
	}
	r := scrape(t, relay)
	ok, _ := r.sum("pgjet_relay_published_total", `result="ok"`)
	require.Equal(t, 3.0, ok)
	owned, _ := r.sum("pgjet_relay_partitions_owned")
	require.Equal(t, 32.0, owned, "a single relay owns every partition")
	eventually(t, 10*time.Second, "the outbox is empty", func() bool {
		n, _ := scrape(t, relay).sum("pgjet_outbox_pending_rows")
		return n == 0
	})
	p := scrape(t, projector)
	active, _ := p.sum("pgjet_projection_active")
	require.Equal(t, 1.0, active)
	eventually(t, 10*time.Second, "the projection's lag in events drops to 0 (consumer info is cached 2s)", func() bool {
		lag, found := scrape(t, projector).sum("pgjet_projection_lag_events")
		return found && lag == 0
	})

	// The binaries export spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set: the
	// writer's append continues the caller's trace, the projector's spans are its children.
	eventually(t, 30*time.Second, "the writer and the projector export the trace", func() bool {
		return len(otlp.find("pgjet-writer", "append", traceID)) >= 3 &&
			len(otlp.find("pgjet-projector", "projection orders apply", traceID)) >= 3
	})
	appendSpans := map[string]bool{}
	for _, s := range otlp.find("pgjet-writer", "append", traceID) {
		require.Equal(t, "00f067aa0ba902b7", s.parent, "the append span is the caller's child")
		appendSpans[s.spanID] = true
	}
	for _, s := range otlp.find("pgjet-projector", "projection orders apply", traceID) {
		require.True(t, appendSpans[s.parent], "the projector span %+v is an append span's child", s)
	}

	for _, p := range procs {
		code, body := get(t, p.url("/healthz"))
		require.Equal(t, http.StatusOK, code)
		require.JSONEq(t, `{"status":"ok"}`, string(body))
		eventually(t, 30*time.Second, p.name+" is ready", func() bool {
			code, v := readyz(t, p)
			return code == http.StatusOK && v["status"] == "ready"
		})
		_, v := readyz(t, p)
		checks, _ := v["checks"].(map[string]any)
		require.Len(t, checks, len(readyChecks[p.name]), "%s checks: %v", p.name, checks)
		for _, c := range readyChecks[p.name] {
			require.Equal(t, "ok", checks[c], "%s check %s", p.name, c)
		}
	}

	for _, p := range []*process{relay, projector} {
		require.Zero(t, p.stop(t), "%s exits cleanly on SIGTERM", p.name)
	}
	for _, p := range procs {
		require.Empty(t, p.logsAt("error"), "%s logged errors", p.name)
		p.mu.Lock()
		for _, e := range p.logs {
			require.Equal(t, p.name, e["service"], "%s: every JSON log entry names its service: %v", p.name, e)
		}
		p.mu.Unlock()
	}
	claimed := false
	for _, e := range relay.logsAt("info") {
		_, isNumber := e["partition"].(float64)
		claimed = claimed || e["msg"] == "claimed partition" && isNumber
	}
	require.True(t, claimed, "the relay logs claimed partitions with a numeric partition field")

	// Without NATS, the writer is alive but not ready, and says why.
	srv.Shutdown()
	eventually(t, 30*time.Second, "the writer reports NATS down", func() bool {
		code, v := readyz(t, writer)
		checks, _ := v["checks"].(map[string]any)
		return code == http.StatusServiceUnavailable && v["status"] == "not ready" &&
			checks["nats"] != "ok" && checks["postgres"] == "ok"
	})
	code, _ := get(t, writer.url("/healthz"))
	require.Equal(t, http.StatusOK, code)
	failing := 0
	for _, e := range writer.logsAt("warn") {
		if e["msg"] == "readiness check failing" && e["check"] == "nats" {
			failing++
		}
	}
	require.Equal(t, 1, failing, "a failing check is logged once, however often it is probed")
	writer.stop(t)
}

// sampleLabel matches one label of a sample in the text exposition.
var sampleLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)

// requireDocumentedLabels checks that each pgjet metric binary exports has the labels of
// its row in docs/operations.md: the dashboards and alert rules are checked against the
// table (TestDashboardsAndRulesUseDocumentedLabels), so the table must match the code.
func requireDocumentedLabels(t *testing.T, binary string, e exposition) {
	t.Helper()
	documented := map[string]documentedMetric{}
	for _, m := range documentedMetrics(t) {
		documented[m.Name] = m
	}
	exported := map[string]map[string]bool{} // family -> label names
	for k := range e.samples {
		name, labels, _ := strings.Cut(k, "{")
		if !strings.HasPrefix(name, "pgjet_") {
			continue
		}
		if _, ok := e.types[name]; !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suffix); cut && e.types[base] == "histogram" {
					name = base
				}
			}
		}
		if exported[name] == nil {
			exported[name] = map[string]bool{}
		}
		for _, m := range sampleLabel.FindAllStringSubmatch(labels, -1) {
			if m[1] != "le" {
				exported[name][m[1]] = true
			}
		}
	}
	for name, labels := range exported {
		m, ok := documented[name]
		require.True(t, ok, "%s exports %s, which docs/operations.md does not list", binary, name)
		require.ElementsMatch(t, slices.Collect(maps.Keys(m.Labels)), slices.Collect(maps.Keys(labels)),
			"%s: labels of %s (docs/operations.md's labels column)", binary, name)
	}
}

// requireAlertedSeries checks that every series an alert rule selects by label value
// (pgjet_append_total{result="error"}) is exported from the start, before the first
// such event: rate() and increase() see no rise in a series that is born at 1, so an
// alert on the first failures would stay silent.
func requireAlertedSeries(t *testing.T, procs []*process) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "dashboards", "alerts.yml"))
	require.NoError(t, err)
	var rules ruleFile
	require.NoError(t, yaml.Unmarshal(b, &rules))
	exportedBy := map[string]string{}
	for _, m := range documentedMetrics(t) {
		exportedBy[m.Name] = m.ExportedBy
	}
	scrapes := map[string]exposition{}
	for _, p := range procs {
		scrapes[p.name] = scrape(t, p)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, sel := range selector.FindAllStringSubmatch(r.Expr, -1) {
				by, ok := exportedBy[sel[1]]
				if !ok || by == plannedBy {
					continue
				}
				var want []string
				for _, mt := range matcher.FindAllStringSubmatch(sel[2], -1) {
					if mt[2] == "=" {
						want = append(want, mt[1]+`="`+mt[3]+`"`)
					}
				}
				for name, e := range scrapes {
					if by != "all" && by != name {
						continue
					}
					_, found := e.sum(sel[1], want...)
					require.True(t, found, "alert %s: %s does not export %s{%s} before it first happens", r.Alert, name, sel[1], strings.Join(want, ","))
				}
			}
		}
	}
}

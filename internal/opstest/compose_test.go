package opstest

import (
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
}

// dependsOn lists depends_on in either of its forms (a list, or a map with conditions).
func (s composeService) dependsOn() []string {
	var out []string
	switch s.DependsOn.Kind {
	case yaml.SequenceNode:
		for _, n := range s.DependsOn.Content {
			out = append(out, n.Value)
		}
	case yaml.MappingNode:
		for i := 0; i < len(s.DependsOn.Content); i += 2 {
			out = append(out, s.DependsOn.Content[i].Value)
		}
	}
	return out
}

// mount is a bind mount or named volume of a service.
type mount struct{ source, target string }

func (s composeService) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		out = append(out, mount{source: parts[0], target: parts[1]})
	}
	return out
}

func loadYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v), path)
}

// httpPort returns the port of a binary service's *_HTTP_ADDR setting.
func httpPort(t *testing.T, name string, s composeService) string {
	t.Helper()
	for k, v := range s.Environment {
		if strings.HasSuffix(k, "_HTTP_ADDR") {
			_, port, err := net.SplitHostPort(v)
			require.NoError(t, err, "%s: %s", name, k)
			return port
		}
	}
	t.Fatalf("%s sets no *_HTTP_ADDR", name)
	return ""
}

// The compose deployment is checked without a Docker engine: every service the topology
// needs is there; every mounted file, build context and Dockerfile exists; every
// depends_on, NATS URL, database URL, Prometheus target and Grafana data source names a
// service and the port it serves; host ports are unique; Prometheus loads the alert rules
// and scrapes the jobs they query; Grafana loads the dashboards from the mount; and each
// nats-server config parses with nats-server's own parser into a JetStream cluster node
// with sync_interval always.
func TestComposeDeploymentIsConsistent(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(root(t), "deploy", "compose")
	var c composeFile
	loadYAML(t, filepath.Join(dir, "docker-compose.yml"), &c)

	for _, name := range []string{"postgres", "nats-1", "nats-2", "nats-3", "writer", "relay-1", "relay-2", "projector", "prometheus", "grafana"} {
		require.Contains(t, c.Services, name, "service %s", name)
	}
	binaries := map[string]string{} // service -> binary
	hostPorts := map[string]string{}
	for name, s := range c.Services {
		require.True(t, s.Image != "" || s.Build != nil, "%s: image or build", name)
		if s.Build != nil {
			ctxDir := filepath.Join(dir, s.Build.Context)
			require.DirExists(t, ctxDir, "%s: build context", name)
			df := filepath.Join(ctxDir, s.Build.Dockerfile)
			require.FileExists(t, df, "%s: Dockerfile", name)
			docker, err := os.ReadFile(df)
			require.NoError(t, err)
			require.NotEmpty(t, s.Command, "%s: command names the binary", name)
			require.Contains(t, string(docker), "./cmd/"+s.Command[0], "%s: the image builds %s", name, s.Command[0])
			if strings.Contains(string(docker), "COPY . .") {
				ignore, err := os.ReadFile(filepath.Join(ctxDir, ".dockerignore"))
				require.NoError(t, err, "%s: the image copies its whole build context; a .dockerignore keeps data out", name)
				for _, p := range []string{".git", ".pgjet", "bin", "**/node_modules"} {
					require.Contains(t, strings.Fields(string(ignore)), p, "%s: .dockerignore leaves out %s", name, p)
				}
			}
			binaries[name] = s.Command[0]
		}
		for _, d := range s.dependsOn() {
			require.Contains(t, c.Services, d, "%s depends on an unknown service", name)
		}
		for _, m := range s.mounts() {
			if strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") {
				_, err := os.Stat(filepath.Join(dir, m.source))
				require.NoError(t, err, "%s mounts %s", name, m.source)
			} else {
				require.Contains(t, c.Volumes, m.source, "%s: named volume %s is declared", name, m.source)
			}
		}
		for _, p := range s.Ports {
			host, _, ok := strings.Cut(p, ":")
			require.True(t, ok, "%s: port %q maps host:container", name, p)
			require.NotContains(t, hostPorts, host, "%s and %s both publish host port %s", name, hostPorts[host], host)
			hostPorts[host] = name
		}
	}
	require.ElementsMatch(t, []string{"writer", "relay", "relay", "projector"}, slices.Collect(maps.Values(binaries)))

	// The binaries reach Postgres and every NATS node by service name.
	for name := range binaries {
		env := c.Services[name].Environment
		db, err := url.Parse(env["DATABASE_URL"])
		require.NoError(t, err, name)
		require.Contains(t, c.Services, db.Hostname(), "%s: DATABASE_URL host", name)
		require.Equal(t, "5432", db.Port())
		var natsHosts []string
		for _, u := range strings.Split(env["NATS_URL"], ",") {
			nu, err := url.Parse(u)
			require.NoError(t, err, name)
			require.Contains(t, c.Services, nu.Hostname(), "%s: NATS_URL host", name)
			require.Equal(t, "4222", nu.Port())
			natsHosts = append(natsHosts, nu.Hostname())
		}
		require.ElementsMatch(t, []string{"nats-1", "nats-2", "nats-3"}, natsHosts, "%s knows every NATS node", name)
		if binaries[name] == "relay" {
			require.Equal(t, "3", env["PGJET_STREAM_REPLICAS"], "%s: R3", name)
		}
		require.Equal(t, "json", env["LOG_FORMAT"], "%s: JSON logs", name)
	}

	// Every flag a service's command passes and every variable its environment sets is
	// one its binary reads, as its -h lists them (OTEL_* aside: the OpenTelemetry SDK
	// reads those); a flag's absolute path is one the image holds. A misspelt or misplaced
	// setting would otherwise be ignored without a word.
	binDir := buildBinaries(t)
	dockerfile, err := os.ReadFile(filepath.Join(root(t), "deploy", "Dockerfile"))
	require.NoError(t, err)
	var copied []string
	for _, m := range regexp.MustCompile(`(?m)^COPY\s+(?:--\S+\s+)*\S+\s+(/\S*)\s*$`).FindAllStringSubmatch(string(dockerfile), -1) {
		copied = append(copied, m[1])
	}
	for name, bin := range binaries {
		flags, envs := binaryUsage(t, binDir, bin)
		s := c.Services[name]
		for i := 1; i < len(s.Command); i++ {
			arg := s.Command[i]
			if !strings.HasPrefix(arg, "-") {
				continue
			}
			flag, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			require.Contains(t, flags, flag, "%s: %s has no flag -%s", name, bin, flag)
			if !hasValue && !flags[flag] && i+1 < len(s.Command) {
				i++
				value = s.Command[i]
			}
			if strings.HasPrefix(value, "/") {
				require.True(t, slices.ContainsFunc(copied, func(dst string) bool { return strings.HasPrefix(value, dst) }),
					"%s: -%s %s is not in the image (the Dockerfile copies %v)", name, flag, value, copied)
			}
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "OTEL_") {
				continue
			}
			require.True(t, envs[k], "%s: %s reads no %s (see %s -h)", name, bin, k, bin)
		}
	}

	// Prometheus scrapes every binary at its HTTP port and loads the alert rules.
	prom := c.Services["prometheus"]
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	configMounted := false
	rulesMounted := false
	for _, m := range prom.mounts() {
		switch {
		case m.target == "/etc/prometheus/prometheus.yml":
			loadYAML(t, filepath.Join(dir, m.source), &pc)
			configMounted = true
		case filepath.Clean(filepath.Join(dir, m.source)) == filepath.Join(root(t), "dashboards", "alerts.yml"):
			rulesMounted = true
			require.NotEmpty(t, pc.RuleFiles, "prometheus.yml has rule_files (mount it after the config)")
			matched := false
			for _, pattern := range pc.RuleFiles {
				ok, err := filepath.Match(pattern, m.target)
				require.NoError(t, err)
				matched = matched || ok
			}
			require.True(t, matched, "rule_files %v load %s", pc.RuleFiles, m.target)
		}
	}
	require.True(t, configMounted && rulesMounted, "prometheus mounts its config and dashboards/alerts.yml")
	scraped := map[string]string{} // service -> job
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				require.NoError(t, err, target)
				if host == "localhost" {
					continue
				}
				s, ok := c.Services[host]
				require.True(t, ok, "job %s scrapes unknown service %s", sc.JobName, host)
				require.Equal(t, httpPort(t, host, s), port, "job %s scrapes %s at its HTTP port", sc.JobName, host)
				scraped[host] = sc.JobName
			}
		}
	}
	for name, bin := range binaries {
		require.Equal(t, "pgjet-"+bin, scraped[name], "%s is scraped as job pgjet-%s", name, bin)
	}
	rules, err := os.ReadFile(filepath.Join(root(t), "dashboards", "alerts.yml"))
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`job="([^"]+)"`).FindAllStringSubmatch(string(rules), -1) {
		require.Contains(t, slices.Collect(maps.Values(scraped)), m[1], "alerts.yml queries job %s", m[1])
	}

	// Grafana: the Prometheus data source the dashboards name, and the dashboards mount.
	graf := c.Services["grafana"]
	var provisioning, dashboards string
	for _, m := range graf.mounts() {
		switch filepath.Clean(filepath.Join(dir, m.source)) {
		case filepath.Join(dir, "grafana", "provisioning"):
			require.Equal(t, "/etc/grafana/provisioning", m.target)
			provisioning = filepath.Join(dir, m.source)
		case filepath.Join(root(t), "dashboards"):
			dashboards = m.target
		}
	}
	require.NotEmpty(t, provisioning, "grafana mounts its provisioning directory")
	require.NotEmpty(t, dashboards, "grafana mounts dashboards/")
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	loadYAML(t, filepath.Join(provisioning, "datasources", "prometheus.yml"), &ds)
	require.Len(t, ds.Datasources, 1)
	require.Equal(t, "prometheus", ds.Datasources[0].UID, "the uid the dashboards use")
	dsURL, err := url.Parse(ds.Datasources[0].URL)
	require.NoError(t, err)
	require.Contains(t, c.Services, dsURL.Hostname())
	var dp struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	loadYAML(t, filepath.Join(provisioning, "dashboards", "pgjet.yml"), &dp)
	require.Len(t, dp.Providers, 1)
	require.Equal(t, dashboards, dp.Providers[0].Options.Path, "grafana loads the dashboards from their mount")

	// NATS: three JetStream nodes of one cluster, routes to each other, fsync always.
	names := map[string]bool{}
	for _, node := range []string{"nats-1", "nats-2", "nats-3"} {
		var conf string
		for _, m := range c.Services[node].mounts() {
			if strings.HasSuffix(m.source, ".conf") {
				conf = filepath.Join(dir, m.source)
			}
		}
		require.NotEmpty(t, conf, "%s mounts a config", node)
		opts, err := server.ProcessConfigFile(conf)
		require.NoError(t, err, conf)
		require.True(t, opts.JetStream, "%s: JetStream", node)
		require.True(t, opts.SyncAlways, "%s: sync_interval always", node)
		require.Equal(t, "pgjet", opts.Cluster.Name, "%s: cluster name", node)
		require.False(t, names[opts.ServerName], "%s: server_name %s is unique", node, opts.ServerName)
		names[opts.ServerName] = true
		require.Equal(t, 4222, opts.Port)
		var routes []string
		for _, r := range opts.Routes {
			require.Contains(t, c.Services, r.Hostname(), "%s routes to a service", node)
			require.Equal(t, "6222", r.Port())
			routes = append(routes, r.Hostname())
		}
		require.ElementsMatch(t, []string{"nats-1", "nats-2", "nats-3"}, routes, "%s routes to the whole cluster", node)
		require.True(t, strings.HasPrefix(opts.StoreDir, "/data"), "%s: store_dir on its volume", node)
		for _, m := range c.Services[node].mounts() {
			if m.target == "/data" {
				require.Contains(t, c.Volumes, m.source)
			}
		}
	}
}

// binaryUsage returns the flags binary takes (true for a boolean flag, which takes no
// separate value) and the environment variables it reads, from its -h output.
func binaryUsage(t *testing.T, dir, binary string) (flags, envs map[string]bool) {
	t.Helper()
	out, _ := exec.Command(filepath.Join(dir, binary), "-h").CombinedOutput() // exits 2 after the usage
	flags, envs = map[string]bool{}, map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)( \S+)?$`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[2] == ""
	}
	for _, m := range regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1) {
		envs[m[1]] = true
	}
	require.NotEmpty(t, flags, "%s -h lists no flags:\n%s", binary, out)
	require.NotEmpty(t, envs, "%s -h lists no environment variables:\n%s", binary, out)
	return flags, envs
}

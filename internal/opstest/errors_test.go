package opstest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docs/errors.md lists every error code the APIs answer with, every validation rule and
// every exported sentinel error: they are read from the source, so a new one without an
// entry fails here.
func TestErrorCatalogueIsComplete(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(root(t), "docs", "errors.md"))
	require.NoError(t, err)
	read := func(parts ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{root(t)}, parts...)...))
		require.NoError(t, err)
		return string(b)
	}
	find := func(re, src string) []string {
		var out []string
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(src, -1) {
			out = append(out, m[1])
		}
		require.NotEmpty(t, out, "pattern %s found nothing", re)
		return out
	}
	var want []string
	for _, f := range []string{"errors.go", "request.go"} {
		want = append(want, find(`(?m)^\s*code\w+\s*=\s*"(\w+)"`, read("internal", "writer", f))...)
	}
	want = append(want, find(`(?m)^\s*code\w+\s*=\s*(\d+)`, read("internal", "registry", "httperror.go"))...)
	want = append(want, find(`(?m)^const CodeInvalidData = (\d+)`, read("internal", "registry", "nats.go"))...)
	for _, f := range []string{"errors.go", "rules.go"} {
		want = append(want, find(`(?m)^\s*Rule\w+\s*=\s*"(\w+)"`, read("internal", "avro", f))...)
	}
	for _, code := range want {
		require.True(t, strings.Contains(string(doc), "`"+code+"`"), "docs/errors.md has no entry for `%s`", code)
	}
	for _, s := range find(`(?m)^\s*(Err\w+)\s*=\s*errors\.New`, read("errors.go")) {
		require.True(t, strings.Contains(string(doc), "pgjet."+s), "docs/errors.md has no entry for pgjet.%s", s)
	}
	for _, s := range find(`(?m)^\s*(Err\w+)\s*=\s*errors\.New`, read("internal", "registry", "errors.go")) {
		require.True(t, strings.Contains(string(doc), s), "docs/errors.md has no entry for registry.%s", s)
	}
}

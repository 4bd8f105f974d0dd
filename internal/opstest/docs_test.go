package opstest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
)

// anchor is GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// The operations documents' relative links reach existing files and headings.
func TestOperationsDocsLinksResolve(t *testing.T) {
	t.Parallel()
	anchors := func(path string) map[string]bool {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		out := map[string]bool{}
		for _, m := range mdHeading.FindAllStringSubmatch(string(b), -1) {
			out[anchor(m[1])] = true
		}
		return out
	}
	for _, doc := range []string{"docs/operations.md", "docs/errors.md", "docs/troubleshooting.md", "deploy/compose/README.md"} {
		path := filepath.Join(root(t), doc)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			link := m[1]
			if strings.Contains(link, "://") {
				continue
			}
			file, frag, _ := strings.Cut(link, "#")
			target := path
			if file != "" {
				target = filepath.Join(filepath.Dir(path), file)
				_, err := os.Stat(target)
				require.NoError(t, err, "%s links to %s", doc, link)
			}
			if frag != "" {
				require.True(t, anchors(target)[frag], "%s links to %s: no such heading", doc, link)
			}
		}
	}
}

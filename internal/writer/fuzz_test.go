package writer

import (
	"net/http/httptest"
	"testing"

	"github.com/pgjet/pgjet"
)

// FuzzParseReadQuery: the query of GET /streams/{stream} is outside input; parsing it
// never panics, and what it accepts is within the read limits.
func FuzzParseReadQuery(f *testing.F) {
	for _, q := range []string{"", "from=1&limit=100&direction=forward", "direction=backward&from=99", "limit=0",
		"limit=1001", "from=-1", "from=9223372036854775808", "direction=%FF", "limit=1&limit=2", "from=%00"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest("GET", "/streams/order-1", nil)
		r.URL.RawQuery = query
		q, err := parseReadQuery(r)
		if err != nil {
			re, ok := err.(*requestError)
			if !ok || re.Code != codeInvalidQuery || re.Param == "" {
				t.Fatalf("query %q: error %#v", query, err)
			}
			return
		}
		if q.limit < 1 || q.limit > maxReadLimit || q.from < 1 && !(q.dir == pgjet.Backward && q.from == pgjet.End) {
			t.Fatalf("query %q accepted as %+v", query, q)
		}
		if q.dir != pgjet.Forward && q.dir != pgjet.Backward {
			t.Fatalf("query %q: direction %v", query, q.dir)
		}
	})
}

package registry

import (
	"encoding/json"
	"testing"
)

// FuzzNATSRequests: the NATS API's request decoding never panics, and a version member
// is either a valid version or an invalid-version error.
func FuzzNATSRequests(f *testing.F) {
	for _, seed := range []string{`{"id":3}`, `{"subject":"s","version":"latest"}`, `{"subject":"s","version":-1}`,
		`{"type":"t","data":{"a":1}}`, `{"version":"0"}`, `{} {}`, `[`, `{"id":1e99}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			id  idRequest
			sub subjectRequest
			val validateRequest
		)
		_ = decodeRequest(data, &id)
		if decodeRequest(data, &sub) == nil {
			n, err := parseVersionMember(sub.Version)
			if err == nil && n != LatestVersion && n <= 0 {
				t.Fatalf("version %d from %q", n, sub.Version)
			}
		}
		if decodeRequest(data, &val) == nil && len(val.Data) > 0 && !json.Valid(val.Data) {
			t.Fatalf("data %q is not JSON", val.Data)
		}
	})
}

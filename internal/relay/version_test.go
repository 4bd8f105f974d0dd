package relay

import "testing"

func TestServerAtLeast(t *testing.T) {
	for v, want := range map[string]bool{
		"2.15.2": true, "2.14.0": true, "2.14.0-beta.1": true, "3.0.0": true,
		"2.12.3": false, "2.9.25": false, "1.99.0": false, "": false, "2": false, "x.y.z": false,
	} {
		if got := serverAtLeast(v, 2, 14); got != want {
			t.Errorf("serverAtLeast(%q, 2, 14) = %v, want %v", v, got, want)
		}
	}
}

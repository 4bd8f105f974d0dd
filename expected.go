package pgjet

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// ExpectedVersion is the optimistic concurrency check of an append: the version the caller
// believes the stream is at. A non-negative value is an exact version; the named constants
// below relax the check.
type ExpectedVersion int64

const (
	// Any appends whatever the stream's version, creating the stream if needed.
	Any ExpectedVersion = -2
	// NoStream requires that the stream does not exist yet. Exact(0) means the same.
	NoStream ExpectedVersion = -1
	// StreamExists requires that the stream has at least one event.
	StreamExists ExpectedVersion = -4
)

// Exact expects the stream to be at version v (its number of events). Exact(0) expects no
// stream.
func Exact(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (e ExpectedVersion) valid() bool {
	return e >= 0 || e == Any || e == NoStream || e == StreamExists
}

// String renders the expectation as the APIs spell it: "any", "no_stream", "exists" or the
// number.
func (e ExpectedVersion) String() string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no_stream"
	case StreamExists:
		return "exists"
	}
	return strconv.FormatInt(int64(e), 10)
}

// MarshalJSON writes the expectation as a number or one of "any", "no_stream", "exists".
func (e ExpectedVersion) MarshalJSON() ([]byte, error) {
	if e >= 0 {
		return strconv.AppendInt(nil, int64(e), 10), nil
	}
	return json.Marshal(e.String())
}

// UnmarshalJSON reads a non-negative number or "any", "no_stream", "exists".
func (e *ExpectedVersion) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := ParseExpectedVersion(s)
		if err != nil {
			return err
		}
		*e = v
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil || n < 0 {
		return fmt.Errorf("expected version must be a non-negative integer or one of \"any\", \"no_stream\", \"exists\", got %s", truncate(string(b), 40))
	}
	*e = Exact(n)
	return nil
}

// ParseExpectedVersion reads "any", "no_stream", "exists" or a non-negative integer.
func ParseExpectedVersion(s string) (ExpectedVersion, error) {
	switch s {
	case "any":
		return Any, nil
	case "no_stream":
		return NoStream, nil
	case "exists":
		return StreamExists, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("expected version must be a non-negative integer or one of \"any\", \"no_stream\", \"exists\", got %q", truncate(s, 40))
	}
	return Exact(n), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

package soak

import (
	"sync"

	"github.com/pgjet/pgjet"
)

// attempt is one recorded append.
type attempt struct {
	stream   string
	expected pgjet.ExpectedVersion
	ids      []string
	outcome  string
}

// history is what the writers did, as they saw it.
type history struct {
	mu       sync.Mutex
	attempts []attempt
	version  map[string]int64 // highest version a writer saw committed, per stream
}

func newHistory() *history { return &history{version: map[string]int64{}} }

func (h *history) record(stream string, expected pgjet.ExpectedVersion, evs []pgjet.EventData, outcome string, last int64) {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID.String()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts = append(h.attempts, attempt{stream: stream, expected: expected, ids: ids, outcome: outcome})
	if outcome == outcomeCommitted {
		h.version[stream] = max(h.version[stream], last)
	}
}

// known returns the highest version of stream a writer saw committed.
func (h *history) known(stream string) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.version[stream]
	return v, ok
}

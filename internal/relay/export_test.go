package relay

// Ways into a Relay's internals for this package's external tests.

// HoldAfterPublish makes r call f once a batch of the partitions parts is published, before
// its rows are deleted and the partitions released. Call it before Run.
func HoldAfterPublish(r *Relay, f func(parts []int16)) { r.published = f }

// RaiseLevel records a backlog, as a full batch does, and returns how many workers drain.
func RaiseLevel(r *Relay) int {
	r.backlog()
	return int(r.level.Load())
}

// Missed reports whether a worker left partition p because another worker held it.
func Missed(r *Relay, p int16) bool {
	r.parts.mu.Lock()
	defer r.parts.mu.Unlock()
	return r.parts.missed[p]
}

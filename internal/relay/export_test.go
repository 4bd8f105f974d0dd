package relay

// Ways into a Relay's internals for this package's external tests.

// HoldAfterPublish makes r call f after each publish of a batch of the partitions parts,
// before its rows are deleted and the partitions released. Call it before Run.
func HoldAfterPublish(r *Relay, f func(parts []int16)) { r.published = f }

// RaiseLevel records a backlog, as a full batch does, and returns how many workers drain.
func RaiseLevel(r *Relay) int {
	r.backlog()
	return int(r.level.Load())
}

// Missed reports whether a worker left partition p because another worker held it, since
// the partition's release or ForgetMissed.
func Missed(r *Relay, p int16) bool {
	r.parts.mu.Lock()
	defer r.parts.mu.Unlock()
	return r.parts.missed[p]
}

// ForgetMissed clears partition p's mark of a worker having left it.
func ForgetMissed(r *Relay, p int16) {
	r.parts.mu.Lock()
	defer r.parts.mu.Unlock()
	r.parts.missed[p] = false
}

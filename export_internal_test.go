package pgjet

// GroupQueued returns how many appends wait in the group-commit queue, for tests that
// must know an append is queued.
func (s *Store) GroupQueued() int {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.queue)
}

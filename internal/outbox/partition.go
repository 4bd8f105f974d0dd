package outbox

import "hash/fnv"

// Partitions is the number of outbox partitions. Each is drained by one relay at a time, so
// it bounds how many relays can share the work. Changing it requires an empty outbox.
const Partitions = 32

// PartitionOf returns the partition of a stream: FNV-1a 32 of its id, modulo Partitions.
func PartitionOf(streamID string) int16 {
	h := fnv.New32a()
	h.Write([]byte(streamID))
	return int16(h.Sum32() % Partitions)
}

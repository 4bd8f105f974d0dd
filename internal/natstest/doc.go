// Package natstest provides real, in-process NATS JetStream servers for
// tests: a single server on a random port with a t.TempDir() store
// ([Server]), an n-node cluster on loopback ([Cluster]) whose nodes can be
// shut down and restarted for fault tests, one whose nodes can also be cut
// off the others while they run ([ClusterWithLinks]), and connected clients
// ([Connect]). Everything is torn down when the test ends.
//
//	s := natstest.Server(t)
//	nc, js := natstest.Connect(t, s)
//
// Servers use lazy fsync for speed; pass LazySync: false to [ServerWith]
// to test with SyncAlways.
package natstest

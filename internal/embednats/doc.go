// Package embednats runs a nats-server with JetStream inside the calling
// process, for development, the demo and tests. Production uses an external
// NATS cluster; this package only spares a first run from installing one.
//
// JetStream writes are fsynced before they are acknowledged (SyncAlways)
// unless [Options.LazySync] is set: pgjet's defaults favour not losing
// acknowledged events over throughput (see BENCHMARKS.md, "JetStream
// durability: two modes").
//
// A [Server] can be shut down and restarted on the same ports, name, routes
// and store directory, which fault tests use to kill and revive nodes; see
// the natstest package for test helpers and clusters.
//
//	s, err := embednats.Start(embednats.Options{Dir: "data/nats"})
//	if err != nil { ... }
//	defer s.Shutdown()
//	nc, err := nats.Connect(s.ClientURL())
package embednats

// Package netproxy puts a TCP proxy on loopback between a test's client and a real server
// (Postgres, nats-server), so fault tests can break the network in between:
//
//   - [Proxy.Cut] closes the listener and every connection, so both ends see the peer
//     vanish, and [Proxy.Restore] listens again on the same address;
//   - [Proxy.Freeze] holds every byte while connections stay open, a partition where no
//     RST or FIN arrives, and [Proxy.Heal] lets the held bytes through;
//   - [Config.ToClientDelay] makes a slow link, and [Config.Hooks] lets a test see, hold,
//     drop or end on the bytes of each connection.
//
// A proxy lives as long as its test:
//
//	p := netproxy.New(t, "127.0.0.1:4222", netproxy.Config{})
//	nc, err := nats.Connect("nats://" + p.Addr())
//	...
//	p.Cut()
//
// It is test support, imported only from _test.go files.
package netproxy

package netproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/netproxy"
)

// echoServer listens on loopback and sends back whatever a connection sends it.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// dial connects to addr and closes the connection when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echo sends msg over c and requires it back within 5 seconds.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

func TestBytesPassBothWays(t *testing.T) {
	t.Parallel()
	p := netproxy.New(t, echoServer(t), netproxy.Config{})
	c := dial(t, p.Addr())
	echo(t, c, "hello")
	echo(t, c, string(bytes.Repeat([]byte("0123456789"), 100_000))) // many reads' worth
}

func TestCutClosesAndRestoreListensAgain(t *testing.T) {
	t.Parallel()
	p := netproxy.New(t, echoServer(t), netproxy.Config{})
	c := dial(t, p.Addr())
	echo(t, c, "before")

	p.Cut()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the connection is closed, not just silent")
	_, err = net.Dial("tcp", p.Addr())
	require.Error(t, err, "nothing listens while cut")

	p.Restore(t)
	echo(t, dial(t, p.Addr()), "after")
}

func TestFreezeHoldsAndHealReleases(t *testing.T) {
	t.Parallel()
	p := netproxy.New(t, echoServer(t), netproxy.Config{})
	c := dial(t, p.Addr())
	echo(t, c, "before")

	p.Freeze()
	_, err := c.Write([]byte("held"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing gets through, and the connection stays open")

	p.Heal()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got := make([]byte, 4)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, "held", string(got))
	echo(t, c, "after")
}

func TestHooksSeeEachDirection(t *testing.T) {
	t.Parallel()
	upper := func(dst io.Writer, chunk []byte) error {
		_, err := dst.Write(bytes.ToUpper(chunk))
		return err
	}
	hangUp := func(dst io.Writer, chunk []byte) error {
		if bytes.Contains(chunk, []byte("BYE")) {
			return errors.New("bye")
		}
		_, err := dst.Write(chunk)
		return err
	}
	p := netproxy.New(t, echoServer(t), netproxy.Config{Hooks: func() (toServer, toClient netproxy.Hook) {
		return upper, hangUp
	}})
	c := dial(t, p.Addr())
	_, err := c.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got := make([]byte, 5)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, "HELLO", string(got), "upper-cased on the way to the server")

	_, err = c.Write([]byte("bye"))
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the hook's error closed the connection")
}

// What the server sends reaches the client no sooner than the delay.
func TestToClientDelay(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	p := netproxy.New(t, echoServer(t), netproxy.Config{ToClientDelay: delay})
	c := dial(t, p.Addr())
	start := time.Now()
	echo(t, c, "slow")
	require.GreaterOrEqual(t, time.Since(start), delay)
}

package relay_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/relay"
)

// New refuses settings a running relay would trip over: a negative poll interval panicked
// in the first ticker, after the relay had started.
func TestNewRefusesBadSettings(t *testing.T) {
	t.Parallel()
	pool, conn := &pgxpool.Pool{}, &nats.Conn{} // never used: New fails first
	for _, cfg := range []relay.Config{
		{Pool: pool, Conn: conn, PollInterval: -time.Second},
		{Pool: pool, Conn: conn, PublishTimeout: -time.Second},
		{Pool: pool, Conn: conn, BatchSize: -1},
		{Pool: pool, Conn: conn, Workers: 33},
		{Conn: conn},
		{Pool: pool},
	} {
		_, err := relay.New(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/registry"
)

// The registry counts registrations by result, compatibility rejections by operation and
// level, and cache hits and misses of both caches, on the Registerer it is given.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	promReg := prometheus.NewPedanticRegistry()
	now := time.Unix(1_700_000_000, 0)
	reg, err := registry.New(registry.Config{
		Pool: pool, Registerer: promReg, LatestTTL: time.Minute, Now: func() time.Time { return now },
	})
	require.NoError(t, err)

	count := func(name string, labels ...string) float64 {
		t.Helper()
		return promtest.Must(t, promReg, name, labels...)
	}
	const (
		registrations = "pgjet_registry_registrations_total"
		rejections    = "pgjet_registry_compatibility_rejections_total"
		lookups       = "pgjet_registry_cache_lookups_total"
	)

	// Every series exists before anything happened.
	for _, r := range []string{"created", "existing", "incompatible", "invalid", "error"} {
		require.Zero(t, count(registrations, "result", r))
	}
	require.Zero(t, count(rejections, "operation", "check", "level", "FULL_TRANSITIVE"))
	for _, c := range []string{"id", "latest"} {
		require.Zero(t, count(lookups, "cache", c, "result", "hit"))
		require.Zero(t, count(lookups, "cache", c, "result", "miss"))
	}

	v1, err := reg.Register(ctx, "t.Ev", record(fID))
	require.NoError(t, err)
	_, err = reg.Register(ctx, "t.Ev", record(fID))
	require.NoError(t, err)
	_, err = reg.Register(ctx, "t.Ev", record(fID, fNote))
	require.ErrorIs(t, err, registry.ErrIncompatible)
	_, err = reg.Register(ctx, "t.Ev", `{"type":`)
	require.ErrorIs(t, err, registry.ErrInvalidSchema)
	require.Equal(t, 1.0, count(registrations, "result", "created"))
	require.Equal(t, 1.0, count(registrations, "result", "existing"))
	require.Equal(t, 1.0, count(registrations, "result", "incompatible"))
	require.Equal(t, 1.0, count(registrations, "result", "invalid"))
	require.Zero(t, count(registrations, "result", "error"))
	require.Equal(t, 1.0, count(rejections, "operation", "register", "level", "BACKWARD"))

	require.NoError(t, reg.SetCompatibility(ctx, "t.Ev", registry.FullTransitive))
	require.ErrorIs(t, reg.CheckCompatibility(ctx, "t.Ev", record(fID, fNote)), registry.ErrIncompatible)
	require.NoError(t, reg.CheckCompatibility(ctx, "t.Ev", record(fID, fNoteDefault)))
	require.Equal(t, 1.0, count(rejections, "operation", "check", "level", "FULL_TRANSITIVE"))
	require.Equal(t, 1.0, count(rejections, "operation", "register", "level", "BACKWARD"))

	// The id cache: Register filled it; an unknown id misses.
	hitsBefore := count(lookups, "cache", "id", "result", "hit")
	missesBefore := count(lookups, "cache", "id", "result", "miss")
	_, err = reg.SchemaByID(ctx, v1.ID)
	require.NoError(t, err)
	require.Equal(t, hitsBefore+1, count(lookups, "cache", "id", "result", "hit"), "Register cached the id")
	_, err = reg.SchemaByID(ctx, v1.ID+1000)
	require.ErrorIs(t, err, registry.ErrSchemaNotFound)
	require.Equal(t, missesBefore+1, count(lookups, "cache", "id", "result", "miss"))

	// The latest cache: Register cached v1 as latest; a hit until the TTL passes.
	_, err = reg.LatestCached(ctx, "t.Ev")
	require.NoError(t, err)
	require.Equal(t, 1.0, count(lookups, "cache", "latest", "result", "hit"))
	require.Zero(t, count(lookups, "cache", "latest", "result", "miss"))
	now = now.Add(time.Minute)
	_, err = reg.LatestCached(ctx, "t.Ev")
	require.NoError(t, err)
	require.Equal(t, 1.0, count(lookups, "cache", "latest", "result", "miss"))
	_, err = reg.LatestCached(ctx, "t.Ev")
	require.NoError(t, err)
	require.Equal(t, 2.0, count(lookups, "cache", "latest", "result", "hit"))

	// A second registry on the same Registerer is refused: the metrics are its.
	_, err = registry.New(registry.Config{Pool: pool, Registerer: promReg})
	require.Error(t, err)
}

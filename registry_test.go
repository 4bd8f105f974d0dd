package pgjet_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
)

// Code outside the module reaches the registry through Store.Registry and branches on its
// errors through the pgjet names alone.
func TestRegistryErrorsThroughPgjetNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	var reg *pgjet.Registry = s.Registry()

	_, err := reg.Latest(ctx, "no.such.Type")
	require.ErrorIs(t, err, pgjet.ErrSubjectNotFound)

	const v1 = `{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"a","type":"int"}]}`
	const v2 = `{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"a","type":"string"}]}`
	var v pgjet.SchemaVersion
	v, err = reg.Register(ctx, "t.Thing", v1)
	require.NoError(t, err)
	require.Equal(t, 1, v.Version)
	require.NoError(t, reg.SetCompatibility(ctx, "t.Thing", pgjet.Compatibility("FULL_TRANSITIVE")))
	_, err = reg.Register(ctx, "t.Thing", v2)
	require.ErrorIs(t, err, pgjet.ErrIncompatible)
	var inc *pgjet.IncompatibleError
	require.True(t, errors.As(err, &inc))
	var br pgjet.SchemaBreak = inc.Breaks[0]
	require.Equal(t, 1, br.Version)

	_, err = reg.Register(ctx, "t.Thing", `{"type":"record"`)
	require.ErrorIs(t, err, pgjet.ErrInvalidSchema)
}

package registry_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/migrate"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/registry"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newPool returns a pool on a fresh, migrated database.
func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.Pool(t)
	_, err := migrate.Up(context.Background(), pool)
	require.NoError(t, err)
	return pool
}

// newRegistry returns a registry on pool, with its own empty caches.
func newRegistry(t testing.TB, pool *pgxpool.Pool) *registry.Registry {
	t.Helper()
	reg, err := registry.New(registry.Config{Pool: pool})
	require.NoError(t, err)
	return reg
}

// record returns the text of record t.Ev with the given field definitions.
func record(fields ...string) string {
	return fmt.Sprintf(`{"type":"record","name":"Ev","namespace":"t","fields":[%s]}`, strings.Join(fields, ","))
}

// Field definitions used across the tests.
const (
	fID          = `{"name":"id","type":"string"}`
	fNoteDefault = `{"name":"note","type":"string","default":""}`
	fNote        = `{"name":"note","type":"string"}`
	fAmountInt   = `{"name":"amount","type":"int"}`
	fAmountLong  = `{"name":"amount","type":"long"}`
	fCentsAlias  = `{"name":"cents","type":"int","aliases":["amount"]}`
	fAmountStr   = `{"name":"amount","type":"string"}`
	fXIntDef     = `{"name":"x","type":"int","default":0}`
	fXStrDef     = `{"name":"x","type":"string","default":""}`
)

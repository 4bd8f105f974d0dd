package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/registry"
)

var allLevels = []registry.Compatibility{
	registry.Backward, registry.BackwardTransitive, registry.Forward, registry.ForwardTransitive,
	registry.Full, registry.FullTransitive, registry.None,
}

// TestCompatibilityLevels registers v1 and then a changed v2 under every level. v2 is
// registered through a second registry with empty caches, so the check runs against v1
// as stored in Postgres, not as remembered from the first registration.
func TestCompatibilityLevels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	first, second := newRegistry(t, pool), newRegistry(t, pool)

	// ok lists, per change, the levels that accept it.
	bw := []registry.Compatibility{registry.Backward, registry.BackwardTransitive, registry.None}
	fw := []registry.Compatibility{registry.Forward, registry.ForwardTransitive, registry.None}
	changes := []struct {
		name   string
		v1, v2 string
		ok     []registry.Compatibility
	}{
		{"add optional field with default", record(fID), record(fID, fNoteDefault), allLevels},
		{"remove field without default", record(fID, fNote), record(fID), bw},
		{"remove field with default", record(fID, fNoteDefault), record(fID), allLevels},
		{"add required field without default", record(fID), record(fID, fNote), fw},
		{"rename with alias", record(fID, fAmountInt), record(fID, fCentsAlias), bw},
		{"promote int to long", record(fID, fAmountInt), record(fID, fAmountLong), bw},
		{"change int to string", record(fID, fAmountInt), record(fID, fAmountStr), []registry.Compatibility{registry.None}},
	}
	for _, level := range allLevels {
		for _, c := range changes {
			t.Run(fmt.Sprintf("%s/%s", level, c.name), func(t *testing.T) {
				subject := fmt.Sprintf("%s.%s", level, c.name)
				require.NoError(t, first.SetCompatibility(ctx, subject, level))
				v1, err := first.Register(ctx, subject, c.v1)
				require.NoError(t, err)
				require.Equal(t, 1, v1.Version)

				v2, err := second.Register(ctx, subject, c.v2)
				if contains(c.ok, level) {
					require.NoError(t, err)
					require.Equal(t, 2, v2.Version)
					return
				}
				var incompatible *registry.IncompatibleError
				require.ErrorAs(t, err, &incompatible)
				require.ErrorIs(t, err, registry.ErrIncompatible)
				require.Equal(t, level, incompatible.Level)
				require.NotEmpty(t, incompatible.Breaks)
				for _, b := range incompatible.Breaks {
					require.Equal(t, 1, b.Version)
					require.NotEmpty(t, b.Reason)
				}
				vs, err := second.Versions(ctx, subject)
				require.NoError(t, err)
				require.Equal(t, []int{1}, vs, "a rejected schema adds no version")
			})
		}
	}
}

func contains(levels []registry.Compatibility, l registry.Compatibility) bool {
	for _, x := range levels {
		if x == l {
			return true
		}
	}
	return false
}

// TestTransitive registers v1, v2 and a v3 that is compatible with v2 but not with v1:
// the plain levels accept v3, the transitive ones reject it, naming version 1.
// Versions that differ only in a default have the same canonical form; each is still
// checked on its own: v1 (note with a default) reads data without note, v2 (no default)
// does not, so a schema without note breaks FORWARD_TRANSITIVE through v2 alone.
func TestTransitiveChecksVersionsThatDifferOnlyInDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := newRegistry(t, newPool(t))
	for _, level := range []registry.Compatibility{registry.ForwardTransitive, registry.FullTransitive} {
		subject := "defaults." + string(level)
		require.NoError(t, reg.SetCompatibility(ctx, subject, level))
		for _, text := range []string{record(fID, fNoteDefault), record(fID, fNote)} {
			_, err := reg.Register(ctx, subject, text)
			require.NoError(t, err)
		}
		err := reg.CheckCompatibility(ctx, subject, record(fID))
		var incompatible *registry.IncompatibleError
		require.ErrorAs(t, err, &incompatible, string(level))
		require.Len(t, incompatible.Breaks, 1, string(level))
		require.Equal(t, 2, incompatible.Breaks[0].Version)
		require.Equal(t, "forward", incompatible.Breaks[0].Direction)
	}
}

func TestTransitive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := newRegistry(t, newPool(t))
	v1, v2, v3 := record(fID, fXIntDef), record(fID), record(fID, fXStrDef)
	for _, level := range allLevels[:6] {
		t.Run(string(level), func(t *testing.T) {
			subject := "transitive." + string(level)
			require.NoError(t, reg.SetCompatibility(ctx, subject, level))
			for _, text := range []string{v1, v2} {
				_, err := reg.Register(ctx, subject, text)
				require.NoError(t, err)
			}

			// The endpoint-level checks agree with registration.
			checkAll := reg.CheckCompatibility(ctx, subject, v3)
			checkLatest := reg.CheckCompatibilityWith(ctx, subject, v3, registry.LatestVersion)
			checkV1 := reg.CheckCompatibilityWith(ctx, subject, v3, 1)
			require.NoError(t, checkLatest, "against the latest version only, v3 is compatible")
			require.ErrorIs(t, checkV1, registry.ErrIncompatible, "against version 1, v3 is not")

			v, err := reg.Register(ctx, subject, v3)
			transitive := level == registry.BackwardTransitive || level == registry.ForwardTransitive || level == registry.FullTransitive
			if !transitive {
				require.NoError(t, err)
				require.NoError(t, checkAll)
				require.Equal(t, 3, v.Version)
				return
			}
			require.ErrorIs(t, checkAll, registry.ErrIncompatible)
			var incompatible *registry.IncompatibleError
			require.ErrorAs(t, err, &incompatible)
			for _, b := range incompatible.Breaks {
				require.Equal(t, 1, b.Version, "v3 breaks version 1 only: %v", incompatible)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	reg := newRegistry(t, pool)

	text := record(fID, fNoteDefault)
	v1, err := reg.Register(ctx, "a", text)
	require.NoError(t, err)
	require.Equal(t, 1, v1.Version)

	// Whitespace, attribute order and the way the name is written do not matter.
	variants := []string{
		"\n  " + text + "\n",
		`{"fields":[{"type":"string","name":"id"},{"default":"","type":"string","name":"note"}],"namespace":"t","type":"record","name":"Ev"}`,
		`{"type":"record","name":"t.Ev","fields":[{"name":"id","type":{"type":"string"}},{"name":"note","type":"string","default":""}]}`,
	}
	for _, variant := range variants {
		v, err := reg.Register(ctx, "a", variant)
		require.NoError(t, err)
		require.Equal(t, v1.ID, v.ID, variant)
		require.Equal(t, 1, v.Version, variant)
	}

	// The same schema under another subject keeps its id and starts at version 1.
	b, err := reg.Register(ctx, "b", variants[1])
	require.NoError(t, err)
	require.Equal(t, v1.ID, b.ID)
	require.Equal(t, 1, b.Version)

	// A default is part of the schema: changing it is a new schema and a new version.
	changed, err := reg.Register(ctx, "a", record(fID, `{"name":"note","type":"string","default":"none"}`))
	require.NoError(t, err)
	require.NotEqual(t, v1.ID, changed.ID)
	require.Equal(t, 2, changed.Version)

	// Registering version 1 again returns it and adds nothing.
	again, err := reg.Register(ctx, "a", text)
	require.NoError(t, err)
	require.Equal(t, v1.ID, again.ID)
	require.Equal(t, 1, again.Version)
	vs, err := reg.Versions(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, vs)

	// What is stored is the text as first registered, defaults included, and a registry
	// with empty caches reads it back that way.
	fresh := newRegistry(t, pool)
	stored, err := fresh.SchemaText(ctx, v1.ID)
	require.NoError(t, err)
	require.Equal(t, text, stored)
	s, err := fresh.SchemaByID(ctx, v1.ID)
	require.NoError(t, err)
	require.Equal(t, "t.Ev", s.FullName())

	// Looking up an old version does not make it the cached latest.
	found, err := fresh.Lookup(ctx, "a", variants[0])
	require.NoError(t, err)
	require.Equal(t, 1, found.Version)
	latest, err := fresh.LatestCached(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, 2, latest.Version)

	uses, err := fresh.VersionsByID(ctx, v1.ID)
	require.NoError(t, err)
	require.Len(t, uses, 2)
	require.Equal(t, []string{"a", "b"}, []string{uses[0].Subject, uses[1].Subject})
	_, err = fresh.VersionsByID(ctx, 9999)
	require.ErrorIs(t, err, registry.ErrSchemaNotFound)
}

func TestLookupErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := newRegistry(t, newPool(t))
	_, err := reg.Lookup(ctx, "a", record(fID))
	require.ErrorIs(t, err, registry.ErrSubjectNotFound)
	_, err = reg.Register(ctx, "a", record(fID))
	require.NoError(t, err)
	_, err = reg.Lookup(ctx, "a", record(fID, fNoteDefault))
	require.ErrorIs(t, err, registry.ErrSchemaNotFound)
	_, err = reg.Lookup(ctx, "a", `{"type":"string"}`)
	require.ErrorIs(t, err, registry.ErrInvalidSchema)
	_, err = reg.Register(ctx, "a", `{"type":"record"`)
	require.ErrorIs(t, err, registry.ErrInvalidSchema)
	for _, id := range []int{0, -1, 1 << 31, 1 << 40} { // a wire payload's id is a uint32
		_, err = reg.SchemaByID(ctx, id)
		require.ErrorIs(t, err, registry.ErrSchemaNotFound, id)
	}
	_, err = reg.Version(ctx, "a", 1<<31)
	require.ErrorIs(t, err, registry.ErrInvalidVersion)
	_, err = reg.Version(ctx, "a", 2)
	require.ErrorIs(t, err, registry.ErrVersionNotFound)
	_, err = reg.Version(ctx, "b", 1)
	require.ErrorIs(t, err, registry.ErrSubjectNotFound)
	require.NoError(t, reg.CheckCompatibilityWith(ctx, "b", record(fID), registry.LatestVersion),
		"nothing to break in a subject without versions")
	require.ErrorIs(t, reg.CheckCompatibilityWith(ctx, "b", record(fID), 1), registry.ErrSubjectNotFound)
	require.ErrorIs(t, reg.CheckCompatibilityWith(ctx, "a", record(fID), 2), registry.ErrVersionNotFound)
}

// TestConcurrentRegistration registers one new schema from many goroutines at once, under
// one subject and under several: one version per subject, one id overall, no errors.
func TestConcurrentRegistration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	const n = 8
	text := record(fID, fAmountLong)

	run := func(subject func(i int) string) []registry.Version {
		var wg sync.WaitGroup
		out := make([]registry.Version, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				// Each goroutine has its own registry, as separate processes would.
				reg, err := registry.New(registry.Config{Pool: pool})
				if err != nil {
					errs[i] = err
					return
				}
				out[i], errs[i] = reg.Register(ctx, subject(i), text)
			})
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		return out
	}

	same := run(func(int) string { return "same" })
	for _, v := range same {
		require.Equal(t, 1, v.Version)
		require.Equal(t, same[0].ID, v.ID)
	}
	reg := newRegistry(t, pool)
	vs, err := reg.Versions(ctx, "same")
	require.NoError(t, err)
	require.Equal(t, []int{1}, vs)

	spread := run(func(i int) string { return fmt.Sprintf("spread.%d", i) })
	for _, v := range spread {
		require.Equal(t, 1, v.Version)
		require.Equal(t, same[0].ID, v.ID)
	}
	var schemas int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.schemas`).Scan(&schemas))
	require.Equal(t, 1, schemas)
}

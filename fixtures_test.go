package pgjet_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/demo"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

var updateFixtures = flag.Bool("update-fixtures", false,
	"fill in the avro and newest members of schemas/avro/testdata fixtures from their data")

const fixtureDir = "schemas/avro/testdata"

// fixture is an event encoded with one historic version of its type:
// schemas/avro/testdata/<type>.v<version>.json.
type fixture struct {
	// Type and Version name the subject version the data was written with.
	Type    string `json:"type"`
	Version int    `json:"version"`
	// Schema is the .avsc file of that version, relative to schemas/avro.
	Schema string `json:"schema"`
	// Data is the event as natural JSON in that version's shape.
	Data json.RawMessage `json:"data"`
	// Avro is the Avro binary body of the wire format (base64); the 5-byte header is
	// added with the id the version gets in the test database.
	Avro string `json:"avro"`
	// Newest is the data decoded into the newest version's shape.
	Newest json.RawMessage `json:"newest"`
}

// TestFixturesDecodeToNewestShape registers every version of every demo type, decodes the
// fixture of each version into the newest shape, and compares it to the fixture's
// expectation. A registered version without a fixture fails: adding a version means adding
// its fixture (write type, version, schema and data; run go test -run TestFixtures
// -update-fixtures; review avro and newest).
func TestFixturesDecodeToNewestShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newEvolvingStore(t)

	fixtures := map[string]*fixture{}
	paths := map[string]string{}
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	require.NoError(t, err)
	for _, p := range files {
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		var f fixture
		require.NoError(t, json.Unmarshal(raw, &f), p)
		key := fmt.Sprintf("%s v%d", f.Type, f.Version)
		require.NotContains(t, fixtures, key, "two fixtures for %s", key)
		fixtures[key], paths[key] = &f, p
	}

	subjects, err := s.Registry().Subjects(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, subjects)
	used := map[string]bool{}
	for _, subject := range subjects {
		versions, err := s.Registry().All(ctx, subject)
		require.NoError(t, err)
		for _, v := range versions {
			key := fmt.Sprintf("%s v%d", subject, v.Version)
			f, ok := fixtures[key]
			if !assertFixture(t, ok, "registered version %s has no fixture in %s", key, fixtureDir) {
				continue
			}
			used[key] = true
			t.Run(key, func(t *testing.T) {
				// The fixture was written with exactly this registered version.
				text, err := fs.ReadFile(demoschemas.Files, f.Schema)
				require.NoError(t, err)
				found, err := s.Registry().Lookup(ctx, subject, string(text))
				require.NoError(t, err)
				require.Equal(t, v.Version, found.Version, "%s is not version %d", f.Schema, v.Version)

				if *updateFixtures && f.Avro == "" {
					body, err := v.Schema.EncodeJSON(f.Data)
					require.NoError(t, err)
					f.Avro = base64.StdEncoding.EncodeToString(body)
				}
				body, err := base64.StdEncoding.DecodeString(f.Avro)
				require.NoError(t, err)
				// The body is this version's encoding of Data.
				asWritten, err := v.Schema.DecodeJSON(body)
				require.NoError(t, err)
				require.JSONEq(t, string(f.Data), string(asWritten))

				ev := pgjet.RecordedEvent{Type: subject, Data: avro.AppendWire(nil, uint32(v.ID), body)}
				got, err := s.DecodeJSON(ctx, ev)
				require.NoError(t, err)
				if *updateFixtures && len(f.Newest) == 0 {
					f.Newest = got
					out, err := json.MarshalIndent(f, "", "  ")
					require.NoError(t, err)
					require.NoError(t, os.WriteFile(paths[key], append(out, '\n'), 0o644))
				}
				require.JSONEq(t, string(f.Newest), string(got))
			})
		}
	}
	for key := range fixtures {
		require.True(t, used[key], "fixture %s is not a registered version", paths[key])
	}
}

func assertFixture(t *testing.T, ok bool, format string, args ...any) bool {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
	return ok
}

// newEvolvingStore is newStore with the demo domain's upcasters.
func newEvolvingStore(t *testing.T) *pgjet.Store {
	t.Helper()
	_, pool := newStore(t)
	s, err := pgjet.New(pgjet.Config{Pool: pool, Upcasters: demoschemas.Upcasters()})
	require.NoError(t, err)
	return s
}

// TestDemoGeneratorMakesValidEvents appends generated demo orders, as the demo sends them
// (JSON), against the demo schemas with their field rules.
func TestDemoGeneratorMakesValidEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	g := demo.NewGenerator(7)
	for range 200 {
		o := g.Order()
		for i, ev := range o.Events {
			data, err := json.Marshal(ev.Data)
			require.NoError(t, err)
			ev.Data = json.RawMessage(data)
			_, err = s.Append(ctx, o.StreamID, pgjet.Exact(int64(i)), ev)
			require.NoError(t, err, "%s", data)
		}
	}
}

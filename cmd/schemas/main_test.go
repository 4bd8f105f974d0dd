package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/registry"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

const mainEnv = "PGJET_SCHEMAS_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Args = append([]string{"schemas"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	pgtest.Main(m)
}

func newRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(context.Background(), pool))
	reg, err := registry.New(registry.Config{Pool: pool})
	require.NoError(t, err)
	return reg
}

func TestRegisterIsIdempotent(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	var first, second bytes.Buffer
	require.NoError(t, register(t.Context(), reg, "../../schemas/avro", &first))
	require.NoError(t, register(t.Context(), reg, "../../schemas/avro", &second))
	require.Equal(t, first.String(), second.String())
	require.Contains(t, first.String(), "pgjet.demo.order.OrderShipped version 3")
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := newRegistry(t)

	// Nothing registered: every demo file can be registered, in path order.
	problems, err := check(ctx, reg, demoschemas.Files)
	require.NoError(t, err)
	require.Empty(t, problems)
	_, err = reg.RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	problems, err = check(ctx, reg, demoschemas.Files)
	require.NoError(t, err)
	require.Empty(t, problems, "registered files pass")

	const cancelled = `{"type":"record","name":"OrderCancelled","namespace":"pgjet.demo.order","fields":[
		{"name":"order_id","type":{"type":"string","logicalType":"uuid"}},{"name":"reason","type":"string"},
		{"name":"cancelled_at","type":{"type":"long","logicalType":"timestamp-millis"}}`
	fsys := fstest.MapFS{
		// A new required field breaks BACKWARD: the new schema cannot read old events.
		"a/order_cancelled.avsc": {Data: []byte(cancelled + `,{"name":"by","type":"string"}]}`)},
		// With a default it is fine.
		"b/order_cancelled.avsc": {Data: []byte(cancelled + `,{"name":"by","type":"string","default":"customer"}]}`)},
		"bad.avsc":               {Data: []byte(`{"type":"record","name":"X","fields":[{"name":"v","type":"int","minimum":"one"}]}`)},
		// Two new versions of a new subject: the second is checked against the first.
		"new/t.v1.avsc": {Data: []byte(`{"type":"record","name":"T","namespace":"n","fields":[{"name":"a","type":"int"}]}`)},
		"new/t.v2.avsc": {Data: []byte(`{"type":"record","name":"T","namespace":"n","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}`)},
		"readme.txt":    {Data: []byte("not a schema")},
	}
	problems, err = check(ctx, reg, fsys)
	require.NoError(t, err)
	var lines []string
	for _, p := range problems {
		lines = append(lines, p.String())
	}
	require.Len(t, lines, 3, strings.Join(lines, "\n"))
	require.Contains(t, lines[0], "a/order_cancelled.avsc: pgjet.demo.order.OrderCancelled: incompatible under BACKWARD")
	require.Contains(t, lines[0], "version 1")
	require.Contains(t, lines[1], "bad.avsc: ")
	require.Contains(t, lines[1], `rule "minimum" must be a number`)
	require.Contains(t, lines[2], "new/t.v2.avsc: n.T: incompatible under BACKWARD: cannot read data written with new/t.v1.avsc")

	// Nothing was registered.
	vs, err := reg.Versions(ctx, "pgjet.demo.order.OrderCancelled")
	require.NoError(t, err)
	require.Equal(t, []int{1}, vs)
	_, err = reg.Versions(ctx, "n.T")
	require.ErrorIs(t, err, registry.ErrSubjectNotFound)
}

// The command refuses a directory that cannot pass for a schemas directory before it
// connects (a mistyped path used to pass `schemas check` in CI with "every schema ... is
// registered or can be"), wants exactly one directory (exit 2), and does not check
// against a database without pgjet's registry.
func TestCommandChecksItsInputs(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(empty, "readme.txt"), []byte("no schemas here"), 0o600))
	env := []string{mainEnv + "=1", "DATABASE_URL=" + pgtest.DB(t), "PGJET_DATA_DIR=" + t.TempDir()}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{args: []string{"check", empty}, code: 1, want: "schemas directory " + empty + " holds no .avsc files"},
		{args: []string{"register", empty}, code: 1, want: "holds no .avsc files"},
		{args: []string{"check", filepath.Join(empty, "nosuch")}, code: 1, want: "schemas directory " + filepath.Join(empty, "nosuch") + ": "},
		{args: []string{"check"}, code: 2, want: "want one directory, got 0 arguments"},
		{args: []string{"-h"}, code: 0, want: "usage: schemas register|check [flags] DIR"},
		{args: []string{"check", "-h"}, code: 0, want: "-database-url"},
		{args: []string{"verify", "x"}, code: 2, want: "usage: schemas register|check [flags] DIR"},
		{args: []string{"check", "../../schemas/avro", "extra"}, code: 2, want: "want one directory, got 2 arguments"},
		{args: []string{"check", "../../schemas/avro"}, code: 1, want: "run `migrate`"}, // a fresh database
		{args: []string{"register", "../../schemas/avro"}, code: 0, want: "pgjet.demo.order.OrderShipped version 3"},
		{args: []string{"check", "../../schemas/avro"}, code: 0, want: "every schema in ../../schemas/avro is registered or can be"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], tc.args...)
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		require.Equal(t, tc.code, cmd.ProcessState.ExitCode(), "%v: %s", tc.args, out)
		require.Contains(t, string(out), tc.want, "%v", tc.args)
	}
}

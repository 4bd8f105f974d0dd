package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/internal/verify"
)

// securitySQL returns the SQL block of docs/security.md between the markers named block,
// with the documented role names made unique to this test (roles are server-wide) and the
// database named db.
func securitySQL(t *testing.T, block, suffix, db string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	start, end := "<!-- security.md:"+block+" -->", "<!-- /security.md:"+block+" -->"
	_, rest, ok := strings.Cut(string(doc), start)
	require.True(t, ok, "docs/security.md has no %s", start)
	body, _, ok := strings.Cut(rest, end)
	require.True(t, ok, "docs/security.md has no %s", end)
	body = strings.TrimSpace(body)
	body = strings.TrimPrefix(strings.TrimPrefix(body, "```"), "sql")
	body = strings.TrimSuffix(body, "```")
	if block == "nats" {
		return body
	}
	body = regexp.MustCompile(`\bpgjet_(owner|writer|relay|projector|verify)\b`).ReplaceAllString(body, "pgjet_${1}_"+suffix)
	return regexp.MustCompile(`\bDATABASE pgjet\b`).ReplaceAllString(body, "DATABASE "+pgx.Identifier{db}.Sanitize())
}

// The Postgres roles and grants of docs/security.md are enough: the owner migrates, and
// then the writer appends and registers schemas, the relay publishes, the projector
// projects and verify checks, each as its own role and none with more rights.
func TestLeastPrivilegeRoles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base, err := url.Parse(pgtest.DB(t))
	if err != nil || !strings.HasPrefix(base.Scheme, "postgres") {
		t.Skip("the test server's URL is a key=value DSN")
	}
	db := strings.TrimPrefix(base.Path, "/")
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	role := func(name string) string { return "pgjet_" + name + "_" + suffix }
	as := func(name string) string {
		u := *base
		u.User = url.User(role(name))
		return u.String()
	}
	admin, err := pgx.Connect(ctx, base.String())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.WithoutCancel(ctx)
		all := []string{}
		for _, r := range []string{"owner", "writer", "relay", "projector", "verify"} {
			all = append(all, pgx.Identifier{role(r)}.Sanitize())
		}
		_, err := admin.Exec(ctx, "DROP OWNED BY "+strings.Join(all, ", ")+" CASCADE; DROP ROLE "+strings.Join(all, ", "))
		require.NoError(t, err)
		require.NoError(t, admin.Close(ctx))
	})
	_, err = admin.Exec(ctx, securitySQL(t, "roles", suffix, db))
	require.NoError(t, err)

	open := func(name string) *Postgres {
		c := Common{DatabaseURL: as(name), DataDir: t.TempDir()}
		pg, err := c.OpenMigrated(ctx, zap.NewNop())
		require.NoError(t, err, "starting as %s", name)
		t.Cleanup(func() { pg.Close(context.WithoutCancel(ctx)) })
		require.NoError(t, MigrationsCheck(pg)(ctx), "readiness as %s", name)
		return pg
	}

	// Before the owner migrates, a service role cannot start, and says why.
	_, err = (&Common{DatabaseURL: as("writer"), DataDir: t.TempDir()}).OpenMigrated(ctx, zap.NewNop())
	require.ErrorContains(t, err, "run `migrate` as the owner role")

	owner := open("owner")
	_, err = owner.Pool.Exec(ctx, securitySQL(t, "grants", suffix, db))
	require.NoError(t, err)

	// writer: register a schema, append, read back.
	writer := open("writer")
	store, err := pgjet.New(pgjet.Config{Pool: writer.Pool})
	require.NoError(t, err)
	_, err = store.Registry().Register(ctx, "test.lp.Thing",
		`{"type":"record","name":"Thing","namespace":"test.lp","fields":[{"name":"n","type":"int"}]}`)
	require.NoError(t, err)
	require.NoError(t, store.Registry().SetCompatibility(ctx, "test.lp.Thing", registry.Full))
	const events = 3
	for i := range events {
		_, err := store.Append(ctx, "thing-1", pgjet.Exact(int64(i)), pgjet.EventData{Type: "test.lp.Thing", Data: map[string]any{"n": i}})
		require.NoError(t, err)
	}

	// relay: publish the outbox to JetStream.
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	relayPG := open("relay")
	r, err := relay.New(relay.Config{Pool: relayPG.Pool, Conn: nc, PollInterval: 100 * time.Millisecond, Logger: zap.NewNop()})
	require.NoError(t, err)
	runUntil(t, r.Run, func() bool { return count(t, owner.Pool, "SELECT count(*) FROM pgjet.outbox") == 0 })

	// projector: a read model in its own schema, and its checkpoint.
	projPG := open("projector")
	reg, err := registry.New(registry.Config{Pool: projPG.Pool})
	require.NoError(t, err)
	p, err := projection.New(projection.Config{Pool: projPG.Pool, Conn: nc, Registry: reg, Logger: zap.NewNop(),
		Projection: projection.Projection{Name: "lp", Schema: "lp",
			Setup: func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS things (n int PRIMARY KEY)`)
				return err
			},
			Apply: func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
				_, err := tx.Exec(ctx, `INSERT INTO things (n) VALUES ($1)`, ev.Data["n"])
				return err
			}}})
	require.NoError(t, err)
	runUntil(t, p.Run, func() bool { return count(t, projPG.Pool, "SELECT count(*) FROM lp.things") == events })

	// verify: compare JetStream with Postgres.
	verifyPG := open("verify")
	scheme, err := subject.New(subject.DefaultPrefix)
	require.NoError(t, err)
	rep, err := verify.Check(ctx, verify.Config{Pool: verifyPG.Pool, JetStream: js, Stream: "PGJET_EVENTS", Subjects: scheme})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%s", rep)

	// And no more than that: the writer cannot rewrite the outbox, the relay cannot append.
	_, err = writer.Pool.Exec(ctx, "DELETE FROM pgjet.outbox")
	require.ErrorContains(t, err, "permission denied")
	_, err = relayPG.Pool.Exec(ctx, "INSERT INTO pgjet.streams (stream_id, version) VALUES ('x', 1)")
	require.ErrorContains(t, err, "permission denied")
	_, err = projPG.Pool.Exec(ctx, "SELECT count(*) FROM pgjet.events")
	require.ErrorContains(t, err, "permission denied")
}

// runUntil runs run until done holds, then stops it and waits for it to return.
func runUntil(t *testing.T, run func(context.Context) error, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	require.Eventually(t, func() bool {
		select {
		case err := <-errc:
			errc <- err
			return true
		default:
		}
		return done()
	}, 30*time.Second, 20*time.Millisecond)
	cancel()
	err := <-errc
	require.True(t, done(), "stopped early: %v", err)
	if err != nil && ctx.Err() == nil {
		require.NoError(t, err)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), query).Scan(&n); err != nil {
		return -1 // not there yet
	}
	return n
}

package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgjet/pgjet/internal/avro"
)

// Version is one registered version of a subject.
type Version struct {
	Subject string
	Version int
	ID      int
	Schema  *avro.Schema
}

// Registry is the Postgres-backed schema registry. It is safe for concurrent use.
type Registry struct {
	pool      *pgxpool.Pool
	latestTTL time.Duration
	now       func() time.Time
	metrics   *metrics

	mu     sync.RWMutex
	byID   map[int]storedSchema
	latest map[string]cachedLatest
}

// storedSchema is a schema as stored: the text first registered for its identity, parsed.
type storedSchema struct {
	schema *avro.Schema
	text   string
}

type cachedLatest struct {
	v  Version
	at time.Time
}

// Config configures a Registry.
type Config struct {
	// Pool is the Postgres pool holding the pgjet schema. Required.
	Pool *pgxpool.Pool
	// LatestTTL bounds how stale LatestCached may be. Default 1s.
	LatestTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Registerer receives the registry's metrics (pgjet_registry_*: registrations,
	// compatibility rejections, cache hits and misses). Default: none.
	Registerer prometheus.Registerer
}

// New returns a registry on cfg.Pool.
func New(cfg Config) (*Registry, error) {
	if cfg.Pool == nil {
		return nil, errors.New("registry: Config.Pool is required")
	}
	if cfg.LatestTTL == 0 {
		cfg.LatestTTL = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registry: registering metrics: %w", err)
	}
	return &Registry{
		pool: cfg.Pool, latestTTL: cfg.LatestTTL, now: cfg.Now, metrics: m,
		byID: map[int]storedSchema{}, latest: map[string]cachedLatest{},
	}, nil
}

// Register adds schemaText as the next version of subject, after checking it against the
// subject's compatibility level. Registering a schema the subject already has (same
// identity, see below) returns the existing version and changes nothing. The same schema
// under another subject keeps its global id.
//
// Two texts are the same schema when they differ only in formatting, in the order of
// attributes or in how names are written (namespace attribute or full name): everything
// that matters to Avro schema resolution, defaults and aliases included, must agree. The
// text stored, and served by SchemaText, is the one first registered for that identity,
// as written, so defaults, aliases and docs survive.
func (r *Registry) Register(ctx context.Context, subject, schemaText string) (Version, error) {
	return r.registerAs(ctx, subject, schemaText, 0)
}

// registerAs is Register, where a version above 0 must be the version a new registration
// gets, else nothing is registered and the error is ErrInvalidSchema (Confluent's register
// request with a "version" outside import mode). A schema the subject already has returns
// its version, whatever version was asked for, as in Confluent.
func (r *Registry) registerAs(ctx context.Context, subject, schemaText string, version int) (Version, error) {
	v, created, err := r.register(ctx, subject, schemaText, version)
	r.metrics.registered(created, err)
	return v, err
}

// register is registerAs; created says it wrote a new version.
func (r *Registry) register(ctx context.Context, subject, schemaText string, want int) (Version, bool, error) {
	if subject == "" {
		return Version{}, false, fmt.Errorf("%w: empty subject", ErrSubjectNotFound)
	}
	s, fp, err := parseSchema(schemaText)
	if err != nil {
		return Version{}, false, err
	}
	var (
		out     Version
		stored  string
		created bool
	)
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		// Serialise registrations per subject so versions are dense and checks see all.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('pgjet.subject:' || $1, 0))`, subject); err != nil {
			return fmt.Errorf("locking subject %q: %w", subject, err)
		}
		existing, found, err := lookup(ctx, tx, subject, fp)
		if err != nil {
			return err
		}
		if found {
			out, stored = existing.Version, existing.text
			return nil
		}
		registered, err := r.versions(ctx, tx, subject)
		if err != nil {
			return err
		}
		level, err := effectiveLevel(ctx, tx, subject)
		if err != nil {
			return err
		}
		if breaks := level.check(s, registered); len(breaks) > 0 {
			return &IncompatibleError{Subject: subject, Level: level, Breaks: breaks}
		}
		next := 1
		if len(registered) > 0 {
			next = registered[len(registered)-1].Version + 1
		}
		// Before the schema is stored: a refused request must not use up an id.
		if want > 0 && want != next {
			return fmt.Errorf("%w: version %d was asked for, but the next version of subject %q is %d",
				ErrInvalidSchema, want, subject, next)
		}
		// DO UPDATE, not DO NOTHING: when a concurrent transaction registering the same
		// schema under another subject commits first, DO UPDATE still returns its row,
		// where DO NOTHING would return nothing and a plain SELECT in the same statement
		// would not see the row yet.
		var id int
		err = tx.QueryRow(ctx, `
			INSERT INTO pgjet.schemas (fingerprint, schema) VALUES ($1, $2)
			ON CONFLICT (fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
			RETURNING id, schema`, fp[:], schemaText).Scan(&id, &stored)
		if err != nil {
			return fmt.Errorf("storing schema: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgjet.subject_versions (subject, version, schema_id) VALUES ($1, $2, $3)`,
			subject, next, id); err != nil {
			return fmt.Errorf("storing subject version: %w", err)
		}
		out, created = Version{Subject: subject, Version: next, ID: id, Schema: s}, true
		return nil
	})
	if _, incompatible := errors.AsType[*IncompatibleError](err); err != nil && !incompatible {
		return Version{}, false, fmt.Errorf("registering schema under %q: %w", subject, err)
	}
	if err != nil {
		return Version{}, false, err
	}
	out.Schema = r.remember(out, stored, s, created)
	return out, created, nil
}

// Lookup finds the version of subject whose schema is the same as schemaText (Confluent's
// POST /subjects/{s}). It returns ErrSubjectNotFound when subject has no versions and
// ErrSchemaNotFound when none of them is that schema.
func (r *Registry) Lookup(ctx context.Context, subject, schemaText string) (Version, error) {
	s, fp, err := parseSchema(schemaText)
	if err != nil {
		return Version{}, err
	}
	m, ok, err := lookup(ctx, r.pool, subject, fp)
	if err != nil {
		return Version{}, err
	}
	if !ok {
		if _, err := r.Versions(ctx, subject); err != nil {
			return Version{}, err
		}
		return Version{}, fmt.Errorf("%w: under subject %q", ErrSchemaNotFound, subject)
	}
	v := m.Version
	v.Schema = r.remember(v, m.text, s, false)
	return v, nil
}

// match is a version located by schema identity, with its stored text.
type match struct {
	Version
	text string
}

// lookup finds the version of subject whose schema has identity fp. The returned
// version has no Schema; callers fill it in.
func lookup(ctx context.Context, db querier, subject string, fp [32]byte) (match, bool, error) {
	f := match{Version: Version{Subject: subject}}
	err := db.QueryRow(ctx, `
		SELECT sv.version, sv.schema_id, s.schema FROM pgjet.subject_versions sv
		JOIN pgjet.schemas s ON s.id = sv.schema_id
		WHERE sv.subject = $1 AND s.fingerprint = $2`, subject, fp[:]).Scan(&f.Version.Version, &f.ID, &f.text)
	if errors.Is(err, pgx.ErrNoRows) {
		return match{}, false, nil
	}
	if err != nil {
		return match{}, false, fmt.Errorf("looking up schema under %q: %w", subject, err)
	}
	return f, true, nil
}

// SchemaByID returns the schema with the global id. Results are cached for the life of
// the registry: ids never change meaning.
func (r *Registry) SchemaByID(ctx context.Context, id int) (*avro.Schema, error) {
	return r.SchemaByIDTx(ctx, r.pool, id)
}

// Pool returns the pool the registry reads through unless told otherwise.
func (r *Registry) Pool() *pgxpool.Pool { return r.pool }

// SchemaByIDTx is SchemaByID reading through db (see LatestCachedTx).
func (r *Registry) SchemaByIDTx(ctx context.Context, db Querier, id int) (*avro.Schema, error) {
	st, err := r.stored(ctx, db, id)
	if err != nil {
		return nil, err
	}
	return st.schema, nil
}

// SchemaText returns the text of the schema with the global id, as first registered:
// what the HTTP API serves, defaults, aliases and docs included.
func (r *Registry) SchemaText(ctx context.Context, id int) (string, error) {
	st, err := r.stored(ctx, r.pool, id)
	if err != nil {
		return "", err
	}
	return st.text, nil
}

func (r *Registry) stored(ctx context.Context, db querier, id int) (storedSchema, error) {
	r.mu.RLock()
	st, ok := r.byID[id]
	r.mu.RUnlock()
	r.metrics.lookup(cacheID, ok)
	if ok {
		return st, nil
	}
	if id <= 0 || id > math.MaxInt32 { // ids are Postgres integers; a wire payload's uint32 may be more
		return storedSchema{}, fmt.Errorf("%w: id %d", ErrSchemaNotFound, id)
	}
	var text string
	err := db.QueryRow(ctx, `SELECT schema FROM pgjet.schemas WHERE id = $1`, id).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return storedSchema{}, fmt.Errorf("%w: id %d", ErrSchemaNotFound, id)
	}
	if err != nil {
		return storedSchema{}, fmt.Errorf("reading schema %d: %w", id, err)
	}
	return r.cache(id, text)
}

// cache parses text, the stored schema with id, and keeps it for the life of the registry.
func (r *Registry) cache(id int, text string) (storedSchema, error) {
	s, err := avro.Parse(text)
	if err != nil {
		return storedSchema{}, fmt.Errorf("stored schema %d does not parse: %w", id, err)
	}
	st := storedSchema{schema: s, text: text}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byID[id]; ok {
		return prev, nil
	}
	r.byID[id] = st
	return st, nil
}

// Latest returns the newest version of subject, read from Postgres.
func (r *Registry) Latest(ctx context.Context, subject string) (Version, error) {
	return r.latestFrom(ctx, r.pool, subject)
}

func (r *Registry) latestFrom(ctx context.Context, db querier, subject string) (Version, error) {
	var v Version
	err := db.QueryRow(ctx, `
		SELECT version, schema_id FROM pgjet.subject_versions
		WHERE subject = $1 ORDER BY version DESC LIMIT 1`, subject).Scan(&v.Version, &v.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Version{}, fmt.Errorf("%w: %q", ErrSubjectNotFound, subject)
	}
	if err != nil {
		return Version{}, fmt.Errorf("reading latest version of %q: %w", subject, err)
	}
	v.Subject = subject
	st, err := r.stored(ctx, db, v.ID)
	if err != nil {
		return Version{}, err
	}
	v.Schema = st.schema
	r.mu.Lock()
	r.latest[subject] = cachedLatest{v: v, at: r.now()}
	r.mu.Unlock()
	return v, nil
}

// LatestCached is Latest, answered from memory when the cached answer is younger than
// Config.LatestTTL. The append path uses it: a version registered elsewhere is picked up
// within the TTL.
func (r *Registry) LatestCached(ctx context.Context, subject string) (Version, error) {
	return r.LatestCachedTx(ctx, r.pool, subject)
}

// LatestCachedTx is LatestCached reading through db, for instance the caller's open
// transaction, instead of the registry's pool. Code that holds a pooled connection in a
// transaction must use it: waiting for a second connection of the same pool while every
// connection waits the same way never ends.
func (r *Registry) LatestCachedTx(ctx context.Context, db Querier, subject string) (Version, error) {
	r.mu.RLock()
	c, ok := r.latest[subject]
	r.mu.RUnlock()
	fresh := ok && r.now().Sub(c.at) < r.latestTTL
	r.metrics.lookup(cacheLatest, fresh)
	if fresh {
		return c.v, nil
	}
	return r.latestFrom(ctx, db, subject)
}

// Version returns one version of subject.
func (r *Registry) Version(ctx context.Context, subject string, version int) (Version, error) {
	if version <= 0 || version > math.MaxInt32 { // versions are Postgres integers
		return Version{}, fmt.Errorf("%w: %d", ErrInvalidVersion, version)
	}
	v := Version{Subject: subject, Version: version}
	err := r.pool.QueryRow(ctx, `SELECT schema_id FROM pgjet.subject_versions WHERE subject = $1 AND version = $2`,
		subject, version).Scan(&v.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := r.Versions(ctx, subject); err != nil {
			return Version{}, err
		}
		return Version{}, fmt.Errorf("%w: %q version %d", ErrVersionNotFound, subject, version)
	}
	if err != nil {
		return Version{}, fmt.Errorf("reading %q version %d: %w", subject, version, err)
	}
	if v.Schema, err = r.SchemaByID(ctx, v.ID); err != nil {
		return Version{}, err
	}
	return v, nil
}

// Versions lists the version numbers of subject, oldest first.
func (r *Registry) Versions(ctx context.Context, subject string) ([]int, error) {
	rows, err := r.pool.Query(ctx, `SELECT version FROM pgjet.subject_versions WHERE subject = $1 ORDER BY version`, subject)
	if err != nil {
		return nil, fmt.Errorf("listing versions of %q: %w", subject, err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("listing versions of %q: %w", subject, err)
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrSubjectNotFound, subject)
	}
	return vs, nil
}

// Subjects lists every subject with at least one version, sorted.
func (r *Registry) Subjects(ctx context.Context) ([]string, error) {
	rows, err := r.pool.Query(ctx, `SELECT DISTINCT subject FROM pgjet.subject_versions ORDER BY subject`)
	if err != nil {
		return nil, fmt.Errorf("listing subjects: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// All returns every version of subject, oldest first, with parsed schemas.
func (r *Registry) All(ctx context.Context, subject string) ([]Version, error) {
	return r.AllTx(ctx, r.pool, subject)
}

// AllTx is All reading through db (see LatestCachedTx).
func (r *Registry) AllTx(ctx context.Context, db Querier, subject string) ([]Version, error) {
	vs, err := r.versions(ctx, db, subject)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrSubjectNotFound, subject)
	}
	return vs, nil
}

// remember caches v's schema under its id, and v as the subject's latest version when
// latest says it was just created (an older version found again must not replace the
// cached latest). text is the stored text and s its parse (or that of an equivalent
// text). It returns the schema now cached for the id, so that every caller shares one.
func (r *Registry) remember(v Version, text string, s *avro.Schema, latest bool) *avro.Schema {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.byID[v.ID]
	if !ok {
		st = storedSchema{schema: s, text: text}
		r.byID[v.ID] = st
	}
	v.Schema = st.schema
	if c, ok := r.latest[v.Subject]; latest && (!ok || c.v.Version <= v.Version) {
		r.latest[v.Subject] = cachedLatest{v: v, at: r.now()}
	}
	return st.schema
}

// Querier is what the registry reads through: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type querier = Querier

// versions reads every version of subject, oldest first, parsing each schema once per
// registry life.
func (r *Registry) versions(ctx context.Context, db querier, subject string) ([]Version, error) {
	rows, err := db.Query(ctx, `
		SELECT sv.version, sv.schema_id, s.schema FROM pgjet.subject_versions sv
		JOIN pgjet.schemas s ON s.id = sv.schema_id
		WHERE sv.subject = $1 ORDER BY sv.version`, subject)
	if err != nil {
		return nil, fmt.Errorf("reading versions of %q: %w", subject, err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v := Version{Subject: subject}
		var text string
		if err := rows.Scan(&v.Version, &v.ID, &text); err != nil {
			return nil, fmt.Errorf("reading versions of %q: %w", subject, err)
		}
		r.mu.RLock()
		st, ok := r.byID[v.ID]
		r.mu.RUnlock()
		if !ok {
			if st, err = r.cache(v.ID, text); err != nil {
				return nil, err
			}
		}
		v.Schema = st.schema
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading versions of %q: %w", subject, err)
	}
	return out, nil
}

// Compatibility returns the level in force for subject: its own, else the global one.
func (r *Registry) Compatibility(ctx context.Context, subject string) (Compatibility, error) {
	return effectiveLevel(ctx, r.pool, subject)
}

// SubjectCompatibility returns subject's own level; ok is false when it has none.
func (r *Registry) SubjectCompatibility(ctx context.Context, subject string) (c Compatibility, ok bool, err error) {
	err = r.pool.QueryRow(ctx, `SELECT compatibility FROM pgjet.registry_config WHERE subject = $1`, subject).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading compatibility of %q: %w", subject, err)
	}
	return c, true, nil
}

// SetCompatibility sets subject's level; subject "" sets the global level.
func (r *Registry) SetCompatibility(ctx context.Context, subject string, c Compatibility) error {
	if _, err := ParseCompatibility(string(c)); err != nil {
		return err
	}
	_, err := r.pool.Exec(ctx, `
		INSERT INTO pgjet.registry_config (subject, compatibility) VALUES ($1, $2)
		ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility`, subject, string(c))
	if err != nil {
		return fmt.Errorf("setting compatibility of %q: %w", subject, err)
	}
	return nil
}

func effectiveLevel(ctx context.Context, db querier, subject string) (Compatibility, error) {
	var c Compatibility
	err := db.QueryRow(ctx, `
		SELECT compatibility FROM pgjet.registry_config WHERE subject IN ($1, '')
		ORDER BY subject DESC LIMIT 1`, subject).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return Backward, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading compatibility of %q: %w", subject, err)
	}
	return c, nil
}

// VersionsByID lists every subject version that uses the schema with the global id,
// ordered by subject then version (Confluent's GET /schemas/ids/{id}/versions). It
// returns ErrSchemaNotFound when no schema has that id.
func (r *Registry) VersionsByID(ctx context.Context, id int) ([]Version, error) {
	st, err := r.stored(ctx, r.pool, id)
	if err != nil {
		return nil, err
	}
	rows, err := r.pool.Query(ctx, `
		SELECT subject, version FROM pgjet.subject_versions WHERE schema_id = $1
		ORDER BY subject, version`, id)
	if err != nil {
		return nil, fmt.Errorf("listing versions of schema %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Version, error) {
		v := Version{ID: id, Schema: st.schema}
		return v, row.Scan(&v.Subject, &v.Version)
	})
	if err != nil {
		return nil, fmt.Errorf("listing versions of schema %d: %w", id, err)
	}
	return out, nil
}

package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgjet/pgjet/internal/avro"
)

// Compatibility is a registry compatibility level, with Confluent's meanings.
type Compatibility string

// The levels. BACKWARD is the default: a new schema must read data written with the latest
// one. The _TRANSITIVE forms check every registered version instead of only the latest;
// an event log keeps old events forever, so BACKWARD_TRANSITIVE or FULL_TRANSITIVE suit it.
const (
	Backward           Compatibility = "BACKWARD"
	BackwardTransitive Compatibility = "BACKWARD_TRANSITIVE"
	Forward            Compatibility = "FORWARD"
	ForwardTransitive  Compatibility = "FORWARD_TRANSITIVE"
	Full               Compatibility = "FULL"
	FullTransitive     Compatibility = "FULL_TRANSITIVE"
	None               Compatibility = "NONE"
)

// ParseCompatibility validates a level name.
func ParseCompatibility(s string) (Compatibility, error) {
	switch c := Compatibility(s); c {
	case Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive, None:
		return c, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidCompatibility, s)
}

func (c Compatibility) transitive() bool {
	return c == BackwardTransitive || c == ForwardTransitive || c == FullTransitive
}

func (c Compatibility) backward() bool {
	return c == Backward || c == BackwardTransitive || c == Full || c == FullTransitive
}

func (c Compatibility) forward() bool {
	return c == Forward || c == ForwardTransitive || c == Full || c == FullTransitive
}

// check tests candidate against the registered versions (oldest first) under level c and
// returns every break. Non-transitive levels look at the newest version only.
func (c Compatibility) check(candidate *avro.Schema, registered []Version) []Break {
	if c == None || len(registered) == 0 {
		return nil
	}
	if !c.transitive() {
		registered = registered[len(registered)-1:]
	}
	var breaks []Break
	for _, v := range registered {
		if c.backward() {
			if err := Readable(v.Schema, candidate); err != nil {
				breaks = append(breaks, Break{Version: v.Version, Direction: "backward", Reason: reason(err)})
			}
		}
		if c.forward() {
			if err := Readable(candidate, v.Schema); err != nil {
				breaks = append(breaks, Break{Version: v.Version, Direction: "forward", Reason: reason(err)})
			}
		}
	}
	return breaks
}

// Readable returns nil when data written with writer decodes with reader the way pgjet's
// consumers decode it (avro.ResolveDecode), and means the same there, else why not: the
// test behind every compatibility level, one direction at a time. hamba's compatibility
// check alone is not enough: it compares records by short name where decoding insists on
// the full name, it passes pairs whose resolved schema cannot be built or whose defaults
// hamba cannot decode, and it ignores logical types, so a decimal's scale or a
// timestamp's unit could change under old data (see avro.CheckResolution).
func Readable(writer, reader *avro.Schema) error { return avro.Resolvable(writer, reader) }

// reason is err, a failure of Readable, without the schema names a Break already implies.
func reason(err error) string {
	if ierr, ok := errors.AsType[*avro.IncompatibleError](err); ok {
		return ierr.Reason
	}
	return err.Error()
}

// LatestVersion stands for a subject's newest version where a version number is expected
// (Confluent's "latest" and -1).
const LatestVersion = -1

// CheckCompatibility runs the check Register would run for schemaText under subject,
// without registering anything: against the newest version, or every version for a
// transitive level, in the directions of the level in force. It returns nil when the
// schema could be registered (also when subject has no versions yet), an
// *IncompatibleError listing every break, or ErrInvalidSchema.
func (r *Registry) CheckCompatibility(ctx context.Context, subject, schemaText string) error {
	s, _, err := parseSchema(schemaText)
	if err != nil {
		return err
	}
	registered, err := r.versions(ctx, r.pool, subject)
	if err != nil {
		return err
	}
	return r.checkAgainst(ctx, subject, s, registered)
}

// CheckCompatibilityWith checks schemaText against one registered version of subject
// (LatestVersion for the newest), in the directions of the level in force, as Confluent's
// POST /compatibility/subjects/{s}/versions/{v} does: only that version, even when the
// level is transitive. Checking against LatestVersion of a subject without versions
// succeeds; a numbered version that does not exist returns ErrSubjectNotFound or
// ErrVersionNotFound.
func (r *Registry) CheckCompatibilityWith(ctx context.Context, subject, schemaText string, version int) error {
	s, _, err := parseSchema(schemaText)
	if err != nil {
		return err
	}
	var v Version
	if version == LatestVersion {
		v, err = r.Latest(ctx, subject)
		if errors.Is(err, ErrSubjectNotFound) {
			return nil
		}
	} else {
		v, err = r.Version(ctx, subject, version)
	}
	if err != nil {
		return err
	}
	return r.checkAgainst(ctx, subject, s, []Version{v})
}

func (r *Registry) checkAgainst(ctx context.Context, subject string, s *avro.Schema, registered []Version) error {
	if len(registered) == 0 {
		return nil
	}
	level, err := effectiveLevel(ctx, r.pool, subject)
	if err != nil {
		return err
	}
	if breaks := level.check(s, registered); len(breaks) > 0 {
		err := &IncompatibleError{Subject: subject, Level: level, Breaks: breaks}
		r.metrics.checked(err)
		return err
	}
	return nil
}

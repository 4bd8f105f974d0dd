package pgjet

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// translate maps driver errors to pgjet's. It is the only place that reads SQLSTATEs.
func translate(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "events_event_id_key" {
		return errRaceOnEventID
	}
	return err
}

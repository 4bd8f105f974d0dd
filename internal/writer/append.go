package writer

import (
	"context"

	"github.com/google/uuid"

	"github.com/pgjet/pgjet"
)

// appendResponse is the success body of an append, over HTTP and NATS.
type appendResponse struct {
	Stream       string      `json:"stream"`
	FirstVersion int64       `json:"first_version"`
	LastVersion  int64       `json:"last_version"`
	Positions    []int64     `json:"positions"`
	EventIDs     []uuid.UUID `json:"event_ids"`
	Duplicate    bool        `json:"duplicate"`
}

// appendTo appends the request's events to stream.
func appendTo(ctx context.Context, store *pgjet.Store, stream string, req appendRequest) (appendResponse, error) {
	res, err := store.Append(ctx, stream, req.Expected, req.eventData()...)
	if err != nil {
		return appendResponse{}, err
	}
	return appendResponse{
		Stream: res.StreamID, FirstVersion: res.FirstVersion, LastVersion: res.LastVersion,
		Positions: res.Positions, EventIDs: res.EventIDs, Duplicate: res.Duplicate,
	}, nil
}

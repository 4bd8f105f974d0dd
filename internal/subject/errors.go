package subject

import "errors"

var (
	// ErrInvalidToken is wrapped by errors for tokens that [EncodeToken]
	// cannot have produced.
	ErrInvalidToken = errors.New("subject: invalid token")
	// ErrInvalidPrefix is wrapped by errors for a prefix that is not a valid
	// literal NATS subject.
	ErrInvalidPrefix = errors.New("subject: invalid prefix")
	// ErrInvalidType is wrapped by errors for an event type that is not an
	// Avro full name.
	ErrInvalidType = errors.New("subject: invalid event type")
	// ErrEmptyStreamID is returned for an empty stream id.
	ErrEmptyStreamID = errors.New("subject: empty stream id")
	// ErrInvalidCategory is wrapped by errors for a category that cannot
	// occur (one that contains '-').
	ErrInvalidCategory = errors.New("subject: invalid category")
	// ErrInvalidSubject is wrapped by errors for a subject that is not an
	// event subject of the scheme.
	ErrInvalidSubject = errors.New("subject: not an event subject")
)

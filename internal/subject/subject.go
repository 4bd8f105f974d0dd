package subject

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "pgjet.events"

// Scheme builds and parses event subjects under one prefix. The zero Scheme
// uses [DefaultPrefix]; build others with [New], which validates the prefix.
type Scheme struct {
	// Prefix is one or more literal tokens; empty means DefaultPrefix.
	Prefix string
}

// New returns a Scheme for prefix, or for [DefaultPrefix] when prefix is
// empty. The prefix must be a literal subject: non-empty tokens of printable
// ASCII without '*' or '>', and not starting with '$' (reserved for NATS
// system subjects). Errors wrap [ErrInvalidPrefix].
func New(prefix string) (Scheme, error) {
	if prefix == "" {
		return Scheme{Prefix: DefaultPrefix}, nil
	}
	if prefix[0] == '$' {
		return Scheme{}, fmt.Errorf("%w: %q: subjects starting with '$' are reserved", ErrInvalidPrefix, prefix)
	}
	for i, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return Scheme{}, fmt.Errorf("%w: %q: token %d is empty", ErrInvalidPrefix, prefix, i+1)
		}
		for j := 0; j < len(tok); j++ {
			if c := tok[j]; c < 0x21 || c > 0x7E || c == '*' || c == '>' {
				return Scheme{}, fmt.Errorf("%w: %q: byte 0x%02X in token %d is not allowed", ErrInvalidPrefix, prefix, c, i+1)
			}
		}
	}
	return Scheme{Prefix: prefix}, nil
}

func (s Scheme) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Category returns the category of a stream id: the text before its first
// '-', or the whole id when it has none. Category("order-123") == "order".
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

// For returns the subject of an event of type eventType (an Avro full name)
// in stream streamID. It fails for an empty stream id ([ErrEmptyStreamID])
// and an invalid type ([ErrInvalidType]); [Scheme.Parse] reverses it.
//
//	Scheme{}.For("order-123", "shop.order.OrderPlaced")
//	// "pgjet.events.order.shop:order:OrderPlaced.order-123"
func (s Scheme) For(streamID, eventType string) (string, error) {
	if streamID == "" {
		return "", ErrEmptyStreamID
	}
	if err := ValidateType(eventType); err != nil {
		return "", err
	}
	// join writes the type token itself: one allocation per subject, the relay's per event.
	return s.join(EncodeToken(Category(streamID)), eventType, EncodeToken(streamID)), nil
}

// Parse returns the stream id and event type of an event subject built by
// [Scheme.For] with the same prefix. Errors wrap [ErrInvalidSubject].
func (s Scheme) Parse(subject string) (streamID, eventType string, err error) {
	p := s.prefix()
	rest, ok := strings.CutPrefix(subject, p)
	if !ok || !strings.HasPrefix(rest, ".") {
		return "", "", fmt.Errorf("%w: %q does not start with %q", ErrInvalidSubject, subject, p+".")
	}
	toks := strings.Split(rest[1:], ".")
	if len(toks) != 3 {
		return "", "", fmt.Errorf("%w: %q: want 3 tokens after the prefix (category, type, stream), have %d", ErrInvalidSubject, subject, len(toks))
	}
	category, err := DecodeToken(toks[0])
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: category: %w", ErrInvalidSubject, subject, err)
	}
	eventType, err = typeFromToken(toks[1])
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: type: %w", ErrInvalidSubject, subject, err)
	}
	streamID, err = DecodeToken(toks[2])
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: stream: %w", ErrInvalidSubject, subject, err)
	}
	if streamID == "" {
		return "", "", fmt.Errorf("%w: %q: %w", ErrInvalidSubject, subject, ErrEmptyStreamID)
	}
	if c := Category(streamID); c != category {
		return "", "", fmt.Errorf("%w: %q: category token %q does not match stream %q (category %q)", ErrInvalidSubject, subject, category, streamID, c)
	}
	return streamID, eventType, nil
}

// All returns the filter that matches every event: "<prefix>.>".
func (s Scheme) All() string {
	return s.prefix() + ".>"
}

// StreamSubjects returns the subjects the JetStream stream for events binds.
func (s Scheme) StreamSubjects() []string {
	return []string{s.All()}
}

// ByCategory returns the filter matching every event of streams in category
// cat: "<prefix>.<cat>.*.*". A category never contains '-'
// ([ErrInvalidCategory]).
func (s Scheme) ByCategory(cat string) (string, error) {
	ct, err := categoryToken(cat)
	if err != nil {
		return "", err
	}
	return s.join(ct, "*", "*"), nil
}

// ByType returns the filter matching every event of type eventType, in any
// stream: "<prefix>.*.<type>.*".
func (s Scheme) ByType(eventType string) (string, error) {
	tt, err := typeToken(eventType)
	if err != nil {
		return "", err
	}
	return s.join("*", tt, "*"), nil
}

// ByStream returns the filter matching every event of stream streamID:
// "<prefix>.<category>.*.<stream>".
func (s Scheme) ByStream(streamID string) (string, error) {
	if streamID == "" {
		return "", ErrEmptyStreamID
	}
	return s.join(EncodeToken(Category(streamID)), "*", EncodeToken(streamID)), nil
}

// ByCategoryAndType returns the filter matching events of type eventType in
// streams of category cat: "<prefix>.<cat>.<type>.*".
func (s Scheme) ByCategoryAndType(cat, eventType string) (string, error) {
	ct, err := categoryToken(cat)
	if err != nil {
		return "", err
	}
	tt, err := typeToken(eventType)
	if err != nil {
		return "", err
	}
	return s.join(ct, tt, "*"), nil
}

func categoryToken(cat string) (string, error) {
	if strings.IndexByte(cat, '-') >= 0 {
		return "", fmt.Errorf("%w: %q contains '-'", ErrInvalidCategory, cat)
	}
	return EncodeToken(cat), nil
}

// join builds prefix.category.typ.stream from tokens; typ may also be a validated event
// type, whose '.' it writes as typeSep.
func (s Scheme) join(category, typ, stream string) string {
	p := s.prefix()
	var b strings.Builder
	b.Grow(len(p) + len(category) + len(typ) + len(stream) + 3)
	b.WriteString(p)
	b.WriteByte('.')
	b.WriteString(category)
	b.WriteByte('.')
	for i := 0; i < len(typ); i++ { // a type's '.' becomes typeSep (see typeToken)
		if c := typ[i]; c == '.' {
			b.WriteByte(typeSep)
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteByte('.')
	b.WriteString(stream)
	return b.String()
}

package registry

import (
	"fmt"

	havro "github.com/hamba/avro/v2"

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
	sc := havro.NewSchemaCompatibility()
	var breaks []Break
	for _, v := range registered {
		if c.backward() {
			if err := sc.Compatible(candidate.Avro(), v.Schema.Avro()); err != nil {
				breaks = append(breaks, Break{Version: v.Version, Direction: "backward", Reason: err.Error()})
			}
		}
		if c.forward() {
			if err := sc.Compatible(v.Schema.Avro(), candidate.Avro()); err != nil {
				breaks = append(breaks, Break{Version: v.Version, Direction: "forward", Reason: err.Error()})
			}
		}
	}
	return breaks
}

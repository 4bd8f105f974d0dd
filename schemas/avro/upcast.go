package avro

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/pgjet/pgjet/internal/evolve"
)

// Upcasters returns the demo domain's upcasters, for pgjet.Config.Upcasters and the
// projector's decoder.
//
// OrderShipped version 3 splits carrier ("PostNL") into carrier_name ("PostNL") and
// carrier_code ("POSTNL"), which schema resolution cannot do, so version 3 declares
// "upcast": true and data of version 2 passes UpcastOrderShippedV2. Data of version 1
// reaches version 2 by resolution (service_level takes its default, STANDARD).
func Upcasters() []evolve.Upcaster {
	return []evolve.Upcaster{
		{Type: "pgjet.demo.order.OrderShipped", FromVersion: 2, Func: UpcastOrderShippedV2},
	}
}

// UpcastOrderShippedV2 moves OrderShipped data from version 2 to version 3: carrier
// becomes carrier_name, and carrier_code is the carrier's letters and digits, upper-cased.
func UpcastOrderShippedV2(d map[string]any) (map[string]any, error) {
	carrier, ok := d["carrier"].(string)
	if !ok {
		return nil, fmt.Errorf("carrier is %T, not a string", d["carrier"])
	}
	delete(d, "carrier")
	d["carrier_name"] = carrier
	d["carrier_code"] = strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return unicode.ToUpper(r)
		}
		return -1
	}, carrier)
	return d, nil
}

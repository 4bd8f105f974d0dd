package avro_test

import (
	"fmt"

	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func ExampleUpcastOrderShippedV2() {
	v3, err := demoschemas.UpcastOrderShippedV2(map[string]any{
		"order_id": "5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10", "carrier": "PostNL",
		"tracking_number": "TRK1", "service_level": "STANDARD",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(v3["carrier_name"], v3["carrier_code"], v3["carrier"])
	// Output: PostNL POSTNL <nil>
}

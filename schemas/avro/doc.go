// Package avro holds the demo domain's Avro schemas, the source of truth for its event
// types. The schemas are embedded so binaries can register them at start.
package avro

import "embed"

// Files holds every .avsc file of this directory.
//
//go:embed *.avsc
var Files embed.FS

// Package avro holds the demo domain's Avro schemas, the source of truth for its event
// types. The schemas are embedded so binaries can register them at start.
//
// The newest version of each type is <type>.avsc; its older versions live in
// history/<type>.v<N>.avsc. RegisterFS registers files in path order, so history/ (and
// within it v1, v2, ...) comes before the newest files, and each type's subject versions
// are its file versions in order. Never edit a file once registered anywhere: add a
// version. testdata/ holds one wire-format fixture per registered version of every type
// (TestFixturesDecodeToNewestShape in package pgjet decodes each into the newest shape).
package avro

import "embed"

// Files holds every .avsc file of this directory and of history/.
//
//go:embed *.avsc history/*.avsc
var Files embed.FS

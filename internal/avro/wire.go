package avro

import "encoding/binary"

// wireMagic is the first byte of every Confluent wire-format message.
const wireMagic = 0x00

// WireHeaderSize is the length of the Confluent header: the magic byte and a
// 4-byte big-endian schema id.
const WireHeaderSize = 5

// AppendWire appends the Confluent wire format of an Avro payload to dst:
// byte 0x00, the schema id as 4 big-endian bytes, then the payload. Any
// Confluent-compatible deserializer reads the result with the registry
// schema of that id.
func AppendWire(dst []byte, schemaID uint32, avroPayload []byte) []byte {
	dst = append(dst, wireMagic)
	dst = binary.BigEndian.AppendUint32(dst, schemaID)
	return append(dst, avroPayload...)
}

// SplitWire splits a Confluent wire-format message into its schema id and
// Avro payload. The payload aliases b. Input shorter than WireHeaderSize or
// not starting with 0x00 returns ErrNotWireFormat.
func SplitWire(b []byte) (schemaID uint32, payload []byte, err error) {
	if len(b) < WireHeaderSize || b[0] != wireMagic {
		return 0, nil, ErrNotWireFormat
	}
	return binary.BigEndian.Uint32(b[1:WireHeaderSize]), b[WireHeaderSize:], nil
}

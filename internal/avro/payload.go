package avro

import (
	"errors"
	"fmt"
	"unicode/utf8"

	havro "github.com/hamba/avro/v2"
)

// extraItems is how many array or map items a payload may declare beyond one
// per payload byte: items of zero encoded size (null, empty records) are
// legal but must not let a few bytes demand unbounded work.
const extraItems = 1 << 16

// checkPayload walks Avro binary against the writer schema without building
// values. It proves the payload is exactly one value of the schema before
// hamba decodes it, so that hamba never sees a length, count, index or
// nesting depth it would trust: every length fits in the remaining input and
// MaxBytesSize, item counts fit a budget proportional to the input and
// MaxItems, union and enum indexes are in range, varints are canonical in
// size, and no bytes trail the value.
func checkPayload(s havro.Schema, b []byte) error {
	return checkPayloadWith(payloadChecker{b: b, items: len(b) + extraItems}, s)
}

// checkEncoded is checkPayload for Avro this package produced, which must also hold only
// valid UTF-8 in strings and map keys, as the Avro specification requires: a Go value
// given to Encode may carry any bytes in a string. Decoding stays lenient about UTF-8 so
// that data stored before this check stays readable.
func checkEncoded(s havro.Schema, b []byte) error {
	return checkPayloadWith(payloadChecker{b: b, items: len(b) + extraItems, utf8: true}, s)
}

func checkPayloadWith(c payloadChecker, s havro.Schema) error {
	b := c.b
	if err := c.value(s, 0); err != nil {
		return fmt.Errorf("%w: at byte %d: %w", ErrInvalidPayload, c.pos, err)
	}
	if c.pos != len(b) {
		return fmt.Errorf("%w: %d bytes after the end of the record", ErrInvalidPayload, len(b)-c.pos)
	}
	return nil
}

type payloadChecker struct {
	b     []byte
	pos   int
	items int
	utf8  bool // strings and map keys must be valid UTF-8
}

var errTruncated = errors.New("unexpected end of data")

func (c *payloadChecker) varint(maxBytes int) (uint64, error) {
	var v uint64
	for i := range maxBytes {
		if c.pos >= len(c.b) {
			return 0, errTruncated
		}
		x := c.b[c.pos]
		c.pos++
		if i == 9 && x > 1 {
			return 0, errors.New("long overflows 64 bits")
		}
		v |= uint64(x&0x7f) << (7 * i)
		if x&0x80 == 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("varint longer than %d bytes", maxBytes)
}

func (c *payloadChecker) long() (int64, error) {
	u, err := c.varint(10)
	if err != nil {
		return 0, err
	}
	return int64(u>>1) ^ -int64(u&1), nil
}

func (c *payloadChecker) int() (int32, error) {
	u, err := c.varint(5)
	if err != nil {
		return 0, err
	}
	if u > 0xFFFFFFFF {
		return 0, errors.New("int overflows 32 bits")
	}
	return int32(u>>1) ^ -int32(u&1), nil
}

func (c *payloadChecker) skip(n int64) error {
	if n > int64(len(c.b)-c.pos) {
		return errTruncated
	}
	c.pos += int(n)
	return nil
}

func (c *payloadChecker) bytes(text bool) error {
	n, err := c.long()
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("negative length %d", n)
	}
	if n > MaxBytesSize {
		return fmt.Errorf("length %d exceeds the %d-byte limit", n, MaxBytesSize)
	}
	start := c.pos
	if err := c.skip(n); err != nil {
		return err
	}
	if text && c.utf8 && !utf8.Valid(c.b[start:c.pos]) {
		return errors.New("string is not valid UTF-8")
	}
	return nil
}

func (c *payloadChecker) value(s havro.Schema, depth int) error {
	s = deref(s)
	switch s.Type() {
	case havro.Null:
		return nil
	case havro.Boolean:
		if c.pos >= len(c.b) {
			return errTruncated
		}
		if c.b[c.pos] > 1 {
			return fmt.Errorf("invalid boolean byte %#x", c.b[c.pos])
		}
		c.pos++
		return nil
	case havro.Int:
		_, err := c.int()
		return err
	case havro.Long:
		_, err := c.long()
		return err
	case havro.Float:
		return c.skip(4)
	case havro.Double:
		return c.skip(8)
	case havro.String:
		return c.bytes(true)
	case havro.Bytes:
		return c.bytes(false)
	case havro.Fixed:
		return c.skip(int64(s.(*havro.FixedSchema).Size()))
	case havro.Enum:
		i, err := c.int()
		if err != nil {
			return err
		}
		if n := len(s.(*havro.EnumSchema).Symbols()); i < 0 || int(i) >= n {
			return fmt.Errorf("enum index %d out of range [0,%d)", i, n)
		}
		return nil
	case havro.Union:
		types := s.(*havro.UnionSchema).Types()
		i, err := c.int()
		if err != nil {
			return err
		}
		if i < 0 || int(i) >= len(types) {
			return fmt.Errorf("union index %d out of range [0,%d)", i, len(types))
		}
		return c.value(types[i], depth)
	case havro.Record:
		if depth >= MaxDepth {
			return fmt.Errorf("nesting deeper than %d", MaxDepth)
		}
		for _, f := range s.(*havro.RecordSchema).Fields() {
			if err := c.value(f.Type(), depth+1); err != nil {
				return fmt.Errorf("%s: %w", f.Name(), err)
			}
		}
		return nil
	case havro.Array:
		return c.blocks(s.(*havro.ArraySchema).Items(), false, depth)
	case havro.Map:
		return c.blocks(s.(*havro.MapSchema).Values(), true, depth)
	default:
		return fmt.Errorf("unsupported schema type %s", s.Type())
	}
}

func (c *payloadChecker) blocks(items havro.Schema, isMap bool, depth int) error {
	if depth >= MaxDepth {
		return fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	total := int64(0)
	for {
		n, err := c.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			if n == -1<<63 {
				return errors.New("invalid block count")
			}
			n = -n
			size, err := c.long()
			if err != nil {
				return err
			}
			if size < 0 {
				return fmt.Errorf("negative block size %d", size)
			}
		}
		total += n
		if n > int64(c.items) || total > MaxItems {
			return fmt.Errorf("block of %d items exceeds the item limit", n)
		}
		c.items -= int(n)
		for range n {
			if isMap {
				if err := c.bytes(true); err != nil {
					return err
				}
			}
			if err := c.value(items, depth+1); err != nil {
				return err
			}
		}
	}
}

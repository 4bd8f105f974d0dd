// Package jsontext holds checks on raw JSON text that encoding/json does not make: what
// the writer's and the registry's request decoders refuse before Go's decoder would
// quietly change the value.
package jsontext

import (
	"strconv"
	"unicode/utf16"
)

// LoneSurrogate returns the offset in JSON text raw of a \u escape of a UTF-16 surrogate
// that is not half of a high-low pair, or -1. Go's decoder turns such an escape into
// U+FFFD, so a value holding one would be stored as something other than what was sent.
func LoneSurrogate(raw []byte) int {
	escape := func(i int) (rune, bool) { // the escape \uXXXX at raw[i]
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := escape(i)
		switch {
		case !ok:
			i++ // another escape: skip the escaped character
		case utf16.IsSurrogate(r) && r < 0xDC00: // high: a low must follow
			if low, ok := escape(i + 6); !ok || !utf16.IsSurrogate(low) || low < 0xDC00 {
				return i
			}
			i += 11
		case utf16.IsSurrogate(r): // a low without its high
			return i
		default:
			i += 5
		}
	}
	return -1
}

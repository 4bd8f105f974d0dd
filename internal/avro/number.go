package avro

import (
	"math/big"
	"strconv"
	"strings"
)

// decimalText is a decimal number split as (-1)^neg × digits × 10^exp, with
// digits free of leading and trailing zeros ("" for zero). Splitting before
// building big numbers keeps hostile exponents like 1e999999999 cheap.
type decimalText struct {
	neg    bool
	digits string
	exp    int64
}

const maxExp = 1 << 30 // exponents beyond this are clamped; they are out of every range anyway

// parseDecimalText parses -?d+(.d+)?([eE][+-]?d+)? (leading zeros allowed).
func parseDecimalText(s string) (decimalText, bool) {
	var d decimalText
	if strings.HasPrefix(s, "-") {
		d.neg = true
		s = s[1:]
	}
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return d, false
	}
	intPart, s := s[:i], s[i:]
	var frac string
	if strings.HasPrefix(s, ".") {
		s = s[1:]
		i = 0
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == 0 {
			return d, false
		}
		frac, s = s[:i], s[i:]
	}
	var exp int64
	if s != "" {
		if s[0] != 'e' && s[0] != 'E' {
			return d, false
		}
		s = s[1:]
		expNeg := false
		if s != "" && (s[0] == '+' || s[0] == '-') {
			expNeg = s[0] == '-'
			s = s[1:]
		}
		if s == "" {
			return d, false
		}
		for _, c := range []byte(s) {
			if !isDigit(c) {
				return d, false
			}
			if exp < maxExp {
				exp = exp*10 + int64(c-'0')
			}
		}
		exp = min(exp, maxExp)
		if expNeg {
			exp = -exp
		}
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	d.digits = trimmed
	if d.digits == "" {
		d.exp = 0
	} else {
		d.exp = exp
	}
	return d, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// integer returns the value as an int64 if it is integral and fits in bits.
// ok is false with integral=false for fractions, integral=true when out of
// range.
func (d decimalText) integer(bits int) (v int64, integral, ok bool) {
	if d.digits == "" {
		return 0, true, true
	}
	if d.exp < 0 {
		return 0, false, false
	}
	if int64(len(d.digits))+d.exp > 20 {
		return 0, true, false
	}
	n, _ := new(big.Int).SetString(d.digits+strings.Repeat("0", int(d.exp)), 10)
	if d.neg {
		n.Neg(n)
	}
	if !n.IsInt64() {
		return 0, true, false
	}
	v = n.Int64()
	lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	if bits == 64 {
		lo, hi = -1<<63, 1<<63-1
	}
	if v < lo || v > hi {
		return 0, true, false
	}
	return v, true, true
}

// parseInteger parses a JSON number that must be an integer of the given
// size. Integral forms like 1.0 and 1e3 are accepted.
func parseInteger(s string, bits int) (v int64, integral, ok bool) {
	if n, err := strconv.ParseInt(s, 10, bits); err == nil {
		return n, true, true
	}
	d, valid := parseDecimalText(s)
	if !valid {
		return 0, false, false
	}
	return d.integer(bits)
}

// decimalRat converts d to a rational with at most scale fractional digits
// and precision significant digits of the unscaled value. problem is empty
// on success.
func (d decimalText) decimalRat(precision, scale int) (r *big.Rat, problem string) {
	if d.digits == "" {
		return new(big.Rat), ""
	}
	if d.exp < 0 && -d.exp > int64(scale) {
		return nil, "has more than " + strconv.Itoa(scale) + " digits after the decimal point (scale " + strconv.Itoa(scale) + ")"
	}
	shift := d.exp + int64(scale) // >= 0
	if int64(len(d.digits))+shift > int64(precision) {
		return nil, "has more than " + strconv.Itoa(precision) + " significant digits (precision " +
			strconv.Itoa(precision) + ", scale " + strconv.Itoa(scale) + ")"
	}
	num, _ := new(big.Int).SetString(d.digits+strings.Repeat("0", int(shift)), 10)
	if d.neg {
		num.Neg(num)
	}
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	return new(big.Rat).SetFrac(num, den), ""
}

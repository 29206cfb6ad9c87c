package fhir

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// ScaledDecimal returns value × 10^exp as an exact decimal, keeping the precision the vendor
// stated: ScaledDecimal(3680, -2) is "36.80" and ScaledDecimal(75000, -3) is "75.000". APIs that
// send a measurement as an integer and a power of ten need it: float arithmetic would give
// 36.800000000000004, and FHIR decimals keep their precision
// (https://hl7.org/fhir/R5/datatypes.html#decimal).
func ScaledDecimal(value int64, exp int) Decimal {
	return formatDecimal(big.NewInt(value), -exp)
}

// bigDecimal is unscaled × 10^-scale.
type bigDecimal struct {
	unscaled *big.Int
	scale    int
}

// errDecimal reports a malformed decimal. Like every mapping error it never quotes the value:
// measurements must not reach logs.
var errDecimal = errors.New("invalid decimal")

// parseDecimal parses a FHIR decimal (JSON number grammar) exactly.
func parseDecimal(d Decimal) (bigDecimal, error) {
	if !d.Valid() {
		return bigDecimal{}, errDecimal
	}
	s := string(d)
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > maxDecimalExponent || e < -maxDecimalExponent {
			return bigDecimal{}, fmt.Errorf("%w: exponent out of range", errDecimal)
		}
		exp, s = e, s[:i]
	}
	scale := 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		scale = len(s) - i - 1
		s = s[:i] + s[i+1:]
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return bigDecimal{}, errDecimal
	}
	return bigDecimal{n, scale - exp}, nil
}

// formatDecimal writes unscaled × 10^-scale in plain notation (no exponent), with exactly
// max(scale, 0) digits after the point.
func formatDecimal(unscaled *big.Int, scale int) Decimal {
	neg := unscaled.Sign() < 0
	digits := new(big.Int).Abs(unscaled).String()
	switch {
	case scale <= 0:
		if digits != "0" {
			digits += strings.Repeat("0", -scale)
		}
	default:
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if neg && strings.Trim(digits, "0.") != "" {
		digits = "-" + digits
	}
	return Decimal(digits)
}

// factor is a unit conversion factor: a power of ten, an exact decimal or a rational.
type factor struct {
	pow10 int         // used when dec and rat are nil: multiply by 10^pow10
	dec   *bigDecimal // an exact decimal factor (0.45359237)
	rat   *big.Rat    // any other rational (1/60)
	extra int         // digits kept beyond the input's when a rational result does not terminate
	text  string      // for error messages
}

func pow10Factor(n int) factor { return factor{pow10: n, text: "1e" + strconv.Itoa(n)} }

func decFactor(s string) factor {
	d, err := parseDecimal(Decimal(s))
	if err != nil {
		panic(err) // static tables only
	}
	return factor{dec: &d, text: s}
}

func ratFactor(num, den int64, extra int) factor {
	return factor{rat: big.NewRat(num, den), extra: extra, text: fmt.Sprintf("%d/%d", num, den)}
}

// identity reports whether f leaves values unchanged, so they are kept verbatim.
func (f factor) identity() bool { return f.dec == nil && f.rat == nil && f.pow10 == 0 }

// convert multiplies d by f exactly. A power of ten moves the decimal point and keeps the
// significant digits (0.92 × 100 = 92, 1.750 m × 100 = 175.0 cm); an exact decimal factor gives
// the exact product (154.8 lb × 0.45359237 = 70.216098876 kg); a rational factor gives the exact
// result when it terminates within extra more digits than d has, else d's digits plus extra,
// rounded half to even (25200 s / 60 = 420 min, 25210 s / 60 = 420.167 min).
func (f factor) convert(d Decimal) (Decimal, error) {
	if f.identity() {
		if !d.Valid() {
			return "", errDecimal
		}
		return d, nil
	}
	x, err := parseDecimal(d)
	if err != nil {
		return "", err
	}
	switch {
	case f.dec != nil:
		return formatDecimal(new(big.Int).Mul(x.unscaled, f.dec.unscaled), x.scale+f.dec.scale), nil
	case f.rat != nil:
		r := new(big.Rat).SetFrac(x.unscaled, pow10Int(max(x.scale, 0)))
		if x.scale < 0 {
			r.Mul(r, new(big.Rat).SetInt(pow10Int(-x.scale)))
		}
		r.Mul(r, f.rat)
		scale := max(x.scale, 0)
		for n := 0; n <= scale+f.extra; n++ {
			scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(pow10Int(n)))
			if scaled.IsInt() {
				return formatDecimal(scaled.Num(), n), nil
			}
		}
		n := scale + f.extra
		scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(pow10Int(n)))
		return formatDecimal(roundHalfEven(scaled), n), nil
	}
	return formatDecimal(x.unscaled, x.scale-f.pow10), nil
}

func pow10Int(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// roundHalfEven rounds r to the nearest integer, ties to even.
func roundHalfEven(r *big.Rat) *big.Int {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int)) // truncated toward zero
	twice := new(big.Int).Mul(new(big.Int).Abs(m), big.NewInt(2))
	switch c := twice.Cmp(r.Denom()); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		if r.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

// decimalInt returns d as an int64 when it is a whole number ("2", "2.0", "2e0").
func decimalInt(d Decimal) (int64, bool) {
	x, err := parseDecimal(d)
	if err != nil {
		return 0, false
	}
	r := new(big.Rat).SetFrac(x.unscaled, pow10Int(max(x.scale, 0)))
	if x.scale < 0 {
		r.Mul(r, new(big.Rat).SetInt(pow10Int(-x.scale)))
	}
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return r.Num().Int64(), true
}

// decimalSign returns -1, 0 or 1 for a valid decimal.
func decimalSign(d Decimal) int {
	x, err := parseDecimal(d)
	if err != nil {
		return 0
	}
	return x.unscaled.Sign()
}

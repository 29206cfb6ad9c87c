package fitbit

import (
	"encoding/json"
	"errors"
	"math/big"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
)

// number converts a JSON number or numeric string as Fitbit sent it into a decimal, keeping its
// digits ("48.0" stays "48.0"; exponent forms are expanded exactly). ok is false for "" and null.
func number(n json.Number) (fhir.Decimal, bool, error) {
	s := strings.Trim(strings.TrimSpace(n.String()), `"`)
	if s == "" || s == "null" {
		return "", false, nil
	}
	d := fhir.Decimal(s)
	if d.Valid() && !strings.ContainsAny(s, "eE") {
		return d, true, nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", false, errors.New("not a number")
	}
	return quotient(r), true, nil
}

// isZero reports whether a decimal is zero ("0", "0.0", "-0").
func isZero(d fhir.Decimal) bool {
	return strings.Trim(strings.TrimPrefix(string(d), "-"), "0.") == ""
}

// significant is the precision of a non-terminating quotient: 21 significant digits, far below
// any device's resolution (1000/10922 → 0.0915583226515290239883 µV per count for a scaling
// factor of 10922).
const significant = 21

// quotient writes r as a decimal: exactly when its expansion terminates (1000/250 → "4",
// 1000/256 → "3.90625"), otherwise rounded half to even to 21 significant digits.
func quotient(r *big.Rat) fhir.Decimal {
	den := new(big.Int).Set(r.Denom())
	var a, b int
	var m big.Int
	for m.Mod(den, big.NewInt(2)).Sign() == 0 {
		den.Quo(den, big.NewInt(2))
		a++
	}
	for m.Mod(den, big.NewInt(5)).Sign() == 0 {
		den.Quo(den, big.NewInt(5))
		b++
	}
	if den.Cmp(big.NewInt(1)) == 0 {
		return fhir.Decimal(r.FloatString(max(a, b)))
	}
	// Digits before the point (for |r| ≥ 1) or leading zeros after it decide the scale.
	abs := new(big.Rat).Abs(r)
	scale := significant
	if abs.Cmp(big.NewRat(1, 1)) >= 0 {
		intDigits := len(new(big.Int).Quo(abs.Num(), abs.Denom()).String())
		scale = max(significant-intDigits, 0)
	} else {
		for t := new(big.Rat).Set(abs); t.Cmp(big.NewRat(1, 10)) < 0; t.Mul(t, big.NewRat(10, 1)) {
			scale++
		}
	}
	return fhir.Decimal(roundHalfEven(r, scale))
}

// roundHalfEven formats r with scale fractional digits, rounding half to even.
func roundHalfEven(r *big.Rat, scale int) string {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	x := new(big.Rat).Mul(r, new(big.Rat).SetInt(p))
	q, rem := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
	// Compare 2·|rem| with the denominator.
	twice := new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2))
	if c := twice.Cmp(x.Denom()); c > 0 || (c == 0 && q.Bit(0) == 1) {
		if x.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return new(big.Rat).SetFrac(q, p).FloatString(scale)
}

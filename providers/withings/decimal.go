package withings

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
)

// scaled builds value × 10^exp as an exact decimal string, on the digits (Withings measures are
// value × 10^unit, https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas):
// ("3680", -2) → "36.80", ("75000", -3) → "75.000", ("5", -3) → "0.005", ("12", 2) → "1200",
// ("-5", -1) → "-0.5". The digits the vendor sent are kept (75.000 stays 75.000: FHIR decimals
// carry their precision); nothing passes through float64. value must be an integer literal.
func scaled(value string, exp int) (fhir.Decimal, error) {
	v := strings.TrimSpace(value)
	neg := strings.HasPrefix(v, "-")
	digits := strings.TrimPrefix(v, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", fmt.Errorf("measure value %q is not an integer", value)
	}
	if exp < -40 || exp > 40 {
		return "", fmt.Errorf("measure unit %d out of range", exp)
	}
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		digits = "0"
		neg = false // no "-0"
	}
	var out string
	switch {
	case exp >= 0:
		out = digits
		if digits != "0" {
			out += strings.Repeat("0", exp)
		}
	default:
		n := -exp
		if len(digits) <= n {
			digits = strings.Repeat("0", n-len(digits)+1) + digits
		}
		out = digits[:len(digits)-n] + "." + digits[len(digits)-n:]
	}
	if neg {
		out = "-" + out
	}
	return fhir.Decimal(out), nil
}

// number converts a JSON number as Withings sent it into a decimal, keeping its digits ("8500.45"
// stays "8500.45"; exponent forms are expanded exactly). "" or null → ok=false.
func number(n json.Number) (fhir.Decimal, bool) {
	s := strings.TrimSpace(n.String())
	if s == "" {
		return "", false
	}
	d := fhir.Decimal(s)
	if d.Valid() && !strings.ContainsAny(s, "eE") {
		return d, true
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", false
	}
	return ratio(r, 9), true
}

// ratio writes r as a decimal: exactly when its expansion terminates (denominator 2^a·5^b, e.g.
// 1000/256 → "3.90625", 25200/60 → "420"), otherwise rounded half away from zero to maxFrac
// fractional digits (1000/300 with maxFrac 9 → "3.333333333").
func ratio(r *big.Rat, maxFrac int) fhir.Decimal {
	den := new(big.Int).Set(r.Denom())
	two, five := big.NewInt(2), big.NewInt(5)
	var a, b int
	var m big.Int
	for m.Mod(den, two).Sign() == 0 {
		den.Quo(den, two)
		a++
	}
	for m.Mod(den, five).Sign() == 0 {
		den.Quo(den, five)
		b++
	}
	if den.Cmp(big.NewInt(1)) == 0 {
		return fhir.Decimal(r.FloatString(max(a, b)))
	}
	return fhir.Decimal(r.FloatString(maxFrac))
}

// minutes converts a whole number of seconds into minutes: exact when the quotient terminates
// (every multiple of 3 s), otherwise rounded to 4 fractional digits (6 ms, finer than the 1 s the
// vendor measures, so the seconds can always be recovered).
func minutes(seconds json.Number) (fhir.Decimal, bool) {
	s := strings.TrimSpace(seconds.String())
	if s == "" {
		return "", false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", false
	}
	return ratio(r.Quo(r, big.NewRat(60, 1)), 4), true
}

// intervalMS is 1000 / hz milliseconds per sample: exact when it terminates (500 Hz → "2",
// 250 Hz → "4", 256 Hz → "3.90625"), otherwise rounded to 9 fractional digits (300 Hz →
// "3.333333333": ten significant digits, a drift under 5e-6 ms over a 30 s trace).
func intervalMS(hz int64) (fhir.Decimal, error) {
	if hz <= 0 {
		return "", fmt.Errorf("sampling frequency %d", hz)
	}
	return ratio(big.NewRat(1000, hz), 9), nil
}

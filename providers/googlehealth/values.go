package googlehealth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// flexNumber is a JSON number or a numeric string, kept as written: proto3 JSON sends int64
// values as strings ("count": "1234") and doubles as numbers
// (https://protobuf.dev/programming-guides/json/). null or absent leaves it empty.
type flexNumber string

func (f *flexNumber) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
	}
	if len(b) == 0 {
		return nil
	}
	if _, ok := new(big.Rat).SetString(string(b)); !ok {
		return fmt.Errorf("not a number: %.20q", b)
	}
	*f = flexNumber(b)
	return nil
}

// decimal is the value as an exact FHIR decimal: the digits as sent, exponent forms expanded.
func (f flexNumber) decimal() (fhir.Decimal, bool) {
	s := string(f)
	if s == "" {
		return "", false
	}
	if d := fhir.Decimal(s); d.Valid() && !strings.ContainsAny(s, "eE") {
		return d, true
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", false
	}
	return ratio(r, 12), true
}

// shifted is the value × 10^exp, on the digits (grams → kilograms is exp −3: "70250" →
// "70.250", "70215.5" → "70.2155"); nothing passes through float64.
func (f flexNumber) shifted(exp int) (fhir.Decimal, bool) {
	d, ok := f.decimal()
	if !ok {
		return "", false
	}
	s := string(d)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	point := len(intPart) + exp // position of the decimal point in digits
	switch {
	case point <= 0:
		digits = strings.Repeat("0", 1-point) + digits
		point = 1
	case point > len(digits):
		digits += strings.Repeat("0", point-len(digits))
	}
	out := strings.TrimLeft(digits[:point], "0")
	if out == "" {
		out = "0"
	}
	if rest := digits[point:]; rest != "" {
		out += "." + rest
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return fhir.Decimal(out), true
}

// rat is the value as an exact rational ("250", "250.0", "1e3"); false when absent.
func (f flexNumber) rat() (*big.Rat, bool) {
	if f == "" {
		return nil, false
	}
	return new(big.Rat).SetString(string(f))
}

// ratio writes r as a decimal: exactly when its expansion terminates (1000/256 → "3.90625"),
// otherwise rounded to maxFrac fractional digits (1000/10922 with 22 → "0.0915583226515290239883").
func ratio(r *big.Rat, maxFrac int) fhir.Decimal {
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
	return fhir.Decimal(r.FloatString(maxFrac))
}

// civilDate is google.type.Date (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints#Date).
type civilDate struct {
	Year  int `json:"year"`
	Month int `json:"month"`
	Day   int `json:"day"`
}

// valid reports a full calendar date.
func (d civilDate) valid() bool {
	if d.Year < 1 || d.Year > 9999 || d.Month < 1 || d.Month > 12 || d.Day < 1 {
		return false
	}
	t := time.Date(d.Year, time.Month(d.Month), d.Day, 12, 0, 0, 0, time.UTC)
	return t.Day() == d.Day
}

func (d civilDate) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

func dateOf(t time.Time) civilDate {
	y, m, d := t.Date()
	return civilDate{Year: y, Month: int(m), Day: d}
}

// civilDateTime is CivilDateTime: a date and an optional time of day, without zone.
type civilDateTime struct {
	Date civilDate `json:"date"`
	Time *struct {
		Hours   int `json:"hours"`
		Minutes int `json:"minutes"`
		Seconds int `json:"seconds"`
		Nanos   int `json:"nanos"`
	} `json:"time,omitempty"`
}

// parseOffset parses a google-duration UTC offset ("3600s", "-25200s", "19800.000s") into a
// fixed zone; ok=false when absent or malformed. Offsets are whole seconds within ±18 h
// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints#ObservationSampleTime).
func parseOffset(s string) (*time.Location, bool) {
	if s == "" || !strings.HasSuffix(s, "s") {
		return nil, false
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	if err != nil || f != float64(int64(f)) || f < -18*3600 || f > 18*3600 {
		return nil, false
	}
	return time.FixedZone("", int(f)), true
}

// instant parses an RFC 3339 physical time and expresses it at the given offset (UTC when the
// offset is missing: the instant stays right, only the displayed offset is unknown).
func instant(physical, offset string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, physical)
	if err != nil {
		return time.Time{}, fmt.Errorf("physical time is not RFC 3339")
	}
	if loc, ok := parseOffset(offset); ok {
		return t.In(loc), nil
	}
	return t.UTC(), nil
}

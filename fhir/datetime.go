package fhir

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Unbounded ends of a time range, in Unix microseconds.
const (
	MinTime int64 = math.MinInt64 / 2
	MaxTime int64 = math.MaxInt64 / 2
)

// TimeRange returns the half-open range [lo, hi) in Unix microseconds (UTC) that a FHIR date,
// dateTime or instant covers: a partial date covers its whole year, month or day; a dateTime covers
// the unit of its last given component (https://hl7.org/fhir/R5/search.html#date). Values without a
// zone (dates, and dateTimes in search parameters) are interpreted in UTC, as documented in our
// CapabilityStatement.
func TimeRange(s string) (lo, hi int64, err error) {
	switch {
	case len(s) == 4: // YYYY
		t, err := time.Parse("2006", s)
		if err != nil {
			return 0, 0, err
		}
		return t.UnixMicro(), t.AddDate(1, 0, 0).UnixMicro(), nil
	case len(s) == 7: // YYYY-MM
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return 0, 0, err
		}
		return t.UnixMicro(), t.AddDate(0, 1, 0).UnixMicro(), nil
	case len(s) == 10: // YYYY-MM-DD
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return 0, 0, err
		}
		return t.UnixMicro(), t.AddDate(0, 0, 1).UnixMicro(), nil
	}
	i := strings.IndexByte(s, 'T')
	if i != 10 {
		return 0, 0, fmt.Errorf("invalid date %q", s)
	}
	body, zone := splitZone(s[11:])
	loc := time.UTC
	if zone != "" && zone != "Z" {
		zt, err := time.Parse("-07:00", zone)
		if err != nil {
			return 0, 0, fmt.Errorf("invalid time zone in %q", s)
		}
		// time.Parse returns time.Local when Local had this offset on 0000-01-01 (e.g. TZ=CET for
		// +01:00); parsing in that location would then apply its daylight-saving rules. Use a fixed
		// zone with exactly the given offset.
		_, off := zt.Zone()
		loc = time.FixedZone("", off)
	}
	var layout string
	var unit time.Duration
	frac := ""
	switch {
	case len(body) == 5: // hh:mm
		layout, unit = "15:04", time.Minute
	case len(body) == 8:
		layout, unit = "15:04:05", time.Second
	case len(body) > 9 && body[8] == '.':
		frac = body[9:]
		layout = "15:04:05." + strings.Repeat("0", len(frac))
		unit = time.Duration(math.Pow10(9 - min(len(frac), 9)))
	default:
		return 0, 0, fmt.Errorf("invalid time in %q", s)
	}
	t, err := time.ParseInLocation("2006-01-02T"+layout, s[:11]+body, loc)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid dateTime %q", s)
	}
	lo = t.UnixMicro()
	hi = t.Add(unit).UnixMicro()
	if hi == lo { // sub-microsecond precision still covers at least one microsecond
		hi = lo + 1
	}
	return lo, hi, nil
}

func splitZone(s string) (body, zone string) {
	if strings.HasSuffix(s, "Z") {
		return s[:len(s)-1], "Z"
	}
	if i := strings.LastIndexAny(s, "+-"); i > 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// PeriodRange returns the range of a Period; a missing start or end is unbounded.
func PeriodRange(p *Period) (lo, hi int64, err error) {
	lo, hi = MinTime, MaxTime
	if p.Start != "" {
		if lo, _, err = TimeRange(p.Start); err != nil {
			return 0, 0, err
		}
	}
	if p.End != "" {
		if _, hi, err = TimeRange(p.End); err != nil {
			return 0, 0, err
		}
	}
	return lo, hi, nil
}

// Instant formats t as a FHIR instant in UTC with microsecond precision.
func Instant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

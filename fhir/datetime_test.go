package fhir

import (
	"testing"
	"time"
)

// us returns the Unix microseconds of a UTC wall time.
func us(year int, month time.Month, day, hour, min, sec, nsec int) int64 {
	return time.Date(year, month, day, hour, min, sec, nsec, time.UTC).UnixMicro()
}

func TestTimeRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int64
	}{
		// Partial dates cover their whole year, month or day (UTC).
		{"2024", us(2024, 1, 1, 0, 0, 0, 0), us(2025, 1, 1, 0, 0, 0, 0)},
		{"2024-02", us(2024, 2, 1, 0, 0, 0, 0), us(2024, 3, 1, 0, 0, 0, 0)},
		{"2023-02", us(2023, 2, 1, 0, 0, 0, 0), us(2023, 3, 1, 0, 0, 0, 0)},
		{"2023-12", us(2023, 12, 1, 0, 0, 0, 0), us(2024, 1, 1, 0, 0, 0, 0)},
		{"2024-02-29", us(2024, 2, 29, 0, 0, 0, 0), us(2024, 3, 1, 0, 0, 0, 0)},
		{"2024-12-31", us(2024, 12, 31, 0, 0, 0, 0), us(2025, 1, 1, 0, 0, 0, 0)},

		// Minute precision (search parameters), second, fractions.
		{"2024-03-05T07:32Z", us(2024, 3, 5, 7, 32, 0, 0), us(2024, 3, 5, 7, 33, 0, 0)},
		{"2024-03-05T07:32:10Z", us(2024, 3, 5, 7, 32, 10, 0), us(2024, 3, 5, 7, 32, 11, 0)},
		{"2024-03-05T07:32:10.5Z", us(2024, 3, 5, 7, 32, 10, 500e6), us(2024, 3, 5, 7, 32, 10, 600e6)},
		{"2024-03-05T07:32:10.250Z", us(2024, 3, 5, 7, 32, 10, 250e6), us(2024, 3, 5, 7, 32, 10, 251e6)},
		{"2024-03-05T07:32:10.123456Z", us(2024, 3, 5, 7, 32, 10, 123456e3), us(2024, 3, 5, 7, 32, 10, 123457e3)},
		// Below a microsecond the range still covers one microsecond.
		{"2024-03-05T07:32:10.1234567Z", us(2024, 3, 5, 7, 32, 10, 123456e3), us(2024, 3, 5, 7, 32, 10, 123457e3)},
		{"2024-03-05T07:32:10.123456789Z", us(2024, 3, 5, 7, 32, 10, 123456e3), us(2024, 3, 5, 7, 32, 10, 123457e3)},
		{"2024-03-05T23:59:59Z", us(2024, 3, 5, 23, 59, 59, 0), us(2024, 3, 6, 0, 0, 0, 0)},

		// Offsets.
		{"2024-03-05T07:32:10+02:00", us(2024, 3, 5, 5, 32, 10, 0), us(2024, 3, 5, 5, 32, 11, 0)},
		{"2024-03-05T07:32:10-05:00", us(2024, 3, 5, 12, 32, 10, 0), us(2024, 3, 5, 12, 32, 11, 0)},
		{"2024-03-05T07:32:10+00:00", us(2024, 3, 5, 7, 32, 10, 0), us(2024, 3, 5, 7, 32, 11, 0)},
		{"2024-03-05T07:32:10-00:00", us(2024, 3, 5, 7, 32, 10, 0), us(2024, 3, 5, 7, 32, 11, 0)},
		{"2024-03-05T07:32:10+05:30", us(2024, 3, 5, 2, 2, 10, 0), us(2024, 3, 5, 2, 2, 11, 0)},
		{"2024-03-05T07:32:10+14:00", us(2024, 3, 4, 17, 32, 10, 0), us(2024, 3, 4, 17, 32, 11, 0)},
		{"2024-03-05T07:32:10.250-05:00", us(2024, 3, 5, 12, 32, 10, 250e6), us(2024, 3, 5, 12, 32, 10, 251e6)},
		{"2024-03-05T07:32+02:00", us(2024, 3, 5, 5, 32, 0, 0), us(2024, 3, 5, 5, 33, 0, 0)},
		// An offset can move the instant into the previous year.
		{"2024-01-01T00:30:00+01:00", us(2023, 12, 31, 23, 30, 0, 0), us(2023, 12, 31, 23, 30, 1, 0)},
		// Summer dates: an offset is fixed, never a zone with daylight-saving rules.
		{"2024-07-01T10:00:00+01:00", us(2024, 7, 1, 9, 0, 0, 0), us(2024, 7, 1, 9, 0, 1, 0)},

		// No zone: UTC, as documented in the CapabilityStatement.
		{"2024-03-05T07:32:10", us(2024, 3, 5, 7, 32, 10, 0), us(2024, 3, 5, 7, 32, 11, 0)},
		{"2024-03-05T07:32", us(2024, 3, 5, 7, 32, 0, 0), us(2024, 3, 5, 7, 33, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			lo, hi, err := TimeRange(tc.in)
			if err != nil {
				t.Fatalf("TimeRange(%q): %v", tc.in, err)
			}
			if lo != tc.lo || hi != tc.hi {
				t.Errorf("TimeRange(%q) = [%s, %s), want [%s, %s)", tc.in, fmtMicro(lo), fmtMicro(hi), fmtMicro(tc.lo), fmtMicro(tc.hi))
			}
		})
	}
}

func fmtMicro(v int64) string {
	return time.UnixMicro(v).UTC().Format(time.RFC3339Nano)
}

func TestTimeRangeInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"24",
		"20244",
		"abcd",
		"2024-1",
		"2024-13",
		"2024-00",
		"2024-1-05",
		"2024-02-30",
		"2023-02-29",
		"2024-03-5",
		"2024/03/05",
		"2024-03-05T",
		"2024-03-05T07",
		"2024-03-05T7:32:10Z",
		"2024-03-05T07:32:1Z",
		"2024-03-05T25:00:00Z",
		"2024-03-05T07:60:00Z",
		"2024-03-05T07:32:10.Z",
		"2024-03-05T07:32:10ZZ",
		"2024-03-05T07:32:10z",
		"2024-03-05 07:32:10Z",
		"2024-03-05T07:32:10+2:00",
		"2024-03-05T07:32:10+0200",
		"2024-03-05T07:32:10+25:00",
		"2024-03-05T07:32:10 +02:00",
		"2024-03-05T07:32:10.12a",
		"2024-03-05T07:32:10.+02:00",
	} {
		t.Run(in, func(t *testing.T) {
			if lo, hi, err := TimeRange(in); err == nil {
				t.Errorf("TimeRange(%q) = [%s, %s), want an error", in, fmtMicro(lo), fmtMicro(hi))
			}
		})
	}
}

// TestTimeRangeLocalZone: the result does not depend on the machine's zone, even when that zone's
// first offset equals the one in the value (time.Parse then hands back time.Local, whose
// daylight-saving rules used to shift summer values by an hour).
func TestTimeRangeLocalZone(t *testing.T) {
	for _, name := range []string{"CET", "Europe/Berlin", "America/New_York"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Logf("skipping %s: %v", name, err)
			continue
		}
		t.Run(name, func(t *testing.T) {
			saved := time.Local
			time.Local = loc
			t.Cleanup(func() { time.Local = saved })
			for in, want := range map[string]int64{
				"2024-07-01T10:00:00+01:00": us(2024, 7, 1, 9, 0, 0, 0),
				"2024-01-15T10:00:00+01:00": us(2024, 1, 15, 9, 0, 0, 0),
				"2024-07-01T10:00:00-05:00": us(2024, 7, 1, 15, 0, 0, 0),
				"2024-07-01T10:00:00":       us(2024, 7, 1, 10, 0, 0, 0),
				"2024-07-01":                us(2024, 7, 1, 0, 0, 0, 0),
			} {
				lo, _, err := TimeRange(in)
				if err != nil {
					t.Fatalf("TimeRange(%q): %v", in, err)
				}
				if lo != want {
					t.Errorf("TimeRange(%q) with Local=%s: lo = %s, want %s", in, name, fmtMicro(lo), fmtMicro(want))
				}
			}
		})
	}
}

func TestPeriodRange(t *testing.T) {
	tests := []struct {
		name   string
		p      Period
		lo, hi int64
	}{
		{"start and end", Period{Start: "2024-03-04T00:00:00+01:00", End: "2024-03-05T00:00:00+01:00"},
			us(2024, 3, 3, 23, 0, 0, 0), us(2024, 3, 4, 23, 0, 1, 0)},
		{"end day covers the whole day", Period{Start: "2024-03-01", End: "2024-03-05"},
			us(2024, 3, 1, 0, 0, 0, 0), us(2024, 3, 6, 0, 0, 0, 0)},
		{"year period", Period{Start: "2023", End: "2024"},
			us(2023, 1, 1, 0, 0, 0, 0), us(2025, 1, 1, 0, 0, 0, 0)},
		{"open end", Period{Start: "2024-03-05T07:32:10Z"}, us(2024, 3, 5, 7, 32, 10, 0), MaxTime},
		{"open start", Period{End: "2024-03-05T07:32:10.250Z"}, MinTime, us(2024, 3, 5, 7, 32, 10, 251e6)},
		{"unbounded", Period{}, MinTime, MaxTime},
		{"same instant", Period{Start: "2024-03-05T07:32:10Z", End: "2024-03-05T07:32:10Z"},
			us(2024, 3, 5, 7, 32, 10, 0), us(2024, 3, 5, 7, 32, 11, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi, err := PeriodRange(&tc.p)
			if err != nil {
				t.Fatalf("PeriodRange: %v", err)
			}
			if lo != tc.lo || hi != tc.hi {
				t.Errorf("PeriodRange(%+v) = [%d, %d), want [%d, %d)", tc.p, lo, hi, tc.lo, tc.hi)
			}
		})
	}
	for name, p := range map[string]Period{
		"bad start": {Start: "2024-3-4", End: "2024-03-05"},
		"bad end":   {Start: "2024-03-04", End: "2024-03-05T07:32:10+2:00"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := PeriodRange(&p); err == nil {
				t.Errorf("PeriodRange(%+v) succeeded, want an error", p)
			}
		})
	}
	if MinTime >= MaxTime || MinTime > us(1, 1, 1, 0, 0, 0, 0) || MaxTime < us(9999, 12, 31, 23, 59, 59, 0) {
		t.Errorf("MinTime/MaxTime [%d, %d) do not bracket the FHIR date range", MinTime, MaxTime)
	}
}

func TestInstant(t *testing.T) {
	in := time.Date(2024, 3, 5, 7, 32, 10, 250_000_999, time.FixedZone("", 2*3600))
	if got, want := Instant(in), "2024-03-05T05:32:10.250000Z"; got != want {
		t.Errorf("Instant = %q, want %q", got, want)
	}
	if !ValidInstant(Instant(in)) {
		t.Errorf("Instant(%v) is not a valid FHIR instant", in)
	}
	lo, _, err := TimeRange(Instant(in))
	if err != nil || lo != in.UnixMicro() {
		t.Errorf("TimeRange(Instant(t)) = %d, %v; want %d", lo, err, in.UnixMicro())
	}
}

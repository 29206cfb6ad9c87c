package googlehealthsim

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// cond is one comparison of an AIP-160 filter (https://google.aip.dev/160,
// https://developers.google.com/health/filters): field op literal.
type cond struct {
	field, op, lit string
	at             time.Time // the literal as an instant (time fields)
}

// condRE is one comparison. The field is a snake_case path: a kebab-case data type ("body-fat.…")
// does not match, which Google refuses as INVALID_DATA_POINT_FILTER.
var condRE = regexp.MustCompile(`^\s*([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)\s*(>=|<=|>|<|=)\s*("[^"]*"|[^\s"]+)\s*$`)

// filterFields are the fields a data type's points can be filtered on, and whether each is a
// time (RFC 3339) or a date (YYYY-MM-DD).
func filterFields(d dataType) map[string]bool {
	switch d.rec {
	case recSample:
		return map[string]bool{"sample_time.physical_time": true}
	case recDaily:
		return map[string]bool{"date": false}
	case recSession:
		return map[string]bool{"interval.start_time": true, "interval.end_time": true}
	case recECG:
		return map[string]bool{"interval.start_time": true}
	}
	return nil
}

// parseFilter parses a conjunction of comparisons on the data type's fields; the error text is
// the message of Google's 400 answer.
func parseFilter(d dataType, f string) ([]cond, error) {
	if strings.TrimSpace(f) == "" {
		return nil, nil
	}
	fields := filterFields(d)
	var out []cond
	for _, part := range strings.Split(f, " AND ") {
		m := condRE.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("invalid filter %q: expected <data_type>.<field> <op> <value>, data type names in filters must be snake_case", strings.TrimSpace(part))
		}
		field, ok := strings.CutPrefix(m[1], d.filterName()+".")
		isTime, known := fields[field]
		if !ok || !known {
			return nil, fmt.Errorf("invalid filter: field %q cannot be filtered on for data type %s", m[1], d.name)
		}
		if d.rec == recECG && m[2] != ">=" && m[2] != ">" {
			return nil, fmt.Errorf("invalid filter: electrocardiogram supports only a lower bound on interval.start_time")
		}
		c := cond{field: field, op: m[2], lit: strings.Trim(m[3], `"`)}
		if isTime {
			t, err := time.Parse(time.RFC3339Nano, c.lit)
			if err != nil {
				return nil, fmt.Errorf("invalid filter: %q is not an RFC 3339 timestamp", c.lit)
			}
			c.at = t
		} else if _, err := time.Parse(time.DateOnly, c.lit); err != nil {
			return nil, fmt.Errorf("invalid filter: %q is not a YYYY-MM-DD date", c.lit)
		}
		out = append(out, c)
	}
	return out, nil
}

// matches reports whether a point satisfies every comparison.
func matches(pt point, cs []cond) bool {
	for _, c := range cs {
		var cmp int
		switch c.field {
		case "date":
			cmp = strings.Compare(pt.date, c.lit)
		case "interval.end_time":
			cmp = pt.end.Compare(c.at)
		default: // sample_time.physical_time, interval.start_time
			cmp = pt.start.Compare(c.at)
		}
		ok := false
		switch c.op {
		case ">=":
			ok = cmp >= 0
		case ">":
			ok = cmp > 0
		case "<=":
			ok = cmp <= 0
		case "<":
			ok = cmp < 0
		case "=":
			ok = cmp == 0
		}
		if !ok {
			return false
		}
	}
	return true
}

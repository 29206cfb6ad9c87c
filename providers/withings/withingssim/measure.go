package withingssim

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// pageSize is how many entries one answer holds before "more" and "offset" continue it.
const pageSize = 100

// page cuts [offset, offset+pageSize) out of n entries: the bounds, whether more follow and the
// offset of the next page.
func page(n int, offset int64) (lo, hi int, more bool, next int64) {
	lo = int(min(max(offset, 0), int64(n)))
	hi = min(lo+pageSize, n)
	if hi < n {
		return lo, hi, true, int64(hi)
	}
	return lo, hi, false, 0
}

// intParam reads an integer parameter; ok is false when it is absent, err set when malformed.
func intParam(f url.Values, name string) (v int64, ok bool, aerr *apiError) {
	s := f.Get(name)
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, invalidParams(name)
	}
	return v, true, nil
}

// timeFilter is the window of a v1/v2 listing: lastupdate (modified at or after, which wins) or
// startdate/enddate, both inclusive.
type timeFilter struct {
	last, start, end int64
	hasLast          bool
}

func readTimeFilter(f url.Values) (timeFilter, *apiError) {
	var tf timeFilter
	var aerr *apiError
	if tf.last, tf.hasLast, aerr = intParam(f, "lastupdate"); aerr != nil {
		return tf, aerr
	}
	var hasEnd bool
	if tf.start, _, aerr = intParam(f, "startdate"); aerr != nil {
		return tf, aerr
	}
	if tf.end, hasEnd, aerr = intParam(f, "enddate"); aerr != nil {
		return tf, aerr
	}
	if !hasEnd {
		tf.end = 1<<62 - 1
	}
	return tf, nil
}

func (tf timeFilter) keep(date, modified int64) bool {
	if tf.hasLast {
		return modified >= tf.last
	}
	return date >= tf.start && date <= tf.end
}

type measureJSON struct {
	Value int64 `json:"value"`
	Type  int   `json:"type"`
	Unit  int   `json:"unit"`
	Algo  int   `json:"algo"`
	FM    int   `json:"fm"`
}

type groupJSON struct {
	GrpID        int64         `json:"grpid"`
	Attrib       int           `json:"attrib"`
	Date         int64         `json:"date"`
	Created      int64         `json:"created"`
	Modified     int64         `json:"modified"`
	Category     int           `json:"category"`
	DeviceID     *string       `json:"deviceid"`
	HashDeviceID *string       `json:"hash_deviceid"`
	Model        *string       `json:"model,omitempty"`
	ModelID      *int          `json:"model_id,omitempty"`
	Measures     []measureJSON `json:"measures"`
	Comment      *string       `json:"comment"`
}

// getmeas is /measure action=getmeas: the measure groups holding any of meastype/meastypes
// (each reduced to those types), category 1 (real measures; the simulator keeps no
// objectives), oldest first, pageSize groups per answer with more (0|1) and offset.
func (s *Simulator) getmeas(r *http.Request, a *account) (any, *apiError) {
	f := r.Form
	types := map[int]bool{}
	for _, name := range []string{"meastype", "meastypes"} {
		for _, t := range strings.Split(f.Get(name), ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			n, err := strconv.Atoi(t)
			if err != nil {
				return nil, invalidParams(name)
			}
			types[n] = true
		}
	}
	if c := f.Get("category"); c != "" && c != "1" {
		if c != "2" {
			return nil, invalidParams("category")
		}
		return s.measBody(a, nil, 0), nil // no objectives
	}
	tf, aerr := readTimeFilter(f)
	if aerr != nil {
		return nil, aerr
	}
	offset, _, aerr := intParam(f, "offset")
	if aerr != nil {
		return nil, aerr
	}
	var sel []groupJSON
	for _, g := range a.groups {
		if !tf.keep(g.Date, g.Modified) {
			continue
		}
		gj := a.groupJSON(g, types)
		if len(gj.Measures) > 0 {
			sel = append(sel, gj)
		}
	}
	return s.measBody(a, sel, offset), nil
}

func (s *Simulator) measBody(a *account, sel []groupJSON, offset int64) any {
	lo, hi, more, next := page(len(sel), offset)
	grps := sel[lo:hi]
	if grps == nil {
		grps = []groupJSON{}
	}
	return struct {
		UpdateTime  int64       `json:"updatetime"`
		Timezone    string      `json:"timezone"`
		MeasureGrps []groupJSON `json:"measuregrps"`
		More        int         `json:"more"`
		Offset      int64       `json:"offset"`
	}{s.now().Unix(), a.zone, grps, map[bool]int{true: 1}[more], next}
}

func (a *account) groupJSON(g group, types map[int]bool) groupJSON {
	gj := groupJSON{GrpID: g.ID, Attrib: g.Attrib, Date: g.Date, Created: g.Modified, Modified: g.Modified, Category: 1}
	if g.Device != "" {
		id, m := a.devices[g.Device], deviceModels[g.Device]
		gj.DeviceID, gj.HashDeviceID, gj.Model, gj.ModelID = &id, &id, &m.Model, &m.ModelID
	}
	gj.Measures = []measureJSON{}
	for _, m := range g.Measures {
		if len(types) == 0 || types[m.Type] {
			gj.Measures = append(gj.Measures, measureJSON{Value: m.Value, Type: m.Type, Unit: m.Unit})
		}
	}
	return gj
}

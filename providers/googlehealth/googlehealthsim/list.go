package googlehealthsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// defaultPageSize is dataPoints.list's page size when the request names none.
const defaultPageSize = 1000

// pageToken is the opaque page token: the offset of the next item, bound to the request it
// continues (a token of another filter or data type is refused).
type pageToken struct {
	Offset int    `json:"o"`
	Query  string `json:"q"`
}

func (s *Simulator) encodeToken(offset int, query ...string) string {
	b, _ := json.Marshal(pageToken{Offset: offset, Query: fmt.Sprintf("%x", s.digest(query...))})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken returns the offset of a token ("" is 0); ok=false for a token of another request.
func (s *Simulator) decodeToken(tok string, query ...string) (int, bool) {
	if tok == "" {
		return 0, true
	}
	var pt pageToken
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || json.Unmarshal(b, &pt) != nil || pt.Offset < 0 || pt.Query != fmt.Sprintf("%x", s.digest(query...)) {
		return 0, false
	}
	return pt.Offset, true
}

// pageSizeOf reads pageSize: absent is the default, above the data type's maximum is coerced to
// it, negative or not a number is refused.
func pageSizeOf(raw string, def, maxSize int) (int, bool) {
	if raw == "" {
		return min(def, maxSize), true
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return 0, false
	}
	if n == 0 {
		n = def
	}
	return min(n, maxSize), true
}

// list is dataPoints.list (GET /v4/users/me/dataTypes/{type}/dataPoints,
// https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/list):
// the filter's points, oldest first, pageSize at a time with nextPageToken.
func (s *Simulator) list(w http.ResponseWriter, r *http.Request, c caller, d dataType) {
	if d.rec == recRollup {
		// Activity totals are read with dailyRollUp in the simulator.
		writeJSON(w, http.StatusOK, listAnswer{})
		return
	}
	q := r.URL.Query()
	conds, err := parseFilter(d, q.Get("filter"))
	if err != nil {
		invalidArgument(w, err.Error(), "INVALID_DATA_POINT_FILTER")
		return
	}
	size, ok := pageSizeOf(q.Get("pageSize"), defaultPageSize, d.maxPage)
	if !ok {
		invalidArgument(w, "Invalid value for pageSize: "+q.Get("pageSize"), "")
		return
	}
	offset, ok := s.decodeToken(q.Get("pageToken"), "list", c.p.Key, d.name, q.Get("filter"))
	if !ok {
		invalidArgument(w, "Invalid page token.", "")
		return
	}
	var hits []point
	if d.served {
		for _, pt := range s.points(c.p, d, s.liveOf(c.p)) {
			if matches(pt, conds) {
				hits = append(hits, pt)
			}
		}
	}
	var a listAnswer
	for i := offset; i < len(hits) && i < offset+size; i++ {
		a.DataPoints = append(a.DataPoints, hits[i].body)
	}
	if offset+size < len(hits) {
		a.NextPageToken = s.encodeToken(offset+size, "list", c.p.Key, d.name, q.Get("filter"))
	}
	writeJSON(w, http.StatusOK, a)
}

package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// Paging cursors are opaque to clients: the keyset position, MACed together with everything that
// defines the search (type, applied parameters, page size, FHIR version and the caller's access
// context), so a cursor cannot be replayed against another search or another patient.

func (s *Server) cursorMAC(binding string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.cfg.CursorKey)
	m.Write([]byte(binding))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:16]
}

// cursorBinding binds the FHIR version of the answer, not the base the client addressed: the
// links of an R4 answer point at the R4 base whichever base served it (Server.base), so a cursor
// minted for an R4 search chosen with Accept on /fhir pages that search on /fhir/r4, and no R4
// cursor pages an R5 search.
func cursorBinding(q *search.Query, v Version, principal string) string {
	var b strings.Builder
	b.WriteString(q.Type)
	b.WriteByte('\n')
	for _, nv := range q.Applied {
		b.WriteString(nv.Name)
		b.WriteByte('=')
		b.WriteString(nv.Value)
		b.WriteByte('&')
	}
	b.WriteByte('\n')
	b.WriteString(strconv.Itoa(q.Count))
	b.WriteByte('\n')
	b.WriteString(v.mimeParam())
	b.WriteByte('\n')
	b.WriteString(principal)
	return b.String()
}

func (s *Server) encodeCursor(c *search.Cursor, binding string) string {
	payload, _ := json.Marshal(c)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(s.cursorMAC(binding, payload))
}

func (s *Server) decodeCursor(tok, binding string) (*search.Cursor, error) {
	bad := fhir.Errorf(http.StatusBadRequest, fhir.CodeInvalid, "_page: invalid paging cursor for this search")
	p, m, ok := strings.Cut(tok, ".")
	if !ok {
		return nil, bad
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.cursorMAC(binding, payload)) {
		return nil, bad
	}
	var c search.Cursor
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, bad
	}
	return &c, nil
}

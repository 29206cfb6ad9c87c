package api

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
)

// Version is a FHIR version ohx serves.
type Version int

// Served FHIR versions.
const (
	R5 Version = iota
	R4
)

func (v Version) mimeParam() string {
	if v == R4 {
		return "4.0"
	}
	return "5.0"
}

const ctxVersion = "ohx.fhirVersion"

// version returns the FHIR version negotiated for the request.
func version(c *gin.Context) Version {
	if v, ok := c.Get(ctxVersion); ok {
		return v.(Version)
	}
	return R5
}

// negotiate picks the representation: JSON only (XML and Turtle → 406), FHIR version from the
// /r4 base or the fhirVersion MIME parameter of Accept (https://hl7.org/fhir/R5/versioning.html).
func (s *Server) negotiate(base Version) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := negotiateVersion(c.Request, base)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.Set(ctxVersion, v)
		c.Next()
	}
}

func negotiateVersion(r *http.Request, base Version) (Version, error) {
	v := base
	if f := r.URL.Query().Get("_format"); f != "" {
		switch f {
		case "json", "application/json", "application/fhir+json":
		default:
			mt, params, err := mime.ParseMediaType(f)
			if err != nil || (mt != "application/fhir+json" && mt != "application/json") {
				return v, fhir.Errorf(http.StatusNotAcceptable, fhir.CodeNotSupported, "_format %q is not supported: this server speaks JSON only", truncate(f))
			}
			return versionParam(params["fhirversion"], v)
		}
		return v, nil
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return v, nil
	}
	jsonOK := false
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/fhir+json", "application/json", "*/*", "application/*", "application/json+fhir":
			nv, err := versionParam(params["fhirversion"], v)
			if err != nil {
				return v, err
			}
			return nv, nil
		case "text/html", "text/plain":
			jsonOK = true // browsers and curl: answer JSON
		}
	}
	if jsonOK {
		return v, nil
	}
	return v, fhir.Errorf(http.StatusNotAcceptable, fhir.CodeNotSupported, "none of the accepted media types is supported: this server speaks application/fhir+json only")
}

func versionParam(p string, def Version) (Version, error) {
	switch p {
	case "":
		return def, nil
	case "4.0", "4.0.1":
		return R4, nil
	case "5.0", "5.0.0":
		if def == R4 {
			return def, fhir.Errorf(http.StatusNotAcceptable, fhir.CodeNotSupported, "fhirVersion 5.0 is not served under the R4 base")
		}
		return R5, nil
	}
	return def, fhir.Errorf(http.StatusNotAcceptable, fhir.CodeNotSupported, "fhirVersion %q is not supported (4.0 and 5.0 are)", truncate(p))
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// contentType is the response media type for the request's FHIR version.
func contentType(c *gin.Context) string {
	return "application/fhir+json; charset=utf-8; fhirVersion=" + version(c).mimeParam()
}

// writeJSON writes already-encoded FHIR JSON, pretty-printed if _pretty=true.
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	if c.Query("_pretty") == "true" {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	c.Data(status, contentType(c), body)
}

// writeResource encodes r (converting to R4 when negotiated) and writes it.
func (s *Server) writeResource(c *gin.Context, status int, r fhir.Resource) {
	var body []byte
	var err error
	if version(c) == R4 {
		body, err = fhir.MarshalR4(r, fhir.R4Options{})
	} else {
		body, err = json.Marshal(r)
	}
	if err != nil {
		s.log.Error("encode response", append(logAttrs(c), "err", err)...)
		c.Data(http.StatusInternalServerError, "application/fhir+json; charset=utf-8",
			[]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"internal error"}]}`))
		return
	}
	s.writeJSON(c, status, body)
}

package providers

import (
	"fmt"
	"net/url"
	"strings"
)

// AbsoluteURL parses a configured vendor endpoint: an absolute URL with a scheme and a host, a
// trailing slash dropped (paths are appended to it). what names the setting in the error.
func AbsoluteURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("invalid %s URL %q", what, raw)
	}
	return u, nil
}

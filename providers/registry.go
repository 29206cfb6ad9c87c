package providers

import (
	"fmt"
	"sort"
)

// Registry holds the configured providers by name. It is built once in cmd/ohx (no init()
// registration) and read-only afterwards, so it is safe for concurrent use.
type Registry struct {
	byName map[string]Provider
	names  []string
}

// NewRegistry registers ps. Nil providers are skipped (a vendor without credentials is simply
// not offered). It panics on an empty or duplicate name: that is a wiring bug in cmd/ohx.
func NewRegistry(ps ...Provider) *Registry {
	r := &Registry{byName: map[string]Provider{}}
	for _, p := range ps {
		if p == nil {
			continue
		}
		name := p.Name()
		if name == "" {
			panic("providers: NewRegistry: provider with an empty name")
		}
		if _, dup := r.byName[name]; dup {
			panic(fmt.Sprintf("providers: NewRegistry: provider %q registered twice", name))
		}
		r.byName[name] = p
		r.names = append(r.names, name)
	}
	sort.Strings(r.names)
	return r
}

// Get returns the provider of that name; false if it is not configured.
func (r *Registry) Get(name string) (Provider, bool) {
	if r == nil {
		return nil, false
	}
	p, ok := r.byName[name]
	return p, ok
}

// Names lists the configured providers, sorted.
func (r *Registry) Names() []string {
	if r == nil {
		return nil
	}
	return append([]string(nil), r.names...)
}

package googlehealthtest

import (
	"os"
	"testing"

	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestRoutes: every route key parses and every fixture it names exists.
func TestRoutes(t *testing.T) {
	routes := Routes()
	providertest.NewServer(t, routes)
	for k, r := range routes {
		if _, err := os.Stat(providertest.TestdataPath(t, r.File)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if len(Subset(KeyExchange, KeyIdentity, "no such route")) != 2 {
		t.Error("Subset")
	}
}

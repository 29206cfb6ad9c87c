package providers_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/providers"
)

type named struct {
	httpProvider
	name string
}

func (n *named) Name() string { return n.name }

func TestRegistry(t *testing.T) {
	w, f := &named{name: "withings"}, &named{name: "fitbit"}
	r := providers.NewRegistry(w, nil, f)
	if diff := cmp.Diff([]string{"fitbit", "withings"}, r.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if p, ok := r.Get("withings"); !ok || p != providers.Provider(w) {
		t.Errorf("Get(withings): got %v, %v", p, ok)
	}
	if _, ok := r.Get("googlehealth"); ok {
		t.Error("Get(googlehealth): want not configured")
	}
	if got := providers.NewRegistry().Names(); len(got) != 0 {
		t.Errorf("empty registry names: %v", got)
	}
}

func TestRegistryRejectsDuplicates(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a duplicate name: want a panic")
		}
	}()
	providers.NewRegistry(&named{name: "withings"}, &named{name: "withings"})
}

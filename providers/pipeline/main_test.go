package pipeline

import (
	"os"
	"testing"

	"github.com/openhealthexchange/ohx/store/mongo/mongotest"
)

// TestMain stops the FerretDB the MongoDB runs start, and removes its files.
func TestMain(m *testing.M) {
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}

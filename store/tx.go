package store

import (
	"fmt"

	"github.com/openhealthexchange/ohx/fhir"
)

// TxError is the error of a failed Transactor.Transact: Index is the op that failed.
type TxError struct {
	Index int
	Err   error
}

func (e *TxError) Error() string { return fmt.Sprintf("transaction op %d: %v", e.Index, e.Err) }

func (e *TxError) Unwrap() error { return e.Err }

// CarriesIdentifier reports whether r has the identifier (system, value) — what CreateUnique
// and TxOp.UniqueSystem require of the resource they write.
func CarriesIdentifier(r fhir.Resource, system, value string) bool {
	for _, id := range identifiers(r) {
		if id.System == system && id.Value == value {
			return true
		}
	}
	return false
}

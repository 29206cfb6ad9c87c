package providers

import (
	"errors"
	"fmt"
	"time"
)

// ErrSyncPending is the cause of an UncoveredError whose sync was started but had not finished
// when the search could wait no longer (the read-through budget): the sync goes on in the
// background, and a later search finds the window covered.
var ErrSyncPending = errors.New("sync still running")

// UncoveredError is a window of a patient's data from one provider that a search asked for but
// that was not synced when it was answered (read-through could not fill it): the answer holds
// what is stored, with a warning naming the provider and the window. Err is the cause: a
// *UpstreamError (the vendor throttled, down or refusing), ErrConsentRevoked (the connection
// needs the patient to connect again) or ErrSyncPending (still running). Match it with
// errors.As; it unwraps to its cause.
type UncoveredError struct {
	// Provider is the vendor's name ("withings").
	Provider string
	// Start and End bound the uncovered window [Start, End).
	Start, End time.Time
	// Err is the cause.
	Err error
}

func (e *UncoveredError) Error() string {
	return fmt.Sprintf("%s data from %s to %s not synced: %v", e.Provider,
		e.Start.UTC().Format(time.RFC3339), e.End.UTC().Format(time.RFC3339), e.Err)
}

func (e *UncoveredError) Unwrap() error { return e.Err }

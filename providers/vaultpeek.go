package providers

import "context"

// Peek returns the patient's connection to the provider without its token (Token nil): its
// state, vendor user, creation time and last sync, for decisions that call no vendor (whether
// a search should read through), so that nothing is decrypted on the search path. It returns
// ErrNotConnected if there is none. Use Get for a connection to call the vendor with.
func (v *Vault) Peek(ctx context.Context, provider, patientID string) (*Connection, error) {
	d, err := v.getDoc(ctx, provider, patientID)
	if err != nil {
		return nil, err
	}
	return d.connection(), nil
}

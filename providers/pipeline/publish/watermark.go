package publish

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// RecordKind is the store record kind of the per-patient watermarks (id: the patient).
const RecordKind = "publish-watermark"

// maxSent bounds the Observations a watermark remembers as delivered (their digests, about
// 100 bytes each): beyond it the oldest are forgotten, and may be sent once more — the EHR's
// conditional update makes that harmless, and it happens only after very large syncs.
const maxSent = 10000

// watermark is what has been delivered of one patient: everything of the patient last updated
// before Since, and the resources in Sent in the form their digest records. Devices and device
// associations stay in Sent (a patient has a few); Observations only while they are at or after
// Since, where a run looks again.
type watermark struct {
	Since time.Time       `json:"since,omitzero"`
	Sent  map[string]sent `json:"sent,omitempty"`
}

// sent is one delivered resource: the digest of what was sent (see item.digest) and its
// meta.lastUpdated.
type sent struct {
	Digest      string    `json:"d"`
	LastUpdated time.Time `json:"lu"`
}

// advance moves Since forward to t (never back) and forgets the Observations before it.
func (w *watermark) advance(t time.Time) {
	if t.After(w.Since) {
		w.Since = t
	}
	var obs []string
	for k, s := range w.Sent {
		if !kept(k) {
			if s.LastUpdated.Before(w.Since) {
				delete(w.Sent, k)
			} else {
				obs = append(obs, k)
			}
		}
	}
	if len(obs) > maxSent {
		slices.SortFunc(obs, func(a, b string) int {
			return cmp.Or(w.Sent[a].LastUpdated.Compare(w.Sent[b].LastUpdated), cmp.Compare(a, b))
		})
		for _, k := range obs[:len(obs)-maxSent] {
			delete(w.Sent, k)
		}
	}
}

// kept reports the entries of Sent that advance never forgets: the patient's devices and their
// associations, which are compared in full on every run.
func kept(key string) bool {
	typ, _, _ := cutRef(key)
	return typ == "Device" || typ == "DeviceAssociation"
}

func (p *Publisher) loadWatermark(ctx context.Context, patient string) (*watermark, error) {
	w := &watermark{Sent: map[string]sent{}}
	b, err := p.st.GetRecord(ctx, RecordKind, patient)
	if errors.Is(err, store.ErrNotFound) {
		return w, nil
	}
	if err != nil {
		return nil, fmt.Errorf("publish: read watermark: %w", err)
	}
	if err := json.Unmarshal(b, w); err != nil {
		return nil, fmt.Errorf("publish: decode watermark of patient %s: %w", patient, err)
	}
	if w.Sent == nil {
		w.Sent = map[string]sent{}
	}
	return w, nil
}

func (p *Publisher) saveWatermark(ctx context.Context, patient string, w *watermark) error {
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("publish: encode watermark: %w", err)
	}
	if err := p.st.PutRecord(ctx, RecordKind, patient, b, time.Time{}); err != nil {
		return fmt.Errorf("publish: save watermark: %w", err)
	}
	return nil
}

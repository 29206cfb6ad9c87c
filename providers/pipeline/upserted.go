package pipeline

import (
	"context"
	"fmt"

	"github.com/openhealthexchange/ohx/store"
)

// UpsertedFunc is the hook Config.Upserted: it is called after an upsert of one patient's
// resources has committed, with changed reporting whether the upsert created or changed any of
// them. Downstream consumers (publishing to an EHR) hook in here without the pipeline importing
// them.
//
// It is called after every upsert, also one that changed nothing: a job whose first run crashed
// after its upsert and before the hook runs again, finds everything stored already and must
// still reach the hook, or what the first run wrote would never be passed on. A consumer that
// keeps its own watermark of what it passed on (as publishing does) finds nothing new then. An
// error fails the job, which is retried: the upsert is idempotent.
type UpsertedFunc func(ctx context.Context, patient string, changed bool) error

// upserted calls Config.Upserted, if set, after an upsert of the patient's resources.
func (r *Runner) upserted(ctx context.Context, patient string, res []store.UpsertResult) error {
	if r.cfg.Upserted == nil || patient == "" {
		return nil
	}
	changed := false
	for _, u := range res {
		if u.Created || u.Changed {
			changed = true
			break
		}
	}
	if err := r.cfg.Upserted(ctx, patient, changed); err != nil {
		return fmt.Errorf("after upsert: %w", err)
	}
	return nil
}

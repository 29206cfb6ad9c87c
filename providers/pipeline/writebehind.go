package pipeline

import (
	"context"

	"github.com/openhealthexchange/ohx/fhir"
)

// writeBehinder upserts a fetch's batches on a goroutine of its own, one at a time and in
// order, while the fetch goes on reading and mapping the vendor's next page: the vendor's
// answer, its decoding and the mapping to FHIR then overlap the store's transaction instead of
// waiting for it (on the embedded store the transaction is one writer, so two batches never
// write at once anyway). At most one batch waits behind the one being written, which bounds
// the memory a fast vendor can pile up. The first error stops the writing: later batches are
// refused with it, and the fetch fails as it did when it wrote each batch itself.
type writeBehinder struct {
	r       *Runner
	ctx     context.Context
	patient string
	async   bool
	batches chan []fhir.Resource // nil until the first batch starts the goroutine
	done    chan struct{}
	err     error // set by the goroutine before done closes
}

// writeBehind returns the writer of one fetch's batches for the patient. With async false (a
// fetch whose mapping reads what earlier batches wrote, as the lineage of a moved account
// does), write upserts at once, in the caller's goroutine.
func (r *Runner) writeBehind(ctx context.Context, patient string, async bool) *writeBehinder {
	return &writeBehinder{r: r, ctx: ctx, patient: patient, async: async}
}

// upsert stores one batch and reports it (publishing, read-through's waiters).
func (w *writeBehinder) upsert(batch []fhir.Resource) error {
	res, err := w.r.st.Upsert(w.ctx, batch)
	if err != nil {
		return err
	}
	return w.r.upserted(w.ctx, w.patient, res)
}

// write hands a batch over (the writer owns it from then on), or writes it at once when not
// async. It returns the error of an earlier batch, if one failed.
func (w *writeBehinder) write(batch []fhir.Resource) error {
	if !w.async {
		return w.upsert(batch)
	}
	if w.batches == nil {
		w.batches, w.done = make(chan []fhir.Resource, 1), make(chan struct{})
		go w.run(w.batches)
	}
	select {
	case w.batches <- batch:
		return nil
	case <-w.done:
		return w.err
	}
}

// run writes the batches of ch (the channel is an argument: wait clears the field).
func (w *writeBehinder) run(ch <-chan []fhir.Resource) {
	defer close(w.done)
	for b := range ch {
		if err := w.upsert(b); err != nil {
			w.err = err
			return
		}
	}
}

// wait returns once every batch handed over is written, with the first error.
func (w *writeBehinder) wait() error {
	if w.batches == nil {
		return nil
	}
	close(w.batches)
	w.batches = nil
	<-w.done
	return w.err
}

// stop ends the writer if the fetch returns early: the batches still queued are written or
// refused as the context allows, and the goroutine is gone when stop returns. Its error is not
// returned: the fetch is already failing with its own.
func (w *writeBehinder) stop() {
	_ = w.wait()
}

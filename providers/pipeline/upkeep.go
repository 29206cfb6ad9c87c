package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Upkeep is the scheduler's periodic work: passes over every connection that queue jobs.
//
//   - reconcile (Config.Reconcile, default every 6 h): per active connection a TypeReconcile job
//     (a windowed fetch of the last Config.ReconcileWindow, default 7 days, at PriorityReconcile:
//     after the webhooks' fresh data) to catch data whose notification never arrived, a
//     TypeSubscribe job (the adapter lists the user's subscriptions and adds what the vendor
//     dropped), and the retirement of connections another connection of the patient continues;
//   - devices (Config.DeviceSync, default daily): a TypeDeviceSync job per active connection
//     (battery levels change, devices come and go);
//   - tokens (every Config.TokenRefreshAhead/3, default 5 min): a TypeTokenRefresh job per active
//     connection whose access token expires within Config.TokenRefreshAhead (default 15 min).
//
// Each pass runs once per period across every runner sharing the store: a period is a slot of
// the clock (the time truncated to the period), and a runner runs a slot's pass only after
// creating the slot's lease record (store.Records.CreateRecord is atomic across store handles
// and processes); when the pass is done the record is kept until the slot ends, so no runner
// runs it again. A runner that dies during a pass loses its lease after Config.Lease and another
// runner runs the pass. The work itself is queued jobs whose keys name the connection only (no
// window), so a pass coalesces with the jobs of an earlier pass still waiting (a backlog) and two
// passes never double the vendor calls.

// Job types of the upkeep passes. Their payload is a Work of one connection, without a window.
const (
	// TypeReconcile reads the last Config.ReconcileWindow of every kind (the window is taken
	// when the job runs), or, with a negative ReconcileWindow, every kind incrementally from
	// its cursor.
	TypeReconcile = "reconcile"
	// TypeTokenRefresh refreshes the connection's token if it expires within
	// Config.TokenRefreshAhead when the job runs.
	TypeTokenRefresh = "token-refresh"
)

// PriorityTokenRefresh runs proactive refreshes before the setup of new connections: they are
// one cheap vendor call each, and a token that lapses makes the next fetch wait for one.
const PriorityTokenRefresh = 80

// Upkeep task names (the task attribute of the logs, Pass.Task).
const (
	TaskReconcile = "reconcile"
	TaskDevices   = "devices"
	TaskTokens    = "tokens"
)

// kindUpkeep is the record kind of the upkeep leases: id task@slot.
const kindUpkeep = "pipeline-upkeep"

// Pass reports one upkeep pass a runner ran.
type Pass struct {
	// Task names the pass (TaskReconcile, TaskDevices, TaskTokens); Slot is the start of its
	// period.
	Task string
	Slot time.Time
	// Connections is how many active connections the pass looked at.
	Connections int
	// Queued counts the new jobs; Coalesced the jobs that joined the same work already
	// queued.
	Queued, Coalesced int
}

// TokenRefresher is implemented by vaults that refresh a connection's token ahead of its expiry
// (providers.Vault). Without it the tokens pass is not run.
type TokenRefresher interface {
	// RefreshAhead refreshes the token if it expires within ahead; refreshed reports whether it
	// was replaced. A refused refresh token marks the connection needs-reauth and returns an
	// error matching providers.ErrConsentRevoked.
	RefreshAhead(ctx context.Context, c *providers.Connection, p providers.Provider, ahead time.Duration) (refreshed bool, err error)
}

// upkeepTask is one periodic pass.
type upkeepTask struct {
	name  string
	every time.Duration
	run   func(ctx context.Context, p *Pass) error
}

// upkeepTasks are the passes this runner's configuration turns on.
func (r *Runner) upkeepTasks() []upkeepTask {
	var ts []upkeepTask
	if r.cfg.Reconcile > 0 {
		ts = append(ts, upkeepTask{name: TaskReconcile, every: r.cfg.Reconcile, run: r.reconcilePass})
	}
	if r.cfg.DeviceSync > 0 {
		ts = append(ts, upkeepTask{name: TaskDevices, every: r.cfg.DeviceSync, run: r.devicesPass})
	}
	if _, ok := r.vault.(TokenRefresher); ok && r.cfg.TokenRefreshAhead > 0 {
		// Three looks per margin: a token is refreshed between 2/3 and all of the margin
		// before it expires, even when one pass is missed.
		ts = append(ts, upkeepTask{name: TaskTokens, every: max(r.cfg.TokenRefreshAhead/3, time.Minute), run: r.tokensPass})
	}
	return ts
}

// runUpkeep runs Upkeep every Config.UpkeepCheck until ctx ends. The first look is one interval
// after the start: a runner that restarts does not hit the store and the vendors at once, and
// a pass already done in the current period is not run again anyway.
func (r *Runner) runUpkeep(ctx context.Context) {
	if len(r.upkeepTasks()) == 0 {
		return
	}
	t := time.NewTicker(r.cfg.UpkeepCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Upkeep(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("upkeep", "err", err)
		}
	}
}

// Upkeep runs every upkeep pass whose current period no runner sharing the store has run yet
// (or is running), and returns the passes it ran. A failed pass is reported in the joined error
// and released, so that the next look, by any runner, tries again.
func (r *Runner) Upkeep(ctx context.Context) ([]Pass, error) {
	var ran []Pass
	var errs []error
	for _, task := range r.upkeepTasks() {
		slot := r.now().UTC().Truncate(task.every)
		id := task.name + "@" + slot.Format(time.RFC3339)
		ok, err := r.takeSlot(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline: upkeep %s: %w", task.name, err))
			continue
		}
		if !ok {
			continue
		}
		p := Pass{Task: task.name, Slot: slot}
		err = task.run(ctx, &p)
		r.log.Info("upkeep pass", "task", task.name, "slot", slot, "connections", p.Connections,
			"queued", p.Queued, "coalesced", p.Coalesced, "ok", err == nil)
		if err != nil {
			r.releaseSlot(id)
			errs = append(errs, fmt.Errorf("pipeline: upkeep %s: %w", task.name, err))
			continue
		}
		r.finishSlot(ctx, id, slot.Add(task.every))
		ran = append(ran, p)
	}
	return ran, errors.Join(errs...)
}

// upkeepLease is the document of an upkeep lease record.
type upkeepLease struct {
	Owner string    `json:"owner"`
	Done  bool      `json:"done,omitempty"`
	At    time.Time `json:"at"`
}

// takeSlot creates the lease of a slot's pass; false if another runner holds it or did the pass.
// Record expiries are on the store's clock, which is the wall clock, not the runner's (tests
// shift that): the lease lasts Config.Lease from now.
func (r *Runner) takeSlot(ctx context.Context, id string) (bool, error) {
	// A read first: the pass is done in all but the first look of a period, and a read is
	// no write transaction.
	if _, err := r.st.GetRecord(ctx, kindUpkeep, id); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	doc, _ := json.Marshal(upkeepLease{Owner: r.owner, At: time.Now().UTC()}) // never fails
	err := r.st.CreateRecord(ctx, kindUpkeep, id, doc, time.Now().Add(r.cfg.Lease))
	if errors.Is(err, store.ErrDuplicate) {
		return false, nil
	}
	return err == nil, err
}

// finishSlot marks the slot's pass done until the slot ends (then the record expires, and the
// next slot has a record of its own).
func (r *Runner) finishSlot(ctx context.Context, id string, end time.Time) {
	doc, _ := json.Marshal(upkeepLease{Owner: r.owner, Done: true, At: time.Now().UTC()}) // never fails
	left := max(end.Sub(r.now()), time.Second)
	if err := r.st.PutRecord(ctx, kindUpkeep, id, doc, time.Now().Add(left)); err != nil {
		// The lease expires by itself; another runner may then repeat the pass, whose jobs
		// coalesce with these.
		r.log.Warn("upkeep: marking a pass done failed", "pass", id, "err", err)
	}
}

// releaseSlot deletes the lease of a failed pass if this runner still holds it.
func (r *Runner) releaseSlot(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := r.st.GetRecord(ctx, kindUpkeep, id)
	if err != nil {
		return
	}
	var l upkeepLease
	if json.Unmarshal(b, &l) != nil || l.Owner != r.owner || l.Done {
		return
	}
	if err := r.st.DeleteRecord(ctx, kindUpkeep, id); err != nil {
		r.log.Warn("upkeep: releasing a pass lease failed (it expires by itself)", "pass", id, "err", err)
	}
}

// enqueuePass queues one job of a pass and counts it.
func (r *Runner) enqueuePass(ctx context.Context, p *Pass, j store.Job) error {
	_, coalesced, err := r.Enqueue(ctx, j)
	if err != nil {
		return err
	}
	if coalesced {
		p.Coalesced++
	} else {
		p.Queued++
	}
	return nil
}

// activeConnections lists the active connections of the configured providers.
func (r *Runner) activeConnections(ctx context.Context) ([]*providers.Connection, error) {
	conns, err := r.vault.List(ctx)
	if err != nil {
		return nil, err
	}
	out := conns[:0]
	for _, c := range conns {
		if _, ok := r.reg.Get(c.Provider); ok && c.Status == providers.StatusActive {
			out = append(out, c)
		}
	}
	return out, nil
}

// reconcilePass is the reconcile task: see Reconcile.
func (r *Runner) reconcilePass(ctx context.Context, p *Pass) error {
	conns, err := r.vault.List(ctx)
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	// A connection another connection of its patient continues ends (its retirement may not
	// have been queued when the patient moved).
	held := map[providers.Account]*providers.Connection{}
	for _, c := range conns {
		held[providers.Account{Provider: c.Provider, User: c.VendorUserID}] = c
	}
	for _, c := range conns {
		pr := c.Predecessor
		if pr == nil || pr.Provider == c.Provider || c.Status != providers.StatusActive {
			continue
		}
		// Only the connection that was there at the move: one the patient made again since
		// then is theirs to keep.
		if old := held[pr.Account]; old != nil && old.PatientID == c.PatientID && old.Created.Before(pr.Until) {
			if err := r.enqueuePass(ctx, p, Work{Provider: pr.Provider, Patient: c.PatientID}.Job(TypeRetire)); err != nil {
				return err
			}
		}
	}
	for _, c := range conns {
		if _, ok := r.reg.Get(c.Provider); !ok || c.Status != providers.StatusActive {
			continue
		}
		p.Connections++
		w := Work{Provider: c.Provider, Patient: c.PatientID}
		for _, j := range []store.Job{w.Job(TypeReconcile), w.Job(TypeSubscribe)} {
			if err := r.enqueuePass(ctx, p, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// devicesPass is the devices task: a device sync of every active connection, after the
// webhooks' fresh data (PriorityReconcile; a waiting device sync of a new connection keeps its
// higher priority).
func (r *Runner) devicesPass(ctx context.Context, p *Pass) error {
	conns, err := r.activeConnections(ctx)
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	for _, c := range conns {
		p.Connections++
		j := Work{Provider: c.Provider, Patient: c.PatientID}.Job(TypeDeviceSync)
		j.Priority = PriorityReconcile
		if err := r.enqueuePass(ctx, p, j); err != nil {
			return err
		}
	}
	return nil
}

// tokensPass is the tokens task: a refresh of every active connection whose access token
// expires within Config.TokenRefreshAhead. Token expiries are wall-clock times (the vault
// compares them with time.Now), whatever the runner's clock.
func (r *Runner) tokensPass(ctx context.Context, p *Pass) error {
	conns, err := r.activeConnections(ctx)
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	now := time.Now()
	for _, c := range conns {
		p.Connections++
		if !c.ExpiresWithin(now, r.cfg.TokenRefreshAhead) {
			continue
		}
		if err := r.enqueuePass(ctx, p, Work{Provider: c.Provider, Patient: c.PatientID}.Job(TypeTokenRefresh)); err != nil {
			return err
		}
	}
	return nil
}

// reconcileFetch is the handler of TypeReconcile jobs: the last ReconcileWindow of every kind,
// up to now (recorded as covered), or an incremental fetch when the window is negative.
func (r *Runner) reconcileFetch(ctx context.Context, s *session, w Work) error {
	if r.cfg.ReconcileWindow < 0 {
		return r.fetchIncremental(ctx, s, Work{Provider: w.Provider, Patient: w.Patient, Kinds: w.Kinds})
	}
	end := r.now().UTC().Truncate(time.Second)
	return r.fetchWindow(ctx, s, Work{Provider: w.Provider, Patient: w.Patient, Kinds: w.Kinds,
		Start: end.Add(-r.cfg.ReconcileWindow), End: end}, false)
}

// refreshToken is the handler of TypeTokenRefresh jobs. A refresh token the vendor refuses has
// marked the connection needs-reauth, which is the job's outcome: nothing to retry, and the
// next passes skip the connection.
func (r *Runner) refreshToken(ctx context.Context, s *session, _ Work) error {
	tr, ok := r.vault.(TokenRefresher)
	if !ok {
		return nil
	}
	refreshed, err := tr.RefreshAhead(ctx, s.conn, s.p, r.cfg.TokenRefreshAhead)
	if errors.Is(err, providers.ErrConsentRevoked) {
		r.log.Info("proactive token refresh refused: the connection needs a new consent", "provider", s.conn.Provider, "connection", s.conn.ID)
		return nil
	}
	if err != nil {
		return err
	}
	if refreshed {
		r.log.Debug("vendor token refreshed ahead of its expiry", "provider", s.conn.Provider, "connection", s.conn.ID)
	}
	return nil
}

// skipGone completes an upkeep job whose connection is gone or no longer active (disconnected,
// needs a new consent) or whose provider is no longer offered: the pass that queued it could
// not know, and there is nothing left to do, so it is no dead letter.
func skipGone(h Handler) Handler {
	return func(ctx context.Context, j store.Job) error {
		err := h(ctx, j)
		if errors.Is(err, providers.ErrNotConnected) {
			return nil
		}
		return err
	}
}

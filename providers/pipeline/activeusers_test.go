package pipeline

import (
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/withings"
)

// TestNotifierRemembersActiveUsers: a vendor user found active is not looked up again for
// activeUserTTL (a change of its connection in that time queues a job the job itself drops),
// and a change is seen once the TTL has passed; a revocation is seen at once.
func TestNotifierRemembersActiveUsers(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	nf := g.r.Notifier()
	now := time.Now()
	nf.users.now = func() time.Time { return now }
	day := func(d int) providers.Notification {
		n := weightNotification()
		n.Start, n.End = n.Start.AddDate(0, 0, d), n.End.AddDate(0, 0, d)
		return n
	}
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{day(0)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := nf.users.get(withings.Name, "12345"); !ok {
		t.Fatal("an active vendor user is not remembered")
	}
	conn, err := g.vault.Get(ctx, withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.vault.MarkNeedsReauth(ctx, conn, "test"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(activeUserTTL / 2)
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{day(1)}); err != nil {
		t.Fatal(err)
	}
	if p := g.pending(t); len(p) != 2 {
		t.Fatalf("within the TTL: %d pending jobs, want 2 (the remembered user's)", len(p))
	}
	now = now.Add(activeUserTTL)
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{day(2)}); err != nil {
		t.Fatal(err)
	}
	if p, i := g.pending(t), g.notifications("inactive"); len(p) != 2 || i != 1 {
		t.Errorf("after the TTL: %d pending jobs, %v inactive, want 2 and 1", len(p), i)
	}
	if _, ok := nf.users.get(withings.Name, "12345"); ok {
		t.Error("an inactive connection's vendor user is remembered")
	}

	// A revocation forgets the user whatever the TTL.
	nf.users.put(withings.Name, "u-9", "p9")
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{{VendorUser: "u-9", Event: providers.EventRevoked, Key: "r"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := nf.users.get(withings.Name, "u-9"); ok {
		t.Error("a revoked vendor user is still remembered")
	}
}

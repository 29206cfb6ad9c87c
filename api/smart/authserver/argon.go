package authserver

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sync/semaphore"
)

// argonConcurrency is how many argon2id computations may run at once in the process: one per
// CPU the Go scheduler uses, at most four. Each takes argonMemory (19 MiB) and one CPU for tens
// of milliseconds, so more at once buys no throughput, only memory: unbounded, 60 concurrent
// sign-ins took the server from 63 MiB to 1.2 GiB. Four slots keep the
// hashing memory under 80 MiB on any machine and still verify over a hundred passwords a second.
var argonConcurrency = int64(max(1, min(runtime.GOMAXPROCS(0), 4)))

// argonSlots is process-wide rather than per Server because the memory it protects is the
// process's: two Servers in one process must not double the bound.
var argonSlots = semaphore.NewWeighted(argonConcurrency)

// argonMaxWait bounds the wait for a slot: under a flood of sign-ins a user gets "busy, try
// again" after a few seconds instead of a request that hangs until its timeout.
const argonMaxWait = 5 * time.Second

// errBusy is returned (wrapped) by checkSecret when no slot came free in time or the request
// ended while waiting; callers answer 503 with Retry-After.
var errBusy = errors.New("authserver: busy, try again")

// checkSecret is verifySecret inside an argon2 slot, waiting at most argonMaxWait and never
// past ctx. An empty encoded hash (no such user or client) is verified against dummyHash so that
// the answer takes as long as for a real one; it never matches. It returns an error wrapping
// errBusy if it could not get a slot.
func checkSecret(ctx context.Context, encoded, secret string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, argonMaxWait)
	defer cancel()
	if err := argonSlots.Acquire(ctx, 1); err != nil {
		return false, errors.Join(errBusy, err)
	}
	defer argonSlots.Release(1)
	if encoded == "" {
		verifySecret(dummyHash(), secret)
		return false, nil
	}
	return verifySecret(encoded, secret), nil
}

// argonGauge counts argon2id computations, so that tests can check that argonSlots bounds them
// and that a throttled sign-in costs none.
var argonGauge struct {
	runs, inFlight, maxInFlight atomic.Int64
	// during, when set (by tests), runs inside every computation.
	during atomic.Pointer[func()]
}

// argonKey is argon2.IDKey, counted by argonGauge.
func argonKey(secret, salt []byte, t, m uint32, p uint8, keyLen uint32) []byte {
	g := &argonGauge
	g.runs.Add(1)
	n := g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	for old := g.maxInFlight.Load(); n > old && !g.maxInFlight.CompareAndSwap(old, n); old = g.maxInFlight.Load() {
	}
	if f := g.during.Load(); f != nil {
		(*f)()
	}
	return argon2.IDKey(secret, salt, t, m, p, keyLen)
}

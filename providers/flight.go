package providers

import (
	"context"
	"sync"
	"time"
)

// flights lets identical concurrent calls share one execution. Unlike x/sync/singleflight, the
// shared execution belongs to no single caller: it runs detached from the callers' contexts
// (keeping the first caller's values), each caller stops waiting when its own context ends, and
// the execution is cancelled only when every caller has gone.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done    chan struct{}
	val     []byte
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do runs fn once for all concurrent callers with the same key, bounded by limit. shared
// reports that this caller joined another caller's execution.
func (fs *flights) do(ctx context.Context, key string, limit time.Duration, fn func(context.Context) ([]byte, error)) (val []byte, shared bool, err error) {
	fs.mu.Lock()
	if fs.m == nil {
		fs.m = map[string]*flight{}
	}
	f, shared := fs.m[key]
	if !shared {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		fs.m[key] = f
		go func() {
			defer cancel()
			f.val, f.err = fn(fctx)
			fs.mu.Lock()
			if fs.m[key] == f {
				delete(fs.m, key)
			}
			fs.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	fs.mu.Unlock()

	select {
	case <-f.done:
		return f.val, shared, f.err
	case <-ctx.Done():
		fs.mu.Lock()
		if f.waiters--; f.waiters == 0 {
			f.cancel()
			if fs.m[key] == f {
				delete(fs.m, key) // later callers start afresh instead of joining a dying flight
			}
		}
		fs.mu.Unlock()
		return nil, shared, ctx.Err()
	}
}

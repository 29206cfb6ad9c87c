package authserver

import (
	"container/list"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sign-in throttling (https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html#protect-against-automated-attacks). Without it every guess costs us an argon2id
// verification and costs the attacker nothing, so an online password guess is only as slow as
// our CPUs.
//
// The policy: at most loginAccountLimit (5) failed sign-ins per username and loginAddrLimit
// (20) per client address in a fixed window of loginWindow (15 minutes) that starts at the
// first failure of that key. Once a key reaches its limit, POST /login answers 429 with
// Retry-After until the window ends, without verifying the password (a refused attempt costs
// no hashing). A successful sign-in clears the username's counter; the address keeps its
// failures, so that signing in to one's own account between guesses buys nothing. Usernames
// are counted whether or not they exist, so throttling does not reveal which do.
//
// The per-account limit stops a guesser spread over many addresses; the per-address limit
// stops one address trying one password on many accounts. The price of the per-account limit is
// that anyone can hold a known username's sign-in off for 15 minutes with five wrong passwords:
// that is the OWASP-recommended trade (a short lockout, not a permanent one).
//
// The state lives in memory, per instance: behind a load balancer with N instances an attacker
// gets up to N times the limits. Each table holds at most loginThrottleEntries keys, evicting the
// least recently used, so cycling usernames or addresses cannot grow memory (about 2.5 MB per
// table at most). Evicting a username's counter needs loginThrottleEntries newer failures, which
// the per-address limit turns into loginThrottleEntries/loginAddrLimit (500) distinct addresses.
// IPv6 clients are counted per /64, the block one subscriber usually holds.
const (
	loginAccountLimit    = 5
	loginAddrLimit       = 20
	loginWindow          = 15 * time.Minute
	loginThrottleEntries = 10000
)

// loginThrottle counts failed sign-ins per username and per client address. It is safe for
// concurrent use. An attempt is counted as a failure when it starts (begin) and refunded if it
// succeeds or ends undecided, so that concurrent attempts cannot overrun the limits.
type loginThrottle struct {
	// The limits; tests lower them or the capacity.
	accountLimit, addrLimit int
	window                  time.Duration
	capacity                int
	now                     func() time.Time

	mu       sync.Mutex
	accounts lru
	addrs    lru
}

func newLoginThrottle(now func() time.Time) *loginThrottle {
	return &loginThrottle{accountLimit: loginAccountLimit, addrLimit: loginAddrLimit, window: loginWindow,
		capacity: loginThrottleEntries, now: now}
}

// throttleKeys returns the keys an attempt is counted under: the lower-cased username ("" when
// it cannot be one, so that arbitrary form values never become keys; the address still counts)
// and the client address (an IPv6 address as its /64).
func throttleKeys(username, clientIP string) (account, addr string) {
	if u := strings.ToLower(username); usernameRE.MatchString(u) {
		account = u
	}
	a, err := netip.ParseAddr(clientIP)
	if err != nil {
		if len(clientIP) > 64 {
			clientIP = clientIP[:64]
		}
		return account, clientIP
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return account, p.String()
	}
	return account, a.String()
}

// begin starts an attempt: if neither key has reached its limit it counts a failure under both
// and returns 0; otherwise it counts nothing and returns how long until the later of the two
// limited windows ends.
func (t *loginThrottle) begin(account, addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var wait time.Duration
	if account != "" {
		wait = max(wait, t.accounts.limited(account, t.accountLimit, t.window, now))
	}
	wait = max(wait, t.addrs.limited(addr, t.addrLimit, t.window, now))
	if wait > 0 {
		return wait
	}
	if account != "" {
		t.accounts.add(account, t.window, now, t.capacity)
	}
	t.addrs.add(addr, t.window, now, t.capacity)
	return 0
}

// succeeded ends an attempt begun with begin whose password was right: the username's counter
// is cleared and the address's failure refunded.
func (t *loginThrottle) succeeded(account, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if account != "" {
		t.accounts.remove(account)
	}
	t.addrs.refund(addr)
}

// undecided ends an attempt begun with begin that never compared the password (the server was
// busy or the store failed): both failures are refunded.
func (t *loginThrottle) undecided(account, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if account != "" {
		t.accounts.refund(account)
	}
	t.addrs.refund(addr)
}

// len returns the number of keys held in each table.
func (t *loginThrottle) len() (accounts, addrs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.accounts.order.Len(), t.addrs.order.Len()
}

// lru is a failure counter per key, bounded in size by evicting the least recently touched
// key. The zero value is empty; its owner serialises access.
type lru struct {
	byKey map[string]*list.Element // → *failures
	order list.List                // front: most recently touched
}

type failures struct {
	key   string
	count int
	start time.Time // the window's start
}

// get returns the key's live counter, dropping an expired one.
func (l *lru) get(key string, window time.Duration, now time.Time) (*list.Element, *failures) {
	el, ok := l.byKey[key]
	if !ok {
		return nil, nil
	}
	f := el.Value.(*failures)
	if !now.Before(f.start.Add(window)) {
		l.order.Remove(el)
		delete(l.byKey, key)
		return nil, nil
	}
	return el, f
}

// limited returns how long key stays limited (0 if it is not).
func (l *lru) limited(key string, limit int, window time.Duration, now time.Time) time.Duration {
	_, f := l.get(key, window, now)
	if f == nil || f.count < limit {
		return 0
	}
	return f.start.Add(window).Sub(now)
}

// add counts one failure under key, starting its window if it has none.
func (l *lru) add(key string, window time.Duration, now time.Time, capacity int) {
	if el, f := l.get(key, window, now); f != nil {
		f.count++
		l.order.MoveToFront(el)
		return
	}
	if l.byKey == nil {
		l.byKey = make(map[string]*list.Element)
	}
	l.byKey[key] = l.order.PushFront(&failures{key: key, count: 1, start: now})
	for l.order.Len() > max(capacity, 1) {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.byKey, old.Value.(*failures).key)
	}
}

// refund takes back one failure counted under key, if it is still there.
func (l *lru) refund(key string) {
	el, ok := l.byKey[key]
	if !ok {
		return
	}
	if f := el.Value.(*failures); f.count > 1 {
		f.count--
		return
	}
	l.remove(key)
}

func (l *lru) remove(key string) {
	if el, ok := l.byKey[key]; ok {
		l.order.Remove(el)
		delete(l.byKey, key)
	}
}

// retryAfter formats a wait for the Retry-After header (whole seconds, at least 1) and for
// people ("3 minutes").
func retryAfter(wait time.Duration) (seconds, words string) {
	s := max(int64((wait+time.Second-1)/time.Second), 1)
	m := (s + 59) / 60
	words = fmt.Sprintf("%d minutes", m)
	if m == 1 {
		words = "1 minute"
	}
	return strconv.FormatInt(s, 10), words
}

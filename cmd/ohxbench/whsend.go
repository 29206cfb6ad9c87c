package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// whSenders is the webhook scenarios' load generator: a fixed pool of senders started before
// the load, each with its own keep-alive connection to the server, fed notifications by one
// clock goroutine at their due times. A goroutine and a connection per request (the first
// version) made the generator itself send 13–16 % of the requests more than 1 ms late: the
// spawn, the dial and the scheduling of thousands of goroutines on 2 shared cores. Here a due
// notification waits only for an idle sender; if none is idle (every one waiting for an
// answer), it waits in the queue and that wait is part of its latency, which is measured from
// its due time (Gil Tene's "coordinated omission":
// https://www.scylladb.com/2021/04/22/on-coordinated-omission/).
type whSenders struct {
	ctx     context.Context
	hook    string
	clients []*http.Client
	work    chan *whNote
	wg      sync.WaitGroup
	busy    atomic.Int64
	maxBusy atomic.Int64
}

// newWhSenders starts n senders posting to hook, each on a connection of its own opened (with a
// HEAD, which Withings sends to check a callback URL and which queues nothing) before it returns.
func newWhSenders(ctx context.Context, hook string, n int) (*whSenders, error) {
	if n < 1 {
		return nil, fmt.Errorf("-webhook-senders %d: want at least 1", n)
	}
	g := &whSenders{ctx: ctx, hook: hook, work: make(chan *whNote, 1<<16)}
	for range n {
		// One connection per sender: MaxConnsPerHost 1 and a transport of its own.
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, hook, nil)
		res, err := c.Do(req)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("open a sender's connection: %w", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			g.close()
			return nil, fmt.Errorf("open a sender's connection: HEAD %s", res.Status)
		}
		g.clients = append(g.clients, c)
	}
	return g, nil
}

// close closes the senders' connections.
func (g *whSenders) close() {
	for _, c := range g.clients {
		c.CloseIdleConnections()
	}
}

// post sends one notification and records its outcome; the latency runs from n.slot.
func (g *whSenders) post(c *http.Client, n *whNote) {
	form := url.Values{"userid": {whUserID(n.user)}, "appli": {"1"}, "startdate": {strconv.FormatInt(n.at, 10)}, "enddate": {strconv.FormatInt(n.at, 10)}}
	req, _ := http.NewRequestWithContext(g.ctx, http.MethodPost, g.hook, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	n.sent = time.Now()
	if n.slot.IsZero() {
		n.slot = n.sent
	}
	n.lateBy = n.sent.Sub(n.slot)
	res, err := c.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	n.lat = time.Since(n.slot)
	switch {
	case err != nil:
		n.errText = err.Error()
	case res.StatusCode/100 != 2:
		n.errText = res.Status
	default:
		n.acked = true
	}
}

// run starts the senders on g.work until it closes.
func (g *whSenders) run(senders []*http.Client) {
	for _, c := range senders {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for n := range g.work {
				b := g.busy.Add(1)
				for m := g.maxBusy.Load(); b > m && !g.maxBusy.CompareAndSwap(m, b); m = g.maxBusy.Load() {
				}
				g.post(c, n)
				g.busy.Add(-1)
			}
		}()
	}
}

// closedLoop sends notes as fast as `senders` of the senders answer (the backlog).
func (g *whSenders) closedLoop(notes []*whNote, senders int) {
	g.work = make(chan *whNote, 1<<16)
	g.run(g.clients[:min(senders, len(g.clients))])
	for _, n := range notes {
		g.work <- n
	}
	close(g.work)
	g.wg.Wait()
}

// openLoop sends note i at start + i/rate with every sender. The clock goroutine sleeps until
// the next due time and hands over every note due by then: a note is never handed over early,
// and one handed over late is late in its latency. It sleeps with nanosleep(2) on a thread of
// its own: time.Sleep wakes through the runtime's netpoller, whose epoll timeout is in whole
// milliseconds, and was 0.5–1.5 ms late (p50–p99) here, which alone made 13 % of the sends
// more than 1 ms late; nanosleep is ~0.1 ms late.
func (g *whSenders) openLoop(notes []*whNote, rate int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g.work = make(chan *whNote, len(notes))
	g.busy.Store(0)
	g.maxBusy.Store(0)
	g.run(g.clients)
	interval := time.Second / time.Duration(rate)
	start := time.Now().Add(10 * time.Millisecond)
	for i, n := range notes {
		n.slot = start.Add(time.Duration(i) * interval)
	}
	for i := 0; i < len(notes); {
		if d := time.Until(notes[i].slot); d > 0 {
			ts := syscall.NsecToTimespec(int64(d))
			syscall.Nanosleep(&ts, nil) // EINTR: woken early, the loop sleeps again
		}
		now := time.Now()
		for ; i < len(notes) && !notes[i].slot.After(now); i++ {
			notes[i].handedBy = now.Sub(notes[i].slot)
			g.work <- notes[i]
		}
	}
	close(g.work)
	g.wg.Wait()
}

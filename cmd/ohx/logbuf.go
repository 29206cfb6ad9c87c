package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// bufferedLog gathers log lines into fewer writes. With info logging every request writes an
// access-log line, and one write(2) per line is a noticeable share of a fast read's cost; the
// buffer is flushed every interval, when it fills and on Close, so at most an interval of lines
// is lost if the process is killed (a log is not the system of record; the store is).
type bufferedLog struct {
	mu   sync.Mutex
	w    *bufio.Writer // guarded by mu
	stop chan struct{}
	done chan struct{}
}

func newBufferedLog(w io.Writer, interval time.Duration) *bufferedLog {
	b := &bufferedLog{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.flush()
			}
		}
	}()
	return b
}

// Write implements io.Writer; slog handlers write each record with one call.
func (b *bufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

func (b *bufferedLog) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the flusher and writes what is buffered. Later writes are still accepted but only
// written when the buffer fills: Close is for the end of serve, after the last line that matters.
func (b *bufferedLog) Close() error {
	close(b.stop)
	<-b.done
	return b.flush()
}

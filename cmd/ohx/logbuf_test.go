package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBufferedLogFlushesOnTimerAndClose(t *testing.T) {
	out := syncWriter{w: &bytes.Buffer{}}
	b := newBufferedLog(&out, 300*time.Millisecond)
	b.Write([]byte("one\n"))
	if got := out.String(); got != "" {
		t.Fatalf("written before a flush: %q", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for out.String() != "one\n" {
		if time.Now().After(deadline) {
			t.Fatalf("not flushed by the timer: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Write([]byte("two\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
	// A large burst is written as the buffer fills, not held.
	out2 := syncWriter{w: &bytes.Buffer{}}
	b2 := newBufferedLog(&out2, time.Hour)
	line := strings.Repeat("x", 1023) + "\n"
	for range 100 {
		b2.Write([]byte(line))
	}
	if n := len(out2.String()); n < 64<<10 {
		t.Fatalf("a full buffer was not written: %d bytes out", n)
	}
	b2.Close()
	if n := len(out2.String()); n != 100*1024 {
		t.Fatalf("after Close %d bytes, want %d", n, 100*1024)
	}
}

package main

import (
	"runtime"
	"testing"
)

// TestTuneProcs: serve leaves a P beyond the runner's CPU-bound goroutines, and an operator's
// GOMAXPROCS wins.
func TestTuneProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	if cpus := tuneProcs(func(string) string { return "" }); cpus != 1 {
		t.Errorf("tuneProcs from 1 P reports %d CPUs, want 1 (the read pool's size)", cpus)
	}
	if got := runtime.GOMAXPROCS(0); got != backgroundProcs+1 {
		t.Fatalf("GOMAXPROCS %d after tuneProcs from 1, want %d", got, backgroundProcs+1)
	}
	runtime.GOMAXPROCS(1)
	cpus := tuneProcs(func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != 1 || cpus != 1 {
		t.Fatalf("GOMAXPROCS %d, %d CPUs reported, with GOMAXPROCS=1 set, want 1 and 1", got, cpus)
	}
}

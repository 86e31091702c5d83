package main

import (
	"context"
	"testing"
)

// TestOutlivingStop: notifications outlive the run's own context (a
// failed run's last word is still sent) but not the second interrupt,
// which cancels the command's root context.
func TestOutlivingStop(t *testing.T) {
	root, abort := context.WithCancel(context.Background())
	defer abort()
	run, endRun := context.WithCancel(withAbort(root))
	out := outlivingStop(run)
	endRun()
	if out.Err() != nil {
		t.Fatalf("the run's context ended and took the notifications' with it: %v", out.Err())
	}
	abort() // the second interrupt
	<-out.Done()
	if out.Err() != context.Canceled {
		t.Fatalf("after the second interrupt: %v, want canceled", out.Err())
	}
	if ctx := outlivingStop(context.Background()); ctx.Err() != nil {
		t.Fatalf("without a root: %v", ctx.Err())
	}
}

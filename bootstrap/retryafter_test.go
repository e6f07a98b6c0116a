package bootstrap

import (
	"context"
	"runtime"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestSubmitRespectsRetryAfter: a create refused with a Retry-After (which
// client-go's own retries of the request did not get past) is tried again
// no sooner than the server asked, and at most the backoff's cap later
// (full jitter, see RetryDelay); one refused without it is retried on the
// backoff. Time is a fake clock: the test checks which timer the code set,
// not how fast anything ran.
func TestSubmitRespectsRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		notBefore time.Duration // the retry must not happen at this point
		by        time.Duration // it must have happened at this point
	}{
		{"429 with Retry-After", apierrors.NewTooManyRequests("too many requests, please try again later", 7), 7*time.Second - time.Millisecond, 7*time.Second + retryBackoff.Cap},
		{"500 server timeout with Retry-After", apierrors.NewServerTimeout(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "create", 3), 3*time.Second - time.Millisecond, 3*time.Second + retryBackoff.Cap},
		{"429 without Retry-After", apierrors.NewTooManyRequests("too many requests", 0), retryBackoff.Duration - time.Millisecond, retryBackoff.Duration * 12 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, client, clk := testServer(t, nil, nil)
			req, key, name := nodeRequest(t)
			creates := failCreates(client, 1, tt.err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			// On a failed check, the cancel ends the submit still waiting.
			t.Cleanup(func() { cancel(); <-done })
			var err error
			go func() {
				defer close(done)
				_, _, err = s.submit(ctx, name, req, key)
			}()
			// The first create has failed once submit waits on the clock.
			for clk.Waiters() < 1 {
				runtime.Gosched()
			}
			clk.Step(tt.notBefore)
			if clk.Waiters() != 1 || creates.Load() != 1 {
				t.Fatalf("retried after %s (%d creates), before the server's Retry-After or the backoff", tt.notBefore, creates.Load())
			}
			clk.Step(tt.by - tt.notBefore)
			<-done
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			if got := creates.Load(); got != 2 {
				t.Errorf("%d creates, want 2", got)
			}
		})
	}
}

// TestRetryDelay: without Retry-After the backoff's steps; with it,
// Retry-After plus the draw's share of the cap, never less than the step.
func TestRetryDelay(t *testing.T) {
	tests := []struct {
		name  string
		steps int // backoff steps taken before
		after time.Duration
		r     float64
		lo    time.Duration // the step's jitter makes the plain backoff a range
		hi    time.Duration
	}{
		{"no Retry-After: first step", 0, 0, 0.9, retryBackoff.Duration, retryBackoff.Duration * 12 / 10},
		{"no Retry-After: capped", 20, 0, 0.9, retryBackoff.Cap, retryBackoff.Cap * 12 / 10},
		{"Retry-After, lowest draw", 0, time.Second, 0, time.Second, time.Second},
		{"Retry-After, middle draw", 0, time.Second, 0.5, time.Second + retryBackoff.Cap/2, time.Second + retryBackoff.Cap/2},
		{"Retry-After, draw clamped", 0, time.Second, 3, time.Second + retryBackoff.Cap, time.Second + retryBackoff.Cap},
		{"Retry-After shorter than a capped step: the step", 20, time.Second, 0, retryBackoff.Cap, retryBackoff.Cap * 12 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := RetryBackoff()
			for range tt.steps {
				b.Step()
			}
			if got := RetryDelay(&b, tt.after, tt.r); got < tt.lo || got > tt.hi {
				t.Errorf("RetryDelay = %v, want within [%v, %v]", got, tt.lo, tt.hi)
			}
		})
	}
}

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
// no sooner than the server asked, and at most 20% later (jitter); one
// refused without it is retried on the backoff. Time is a fake clock: the
// test checks which timer the code set, not how fast anything ran.
func TestSubmitRespectsRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		notBefore time.Duration // the retry must not happen at this point
		by        time.Duration // it must have happened at this point
	}{
		{"429 with Retry-After", apierrors.NewTooManyRequests("too many requests, please try again later", 7), 7*time.Second - time.Millisecond, 7 * 1200 * time.Millisecond},
		{"500 server timeout with Retry-After", apierrors.NewServerTimeout(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "create", 3), 3*time.Second - time.Millisecond, 3 * 1200 * time.Millisecond},
		{"429 without Retry-After", apierrors.NewTooManyRequests("too many requests", 0), retryBackoff.Duration - time.Millisecond, retryBackoff.Duration * 12 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, client, clk := testServer(t, nil, nil)
			req, key, name := nodeRequest(t)
			creates := failCreates(client, 1, tt.err)
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				_, _, err = s.submit(context.Background(), name, req, key)
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
